"""What a profiles commit WITHOUT Lua would cost Redis: the floor and one concrete design
(issue 17.2, ADR 0021). Measurement only: the production commit stays ``commit.lua``.

    python -m bench.redis_floor [--events 20000] [--rounds 3] [--callgrind] [--json FILE]

1. **The live run**: ``run_batch`` of the profiles lane on ``RedisStore`` (redis-py, as a
   worker) over the simulator's events (seed 1, 5,000 customers, 200 warm-up events + ``--events``,
   batches of 500: as ``bench.commit_digest``) against a private ``redis-server`` (7.0, AOF on,
   ``appendfsync everysec``; no RDB save points and no automatic AOF rewrite, so that no fork
   runs during a measurement). Redis's CPU for the batches from ``/proc/<pid>/stat``. Every
   load's request and every commit call's parts (``Commit`` objects) and results are recorded.
2. **Replays** of the recorded calls, each variant on a fresh ``redis-server`` (same start:
   the generation marker and the settled marker hand-over, scripts loaded), alternating:
   - ``main``: the loads and the commits as the live run sent them (load.lua + commit.lua);
   - ``a``: the commits alone, ``commit.lua`` as today (``RedisStore``'s own plan);
   - ``b``: the floor, the same writes as plain commands in one ``MULTI``/``EXEC`` per call, no
     checks at all (only the parts the live run wrote; markers' generation from this clock);
   - ``c``: a compare-and-set without Lua (``bench.floor_commit.Cas``): ``TIME`` and the
     marker layout; ``WATCH`` of every checked key, one pipelined read (versions, ``EXISTS``
     of the expected-absent keys, the suppression ``HMGET``, ``EXISTS`` of the marker hashes
     a lookup reads), the markers' ``HMGET``s, the checks in Python
     (``bench.floor_commands.first_failure``), then ``MULTI``, the passed parts' writes,
     ``EXEC`` (nil: a watched key moved, the whole call is read and checked again);
   - ``cs``: the same with ``WATCH`` of one key only, the lane's commit sequence, which every
     commit ``INCR``s inside its transaction.
   ``load`` = ``main`` - ``a``. Every variant's state at the end (every key's contents, stream
   entries without their ids, expiry times) must hash the same as the live run's, and the
   results of ``main``, ``a``, ``c`` and ``cs`` must equal the live run's: else the bench fails.
   Every replayed commit is sent on one raw socket (``streams.resp.RespPacker``, one
   ``sendall`` per round trip, ``hiredis.Reader`` for the replies; ``a`` builds its arguments
   with ``RedisStore``'s own code); ``main``'s loads go through ``RedisStore.load`` (redis-py)
   as in the live run: the same bytes reach Redis. The figures per variant: Redis CPU per
   event (all threads and the main thread, ``/proc``), ``INFO commandstats`` per event, the
   replaying process's CPU per event (translation, packing, parsing: the worker's side of the
   variant), the median wall time of a commit call. ``--live-rounds N``: N alternating rounds
   of ``run_batch`` itself with each of ``--live-variants`` as the store's commit (``load.lua``
   unchanged), the same figures and the same exactness checks.
3. ``--callgrind``: each replay's ``redis-server`` runs under ``valgrind --tool=callgrind
   --instr-atstart=no``, instrumentation switched on (``callgrind_control -i on``) only around
   the replay: instructions per event, which do not move with the machine's load.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import orjson
import redis

from bench import run_main
from bench.commit_digest import LANES
from bench.floor_commit import Cas, Conn, Floor, checked, state_digest
from bench.private_redis import Server, main_thread_cpu_s, redis_version, running
from bench.soak_bench import serialized_from
from bench.store_bench import make_context
from resolvers.decode_cache import DecodeCache
from resolvers.pipeline import run_batch
from resolvers.steps import RawRecord
from resolvers.store import (
    DEFAULT_SCOPE,
    Commit,
    CommitResult,
    CommitStatus,
    Loaded,
    LoadRequest,
)
from schemas.normalize import DEFAULT
from streams.procinfo import process_cpu_s
from streams.redis_store import RedisStore
from streams.settings import DEV_SALT
from streams.simulate import Simulator

PREFIX = "loom"
TTL_S = 7 * 24 * 3600  # LOOM_DEDUPE_TTL_S's default
GENERATION = "floor9-generation"
VARIANTS = ("main", "a", "b", "c", "cs")


def prepare(client: redis.Redis, store: RedisStore) -> None:
    """The start every run shares: the generation marker (a worker's), the marker hand-over
    settled (nothing to hand over), the scripts loaded, the command statistics reset."""
    keys = store.keys
    client.set(keys.generation, GENERATION)
    client.hset(keys.markers_layout(DEFAULT_SCOPE), "since", 0)
    client.script_load(store._load.script)
    client.script_load(store._commit.script)
    client.config_resetstat()


def command_stats(client: redis.Redis, events: int) -> dict[str, dict[str, float]]:
    rows = {}
    for name, v in client.info("commandstats").items():
        rows[name.removeprefix("cmdstat_")] = {
            "calls_per_event": round(int(v["calls"]) / events, 3),
            "us_per_event": round(int(v["usec"]) / events, 2),
        }
    return dict(sorted(rows.items(), key=lambda kv: -kv[1]["us_per_event"]))


# --- the live run ----------------------------------------------------------------------------


@dataclass
class Recorded:
    """The live run's calls in order: ``("load", request, loaded)`` or ``("commit", parts,
    results)``."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)
    events: int = 0
    outcomes: list[str] = field(default_factory=list)  # each batch's result (repr)


class RecordingStore(RedisStore):
    """``RedisStore`` that records every load's request and every commit's parts."""

    def __init__(
        self,
        client: redis.Redis,
        recorded: Recorded,
        load: Literal["script", "waves"] = "script",
        commit: Literal["script", "watch"] = "script",
    ) -> None:
        super().__init__(client, prefix=PREFIX, seen_ttl_s=TTL_S, load=load, commit=commit)
        self.recorded = recorded

    def load(self, request: LoadRequest) -> Loaded:
        loaded = super().load(request)
        self.recorded.calls.append(("load", request, loaded))
        return loaded

    def commit_parts(self, parts: Sequence[Commit]) -> list[CommitResult]:
        results = super().commit_parts(parts)
        self.recorded.calls.append(("commit", list(parts), results))
        return results


class FloorStore(RedisStore):
    """Live variant b: ``load.lua`` as today, then every part written without any check."""

    def __init__(self, client: redis.Redis, conn: Conn) -> None:
        super().__init__(client, prefix=PREFIX, seen_ttl_s=TTL_S)
        self.floor = Floor(conn, self.keys, TTL_S)

    def commit_parts(self, parts: Sequence[Commit]) -> list[CommitResult]:
        written = [CommitResult(CommitStatus.OK)] * len(parts)
        self.floor.commit(parts, written)
        return written


class CasStore(RedisStore):
    """Live variants c and cs: ``load.lua`` as today (or ``load``), the commit by ``WATCH``
    and ``MULTI``."""

    def __init__(
        self,
        client: redis.Redis,
        conn: Conn,
        *,
        per_key: bool,
        load: Literal["script", "waves"] = "script",
    ) -> None:
        super().__init__(client, prefix=PREFIX, seen_ttl_s=TTL_S, load=load)
        self.cas = Cas(conn, self.keys, TTL_S, GENERATION, per_key=per_key)

    def commit_parts(self, parts: Sequence[Commit]) -> list[CommitResult]:
        return self.cas.commit(parts)


def cpu_now(server: Server) -> tuple[float, float, float]:
    """Redis's CPU seconds, its main thread's, this process's."""
    return process_cpu_s(server.pid), main_thread_cpu_s(server.pid), time.process_time()


def spent(
    client: redis.Redis,
    n: int,
    start: tuple[float, float, float],
    end: tuple[float, float, float],
) -> dict[str, Any]:
    """Per event from ``start`` to ``end`` (:func:`cpu_now`), then the commands Redis ran and
    the state it holds (a digest of every key: every variant ``INCR``s the lane's commit
    sequence as ``commit.lua`` does, ADR 0021), read in that order."""
    (cpu0, main0, w0), (cpu1, main1, w1) = start, end
    commands = command_stats(client, n)
    digest, keys = state_digest(client, PREFIX)
    return {
        "redis_cpu_us_per_event": round((cpu1 - cpu0) / n * 1e6, 2),
        "redis_main_thread_us_per_event": round((main1 - main0) / n * 1e6, 2),
        "process_cpu_us_per_event": round((w1 - w0) / n * 1e6, 2),
        "commands": commands,
        "state": digest,
        "keys": keys,
    }


def live_run(
    server: Server,
    values: list[bytes],
    variant: str = "main",
    load: Literal["script", "waves"] = "script",
) -> tuple[Recorded, dict[str, Any]]:
    """``run_batch`` of the profiles lane over ``values`` on ``RedisStore`` (``main``: its calls
    recorded) or on a store whose commit is variant ``b``, ``c`` or ``cs``; ``load``: the
    load of ``main``, ``c`` and ``cs``."""
    recorded = Recorded(events=len(values))
    client = server.client()
    conn = Conn("127.0.0.1", server.port)
    store: RedisStore
    if variant in ("main", "watch"):  # watch: RedisStore's own commit without Lua (ADR 0021)
        store = RecordingStore(client, recorded, load, "watch" if variant == "watch" else "script")
    elif variant == "b":
        store = FloorStore(client, conn)
    else:
        store = CasStore(client, conn, per_key=variant == "c", load=load)
    store.generation = GENERATION
    prepare(client, store)
    records = [RawRecord(value=v, topic="raw", partition=0, offset=i) for i, v in enumerate(values)]
    base = replace(make_context(DecodeCache()), salt=DEV_SALT.encode())
    start = cpu_now(server)
    for i in range(0, len(records), 500):
        result = run_batch(records[i : i + 500], store, lambda: base, max_bytes=64 * 1024,
                           config=DEFAULT, lane=LANES["profiles"])  # fmt: skip
        recorded.outcomes.append(repr(result))
    end = cpu_now(server)
    figures = spent(client, len(values), start, end)
    figures["batches"] = hashlib.sha256("".join(recorded.outcomes).encode()).hexdigest()[:16]
    conn.close()
    client.close()
    return recorded, figures


# --- the variants ----------------------------------------------------------------------------


class RawStore(RedisStore):
    """``RedisStore`` whose commit goes out on a :class:`Conn` (variant a: commit.lua as today,
    its arguments built by the store's own code)."""

    def __init__(
        self, client: redis.Redis, conn: Conn, load: Literal["script", "waves"] = "script"
    ) -> None:
        super().__init__(client, prefix=PREFIX, seen_ttl_s=TTL_S, load=load)
        self.conn = conn
        self.generation = GENERATION
        self._hand_over_settled.add(DEFAULT_SCOPE)  # prepare() settled it

    def _call_commit(self, args: list[bytes | str]) -> Any:
        (reply,) = checked(self.conn.call([("EVALSHA", self._commit.sha, 0, *args)]))
        return reply


def replay(variant: str, recorded: Recorded, server: Server) -> dict[str, Any]:
    """One variant's replay on ``server`` (fresh); its figures."""
    client = server.client()
    conn = Conn("127.0.0.1", server.port)
    store = RawStore(client, conn)
    prepare(client, store)
    floor = Floor(conn, store.keys, TTL_S)
    cas = Cas(conn, store.keys, TTL_S, GENERATION, per_key=variant != "cs")
    mismatched = 0
    commit_s: list[float] = []  # wall time of each commit call (round trips included)
    server.instrument(True)
    start = cpu_now(server)
    for call in recorded.calls:
        if call[0] == "load":
            if variant == "main":  # through redis-py, as the live run: the same bytes
                store.load(call[1])
            continue
        parts, results = call[1], call[2]
        started = time.perf_counter()
        if variant in ("main", "a"):
            mismatched += store.commit_parts(parts) != results
        elif variant == "b":
            floor.commit(parts, results)
        else:
            mismatched += cas.commit(parts) != results
        commit_s.append(time.perf_counter() - started)
    end = cpu_now(server)
    server.instrument(False)
    figures = spent(client, recorded.events, start, end)
    figures["results_differing"] = mismatched
    figures["commit_call_ms_median"] = round(statistics.median(commit_s) * 1e3, 2)
    if variant in ("c", "cs"):
        figures["cas_aborts"] = cas.aborts
        figures["cas_round_trips"] = cas.round_trips
    conn.close()
    client.close()
    return figures


# --- the bench -------------------------------------------------------------------------------


FIGURES = (
    "instructions_per_event",
    "redis_cpu_us_per_event",
    "redis_main_thread_us_per_event",
    "process_cpu_us_per_event",
)


def add_paired_ratios(
    row: dict[str, Any], variant: str, xs: Sequence[float], base: str, base_xs: Sequence[float]
) -> None:
    """Into ``row``: ``variant``'s ratio to ``base`` round by round (alternating pairs, the
    same length; a round whose base figure is 0 is left out) and the ratios' median, as
    ``"{variant}/{base}"`` and ``"{variant}/{base} median"``; nothing when no round has one."""
    ratios = [x / y for x, y in zip(xs, base_xs, strict=True) if y]
    if ratios:
        row[f"{variant}/{base}"] = [round(r, 3) for r in ratios]
        row[f"{variant}/{base} median"] = round(statistics.median(ratios), 3)


def summary(runs: dict[str, list[dict[str, Any]]], base: str = "a") -> dict[str, Any]:
    """Per figure: each variant's median, ``load`` (= main - a, round by round) and each
    variant's ratio to ``base`` round by round (alternating pairs) with their median."""
    out: dict[str, Any] = {}
    for name in FIGURES:
        if not all(name in f for fs in runs.values() for f in fs):
            continue
        series = {v: [f[name] for f in fs] for v, fs in runs.items()}
        if "main" in series and "a" in series:
            series["load"] = [m - a for m, a in zip(series["main"], series["a"], strict=True)]
        row: dict[str, Any] = {v: round(statistics.median(xs), 2) for v, xs in series.items()}
        if base in series:
            for v in ("b", "c", "cs"):
                if v in series:
                    add_paired_ratios(row, v, series[v], base, series[base])
        out[name] = row
    return out


def simulator_values(events: int) -> list[bytes]:
    sim = Simulator(seed=1, customers=5000, stores=10, skus=500)
    stream = sim.events()
    return [v for v, _ in serialized_from(stream, 200) + serialized_from(stream, events)]


def _brief(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in figures.items() if k != "commands"}


def live_rounds(args: argparse.Namespace, values: list[bytes]) -> dict[str, list[dict[str, Any]]]:
    """``--live-rounds`` alternating rounds of ``run_batch`` on each live variant's store."""
    live: dict[str, list[dict[str, Any]]] = {v: [] for v in args.live_variants.split(",") if v}
    names = list(live)
    for r in range(0 if args.callgrind else args.live_rounds):
        for variant in names[r % len(names) :] + names[: r % len(names)]:
            with running(Server(args.port, args.data_dir / "live")) as server:
                _, figures = live_run(server, values, variant)
            figures["loadavg"] = round(os.getloadavg()[0], 2)
            live[variant].append(figures)
            print(f"live round {r} {variant}: {_brief(figures)}", flush=True)
    return live


def replay_rounds(
    args: argparse.Namespace,
    recorded: Recorded,
    replay: Callable[[str, Recorded, Server], dict[str, Any]] = replay,
) -> dict[str, list[dict[str, Any]]]:
    """``--rounds`` alternating rounds of each replayed variant on a fresh server (each
    ``replay(variant, recorded, server)``'s figures; ``bench.load_waves`` replays its own)."""
    variants = args.variants.split(",")
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for variant in variants[r % len(variants) :] + variants[: r % len(variants)]:
            out_file = args.data_dir / f"callgrind.{variant}.{r}" if args.callgrind else None
            server = Server(args.port, args.data_dir / variant, out_file, args.keep_callgrind)
            server.start()
            try:
                figures = replay(variant, recorded, server)
            finally:
                server.instrument(False)
                instructions = server.stop()
            if instructions is not None:
                figures["instructions_per_event"] = round(instructions / recorded.events)
            figures["loadavg"] = round(os.getloadavg()[0], 2)
            runs[variant].append(figures)
            print(f"round {r} {variant}: {_brief(figures)}", flush=True)
    return runs


def server_options(parser: argparse.ArgumentParser, port: int, data_dir: Path) -> None:
    """The private servers' options (port, data, callgrind) and ``--json``."""
    parser.add_argument("--port", type=int, default=port, help="the private servers' port")
    parser.add_argument("--data-dir", type=Path, default=data_dir)
    parser.add_argument("--callgrind", action="store_true", help="count Redis's instructions")
    parser.add_argument(
        "--keep-callgrind", action="store_true", help="keep callgrind's files in --data-dir"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_floor", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000, help="events after the warm-up")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of replays")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="replayed variants")
    parser.add_argument(
        "--live-variants", default="main,b,cs", help="run_batch on each variant's store"
    )
    parser.add_argument("--live-rounds", type=int, default=0, help="alternating live rounds")
    server_options(parser, 26380, Path("/tmp/floor9-redis"))
    args = parser.parse_args(argv)
    values = simulator_values(args.events)
    n = len(values)
    out: dict[str, Any] = {
        "events": n,
        "redis": redis_version(),
        "mode": "callgrind" if args.callgrind else "proc",
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }
    with running(Server(args.port, args.data_dir / "live")) as server:
        recorded, out["live"] = live_run(server, values)
    print(f"live: {_brief(out['live'])}", flush=True)
    live = live_rounds(args, values)
    if any(live.values()):
        out["live_runs"] = live
        out["live_summary"] = summary(live, base="main")
        print(f"live summary: {out['live_summary']}")
    runs = replay_rounds(args, recorded)
    out["runs"] = runs
    out["summary"] = summary(runs)
    print(f"summary: {out['summary']}")
    out["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    everything = [f for fs in [*runs.values(), *live.values()] for f in fs]
    same = all(f["state"] == out["live"]["state"] for f in everything)
    exact = all(not f.get("results_differing") for f in everything) and all(
        f["batches"] == out["live"]["batches"] for fs in live.values() for f in fs
    )
    out["same_state_as_live"] = same
    out["same_results_as_live"] = exact
    text = orjson.dumps(out, option=orjson.OPT_INDENT_2).decode()
    if args.json is not None:
        args.json.write_text(text + "\n")
    print(f"same state as the live run: {same}; same results: {exact}")
    return 0 if same and exact else 1


if __name__ == "__main__":
    run_main(main)
