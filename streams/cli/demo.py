"""``loom demo``: Kafka and Redis up, the workers running, a minute of simulated channels, a story.

Steps: ``deploy/infra.sh up`` (unless ``--no-infra``) -> topics -> one ``loom worker`` per role
(profiles, inventory) as child processes -> the channel simulator at ``--rate`` events/s for
``--seconds`` (progress on stderr), plus a few deliberately bad records -> wait until both
groups' lag is zero -> print what Loom built -> stop the workers -> ``deploy/infra.sh down``
(unless ``--keep``, or the servers were running before the demo: they are left running).

The demo is a development setup: it runs with ``LOOM_DEVELOPMENT=true`` (single-replica
topics, the development salt), and so do the workers it starts.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException

from resolvers.pipeline import LANES, PROFILES
from streams import kafka_clients, redis_clients
from streams.cli import demo_story
from streams.cli.demo_audiences import DEMO_AUDIENCES
from streams.cli.options import add_kafka_options, add_redis_options, settings_from
from streams.inventory_reader import InventoryReader
from streams.lag import uncommitted_or_unknown
from streams.reader import ProfileReader
from streams.settings import LoomSettings
from streams.startup import check_kafka, check_redis

ROOT = Path(__file__).resolve().parents[2]

#: What a broker's group coordinator answers until it has loaded the offsets (a broker just
#: started): a group deletion is tried again.
_COORDINATOR_NOT_READY = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    }
)


class DemoResetError(RuntimeError):
    """The demo could not clear an earlier run's consumer groups (their offsets would stop
    the new run's workers: ``state_lost``)."""


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("demo", help="run the end-to-end demo")
    p.add_argument("--seconds", type=float, default=60.0, help="how long channels send (60)")
    p.add_argument("--rate", type=float, default=200.0, help="events per second (200)")
    p.add_argument("--customers", type=int, default=2000, help="simulated customers (2000)")
    p.add_argument("--stores", type=int, default=5, help="simulated stores (5)")
    p.add_argument(
        "--seed",
        type=int,
        default=42,
        help="simulator seed (42): the same events and end state (the merges counted on the way"
        " depend on the order the workers read them)",
    )
    p.add_argument(
        "--no-infra",
        action="store_true",
        help="use the running Kafka/Redis the settings (or the options below) name",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="leave Kafka and Redis running with the data, to try the commands it suggests",
    )
    add_kafka_options(p)
    add_redis_options(p)
    p.set_defaults(func=run)


def say(msg: str) -> None:
    print(f"\033[1m==>\033[0m {msg}", file=sys.stderr, flush=True)


def infra(cmd: str) -> None:
    subprocess.run(["bash", str(ROOT / "deploy" / "infra.sh"), cmd], check=True)


def infra_running(env: Mapping[str, str] | None = None) -> bool:
    """Whether the local Kafka and Redis (``deploy/infra.sh``'s, on the ports and data dir
    ``env`` names; this process's environment by default) both run already: the demo then
    leaves them running when it ends."""
    status = ["bash", str(ROOT / "deploy" / "infra.sh"), "status"]
    return subprocess.run(status, env=env, capture_output=True, check=False).returncode == 0


def check_servers(settings: LoomSettings) -> None:
    """One round trip to Kafka and to each lane's Redis before anything starts, as every
    command does (:class:`~streams.startup.InfraError`: one line, exit 3). Without it a Kafka
    that did not answer surfaced 30 s later as a bare ``KafkaError`` from creating the topics,
    and a Redis that did not answer as workers that never caught up, 3 minutes later."""
    check_kafka(settings)
    check_redis(settings)
    if settings.inventory_redis_url is not None:
        check_redis(settings.for_lane("inventory"))


def lane_consumers(settings: LoomSettings) -> dict[str, Consumer]:
    """Per lane, a consumer of its group that only reads offsets (it never subscribes)."""
    return {lane: kafka_clients.consumer(settings, settings.group_id(lane)) for lane in LANES}


def run(args: argparse.Namespace) -> int:
    if not args.verbose:  # the story is the output; log lines only with -v
        logging.getLogger().setLevel(logging.WARNING)
    settings = settings_from(args, development=True)
    if settings.audiences_file is None:  # the demo's own audiences (streams/cli/demo_audiences)
        settings = settings.model_copy(update={"audiences_file": DEMO_AUDIENCES})
    already_up = not args.no_infra and infra_running()
    if args.no_infra:  # servers the demo did not start: one line naming one that does not answer
        check_servers(settings)
    else:
        say("starting Kafka and Redis (deploy/infra.sh up)")
        try:
            infra("up")
        except subprocess.CalledProcessError:
            say("could not start Kafka and Redis: see the infra message above")
            return 1
    from streams.topics import ensure_topics

    # our own local servers: start the story from a clean slate
    if not args.no_infra and not _clean_slate(settings, stop=not already_up and not args.keep):
        return 1
    ensure_topics(settings)
    reader = ProfileReader(
        redis_clients.client(settings),
        settings.redis_prefix,
        default_region=settings.default_region,
    )
    # the inventory lane's own Redis when LOOM_INVENTORY_REDIS_URL is set (ADR 0008)
    stock_client = redis_clients.client(settings.for_lane("inventory"))
    workers, logs = _start_workers(settings)
    consumers = lane_consumers(settings)
    try:
        sent = _simulate(settings, args)
        say("waiting for the workers to catch up")
        deadline = time.monotonic() + 180
        failed = _wait_caught_up(settings, consumers, workers, logs, deadline)
        if failed:
            return 1
        _wait_for_relay(reader, deadline)
        story = demo_story.Story(
            settings=settings,
            profiles=reader,
            stock=InventoryReader(stock_client, settings.redis_prefix),
            sent=sent,
            kept=args.keep or already_up,
        )
        demo_story.tell(story, sys.stdout)
    finally:
        for consumer in consumers.values():
            consumer.close()
        reader.client.close()
        stock_client.close()
        for worker in workers.values():
            worker.send_signal(signal.SIGTERM)
        for worker in workers.values():
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        if already_up and not args.keep:
            say("leaving Kafka and Redis running: they were up before the demo")
        elif not args.no_infra and not args.keep:
            say("stopping Kafka and Redis")
            infra("down")
    return 0


def _start_workers(
    settings: LoomSettings,
) -> tuple[dict[str, subprocess.Popen[bytes]], dict[str, Path]]:
    """One ``loom worker`` per lane (two consumer groups on the same topic), logging to
    ``.cache/demo-worker-<role>.log``."""
    workers: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}
    for role in LANES:
        logs[role] = ROOT / ".cache" / f"demo-worker-{role}.log"
        logs[role].parent.mkdir(parents=True, exist_ok=True)
        say(f"starting the {role} worker (log: {logs[role]})")
        with logs[role].open("wb") as log_file:
            workers[role] = subprocess.Popen(
                [sys.executable, "-m", "streams.cli.main", "worker", "--role", role,
                 "--loglevel", "warning"],
                stdout=log_file, stderr=subprocess.STDOUT, env=worker_env(settings),
            )  # fmt: skip
    return workers, logs


def _wait_caught_up(
    settings: LoomSettings,
    consumers: dict[str, Consumer],
    workers: dict[str, subprocess.Popen[bytes]],
    logs: dict[str, Path],
    deadline: float,
) -> bool:
    """Until both lanes committed everything (progress on stderr); True if a worker died."""
    raw = settings.topics.raw
    partitions = sorted(
        consumers[PROFILES.name].list_topics(raw, timeout=10).topics[raw].partitions
    )
    shown = "not read"
    while time.monotonic() < deadline:
        lags = {role: uncommitted_or_unknown(c, raw, partitions) for role, c in consumers.items()}
        if all(lag == 0 for lag in lags.values()):  # known, and nothing left (None: ask again)
            return False
        for role, worker in workers.items():
            if worker.poll() is not None:
                say(f"{role} worker exited with {worker.returncode}; see {logs[role]}")
                return True
        shown = ", ".join(f"{role} {'?' if n is None else n}" for role, n in lags.items())
        print(f"    lag (records): {shown}", file=sys.stderr, flush=True)
        time.sleep(2)
    where = ", ".join(str(path) for path in logs.values())
    say(f"the workers did not catch up in time (lag: {shown}); see {where}")
    return True


def _clean_slate(settings: LoomSettings, *, stop: bool) -> bool:
    """:func:`_reset`; if it fails, says why, stops Kafka and Redis if ``stop`` (the demo
    started them) and returns False."""
    try:
        _reset(settings)
    except DemoResetError as exc:
        say(str(exc))
        if stop:
            say("stopping Kafka and Redis")
            infra("down")
        return False
    return True


def _reset(settings: LoomSettings) -> None:
    """Forget an earlier demo left running with ``--keep``: Loom's topics and consumer groups
    on the local broker, and its keys in the local Redis: the servers of ``deploy/infra.sh``,
    also when they were already up (``make infra-up``); never ``--no-infra``'s."""
    admin = kafka_clients.admin(settings)
    existing = set(admin.list_topics(timeout=10).topics)
    names = [
        name
        for field in type(settings.topics).model_fields
        if (name := getattr(settings.topics, field)) in existing
    ]
    if names:
        delete_topics(admin, names, time.monotonic() + 30)
    delete_groups(admin, [settings.group_id(lane) for lane in LANES], time.monotonic() + 60)
    for lane in LANES:  # each lane's Redis (one server unless LOOM_INVENTORY_REDIS_URL is set)
        client = redis_clients.client(settings.for_lane(lane))
        keys = list(client.scan_iter(match=f"{settings.redis_prefix}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
        client.close()


def delete_topics(admin: Any, names: list[str], deadline: float) -> None:
    """Delete the topics ``names`` and wait until the broker no longer lists them; if that
    fails or they are still listed at ``deadline`` (``time.monotonic()``), raise
    :class:`DemoResetError` (the new run would read the earlier run's records)."""
    for name, future in admin.delete_topics(names, operation_timeout=30).items():
        try:
            future.result()
        except KafkaException as exc:
            raise DemoResetError(
                f"could not delete topic {name!r} of an earlier demo: {exc.args[0].str()}"
            ) from exc
    while left := sorted(set(names) & set(admin.list_topics(timeout=10).topics)):
        if time.monotonic() > deadline:
            raise DemoResetError(f"topics of an earlier demo still listed after deletion: {left}")
        time.sleep(0.2)  # the controller propagates the deletion


def delete_groups(admin: Any, groups: list[str], deadline: float) -> None:
    """Delete ``groups`` and their committed offsets (a group that does not exist is fine).
    A broker just started answers "not coordinator" for a while: those groups are tried
    again until ``deadline`` (``time.monotonic()``). Any other failure raises
    :class:`DemoResetError`: the offsets left would stop the new run's workers."""
    left = list(groups)
    while left:
        retry: list[str] = []
        for group, future in admin.delete_consumer_groups(left, request_timeout=10).items():
            try:
                future.result()
            except KafkaException as exc:
                code = exc.args[0].code()
                if code == KafkaError.GROUP_ID_NOT_FOUND:
                    continue
                if code in _COORDINATOR_NOT_READY and time.monotonic() < deadline:
                    retry.append(group)
                    continue
                raise DemoResetError(
                    f"could not delete consumer group {group!r} of an earlier demo: "
                    f"{exc.args[0].str()}"
                ) from exc
        left = retry
        if left:
            time.sleep(0.5)  # the coordinator loads the offsets topic


def worker_env(settings: LoomSettings) -> dict[str, str]:
    """The demo workers' environment: ours, in development mode, with the command's options."""
    return {
        **os.environ,
        "LOOM_DEVELOPMENT": "true",
        "LOOM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "LOOM_KAFKA_CONFIG": orjson.dumps(settings.kafka_config).decode(),
        "LOOM_REDIS_URL": str(settings.redis_url),
        "LOOM_REDIS_PREFIX": settings.redis_prefix,
        **(
            {"LOOM_AUDIENCES_FILE": str(settings.audiences_file)} if settings.audiences_file else {}
        ),
    }


def _wait_for_relay(reader: ProfileReader, deadline: float) -> None:
    """Until the outbox is drained: the story reads the change topics the relay fills."""
    outbox = reader.keys.outbox
    while reader.client.xlen(outbox) and time.monotonic() < deadline:
        time.sleep(0.2)


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
