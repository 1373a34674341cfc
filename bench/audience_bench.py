"""Audiences: evaluation cost per profile write with 20 audiences, and the audience pass.

    python -m bench.audience_bench [--events 20000] [--customers 3000] [--profiles 100000]

1. **Per profile write.** Simulated retail traffic (``streams.simulate``) through the profiles
   lane (``run_batch`` on the in-memory store, so only compute is measured), once without
   audiences and once with the 20 audiences below (alternated, best of ``--rounds``): CPU µs
   per event of each, and the difference per profile write; then the 20 audiences alone over
   every resulting snapshot (CPU µs per snapshot: what ``Audiences.members`` costs a write).
2. **The audience pass** over ``--profiles`` live profiles on a real Redis (``LOOM_REDIS_URL``,
   default redis://127.0.0.1:16379/0, under a unique prefix deleted afterwards): the states
   and snapshots of the simulated customers are copied under that many profile ids (pipelined
   writes), then
   ``AudienceRefresh`` runs twice: at the clock the snapshots were written (nothing moves) and
   180 days later (time-dependent audiences move). Wall seconds, profiles/s, this process's
   CPU and Redis's CPU (``INFO cpu``) are reported.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import platform
import resource
import time
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import orjson
from redis.typing import EncodableT, FieldT

from bench import run_main
from bench.raw_limit import delete_prefix
from bench.store_bench import make_context
from resolvers.audiences import Audiences, audience
from resolvers.context import Context
from resolvers.pipeline import run_batch
from resolvers.steps import RawRecord
from resolvers.store import InMemoryStore, Kind
from schemas.normalize import DEFAULT
from schemas.touchpoint import dump_touchpoint
from streams import redis_clients
from streams.audience_refresh import AudienceRefresh
from streams.redis_store import RedisStore
from streams.settings import LoomSettings
from streams.simulate import Simulator

#: 20 audiences of the kinds a retailer defines (5 time-dependent, 8 marketing).
DEFINITIONS: tuple[tuple[str, str, bool], ...] = (
    (
        "shoe-reminder",
        "category_orders.shoes >= 1 and days_since_last_purchase.shoes between 150 and 200",
        True,
    ),
    ("sport-restock", "days_until_next_purchase.sport between 0 and 30", False),
    ("lapsed", "orders >= 2 and days_since_last_order >= 90", True),
    ("inactive", "days_since_last_seen > 60", False),
    ("kids-due", "predicted_next_purchase.kids < 2026-01-01", True),
    ("big-spenders-nok", "lifetime_value.NOK > 5000", False),
    ("big-spenders-eur", "lifetime_value.EUR > 500", False),
    ("omnichannel", 'shopping_mode == "omnichannel"', False),
    ("store-regulars", 'preferred_channel == "pos" and orders_in_store >= 3', True),
    ("online-only", 'shopping_mode == "online" and orders_online >= 2', False),
    ("returners", "returns >= 2", False),
    ("shoe-lovers", "category_affinities.shoes >= 10 or category_orders.shoes >= 3", True),
    ("outerwear-buyers", "category_spend.outerwear.NOK > 1000", False),
    ("size-m", 'preferences.sizes contains "M"', True),
    ("knit-fans", 'preferences.categories contains "knitwear"', True),
    ("app-users", 'channels contains "app"', False),
    ("nordics", 'region in ["NO", "SE", "DK", "FI"]', False),
    ("reachable", "reachable.email or reachable.phone", True),
    ("ads-ok", "consent.ads and not consent.marketing", False),
    ("new", "orders == 1 and first_seen > 2024-01-01", False),
)
AUDIENCES = Audiences({n: audience(n, e, marketing=m) for n, e, m in DEFINITIONS})


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _lane(records: list[RawRecord], batch: int, context: Any) -> tuple[InMemoryStore, float, int]:
    store = InMemoryStore()
    cpu = _cpu()
    for i in range(0, len(records), batch):
        run_batch(records[i : i + batch], store, context, max_bytes=65536, config=DEFAULT)
    cpu = _cpu() - cpu
    writes = sum(1 for r in store.outbox if r.topic == "profiles.changes" and r.value)
    return store, cpu, writes


def per_write(args: argparse.Namespace) -> tuple[InMemoryStore, Context]:
    sim = Simulator(seed=args.seed, customers=args.customers, stores=10, skus=500)
    events = list(itertools.islice(sim.events(), args.events))
    now = max(tp.occurred_at for tp in events) + timedelta(days=1)
    values = [dump_touchpoint(tp) for tp in events]
    records = [
        RawRecord(v, topic="touchpoints.raw", partition=0, offset=i) for i, v in enumerate(values)
    ]
    plain = replace(make_context(), now=now)
    with_audiences = replace(plain, audiences=AUDIENCES)
    # alternated, best of --rounds: the machine is shared, the least disturbed run counts
    cpu0 = cpu1 = float("inf")
    for _ in range(args.rounds):
        cpu0 = min(cpu0, _lane(records, args.batch, lambda: plain)[1])
        store, cpu, writes1 = _lane(records, args.batch, lambda: with_audiences)
        cpu1 = min(cpu1, cpu)
    n = len(records)
    print(
        f"profiles lane, {n} events, {writes1} profile writes: no audiences "
        f"{cpu0 / n * 1e6:.1f} µs/event CPU; 20 audiences {cpu1 / n * 1e6:.1f} µs/event; "
        f"difference {(cpu1 - cpu0) / max(writes1, 1) * 1e6:.1f} µs per profile write"
    )
    snapshots = [
        orjson.loads(e.fields["d"])
        for ref, e in store.entities.items()
        if ref.kind is Kind.PROFILE and "d" in e.fields
    ]
    rounds = max(1, 20_000 // max(len(snapshots), 1))
    cpu = _cpu()
    members = 0
    for _ in range(rounds):
        for doc in snapshots:
            members += len(AUDIENCES.members(doc, now))
    cpu = _cpu() - cpu
    evaluated = rounds * len(snapshots)
    print(
        f"20 audiences alone: {cpu / evaluated * 1e6:.1f} µs CPU per snapshot "
        f"({evaluated} evaluations of {len(snapshots)} snapshots, "
        f"{members / evaluated:.2f} memberships each)"
    )
    return store, with_audiences


def _redis_cpu(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def the_pass(args: argparse.Namespace, memory: InMemoryStore, ctx: Context) -> None:
    url = os.environ.get("LOOM_REDIS_URL", "redis://127.0.0.1:16379/0")
    client = redis_clients.client(LoomSettings(redis_url=url))
    prefix = f"loombench-{uuid.uuid4().hex[:12]}"
    store = RedisStore(client, prefix=prefix)
    states: list[dict[FieldT, EncodableT]] = [  # state and snapshot, as the lane writes them
        {"s": e.fields["s"], "d": e.fields["d"]}
        for ref, e in memory.entities.items()
        if ref.kind is Kind.PROFILE and "s" in e.fields and "d" in e.fields
    ]
    try:
        started = time.perf_counter()
        pipe = client.pipeline(transaction=False)
        for i in range(args.profiles):
            pid = f"p_bench{i:07d}"
            pipe.hset(store.keys.profile(pid), mapping={"v": 1, **states[i % len(states)]})
            pipe.sadd(store.keys.profile_index, pid)
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()
        print(
            f"audience pass: {args.profiles} profiles ({len(states)} distinct states) written "
            f"in {time.perf_counter() - started:.1f}s; Redis at {url}"
        )
        for label, at in (("first pass", ctx.now), ("180 days later", ctx.now + timedelta(180))):
            cpu, redis_cpu = _cpu(), _redis_cpu(client)
            report = AudienceRefresh(
                store, client, functools.partial(replace, ctx, now=at), batch=args.pass_batch
            ).run()
            cpu, redis_cpu = _cpu() - cpu, _redis_cpu(client) - redis_cpu
            print(
                f"audience pass, {label}: {report.profiles} profiles in {report.seconds:.1f}s "
                f"({report.profiles / report.seconds:,.0f} profiles/s), "
                f"{report.rendered} rendered, {report.moved} moved, "
                f"{sum(report.entered.values())} entries, {sum(report.exited.values())} exits; "
                f"CPU {cpu / report.profiles * 1e6:.0f} µs/profile here, "
                f"Redis {redis_cpu / report.profiles * 1e6:.0f} µs/profile"
            )
    finally:
        delete_prefix(client, f"{prefix}:v1")
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.audience_bench", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=3_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--pass-batch", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="lane runs per variant")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print(
        f"machine: {os.cpu_count()} cores ({platform.machine()}, Python "
        f"{platform.python_version()}), shared with other work"
    )
    memory, ctx = per_write(args)
    the_pass(args, memory, ctx)
    return 0


if __name__ == "__main__":
    run_main(main)
