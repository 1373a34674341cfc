"""Throughput of each pipeline lane on the Redis store, against the in-memory ceiling.

    python -m bench.store_bench [--events 10000] [--batch 500] [--customers 2000]

Simulated retail traffic (``streams.simulate``: web/app/POS/loyalty/support journeys, mixed
identifiers, merges, consent, inventory) is serialized up front, then fed to ``run_batch`` in
batches, per lane (profiles, inventory; events/s = events of the topic, all of which a lane
reads): once on :class:`RedisStore` (``LOOM_REDIS_URL``, default redis://127.0.0.1:16379/0,
under a unique prefix that is deleted afterwards) and once on :class:`InMemoryStore` (pure
compute: parse, normalize, resolve, consent, aggregate or inventory, commit planning).
Each run shares one ``DecodeCache`` across its batches, as a worker does. Time spent inside
``load`` / ``commit`` is measured separately.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

from bench import run_main
from bench.raw_limit import delete_prefix
from resolvers.consent import ConsentPolicy
from resolvers.context import Context, TopicNames
from resolvers.decode_cache import DecodeCache
from resolvers.identity.rules import IdentityRules
from resolvers.pipeline import LANES, Lane, run_batch
from resolvers.steps import RawRecord
from resolvers.store import Commit, CommitResult, InMemoryStore, Loaded, LoadRequest, StateStore
from schemas.normalize import DEFAULT, blocked_by_default
from schemas.touchpoint import dump_touchpoint
from streams import redis_clients
from streams.redis_store import RedisStore
from streams.settings import LoomSettings
from streams.simulate import Simulator

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def make_context(cache: DecodeCache | None = None) -> Context:
    """The context the worker builds (``streams.worker.Runtime.context``), with ``cache`` as
    its decode cache: one per worker there, one per run here."""
    rules = IdentityRules(is_blocked=blocked_by_default)
    return Context(
        rules=rules,
        policy=ConsentPolicy(),
        topics=TopicNames(),
        salt=b"bench",
        now=NOW,
        cache=cache,
    )


@dataclass
class TimedStore:
    """Wraps a store and accumulates the time spent in its calls."""

    inner: StateStore
    load_s: float = 0.0
    commit_s: float = 0.0
    loads: int = 0
    commits: int = 0

    def load(self, request: LoadRequest) -> Loaded:
        t = time.perf_counter()
        try:
            return self.inner.load(request)
        finally:
            self.load_s += time.perf_counter() - t
            self.loads += 1

    def commit(self, commit: Commit) -> CommitResult:
        return self.commit_parts([commit])[0]

    def commit_parts(self, parts: Sequence[Commit]) -> list[CommitResult]:
        t = time.perf_counter()
        try:
            return self.inner.commit_parts(parts)
        finally:
            self.commit_s += time.perf_counter() - t
            self.commits += 1


@dataclass
class Run:
    name: str
    events: int
    seconds: float
    store: TimedStore
    batch_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    def line(self) -> str:
        p50 = statistics.median(self.batch_ms)
        p95 = sorted(self.batch_ms)[int(0.95 * (len(self.batch_ms) - 1))]
        s = self.store
        return (
            f"{self.name:<16} {self.rate:>9,.0f} events/s  ({self.events} events in "
            f"{self.seconds:.2f} s; batch p50 {p50:.0f} ms, p95 {p95:.0f} ms; "
            f"load {s.load_s:.2f} s / {s.loads} calls, commit {s.commit_s:.2f} s / "
            f"{s.commits} calls)"
        )


def run(name: str, store: StateStore, batches: list[list[RawRecord]], lane: Lane) -> Run:
    """Every batch through ``lane`` on ``store``, sharing one decode cache like a worker."""
    timed = TimedStore(store)
    result = Run(name, sum(len(b) for b in batches), 0.0, timed)
    cache = DecodeCache()
    context = partial(make_context, cache)
    started = time.perf_counter()
    for records in batches:
        t = time.perf_counter()
        run_batch(records, timed, context, max_bytes=64 * 1024, config=DEFAULT, lane=lane)
        result.batch_ms.append((time.perf_counter() - t) * 1000)
    result.seconds = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store_bench", description=__doc__)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    url = os.environ.get("LOOM_REDIS_URL", "redis://127.0.0.1:16379/0")
    sim = Simulator(seed=args.seed, customers=args.customers, stores=10, skus=500)
    values = [dump_touchpoint(tp) for tp in itertools.islice(sim.events(), args.events)]
    records = [
        RawRecord(value=v, topic="touchpoints.raw", partition=0, offset=i)
        for i, v in enumerate(values)
    ]
    batches = [records[i : i + args.batch] for i in range(0, len(records), args.batch)]

    print(
        f"machine: {os.cpu_count()} cores ({platform.machine()}, Python "
        f"{platform.python_version()}), shared with other work; Redis at {url}"
    )
    print(
        f"workload: {len(records)} simulated events ({args.customers} customers), "
        f"batches of {args.batch}, one writer"
    )
    for name, lane in LANES.items():
        memory = run(f"{name}/memory", InMemoryStore(), batches, lane)
        print(memory.line())
        client = redis_clients.client(LoomSettings(redis_url=url))
        prefix = f"loombench-{uuid.uuid4().hex[:12]}"
        try:
            on_redis = run(f"{name}/redis", RedisStore(client, prefix=prefix), batches, lane)
            print(on_redis.line())
            info = client.info("memory")
            print(f"redis used_memory after the {name} run: {info.get('used_memory_human')}")
        finally:
            removed = delete_prefix(client, prefix)
            client.close()
        print(
            f"{name} lane, redis / in-memory: {on_redis.rate / memory.rate:.0%} of the "
            f"pure-compute ceiling (cleaned {removed} keys under {prefix})"
        )
    return 0


if __name__ == "__main__":
    run_main(main)
