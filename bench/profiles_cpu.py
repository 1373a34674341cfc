"""CPU per event of the profiles lane: its worker and Redis, on real Kafka and Redis (issue 17).

    python -m bench.profiles_cpu [--events 20000] [--workers 1] [--customers 5000]
                                 [--prior-markers N] [--py-spy FILE] [--json FILE]
                                 [--in-process-only [--lane profiles|inventory]]

Two measurements of the same simulator mix (``streams.simulate``, 10 stores, 500 SKUs):

* **in process**: ``run_batch`` of the profiles lane on the in-memory store in batches of 500
  (the pure pipeline: parse, normalize, identity, facts, render, commit encoding; the outbox
  records and stream entries each batch commits dropped after it, as a worker's leave for
  Redis) with a decode cache and the garbage collector run as in a worker (``tune_gc``, and
  what survives each batch frozen: ``streams.gc_policy``; before the ninth pass, young
  collections too), CPU from ``resource.getrusage`` of this process;
* **end to end**: ``--workers`` ``loom worker --role profiles`` processes only (no inventory
  lane, so Redis's work is the profiles lane's) on a fresh 6-partition topic and Redis prefix;
  a 200-event warm-up, then a backlog of ``--events`` produced as fast as the producer SDK
  goes. CPU per event = user + system time from ``/proc/<pid>/stat`` of the workers, and
  Redis's ``used_cpu_user + used_cpu_sys`` (``INFO cpu``), from the first send until the
  group's lag is 0 and the outbox is drained, divided by the backlog's events; likewise the
  bytes Redis read from and wrote to its clients (``INFO stats``: commands and their
  arguments, the outbox's records both ways). Redis's CPU is also split by thread (main,
  background threads; its forked children, AOF rewrites and RDB saves, apart and not in
  the total), and its persistence settings are reported (the AOF is a large share).
  The Redis server must be this bench's alone during the run for its figure to be the lane's.

``--prior-markers N`` first marks N other event ids processed on the fresh prefix (through
``RedisStore.commit``, before the workers start), as a lane that has run for a while has them:
a fresh prefix is the best case for Redis's keyspace and the processed markers' hashes
(ADR 0016: a generation's hashes start small, in Redis's compact encoding).

**Exactness**: the worker's ``loom_events_total`` must grow by exactly the backlog, the run's
``profiles.changes`` read back must end every live profile on its stored snapshot and every
merged or erased one on its merge record or tombstone (ADR 0033), and every
profile in Redis must equal the in-process reference's (a profile is a function of the set of
its events, ADR 0005; ``version`` and ``merged_from`` record processing and are left out).

**Build**: the figures name the build of ``resolvers`` this process imported, ``"pure"``
(Python source) or ``"compiled"`` (extension modules, e.g. a mypyc build measured for ADR
0015), so that results of the two are never confused. ``--in-process-only`` measures
``run_batch`` alone (no Kafka, no Redis, no workers); with ``--lane inventory`` the inventory
lane's (over every event of the mix, as its worker consumes them all).

``--py-spy FILE`` runs the (first) worker under ``py-spy record --format raw`` and writes
FILE (collapsed stacks) and FILE.top.txt (the top frames by inclusive and self share).
"""

from __future__ import annotations

import argparse
import collections
import importlib.machinery
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import redis
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from bench import run_main
from bench.e2e_bench import (
    LOG_DIR,
    ROOT,
    Deployment,
    counter,
    free_port,
    http_status,
    say,
)
from bench.interpreters import facts as interpreter_facts
from bench.soak_bench import serialized_from
from bench.store_bench import NOW, make_context
from resolvers.context import Context
from resolvers.decode_cache import DecodeCache
from resolvers.pipeline import INVENTORY, PROFILES, Lane, run_batch
from resolvers.steps import RawRecord
from resolvers.store import Commit, InMemoryStore, Kind
from schemas.normalize import DEFAULT
from streams import kafka_clients
from streams.gc_policy import GcPolicy
from streams.lane_runner import tune_gc
from streams.procinfo import process_cpu_s
from streams.producer import TouchpointProducer
from streams.redis_store import RedisStore
from streams.settings import DEV_SALT, LoomSettings
from streams.simulate import Simulator

LANE = PROFILES.name
#: Snapshot fields that record processing rather than the events (ADR 0005).
PROCESSING_FIELDS = ("version", "merged_from")


def pipeline_build() -> str:
    """``"compiled"`` if the pure pipeline was imported from extension modules, else ``"pure"``."""
    import resolvers.pipeline

    origin = resolvers.pipeline.__file__ or ""
    compiled = origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    return "compiled" if compiled else "pure"


def redis_cpu_s(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def redis_cpu_parts_s(client: Any) -> dict[str, float]:
    """Redis's CPU so far by where it runs: the main thread (commands, scripts, feeding the
    AOF buffer and writing it), its other threads (AOF fsync, lazy free) and its forked
    children (AOF rewrites, RDB saves: not in ``redis_cpu_s``)."""
    info = client.info("cpu")
    total = redis_cpu_s(client)
    main = float(info["used_cpu_user_main_thread"]) + float(info["used_cpu_sys_main_thread"])
    forks = float(info["used_cpu_user_children"]) + float(info["used_cpu_sys_children"])
    return {"main_thread": main, "other_threads": total - main, "forks": forks}


def redis_persistence(client: Any) -> dict[str, str]:
    """Whether the AOF is on and how it syncs, and the RDB save points: persistence is part of
    Redis's CPU per event (issue 17: the AOF was about a quarter of it)."""
    aof = bool(int(client.info("persistence")["aof_enabled"]))
    out = {"appendonly": "yes" if aof else "no"}
    try:
        out["appendfsync"] = client.config_get("appendfsync")["appendfsync"]
        out["save"] = client.config_get("save")["save"]
    except redis.ResponseError:  # CONFIG may be refused (managed Redis, ACLs): say so
        out["config"] = "unavailable"
    return out


def redis_net_bytes(client: Any) -> tuple[int, int]:
    """Bytes Redis has read from and written to its clients so far (``INFO stats``)."""
    info = client.info("stats")
    return int(info["total_net_input_bytes"]), int(info["total_net_output_bytes"])


def command_usec(client: Any) -> dict[str, tuple[int, int]]:
    """Per Redis command: (calls, microseconds) so far (``INFO commandstats``; the commands
    a Lua script runs are counted under their own names as well as in ``evalsha``)."""
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
        for name, v in stats.items()
    }


def command_delta(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], events: int
) -> dict[str, dict[str, float]]:
    """Per command: calls and µs per event of the run, the costliest first."""
    rows = {}
    for name, (calls, usec) in after.items():
        c0, u0 = before.get(name, (0, 0))
        if usec - u0 > 0:
            rows[name] = {
                "calls_per_event": round((calls - c0) / events, 3),
                "us_per_event": round((usec - u0) / events, 2),
            }
    return dict(sorted(rows.items(), key=lambda kv: -kv[1]["us_per_event"]))


def comparable(snapshot: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(snapshot)
    for name in PROCESSING_FIELDS:
        doc.pop(name, None)
    return doc


def in_process(
    values: list[bytes], batch: int, lane: Lane = PROFILES
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The pure pipeline of ``lane`` on the in-memory store; (figures, snapshot per profile
    id: none for the inventory lane)."""
    # each with a Kafka timestamp a second before the context's clock, as consumed records
    # carry one (the parse stage judges the time bounds at it: ``parse.reference_time``)
    stamped = int(NOW.timestamp() * 1000) - 1000
    records = [
        RawRecord(value=v, topic="raw", partition=0, offset=i, timestamp_ms=stamped)
        for i, v in enumerate(values)
    ]
    batches = [records[i : i + batch] for i in range(0, len(records), batch)]
    store = InMemoryStore()
    base = replace(make_context(DecodeCache()), salt=DEV_SALT.encode())  # the workers' salt

    def context() -> Context:
        return base

    gc_policy = GcPolicy(LoomSettings().gc_full_interval_s)  # as the lane loop runs it
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    for part in batches:
        run_batch(part, store, context, max_bytes=64 * 1024, config=DEFAULT, lane=lane)
        # what a Redis commit sends away leaves the worker's heap: kept in the in-memory
        # store, every outbox record and stream entry made later batches fault in fresh pages
        # (at 30,000 events ~4 % of the figure, ~1.5 % once commit encoding right-sized its
        # values: twenty-fourth pass)
        store.outbox.clear()
        store.streams.clear()
        gc_policy.after_batch()
    seconds = time.perf_counter() - started
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    snapshots = {
        ref.name: entity.fields["d"]
        for ref, entity in store.entities.items()
        if ref.kind is Kind.PROFILE and "d" in entity.fields
    }
    figures = {
        "events": len(values),
        "batch": batch,
        "events_per_s": round(len(values) / seconds, 1),
        "cpu_us_per_event": round(cpu / len(values) * 1e6, 1),
        "profiles": len(snapshots),
    }
    say(f"in process: {figures}")
    return figures, snapshots


def start_profiles_workers(dep: Deployment, n: int, py_spy: Path | None) -> list[int]:
    """``n`` profiles workers (the first under py-spy if asked); their Python pids."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    pids = []
    for i in range(n):
        port = free_port()
        cmd = [sys.executable, "-m", "streams.cli.main", "worker", "--role", LANE,
               "--loglevel", "warning"]  # fmt: skip
        if py_spy is not None and i == 0:
            spy = Path(sys.executable).with_name("py-spy")
            cmd = [str(spy), "record", "--format", "raw", "-r", "100", "-o", str(py_spy),
                   "--", *cmd]  # fmt: skip
        with (LOG_DIR / f"profiles-cpu-{dep.tag}-{i}.log").open("wb") as log:
            proc = subprocess.Popen(
                cmd, env=dep.env(port), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        dep.workers.append((proc, port, LANE))
        deadline = time.monotonic() + 120
        while http_status(f"http://127.0.0.1:{port}/readyz") != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"profiles worker not ready; see {LOG_DIR}")
            time.sleep(0.2)
        pids.append(_python_pid(proc.pid) if py_spy is not None and i == 0 else proc.pid)
    return pids


def _python_pid(parent: int) -> int:
    """The worker process py-spy launched (its only child)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return int(children[0])


def mark_processed(dep: Deployment, n: int, chunk: int = 5_000) -> None:
    """``n`` event ids (not the bench's) marked processed by the profiles lane."""
    store = RedisStore(
        dep.redis, prefix=dep.settings.redis_prefix, seen_ttl_s=dep.settings.dedupe_ttl_s
    )
    for start in range(0, n, chunk):
        ids = tuple(f"prior-{i}" for i in range(start, min(n, start + chunk)))
        assert store.commit(Commit({}, ids)).ok


def end_to_end(
    kafka: str, redis_url: str, warmup: list[tuple[bytes, bytes | None]],
    backlog: list[tuple[bytes, bytes | None]], *, workers: int, py_spy: Path | None,
    prior_markers: int = 0,
) -> tuple[dict[str, Any], dict[str, bytes]]:  # fmt: skip
    dep = Deployment(kafka, redis_url)
    try:
        if prior_markers:
            say(f"end to end: marking {prior_markers} other event ids processed first")
            mark_processed(dep, prior_markers)
        say(f"end to end: {workers} profiles worker(s) on {dep.raw_topic}")
        pids = start_profiles_workers(dep, workers, py_spy)
        # one producer for the warm-up and the backlog (bench.e2e_bench says why)
        with TouchpointProducer(dep.settings) as producer:
            for value, key in warmup:
                producer.send_raw(value, key=key)
            assert producer.flush(60) == 0
            dep.wait_lag_zero(LANE, timeout=120)
            outbox = f"{dep.root}:outbox"
            before = dep.metrics()[LANE]
            cpu0 = sum(process_cpu_s(p) for p in pids)
            redis0 = redis_cpu_s(dep.redis)
            parts0 = redis_cpu_parts_s(dep.redis)
            net0 = redis_net_bytes(dep.redis)
            commands0 = command_usec(dep.redis)
            started = time.monotonic()
            for value, key in backlog:
                producer.send_raw(value, key=key)
            assert producer.flush(60) == 0
        done = dep.wait_lag_zero(LANE, timeout=900, poll_s=0.05)
        while dep.redis.xlen(outbox) and time.monotonic() < done + 120:
            time.sleep(0.05)
        cpu = sum(process_cpu_s(p) for p in pids) - cpu0
        redis_cpu = redis_cpu_s(dep.redis) - redis0
        parts = {k: v - parts0[k] for k, v in redis_cpu_parts_s(dep.redis).items()}
        net_in, net_out = (b - a for a, b in zip(net0, redis_net_bytes(dep.redis), strict=True))
        commands = command_delta(commands0, command_usec(dep.redis), len(backlog))
        after = dep.metrics()[LANE]
        counted = counter(after, "loom_events") - counter(before, "loom_events")
        conflicts = counter(after, "loom_commit_conflicts") - counter(
            before, "loom_commit_conflicts"
        )
        superseded = counter(after, "loom_relay_superseded") - counter(
            before, "loom_relay_superseded"
        )
        n = len(backlog)
        figures = {
            "workers": workers,
            "prior_markers": prior_markers,
            "events": n,
            "events_per_s": round(n / (done - started), 1),
            "worker_cpu_us_per_event": round(cpu / n * 1e6, 1),
            "redis_cpu_us_per_event": round(redis_cpu / n * 1e6, 1),
            "redis_cpu_us_per_event_by_thread": {
                k: round(v / n * 1e6, 1) for k, v in parts.items()
            },
            "redis_persistence": redis_persistence(dep.redis),
            "redis_bytes_in_per_event": round(net_in / n),
            "redis_bytes_out_per_event": round(net_out / n),
            "events_counted": int(counted),
            "commit_conflicts": int(conflicts),
            "relay_superseded": int(superseded),
            "redis_commands": commands,
        }
        say(f"end to end: { {k: v for k, v in figures.items() if k != 'redis_commands'} }")
        snapshots = _snapshots(dep)
        figures["profile_changes"] = changes_read_back(dep, snapshots)
        if py_spy is not None:  # py-spy writes its file when the worker it runs exits
            os.kill(pids[0], signal.SIGTERM)
            dep.workers[0][0].wait(60)
        return figures, snapshots
    finally:
        dep.close()


def changes_read_back(dep: Deployment, stored: dict[str, bytes]) -> dict[str, int]:
    """The run's ``profiles.changes`` read back whole (warm-up included): how many records,
    how many live profiles' last record is not their stored snapshot (ADR 0033: each profile
    ends on its stored state), and how many profiles that are gone (merged, erased) end on a
    snapshot instead of their merge record or tombstone; both must be 0."""
    topic = dep.settings.topics.profile_changes
    reader = kafka_clients.consumer(
        dep.settings, f"bench{dep.tag}-changes", **{"enable.auto.commit": False}
    )
    try:
        partitions = reader.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions}  # fmt: skip
        reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        left = {p for p, end in ends.items() if end > 0}
        last: dict[str, bytes | None] = {}
        records = 0
        deadline = time.monotonic() + 120
        while left and time.monotonic() < deadline:
            for msg in reader.consume(1000, timeout=1.0):
                key, offset, partition = msg.key(), msg.offset(), msg.partition()
                if msg.error() or key is None or offset is None or partition is None:
                    continue
                records += 1
                last[key.decode()] = msg.value()
                if offset + 1 >= ends[partition]:
                    left.discard(partition)
    finally:
        reader.close()
    return {
        "records": records,
        "live_not_ending_on_stored": sum(last.get(pid) != d for pid, d in stored.items()),
        "gone_ending_on_a_snapshot": sum(
            1
            for pid, value in last.items()
            if pid not in stored and value is not None and b'"merged_into"' not in value
        ),
    }


def _snapshots(dep: Deployment) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    pattern = f"{dep.root}:profile:*"
    for key in dep.redis.scan_iter(match=pattern, count=1000):
        snapshot: Any = dep.redis.hget(key, "d")
        if snapshot is not None:
            out[key.decode().rsplit(":", 1)[1]] = snapshot
    return out


def differences(reference: dict[str, bytes], found: dict[str, bytes]) -> int:
    """Profiles that are not the same in both (missing on either side, or another snapshot)."""
    ids = reference.keys() | found.keys()
    return sum(
        1
        for pid in ids
        if pid not in reference
        or pid not in found
        or comparable(reference[pid]) != comparable(found[pid])
    )


def top_frames(raw: Path, limit: int = 40) -> str:
    """Inclusive and self shares of the sampled frames of py-spy's raw (collapsed) output,
    restricted to the lane's threads' stacks that are on CPU."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        n = int(count)
        total += n
        for frame in dict.fromkeys(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    lines = [f"samples: {total}", "inclusive:"]
    lines += [f"{100 * v / total:5.1f}% {k}" for k, v in inclusive.most_common(limit)]
    lines += ["self:"]
    lines += [f"{100 * v / total:5.1f}% {k}" for k, v in own.most_common(limit)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profiles_cpu", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=500, help="in-process batch size")
    parser.add_argument(
        "--prior-markers", type=int, default=0, help="event ids marked processed beforehand"
    )
    parser.add_argument("--py-spy", type=Path, default=None, help="profile the first worker")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument(
        "--in-process-only", action="store_true", help="run_batch alone: no Kafka, Redis, workers"
    )
    parser.add_argument(
        "--lane",
        choices=("profiles", "inventory"),
        default="profiles",
        help="the lane run in process (inventory: only with --in-process-only)",
    )
    args = parser.parse_args(argv)
    if args.lane != "profiles" and not args.in_process_only:
        parser.error("--lane inventory runs in process only: add --in-process-only")
    kafka = os.environ.get("LOOM_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    url = os.environ.get("LOOM_REDIS_URL", "redis://127.0.0.1:16379/0")
    sim = Simulator(seed=1, customers=args.customers, stores=10, skus=500)
    stream = sim.events()
    warmup = serialized_from(stream, 200)
    backlog = serialized_from(stream, args.events)
    load_start = os.getloadavg()
    tune_gc()  # as a worker runs its batches (streams.lane_runner)
    lane = INVENTORY if args.lane == "inventory" else PROFILES
    memory, reference = in_process([v for v, _ in warmup + backlog], args.batch, lane)
    memory["lane"] = args.lane
    machine: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "interpreter": interpreter_facts(),
        "build": pipeline_build(),
        "loadavg_start": [round(x, 2) for x in load_start],
    }
    if args.in_process_only:
        machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        emit({"machine": machine, "in_process": memory}, args.json)
        return 0
    e2e, found = end_to_end(
        kafka,
        url,
        warmup,
        backlog,
        workers=args.workers,
        py_spy=args.py_spy,
        prior_markers=args.prior_markers,
    )
    machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    exact = {
        "events_counted_equal_produced": e2e["events_counted"] == args.events,
        "profiles_reference": len(reference),
        "profiles_in_redis": len(found),
        "profiles_differing": differences(reference, found),
        "profile_changes_end_on_stored": e2e["profile_changes"]["live_not_ending_on_stored"] == 0
        and e2e["profile_changes"]["gone_ending_on_a_snapshot"] == 0,
    }
    if args.py_spy is not None and args.py_spy.exists():
        summary = top_frames(args.py_spy)
        args.py_spy.with_suffix(".top.txt").write_text(summary)
    emit({"machine": machine, "in_process": memory, "end_to_end": e2e, "exact": exact}, args.json)
    ok = exact["events_counted_equal_produced"] and exact["profile_changes_end_on_stored"]
    return 0 if ok and not exact["profiles_differing"] else 1


def emit(out: dict[str, Any], path: Path | None) -> None:
    """Print the figures (and write them to ``path``, if given)."""
    text = orjson.dumps(out, option=orjson.OPT_INDENT_2).decode()
    print(text)
    if path is not None:
        path.write_text(text + "\n")


if __name__ == "__main__":
    run_main(main)
