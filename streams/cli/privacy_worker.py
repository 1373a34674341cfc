"""``loom privacy-worker``: act on the privacy requests the gateway records (data exports,
shop-wide erasures) until SIGTERM/SIGINT; ``/metrics``, ``/livez``, ``/readyz`` on
``LOOM_PRIVACY_WEB_PORT``. Run one (or more: they share the consumer group
``<app_id>-privacy``) wherever the gateway serves Shopify shops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import threading
from typing import Any

from streams.cli.options import add_kafka_options, add_redis_options, port, settings_from
from streams.settings import LoomSettings


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "privacy-worker",
        help="act on privacy requests from Shopify (data exports, shop erasures)",
    )
    p.add_argument("--port", type=port, help="ops port (default: LOOM_PRIVACY_WEB_PORT, 6069)")
    add_kafka_options(p)
    add_redis_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streams.startup import refuse_unsafe_defaults, wait_for_infra

    extra = {} if args.port is None else {"privacy_web_port": args.port}
    settings = settings_from(args, **extra)
    refuse_unsafe_defaults(settings)  # it erases: never with the public development salt
    wait_for_infra(settings)
    try:
        return asyncio.run(serve(settings))
    except OSError as exc:
        print(f"loom privacy-worker: cannot start: {exc.strerror or exc}", file=sys.stderr)
        return 2


async def serve(settings: LoomSettings) -> int:
    from streams import privacy_worker, redis_clients
    from streams.health import HealthServer
    from streams.reader import ProfileReader
    from streams.shopify_memory import RedisShopifyMemory
    from streams.topics import ensure_topics

    await asyncio.to_thread(ensure_topics, settings)
    client = redis_clients.client(settings)
    memory = RedisShopifyMemory(
        client,
        settings.redis_prefix,
        order_ttl_s=settings.gateway_shopify_order_ttl_s,
        salt=settings.suppression_salt.get_secret_value().encode(),
    )
    reader = ProfileReader(client, settings.redis_prefix, default_region=settings.default_region)
    worker = privacy_worker.build(settings, memory, reader)
    stop = threading.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    health = HealthServer(
        settings.web_host,
        settings.privacy_web_port,
        worker.registry,
        {
            "redis": lambda: asyncio.to_thread(memory.ping),
            "kafka": lambda: asyncio.to_thread(worker.kafka_ready),
        },
    )
    await health.start()
    try:
        await asyncio.to_thread(worker.run, stop)
    finally:
        await health.stop()
        client.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
    return 0
