"""``loom demo``: Kafka and Redis up, the workers running, a minute of simulated channels, a story.

Steps: ``deploy/infra.sh up`` (unless ``--no-infra``) -> topics -> one ``loom worker`` per role
(profiles, inventory) as child processes -> the channel simulator at ``--rate`` events/s for
``--seconds`` (progress on stderr), plus a few deliberately bad records -> wait until both
groups' lag is zero -> print what Loom built -> stop the workers -> ``deploy/infra.sh down``
(unless ``--keep``).
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import redis
from confluent_kafka import Consumer

from resolvers.pipeline import LANES, PROFILES
from streams.lag import uncommitted
from streams.reader import ProfileReader
from streams.settings import LoomSettings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("demo", help="run the end-to-end demo")
    p.add_argument("--seconds", type=float, default=60.0, help="how long channels send (60)")
    p.add_argument("--rate", type=float, default=200.0, help="events per second (200)")
    p.add_argument("--customers", type=int, default=2000)
    p.add_argument("--stores", type=int, default=5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--no-infra", action="store_true", help="use running Kafka/Redis as set")
    p.add_argument("--keep", action="store_true", help="leave Kafka and Redis running")
    p.set_defaults(func=run)


def say(msg: str) -> None:
    print(f"\033[1m==>\033[0m {msg}", file=sys.stderr, flush=True)


def infra(cmd: str) -> None:
    subprocess.run(["bash", str(ROOT / "deploy" / "infra.sh"), cmd], check=True)


def lane_consumers(settings: LoomSettings) -> dict[str, Consumer]:
    """Per lane, a consumer of its group that only reads offsets (it never subscribes)."""
    return {
        lane: Consumer(
            {"bootstrap.servers": settings.kafka_bootstrap, "group.id": settings.group_id(lane)}
        )
        for lane in LANES
    }


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if not args.no_infra:
        say("starting Kafka and Redis (deploy/infra.sh up)")
        try:
            infra("up")
        except subprocess.CalledProcessError:
            say("could not start Kafka and Redis: see the infra message above")
            return 1
    from streams.topics import ensure_topics

    ensure_topics(settings)
    reader = ProfileReader(
        redis.Redis.from_url(settings.redis_url),
        settings.redis_prefix,
        default_region=settings.default_region,
    )
    workers: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}
    for role in LANES:  # one worker per lane: two consumer groups on the same topic
        logs[role] = ROOT / ".cache" / f"demo-worker-{role}.log"
        logs[role].parent.mkdir(parents=True, exist_ok=True)
        say(f"starting the {role} worker (log: {logs[role]})")
        with logs[role].open("wb") as log_file:
            workers[role] = subprocess.Popen(
                [sys.executable, "-m", "streams.cli.main", "worker", "--role", role,
                 "--loglevel", "warning"],
                stdout=log_file, stderr=subprocess.STDOUT, env=os.environ.copy(),
            )  # fmt: skip
    consumers = lane_consumers(settings)
    try:
        raw = settings.topics.raw
        partitions = sorted(
            consumers[PROFILES.name].list_topics(raw, timeout=10).topics[raw].partitions
        )
        sent = _simulate(settings, args)
        say("waiting for the workers to catch up")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            lags = {role: uncommitted(c, raw, partitions) for role, c in consumers.items()}
            if not any(lags.values()):
                break
            for role, worker in workers.items():
                if worker.poll() is not None:
                    say(f"{role} worker exited with {worker.returncode}; see {logs[role]}")
                    return 1
            shown = ", ".join(f"{role} {n}" for role, n in lags.items())
            print(f"    lag (records): {shown}", file=sys.stderr, flush=True)
            time.sleep(2)
        _story(reader, sent, sum(lags.values()))
    finally:
        for consumer in consumers.values():
            consumer.close()
        reader.client.close()
        for worker in workers.values():
            worker.send_signal(signal.SIGTERM)
        for worker in workers.values():
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        if not args.no_infra and not args.keep:
            say("stopping Kafka and Redis")
            infra("down")
    return 0


def _simulate(settings: LoomSettings, args: argparse.Namespace) -> int:
    from streams.producer import TouchpointProducer
    from streams.simulate import Simulator

    sim = Simulator(
        seed=args.seed, customers=args.customers, stores=args.stores, opening_counts=True
    )
    say(f"simulating channels: {args.rate:.0f} events/s for {args.seconds:.0f}s")
    sent = 0
    started = time.monotonic()
    last = started
    with TouchpointProducer(settings) as producer:
        for tp in sim.events():
            elapsed = time.monotonic() - started
            if elapsed >= args.seconds:
                break
            ahead = sent / args.rate - elapsed
            if ahead > 0:
                time.sleep(ahead)
            producer.send(tp)
            producer.poll(0)
            sent += 1
            if time.monotonic() - last >= 5:
                last = time.monotonic()
                print(
                    f"    sent {sent} events ({sent / (last - started):.0f}/s)",
                    file=sys.stderr,
                    flush=True,
                )
        bad = list(itertools.islice(sim.bad_records(), 20))
        for raw in bad:
            producer.send_raw(raw)
        producer.flush(30)
    return sent + len(bad)


def _story(reader: ProfileReader, sent: int, lag: int) -> None:
    r, keys = reader.client, reader.keys
    raw_stats: dict[bytes, bytes] = r.hgetall(keys.stats)  # type: ignore[assignment]
    stats = {k.decode(): int(v) for k, v in raw_stats.items()}
    profiles = r.scard(keys.profile_index)
    skus = r.scard(keys.stock_index)
    print()
    print("Loom demo: what the pipeline built")
    print("-" * 40)
    print(f"events sent            {sent}")
    print(f"profiles created       {stats.get('profiles_created', 0)}")
    print(f"live profiles          {profiles}")
    print(f"merges                 {stats.get('merges', 0)}")
    print(f"blocked merges         {stats.get('merges_blocked', 0)}")
    print(f"quarantined ids        {stats.get('quarantined', 0)}")
    print(f"erasures               {stats.get('erasures', 0)}")
    print(f"oversell alerts        {stats.get('oversold', 0)}")
    print(f"dead letters (DLQ)     {stats.get('dlq', 0)}")
    print(f"skus with stock        {skus}")
    print(f"consumer lag           {lag} records")
    examples = _examples(reader)
    for title, doc in examples:
        print(f"\n{title}:")
        print(orjson.dumps(_short(doc), option=orjson.OPT_INDENT_2).decode())


def _examples(reader: ProfileReader, scan: int = 3000) -> list[tuple[str, dict[str, Any]]]:
    """An omnichannel customer (else the best buyer) and the most stitched profile, among the
    first ``scan`` live profiles."""
    omni: dict[str, Any] | None = None
    richest: dict[str, Any] | None = None
    best_buyer: dict[str, Any] | None = None
    for doc in itertools.islice(reader.iter_profiles(), scan):
        if omni is None and doc.get("shopping_mode") == "omnichannel":
            omni = doc
        orders = _orders(doc)
        if orders and (best_buyer is None or orders > _orders(best_buyer)):
            best_buyer = doc
        ids = sum(len(v) for v in doc.get("identifiers", {}).values())
        if richest is None or ids > sum(len(v) for v in richest["identifiers"].values()):
            richest = doc
    out = []
    if omni is None:
        omni = best_buyer
    if omni is not None:
        title = (
            "an omnichannel customer"
            if omni.get("shopping_mode") == "omnichannel"
            else ("the customer with the most orders")
        )
        out.append((title, omni))
    if richest is not None and richest is not omni:
        out.append(("the most stitched profile", richest))
    return out


def _short(doc: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "profile_id",
        "identifiers",
        "shopping_mode",
        "channels",
        "orders_online",
        "orders_in_store",
        "revenue",
        "preferred_store",
        "merged_from",
        "version",
    )
    return {k: doc[k] for k in keep if k in doc}


def _orders(doc: dict[str, Any]) -> int:
    return int(doc.get("orders_online", 0)) + int(doc.get("orders_in_store", 0))
