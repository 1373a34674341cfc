"""What a batch load WITHOUT Lua costs Redis and the worker (issue 17.2, ADR 0022).

    python -m bench.load_waves [--events 20000] [--rounds 3] [--callgrind] [--json FILE]

1. **The live run** (``bench.redis_floor.live_run``): ``run_batch`` of the profiles lane on
   ``RedisStore`` over the simulator's events (seed 1, 5,000 customers, 200 warm-up events +
   ``--events``, batches of 500) on a private ``redis-server`` (7.0, AOF, ``everysec``, no
   forks); every load's request and reply (``Loaded``) and every commit call recorded.
2. **Replays**, each variant on a fresh ``redis-server`` in alternating rounds: the recorded
   calls in order, the commits as ``commit.lua`` over one raw connection
   (``bench.redis_floor.RawStore``), the loads through ``RedisStore.load`` with
   - ``lua``: ``load.lua`` as today (``load="script"``);
   - ``waves``: ``streams.wave_load`` (``load="waves"``): the same walk in Python, one
     pipelined round trip per wave on one redis-py connection of the pool, packed by
     ``streams.resp.RespPacker`` into one buffer per wave, ``read_response`` per reply.
   Every replayed load's ``Loaded`` must equal the live run's (``load.lua``'s) and every
   commit's results and the final state the live run's: else the bench fails.
   Figures, the loads alone: Redis's main-thread CPU per event (``/proc/<pid>/task/<pid>/
   schedstat``, nanoseconds, read around each load call), the replaying thread's CPU per event
   in the load calls (``time.thread_time``: the worker's side, walk and parsing), round trips
   per load call, the median wall time of a load call.
3. ``--live-rounds N``: N alternating rounds of ``run_batch`` itself on ``RedisStore`` with
   each of ``--live-variants``' load (``lua``, ``waves``: ``commit.lua`` as the commit;
   ``cs-*``, ``watch-*``: ADR 0021's commit, the ninth pass's and the built one), each on a
   fresh server: Redis's CPU
   per event (all threads, ``/proc``), the whole worker's CPU per event (this process: the
   pipeline, the load, the commit), each batch's result and the final state (must equal the
   recording run's).
4. ``--callgrind``: each replay's ``redis-server`` under callgrind, instrumentation switched
   on only around each load call: Redis instructions per event of the loads.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import orjson
import redis

from bench import run_main
from bench.floor_commit import Conn, state_digest
from bench.private_redis import Server, redis_version, running
from bench.redis_floor import (
    PREFIX,
    RawStore,
    Recorded,
    add_paired_ratios,
    live_run,
    prepare,
    replay_rounds,
    server_options,
    simulator_values,
)
from resolvers.store import Entity, Loaded, LoadRequest
from streams.redis_store import _script

VARIANTS: dict[str, Literal["script", "waves"]] = {
    "lua": "script",
    "waves": "waves",
    "hybrid": "script",  # HybridStore
}


class HybridStore(RawStore):
    """Variant ``hybrid``: ``load.lua`` with every ``s`` field left out of its walk, then
    one pipelined round trip (on the bench's raw hiredis connection) of ``HGET s`` for each
    record and profile it visited. The script asks for ``v`` where it asked for ``s``: a
    visited entity that exists comes back with its version there (a "versions"-only profile
    with none), which marks what to fetch. Measurement only: no seqlock (two round trips)."""

    def __init__(self, client: redis.Redis, conn: Conn) -> None:
        super().__init__(client, conn)
        script = _script("load.lua")
        for walk_fields in ("'v', 'p', 'h', 's'", "'v', 's', 'r', 'i'"):
            assert walk_fields in script
            script = script.replace(walk_fields, walk_fields.replace("'s'", "'v'"))
        self._load = client.register_script(script)
        self.round_trips = 0

    def load(self, request: LoadRequest) -> Loaded:
        loaded = super().load(request)
        marked = [(ref, e) for ref, e in loaded.entities.items() if "s" in e.fields]
        keys = self.keys
        replies = self.conn.call([("HGET", keys.entity(ref), "s") for ref, _ in marked])
        self.round_trips = 2 if marked else 1
        entities = dict(loaded.entities)
        for (ref, e), blob in zip(marked, replies, strict=True):
            fields = {k: v for k, v in e.fields.items() if k != "s"}
            if blob is not None:
                fields["s"] = blob
            entities[ref] = Entity(e.version, fields)
        return replace(loaded, entities=entities)


FIGURES = (
    "instructions_per_event",
    "redis_main_thread_us_per_event",
    "client_cpu_us_per_event",
    "load_call_ms_median",
    "round_trips_per_load",
)
#: live variants: (``bench.redis_floor.live_run``'s commit variant, the load); ``cs``: ADR
#: 0021's one-key WATCH commit as the ninth pass measured it (``bench.floor_commit.Cas``),
#: ``watch``: as built (``RedisStore(commit="watch")``); both INCR the sequence the waves'
#: seqlock reads
LIVE_VARIANTS: dict[str, tuple[str, Literal["script", "waves"]]] = {
    "lua": ("main", "script"),
    "waves": ("main", "waves"),
    "cs-lua": ("cs", "script"),
    "cs-waves": ("cs", "waves"),
    "watch-lua": ("watch", "script"),
    "watch-waves": ("watch", "waves"),
}
LIVE_FIGURES = (
    "redis_cpu_us_per_event",
    "redis_main_thread_us_per_event",
    "process_cpu_us_per_event",
)


def main_thread_ns(pid: int) -> int:
    """The nanoseconds Redis's main thread has run (``schedstat``'s first field)."""
    with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def replay(variant: str, recorded: Recorded, server: Server) -> dict[str, Any]:
    """One variant's replay on ``server`` (fresh); the loads' figures."""
    client = server.client()
    conn = Conn("127.0.0.1", server.port)
    store = (
        HybridStore(client, conn)
        if variant == "hybrid"
        else RawStore(client, conn, load=VARIANTS[variant])
    )
    prepare(client, store)
    differing = results_differing = loads = round_trips = 0
    redis_ns = client_s = 0.0
    load_s: list[float] = []
    for call in recorded.calls:
        if call[0] == "commit":
            results_differing += store.commit_parts(call[1]) != call[2]
            continue
        request, expected = call[1], call[2]
        server.instrument(True)
        r0, c0, w0 = main_thread_ns(server.pid), time.thread_time(), time.perf_counter()
        loaded = store.load(request)
        w1, c1, r1 = time.perf_counter(), time.thread_time(), main_thread_ns(server.pid)
        server.instrument(False)
        redis_ns += r1 - r0
        client_s += c1 - c0
        load_s.append(w1 - w0)
        loads += 1
        if isinstance(store, HybridStore):
            round_trips += store.round_trips
        else:
            round_trips += store.waves.round_trips if store.waves is not None else 1
        differing += loaded != expected
    n = recorded.events
    digest, _ = state_digest(client, PREFIX)
    conn.close()
    client.close()
    return {
        "redis_main_thread_us_per_event": round(redis_ns / n / 1e3, 2),
        "client_cpu_us_per_event": round(client_s / n * 1e6, 2),
        "load_call_ms_median": round(statistics.median(load_s) * 1e3, 2),
        "round_trips_per_load": round(round_trips / loads, 2),
        "loads": loads,
        "loads_differing": differing,
        "results_differing": results_differing,
        "state": digest,
    }


def summary(
    runs: dict[str, list[dict[str, Any]]], figures: Sequence[str] = FIGURES
) -> dict[str, Any]:
    """Per figure: each variant's median and, against ``lua``, the per-round ratios."""
    out: dict[str, Any] = {}
    for name in figures:
        if not all(name in f for fs in runs.values() for f in fs):
            continue
        series = {v: [f[name] for f in fs] for v, fs in runs.items() if fs}
        row: dict[str, Any] = {v: round(statistics.median(xs), 2) for v, xs in series.items()}
        for v, xs in series.items():
            if v != "lua" and "lua" in series:
                add_paired_ratios(row, v, xs, "lua", series["lua"])
        for commit in ("cs", "watch"):
            if f"{commit}-lua" in series and f"{commit}-waves" in series:
                lua, waves = f"{commit}-lua", f"{commit}-waves"
                add_paired_ratios(row, waves, series[waves], lua, series[lua])
        out[name] = row
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load_waves", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000, help="events after the warm-up")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of replays")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="replayed variants")
    parser.add_argument("--live-rounds", type=int, default=0, help="alternating live rounds")
    parser.add_argument(
        "--live-variants", default="lua,waves", help=f"of {','.join(LIVE_VARIANTS)}"
    )
    server_options(parser, 26381, Path("/tmp/load-waves-redis"))
    args = parser.parse_args(argv)
    values = simulator_values(args.events)
    out: dict[str, Any] = {
        "events": len(values),
        "redis": redis_version(),
        "mode": "callgrind" if args.callgrind else "proc",
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }
    with running(Server(args.port, args.data_dir / "live")) as server:
        recorded, live = live_run(server, values)
    out["live_state"] = live["state"]
    variants = args.live_variants.split(",")
    live_runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for r in range(args.live_rounds):
        for variant in variants[r % len(variants) :] + variants[: r % len(variants)]:
            commit, load = LIVE_VARIANTS[variant]
            with running(Server(args.port, args.data_dir / "live")) as server:
                _, figures = live_run(server, values, commit, load)
            figures.pop("commands")
            figures["loadavg"] = round(os.getloadavg()[0], 2)
            live_runs[variant].append(figures)
            print(f"live round {r} {variant}: {figures}", flush=True)
    if args.live_rounds:
        out["live_runs"] = live_runs
        out["live_summary"] = summary(live_runs, LIVE_FIGURES)
        print(f"live summary: {out['live_summary']}", flush=True)
    runs = replay_rounds(args, recorded, replay)
    out["runs"] = runs
    out["summary"] = summary(runs)
    out["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    everything = [f for fs in runs.values() for f in fs]
    exact = all(
        not f["loads_differing"] and not f["results_differing"] and f["state"] == live["state"]
        for f in everything
    ) and all(
        f["state"] == live["state"] and f["batches"] == live["batches"]
        for fs in live_runs.values()
        for f in fs
    )
    out["exact"] = exact
    print(f"summary: {out['summary']}")
    if args.json is not None:
        args.json.write_text(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
    print(f"every load, commit result and final state as the live run's (load.lua): {exact}")
    return 0 if exact else 1


if __name__ == "__main__":
    run_main(main)
