"""``loom gateway``: serve the HTTP collection API (Segment's, for web, app and server SDKs) and
Shopify's webhooks.

Reads the write keys and Shopify shops from ``LOOM_GATEWAY_SOURCES_FILE`` (or ``--sources``) and
serves on
``LOOM_GATEWAY_HOST:LOOM_GATEWAY_PORT`` (127.0.0.1:8088) until SIGTERM/SIGINT, with
``/metrics``, ``/livez`` and ``/readyz`` on ``LOOM_GATEWAY_OPS_PORT``. Missing topics are
created once Kafka answers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from streams.cli.options import add_kafka_options, add_redis_options, port, settings_from


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "gateway",
        help="serve the HTTP collection API (Segment SDKs send to it unchanged) and Shopify "
        "webhooks",
    )
    p.add_argument("--host", help="bind address (default: LOOM_GATEWAY_HOST, 127.0.0.1)")
    p.add_argument("--port", type=port, help="port (default: LOOM_GATEWAY_PORT, 8088)")
    p.add_argument(
        "--sources",
        type=Path,
        help="write keys and Shopify shops TOML (default: LOOM_GATEWAY_SOURCES_FILE)",
    )
    add_kafka_options(p)
    add_redis_options(p)  # the Shopify door's memory
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streams.gateway.server import GatewayStartError, run_gateway
    from streams.gateway.sources import GatewayConfig, SourcesError
    from streams.startup import refuse_unsafe_defaults

    overrides = {
        "gateway_host": args.host,
        "gateway_port": args.port,
        "gateway_sources_file": args.sources,
    }
    # no Kafka check first: the gateway starts without Kafka and answers 503 until it does
    settings = settings_from(args, **{k: v for k, v in overrides.items() if v is not None})
    try:
        config = GatewayConfig.from_file(settings.gateway_sources_file)
    except SourcesError as exc:
        print(f"loom gateway: {exc}", file=sys.stderr)
        return 2
    if config.shops:  # it keeps salted hashes of redacted customers
        refuse_unsafe_defaults(settings)
    try:
        return run_gateway(settings, config)
    except GatewayStartError as exc:
        print(f"loom gateway: {exc}", file=sys.stderr)
        return 2
