"""ADR 0021's one-key ``WATCH`` commit with TWO profiles workers at once (issue 17.2/17.3).
Measurement only: the production commit stays ``commit.lua``.

    python -m bench.cs_two_workers [--events 20000] [--rounds 5] [--variants main,cs]
                                   [--max-attempts 10] [--fetch chunked] [--json FILE]

The backlog is ``bench.redis_floor``'s (the simulator, seed 1, 5,000 customers, 200 warm-up +
``--events``), split as two workers of a 6-partition raw topic get it (``bench.partitioner``:
the producer's record key, murmur2 like librdkafka's ``murmur2_random``, the event id standing
in for the random partition of the 210 unkeyed records; partitions 0-2 and 3-5). Each round,
for each variant in turn (alternating which goes first), on a fresh private ``redis-server``
(``bench.private_redis``: AOF on, ``appendfsync everysec``, no fork):

* two OS processes (``multiprocessing``, spawn) build their half, connect, and report ready on
  a pipe; the parent reads Redis's CPU and sends both "go" at once (a barrier, no sleep);
* each runs ``run_batch`` of the profiles lane over its batches of 500 on a ``RedisStore`` as a
  worker's ``BatchRunner`` does: ``streams.contention.Contention`` picks the parts
  (``LOOM_COMMIT_PARTS`` 16 while contended), and a batch that raises a retryable error
  (``CommitConflictError``) is run again at once (the runner would back off first);
* ``main``: ``commit.lua`` as today; ``cs``: ``bench.floor_commit.Cas`` with one ``WATCH``ed
  commit sequence as the store's commit (``bench.redis_floor.CasStore``), an aborted ``EXEC``
  read and checked again up to ``--max-attempts`` times, then ``CommitConflictError``.

Figures per run: ``EXEC`` aborts per commit call and the calls that needed more than one
attempt (``cs``), the lane's CAS conflicts (batches with a conflicted part, parts conflicted,
events computed again, batches run again by the caller), Redis's CPU per event (``/proc``, the
whole process and its main thread; with ``--callgrind``, its instructions), each worker's CPU
per event of its half, the wall time of the whole backlog (go -> both done).

**Exactness**: after every run each profile in Redis must equal the single-writer run's
(``run_batch`` over the whole backlog in order on ``RedisStore``, once at the start), leaving
out ``version`` and ``merged_from`` as ``bench.profiles_cpu`` does (ADR 0005), and the two
workers together must have processed as many events as it did (duplicates and invalid records
are not processed); else the bench fails.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson
import redis

from bench import run_main
from bench.commit_digest import LANES
from bench.floor_commit import Conn
from bench.partitioner import Fetch, assign, partition_for
from bench.private_redis import Server, main_thread_cpu_s, redis_version, running
from bench.profiles_cpu import differences
from bench.redis_floor import GENERATION, PREFIX, TTL_S, CasStore, add_paired_ratios, prepare
from bench.store_bench import make_context
from resolvers.decode_cache import DecodeCache
from resolvers.pipeline import BatchResult, run_batch
from resolvers.steps import RawRecord
from schemas.normalize import DEFAULT
from schemas.touchpoint import dump_touchpoint, record_key
from streams import redis_clients
from streams.contention import Contention
from streams.errors import RetryableError, classify
from streams.procinfo import process_cpu_s
from streams.redis_keys import Keys
from streams.redis_store import RedisStore
from streams.settings import DEV_SALT, LoomSettings
from streams.simulate import Simulator

VARIANTS = ("main", "cs")
BATCH = 500


def backlog(events: int) -> tuple[list[bytes], list[bytes]]:
    """The bench's events (values as the producer sends them) and each one's partitioning key
    (its record key; the event id when it has none)."""
    sim = Simulator(seed=1, customers=5000, stores=10, skus=500)
    tps = list(itertools.islice(sim.events(), 200 + events))
    keys = [record_key(tp) or tp.event_id.encode() for tp in tps]
    return [dump_touchpoint(tp) for tp in tps], keys


def records_of(
    values: Sequence[bytes], keys: Sequence[bytes], batches: list[list[int]]
) -> list[list[RawRecord]]:
    def record(i: int) -> RawRecord:
        return RawRecord(values[i], key=keys[i], topic="raw", partition=partition_for(keys[i]),
                         offset=i)  # fmt: skip

    return [[record(i) for i in batch] for batch in batches]


# --- one worker (a child process) ------------------------------------------------------------


@dataclass
class WorkerFigures:
    records: int = 0
    processed: int = 0
    batches: int = 0  # run_batch calls that returned
    batches_conflicted: int = 0  # ... with a conflicted part (the lane's "retried" batches)
    parts: int = 0
    conflicted_parts: int = 0
    recomputed_events: int = 0
    caller_retries: int = 0  # run_batch calls that raised a retryable error (run again)
    commit_calls: int = 0  # cs: the store's commit calls
    exec_aborts: int = 0  # cs: EXECs aborted
    batches_aborted: int = 0  # cs: batches with at least one EXEC aborted
    calls_retried: int = 0  # cs: commit calls that needed more than one attempt
    most_attempts: int = 0  # cs: of one commit call
    cpu_s: float = 0.0  # this process, go -> done
    wall_s: float = 0.0

    def add(self, result: BatchResult) -> None:
        self.batches += 1
        self.processed += result.processed
        self.batches_conflicted += result.conflicted_parts > 0
        self.parts += result.parts
        self.conflicted_parts += result.conflicted_parts
        self.recomputed_events += result.recomputed_events


@dataclass(frozen=True)
class Job:
    """What a worker process is told: which half, which commit, which server."""

    w: int
    variant: str
    port: int
    events: int
    fetch: Fetch
    max_attempts: int


def worker(job: Job, pipe: Connection) -> None:
    """Worker ``job.w``: its half of the backlog through ``run_batch`` once the parent says go."""
    values, keys = backlog(job.events)
    batches = records_of(values, keys, assign(keys, batch=BATCH, fetch=job.fetch)[job.w])
    client = redis_clients.client(LoomSettings(redis_url=f"redis://127.0.0.1:{job.port}/0"))
    store: RedisStore
    cas: CasStore | None = None
    if job.variant == "main":
        store = RedisStore(client, prefix=PREFIX, seen_ttl_s=TTL_S)
    else:
        store = cas = CasStore(client, Conn("127.0.0.1", job.port), per_key=False)
        cas.cas.max_attempts = job.max_attempts
    store.generation = GENERATION
    base = replace(make_context(DecodeCache()), salt=DEV_SALT.encode())
    contention = Contention(LoomSettings().commit_parts_for("profiles"))
    client.ping()
    out = WorkerFigures(records=sum(map(len, batches)))
    pipe.send("ready")
    pipe.recv()  # go
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for batch in batches:
        aborts = cas.cas.aborts if cas is not None else 0
        while True:
            try:
                result = run_batch(
                    batch, store, lambda: base, max_bytes=64 * 1024, config=DEFAULT,
                    lane=LANES["profiles"], max_parts=contention.max_parts(),
                    retry_parts=contention.parts, hot=contention.hot(),
                )  # fmt: skip
                break
            except Exception as exc:  # as BatchRunner.until_done: retryable -> again
                if not isinstance(classify(exc), RetryableError):
                    raise
                out.caller_retries += 1
        contention.observe(result)
        out.add(result)
        out.batches_aborted += cas is not None and cas.cas.aborts > aborts
    out.cpu_s, out.wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    if cas is not None:
        c = cas.cas
        out.commit_calls, out.exec_aborts = c.calls, c.aborts
        out.calls_retried, out.most_attempts = c.calls_retried, c.most_attempts
    pipe.send(out)
    client.close()


# --- the parent ------------------------------------------------------------------------------


def profile_snapshots(client: redis.Redis) -> dict[str, bytes]:
    """Every profile's snapshot (``d``) by profile id."""
    out: dict[str, bytes] = {}
    for key in client.scan_iter(match=Keys(PREFIX).profile("*"), count=1000):
        snapshot: Any = client.hget(key, "d")
        if snapshot is not None:
            out[key.decode().rsplit(":", 1)[1]] = snapshot
    return out


def single_writer(server: Server, values: list[bytes]) -> tuple[dict[str, bytes], int]:
    """The reference: one worker, the whole backlog in order, ``commit.lua``; its profiles
    and the events it processed."""
    client = server.client()
    store = RedisStore(client, prefix=PREFIX, seen_ttl_s=TTL_S)
    store.generation = GENERATION
    prepare(client, store)
    records = [RawRecord(value=v, topic="raw", partition=0, offset=i) for i, v in enumerate(values)]
    base = replace(make_context(DecodeCache()), salt=DEV_SALT.encode())
    processed = 0
    for i in range(0, len(records), BATCH):
        processed += run_batch(records[i : i + BATCH], store, lambda: base, max_bytes=64 * 1024,
                               config=DEFAULT, lane=LANES["profiles"]).processed  # fmt: skip
    snapshots = profile_snapshots(client)
    client.close()
    if not snapshots:  # a comparison with nothing would pass
        raise RuntimeError("the single writer left no profile: wrong key pattern?")
    return snapshots, processed


def two_workers(server: Server, variant: str, args: argparse.Namespace) -> dict[str, Any]:
    """One run of ``variant`` with two workers on ``server`` (fresh); its figures."""
    client = server.client()
    prepare(client, RedisStore(client, prefix=PREFIX, seen_ttl_s=TTL_S))
    spawn = multiprocessing.get_context("spawn")
    pipes, procs = [], []
    for w in (0, 1):
        mine, theirs = spawn.Pipe()
        job = Job(w, variant, server.port, args.events, args.fetch, args.max_attempts)
        proc = spawn.Process(target=worker, args=(job, theirs))
        proc.start()
        pipes.append(mine)
        procs.append(proc)
    for pipe in pipes:
        if pipe.recv() != "ready":
            raise RuntimeError("a worker did not get ready")
    server.instrument(True)
    cpu0, main0 = process_cpu_s(server.pid), main_thread_cpu_s(server.pid)
    wall0 = time.perf_counter()
    for pipe in pipes:
        pipe.send("go")
    figures: list[WorkerFigures] = [pipe.recv() for pipe in pipes]
    wall = time.perf_counter() - wall0
    cpu1, main1 = process_cpu_s(server.pid), main_thread_cpu_s(server.pid)
    server.instrument(False)
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError(f"a worker exited with {proc.exitcode}")
    n = sum(f.records for f in figures)
    out = summarise(figures, n)
    out.update(
        redis_cpu_us_per_event=round((cpu1 - cpu0) / n * 1e6, 2),
        redis_main_thread_us_per_event=round((main1 - main0) / n * 1e6, 2),
        wall_s=round(wall, 3),
        workers=[asdict(f) for f in figures],
    )
    out["_snapshots"] = profile_snapshots(client)
    client.close()
    return out


def summarise(figures: Sequence[WorkerFigures], events: int) -> dict[str, Any]:
    """The two workers' counts together (module docstring)."""
    total = {name: sum(getattr(f, name) for f in figures) for name in (
        "batches", "batches_conflicted", "parts", "conflicted_parts", "recomputed_events",
        "caller_retries", "commit_calls", "exec_aborts", "batches_aborted", "calls_retried",
        "processed",
    )}  # fmt: skip
    calls = total["commit_calls"]
    return {
        **total,
        "batches_conflicted_pct": round(100 * total["batches_conflicted"] / total["batches"], 2),
        "recomputed_pct_of_events": round(100 * total["recomputed_events"] / events, 2),
        "exec_aborts_per_commit_call": round(total["exec_aborts"] / calls, 4) if calls else None,
        "calls_retried_pct": round(100 * total["calls_retried"] / calls, 2) if calls else None,
        "batches_aborted_pct": round(100 * total["batches_aborted"] / total["batches"], 2),
        "most_attempts": max(f.most_attempts for f in figures),
        "worker_cpu_us_per_event": [round(f.cpu_s / f.records * 1e6, 1) for f in figures],
        "workers_cpu_us_per_event": round(sum(f.cpu_s for f in figures) / events * 1e6, 1),
        "worker_wall_s": [round(f.wall_s, 3) for f in figures],
    }


FIGURES = ("redis_cpu_us_per_event", "redis_main_thread_us_per_event", "wall_s",
           "workers_cpu_us_per_event", "instructions_per_event", "exec_aborts_per_commit_call",
           "calls_retried_pct", "batches_aborted_pct", "batches_conflicted_pct",
           "conflicted_parts", "recomputed_pct_of_events", "caller_retries")  # fmt: skip


def medians(runs: dict[str, list[dict[str, Any]]], base: str = "main") -> dict[str, Any]:
    """Per figure, each variant's median, and each other variant's per-round ratio to ``base``."""
    out: dict[str, Any] = {}
    for name in FIGURES:
        series = {v: [f[name] for f in fs if f.get(name) is not None] for v, fs in runs.items()}
        row: dict[str, Any] = {v: round(statistics.median(xs), 3) for v, xs in series.items() if xs}
        for v, xs in series.items():
            if v != base and xs and len(xs) == len(series.get(base, [])):
                add_paired_ratios(row, v, xs, base, series[base])
        if row:
            out[name] = row
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cs_two_workers", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000, help="events after the warm-up")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="main (commit.lua), cs")
    parser.add_argument("--max-attempts", type=int, default=10, help="cs: attempts per call")
    parser.add_argument("--fetch", choices=("chunked", "interleaved"), default="chunked")
    parser.add_argument("--port", type=int, default=26380, help="the private servers' port")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/cs2w-redis"))
    parser.add_argument("--callgrind", action="store_true", help="count Redis's instructions")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    values, keys = backlog(args.events)
    halves = [sum(map(len, b)) for b in assign(keys, batch=BATCH, fetch=args.fetch)]
    out: dict[str, Any] = {
        "events": len(values), "halves": halves, "batch": BATCH, "fetch": args.fetch,
        "max_attempts": args.max_attempts, "redis": redis_version(),
        "mode": "callgrind" if args.callgrind else "proc",
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }  # fmt: skip
    with running(Server(args.port, args.data_dir / "single")) as server:
        reference, processed = single_writer(server, values)
    out["reference_profiles"], out["reference_processed"] = len(reference), processed
    variants = args.variants.split(",")
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    exact = True
    for r in range(args.rounds):
        for variant in variants[r % len(variants) :] + variants[: r % len(variants)]:
            grind = args.data_dir / f"callgrind.{variant}.{r}" if args.callgrind else None
            server = Server(args.port, args.data_dir / variant, grind)
            server.start()
            try:
                figures = two_workers(server, variant, args)
            finally:
                server.instrument(False)
                instructions = server.stop()
            if instructions is not None:
                figures["instructions_per_event"] = round(instructions / len(values))
            figures["differing_profiles"] = differences(reference, figures.pop("_snapshots"))
            figures["every_event_once"] = figures["processed"] == processed
            figures["loadavg"] = round(os.getloadavg()[0], 2)
            exact &= figures["differing_profiles"] == 0 and figures["every_event_once"]
            runs[variant].append(figures)
            brief = {k: v for k, v in figures.items() if k != "workers"}
            print(f"round {r} {variant}: {brief}", flush=True)
    out["runs"] = runs
    out["summary"] = medians(runs)
    out["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    out["same_profiles_as_single_writer"] = exact
    print(f"summary: {out['summary']}")
    print(f"every run's profiles equal the single writer's, every event once: {exact}")
    if args.json is not None:
        args.json.write_text(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0 if exact else 1


if __name__ == "__main__":
    run_main(main)
