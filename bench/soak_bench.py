"""Soak benchmark: worker memory (RSS) over a long run, one worker per role.

    python -m bench.soak_bench [--events 120000] [--chunk 10000] [--customers 20000]
                               [--rate 2000]

One isolated deployment (``bench.e2e_bench.Deployment``: its own topics, groups and Redis
prefix, deleted afterwards), one ``loom worker`` per role. Simulator events (``--customers``
distinct people, so the number of entities keeps growing like a real shop's) are produced in
chunks of ``--chunk`` at about ``--rate`` events/s; after each chunk, once both lanes caught up
(lag 0), the RSS of each worker (``VmRSS`` of ``/proc/<pid>/status``), where it is
(:func:`memory_map`: malloc's arenas, other anonymous memory such as pymalloc's arenas, files)
and the memory charged to its decode cache (``loom_decode_cache_bytes``) are sampled.

Flat means: the RSS after the last chunk is within ``--tolerance`` (default 10 %) of the RSS
after the first third of the run, once the working set has been loaded, not counting the
decode cache's *charge*, which fills up to its budget (``LOOM_DECODE_CACHE_BYTES``) by design.
What that leaves is not only leaks: the simulator's people keep buying, so their profiles grow
over the run towards their caps (``resolvers.profile.facts``) and a cached profile holds more
memory per charged byte as it grows (bench/README.md, "Seventh pass: memory"); the stock
ledgers grow too (up to ``LedgerPolicy``'s cap of 256 entries per location), so the inventory
worker's cache fills towards its budget slowly. Hence the growth rate of each third after the
first (:func:`growth_rates`): a leak keeps its rate, growth that follows the data slows down.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from bench import run_main
from bench.e2e_bench import Deployment, say
from resolvers.pipeline import LANES
from schemas.touchpoint import dump_touchpoint, record_key
from streams.producer import TouchpointProducer
from streams.simulate import Simulator

CACHE = "loom_decode_cache_bytes"


def gauge(text: str, name: str) -> float:
    """Sum of a gauge over every exposition in ``text``."""
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        if family.name == name
        for s in family.samples
    )


#: glibc maps each heap of a thread's malloc arena (not the main one) at a multiple of this
#: (``HEAP_MAX_SIZE`` on 64-bit), so its start address tells it from other anonymous memory.
ARENA_HEAP_ALIGN = 64 * 2**20


def memory_map(pid: int) -> dict[str, float]:
    """RSS of ``pid`` by kind of mapping (``/proc/<pid>/smaps``), MiB: ``heap`` (the main
    thread's malloc arena, ``[heap]``), ``thread_arenas`` (the other threads' malloc arenas:
    anonymous mappings at a multiple of :data:`ARENA_HEAP_ALIGN`), ``anon`` (every other
    anonymous mapping: pymalloc's 1 MiB arenas, large blocks malloc maps on their own, thread
    stacks) and ``file`` (code and data of the interpreter and its libraries)."""
    kinds = dict.fromkeys(("heap", "thread_arenas", "anon", "file"), 0)
    kind = "file"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(maxsplit=5)
        if "-" in head[0] and not head[0].endswith(":"):
            name = head[5] if len(head) > 5 else ""
            start = int(head[0].split("-", 1)[0], 16)
            if name == "[heap]":
                kind = "heap"
            elif name.startswith("/") or name in {"[vdso]", "[vvar]"}:
                kind = "file"
            elif not name and start % ARENA_HEAP_ALIGN == 0:
                kind = "thread_arenas"
            else:
                kind = "anon"
        elif head[0] == "Rss:":
            kinds[kind] += int(head[1])
    return {k: round(v / 1024, 1) for k, v in kinds.items()}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def soak(
    kafka: str,
    redis_url: str,
    *,
    events: int,
    chunk: int,
    customers: int,
    rate: float,
    skus: int = 500,
    seed: int = 3,
    tolerance: float = 0.10,
) -> dict[str, Any]:
    sim = Simulator(seed=seed, customers=customers, stores=10, skus=skus)
    dep = Deployment(kafka, redis_url)
    samples: list[dict[str, Any]] = []
    try:
        dep.start_workers(1)
        pids = {role: proc.pid for proc, _, role in dep.workers}
        samples.append({"events": 0, **{r: round(rss_mib(p), 1) for r, p in pids.items()}})
        stream = sim.events()
        sent = 0
        started = time.monotonic()
        with TouchpointProducer(dep.settings) as producer:
            while sent < events:
                batch = serialized_from(stream, min(chunk, events - sent))
                t0 = time.monotonic()
                for i, (value, key) in enumerate(batch):
                    producer.send_raw(value, key=key)
                    ahead = (i + 1) / rate - (time.monotonic() - t0)
                    if ahead > 0.01:
                        time.sleep(ahead)
                assert producer.flush(60) == 0
                sent += len(batch)
                dep.wait_lag_zero(timeout=600)
                sample: dict[str, Any] = {
                    "events": sent,
                    **{r: round(rss_mib(p), 1) for r, p in pids.items()},
                }
                texts = dep.metrics()
                for role, pid in pids.items():
                    sample[f"{role}_cache"] = round(gauge(texts[role], CACHE) / 2**20, 1)
                    sample[f"{role}_map"] = memory_map(pid)
                samples.append(sample)
                rss = ", ".join(
                    f"{r} {sample[r]} MiB (cache {sample[f'{r}_cache']} MiB)" for r in pids
                )
                say(f"soak: {sent:,} events, RSS {rss}")
        seconds = time.monotonic() - started
    finally:
        dep.close()
    third = next(s for s in samples if s["events"] >= events / 3)
    last = samples[-1]
    growth = {r: round((last[r] - third[r]) / third[r], 3) for r in LANES}
    without_cache = {
        r: round(
            (last[r] - last[f"{r}_cache"] - third[r] + third[f"{r}_cache"])
            / (third[r] - third[f"{r}_cache"]),
            3,
        )
        for r in LANES
    }
    return {
        **growth_rates(samples, events),
        "events": events,
        "chunk": chunk,
        "customers": customers,
        "skus": skus,
        "rate": rate,
        "seconds": round(seconds, 1),
        "samples": samples,
        "growth_after_first_third": growth,
        "growth_after_first_third_without_cache": without_cache,
        # the cache grows to its budget by design; everything else must stay flat
        "flat": all(abs(g) <= tolerance for g in without_cache.values()),
        "tolerance": tolerance,
    }


def growth_rates(samples: list[dict[str, Any]], events: int) -> dict[str, Any]:
    """How fast each worker's RSS without its cache's charge grows in the middle and the last
    third of the run (least-squares slope, MiB per 100,000 events), and whether it slows down
    (``levelling``: the last third's rate is below the middle third's). A leak grows at a
    steady rate; memory that follows the shop's data (cached profiles grow towards their caps
    and take more memory per charged byte) or fragmentation slows down."""
    rates: dict[str, dict[str, float]] = {"middle": {}, "last": {}}
    for name, lo, hi in (("middle", events / 3, 2 * events / 3), ("last", 2 * events / 3, events)):
        part = [s for s in samples if lo <= s["events"] <= hi]
        for role in LANES:
            points = [(s["events"] / 100_000, s[role] - s[f"{role}_cache"]) for s in part]
            rates[name][role] = round(slope(points), 2)
    return {
        "growth_mib_per_100k_events": rates,
        "levelling": {r: rates["last"][r] < rates["middle"][r] for r in LANES},
    }


def slope(points: list[tuple[float, float]]) -> float:
    """The least-squares slope of ``points`` (0 for fewer than two distinct x)."""
    n = len(points)
    mx = sum(x for x, _ in points) / n if n else 0.0
    my = sum(y for _, y in points) / n if n else 0.0
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def serialized_from(stream: Any, n: int) -> list[tuple[bytes, bytes | None]]:
    """The next ``n`` events of ``stream`` as (value, key) the way the producer SDK sends them."""
    return [(dump_touchpoint(tp), record_key(tp)) for tp in itertools.islice(stream, n)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak_bench", description=__doc__)
    parser.add_argument("--events", type=int, default=120_000)
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--skus", type=int, default=500)
    parser.add_argument("--rate", type=float, default=2000.0, help="events/s while producing")
    parser.add_argument("--tolerance", type=float, default=0.10)
    args = parser.parse_args(argv)
    kafka = os.environ.get("LOOM_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    url = os.environ.get("LOOM_REDIS_URL", "redis://127.0.0.1:16379/0")
    result = soak(
        kafka,
        url,
        events=args.events,
        chunk=args.chunk,
        customers=args.customers,
        skus=args.skus,
        rate=args.rate,
        tolerance=args.tolerance,
    )
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    run_main(main)
