"""Where a worker's memory goes, seen by its allocators, without Kafka.

    python -m bench.memory_probe [--events 240000] [--trim] [--cache-held]

``run_batch`` of the profiles lane on ``RedisStore`` (``LOOM_REDIS_URL``, a prefix of its own,
left behind) in one process over simulator events (5,000 customers, 500 SKUs, batches of 500),
with the worker's decode cache and GC tuning. Every 10,000 events it prints one JSON line:
RSS, where it is (``bench.soak_bench.memory_map``), glibc's ``mallinfo2`` (``malloc_used``:
blocks in use, ``malloc_free``: free memory malloc keeps in its arenas) and pymalloc's arenas
(``sys._debugmallocstats``: arenas, bytes in allocated and in available blocks). ``--trim``
calls ``malloc_trim(0)`` after each sample and adds the RSS after it and the time it took;
``--cache-held`` empties the decode cache at the end, a quarter of its entries at a time from
the smallest stored value, and prints the memory each quarter held against its stored bytes.
glibc only. The simulator runs in this process too (in a worker it does not).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import itertools
import os
import re
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from typing import Any

import orjson

from bench import run_main
from bench.soak_bench import memory_map
from bench.store_bench import make_context
from resolvers.decode_cache import DecodeCache
from resolvers.pipeline import PROFILES, run_batch
from resolvers.steps import RawRecord
from schemas.normalize import DEFAULT
from schemas.touchpoint import dump_touchpoint
from streams import redis_clients
from streams.lane_runner import tune_gc
from streams.redis_store import RedisStore
from streams.settings import DEV_SALT, LoomSettings
from streams.simulate import Simulator

MIB = 2**20


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _libc() -> Any:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    return libc


def pymalloc_stats() -> dict[str, float]:
    """pymalloc's arenas (count) and MiB in allocated / available blocks."""
    fd, path = tempfile.mkstemp()
    saved = os.dup(2)
    sys.stderr.flush()
    os.dup2(fd, 2)  # _debugmallocstats writes to the C stderr
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)
    with open(path) as f:
        text = f.read()
    os.unlink(path)

    def number(label: str) -> int:
        found = re.search(re.escape(label) + r"\s*=\s*([\d,]+)", text)
        return int(found.group(1).replace(",", "")) if found else -1

    return {
        "arenas": number("# arenas allocated current"),
        "allocated": round(number("# bytes in allocated blocks") / MIB, 1),
        "available": round(number("# bytes in available blocks") / MIB, 1),
    }


def live_mib(libc: Any) -> float:
    """Memory in use in both allocators (pymalloc's allocated blocks, malloc's in-use blocks)."""
    gc.collect()
    return float(pymalloc_stats()["allocated"]) + float(libc.mallinfo2().uordblks) / MIB


def sample(libc: Any, events: int, cache: DecodeCache, *, trim: bool) -> dict[str, Any]:
    info = libc.mallinfo2()
    out: dict[str, Any] = {
        "events": events,
        "rss": round(rss_mib(), 1),
        "cache_charged": round(cache.bytes / MIB, 1),
        "malloc_used": round(info.uordblks / MIB, 1),
        "malloc_free": round(info.fordblks / MIB, 1),
        "map": memory_map(os.getpid()),
        "pymalloc": pymalloc_stats(),
        "cpu_s": round(time.process_time(), 2),
    }
    if trim:
        t0 = time.perf_counter()
        libc.malloc_trim(0)
        out["trim_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        out["rss_after_trim"] = round(rss_mib(), 1)
    return out


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MIB


def cache_held(libc: Any, cache: DecodeCache) -> list[dict[str, Any]]:
    """Empty ``cache`` a quarter of its entries at a time (smallest stored values first): what
    each quarter held (the live memory freed), against its stored bytes and its charge."""
    entries = cache._entries
    keys = sorted(entries, key=lambda k: len(entries[k][0]))
    before = live_mib(libc)
    quarters = []
    for i in range(4):
        part = keys[i * len(keys) // 4 : (i + 1) * len(keys) // 4]
        stored = sum(len(entries[k][0]) for k in part)
        charged = sum(entries[k][2] for k in part)
        for key in part:
            del entries[key]
        after = live_mib(libc)
        quarters.append(
            {
                "entries": len(part),
                "mean_stored_bytes": stored // max(1, len(part)),
                "charged_mib": round(charged / MIB, 2),
                "held_mib": round(before - after, 2),
                "held_per_stored_byte": round((before - after) * MIB / max(1, stored), 2),
            }
        )
        before = after
    return quarters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory_probe", description=__doc__)
    parser.add_argument("--events", type=int, default=240_000)
    parser.add_argument("--trim", action="store_true", help="malloc_trim(0) after each sample")
    parser.add_argument("--cache-held", action="store_true", help="the cache's memory at the end")
    args = parser.parse_args(argv)
    libc = _libc()
    url = os.environ.get("LOOM_REDIS_URL", "redis://127.0.0.1:16379/0")
    client = redis_clients.client(LoomSettings(redis_url=url))
    store = RedisStore(client, prefix=f"probe{uuid.uuid4().hex[:6]}")
    stream = Simulator(seed=1, customers=5000, stores=10, skus=500).events()
    context = replace(make_context(DecodeCache()), salt=DEV_SALT.encode())
    cache = context.cache
    assert cache is not None
    tune_gc()
    done = 0
    print(orjson.dumps(sample(libc, 0, cache, trim=args.trim)).decode(), flush=True)
    while done < args.events:
        values = [dump_touchpoint(tp) for tp in itertools.islice(stream, 10_000)]
        records = [
            RawRecord(value=v, topic="raw", partition=0, offset=done + i)
            for i, v in enumerate(values)
        ]
        for j in range(0, len(records), 500):
            run_batch(
                records[j : j + 500], store, lambda: context,
                max_bytes=64 * 1024, config=DEFAULT, lane=PROFILES,
            )  # fmt: skip
        done += len(values)
        del values, records
        print(orjson.dumps(sample(libc, done, cache, trim=args.trim)).decode(), flush=True)
    if args.cache_held:
        print(orjson.dumps({"cache_held": cache_held(libc, cache)}).decode(), flush=True)
    return 0


if __name__ == "__main__":
    run_main(main)
