"""``loom relay --role profiles|inventory``: deliver a lane's outbox to Kafka in a process of
its own, until SIGTERM/SIGINT (ADR 0039).

By default each lane's worker runs the outbox relay beside its batches (``streams.relay``).
With ``LOOM_WORKER_RELAY=false`` the workers leave it to these processes: the relay's Python
work and its hold of the interpreter lock leave the lane's process. Run one or more per lane
(they share the Redis consumer group ``relay``): one at a time delivers the outbox, holding
its lease, and the others stand by (ADR 0043); one that dies is replaced after at most
``LOOM_RELAY_LEASE_S``, and what it read is sent first. The holder wakes when the outbox
holds a new entry (a blocking ``XREADGROUP``), at most every ``LOOM_RELAY_INTERVAL_S``.

``/metrics``, ``/livez`` and ``/readyz`` (Kafka, Redis, and ``relay`` once its passes have failed
for ``LOOM_STUCK_AFTER_S``) are served on ``LOOM_RELAY_WEB_PORT`` (profiles, 6070) or
``LOOM_INVENTORY_RELAY_WEB_PORT`` (inventory, 6071), or ``--port``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from resolvers.pipeline import LANES
from streams.cli.options import (
    add_kafka_options,
    add_loglevel_option,
    add_redis_options,
    lane_settings,
    port,
)
from streams.settings import LoomSettings

log = logging.getLogger(__name__)

#: How long a relay waits for a new outbox entry before a pass anyway (the blocking read's
#: timeout: also the longest a stop waits for that read to return).
IDLE_S = 1.0


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "relay",
        help="deliver a lane's outbox to Kafka in a process of its own (LOOM_WORKER_RELAY=false)",
    )
    p.add_argument(
        "--role",
        required=True,
        choices=sorted(LANES),
        help="the lane whose outbox (in the lane's Redis) this process delivers",
    )
    p.add_argument(
        "--port",
        type=port,
        help="ops port (default: LOOM_RELAY_WEB_PORT 6070, inventory LOOM_INVENTORY_RELAY_WEB_PORT "
        "6071)",
    )
    add_loglevel_option(p)
    add_kafka_options(p)
    add_redis_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streams import kafka_clients
    from streams.startup import wait_for_infra
    from streams.topics import ensure_topics

    logging.getLogger().setLevel(args.loglevel.upper())
    settings = lane_settings(args, args.role)  # the lane's own Redis (ADR 0008)
    kafka_clients.show_librdkafka_lines(args.verbose or args.loglevel == "debug")
    wait_for_infra(settings)
    ensure_topics(settings)  # the change topics it produces to
    port = settings.relay_web_port_for(args.role) if args.port is None else args.port
    try:
        return asyncio.run(serve(settings, args.role, port))
    except OSError as exc:
        print(f"loom relay: cannot start: {exc.strerror or exc}", file=sys.stderr)
        return 2


async def serve(settings: LoomSettings, lane: str, port: int) -> int:
    """Run the lane's relay and its health server until SIGTERM/SIGINT; 0."""
    from prometheus_client import CollectorRegistry

    from streams import kafka_clients, redis_clients
    from streams.health import HealthServer
    from streams.metrics import RelayMetrics
    from streams.relay import RelaySupervisor
    from streams.runtime import process_name, relay_maker

    client = redis_clients.client(settings)
    name = process_name()
    metrics = RelayMetrics.create(CollectorRegistry())
    relay = RelaySupervisor(
        relay_maker(settings, client, name),
        metrics,
        backoff_max_s=settings.retry_backoff_max_s,
        failing_after_s=settings.stuck_after_s,
        idle_s=IDLE_S,
        min_interval_s=settings.relay_interval_s,
    )
    admin = kafka_clients.admin(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    health = HealthServer(
        settings.web_host,
        port,
        metrics.registry,
        {
            "redis": lambda: asyncio.to_thread(client.ping),
            "kafka": lambda: asyncio.to_thread(lambda: bool(admin.list_topics(timeout=2))),
            "relay": relay.healthy,
        },
    )
    await health.start()
    relay.start(None)
    log.info("relay of the %s lane (%s): health and metrics on port %d", lane, name, health.port)
    try:
        await stop.wait()
    finally:
        log.info("relay of the %s lane: stopping", lane)
        await relay.stop()
        await health.stop()
    return 0
