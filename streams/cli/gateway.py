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

from streams.settings import load_settings


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "gateway",
        help="serve the HTTP collection API (Segment SDKs send to it unchanged) and Shopify "
        "webhooks",
    )
    p.add_argument("--host", help="bind address (default: LOOM_GATEWAY_HOST, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: LOOM_GATEWAY_PORT, 8088)")
    p.add_argument(
        "--sources",
        type=Path,
        help="write keys and Shopify shops TOML (default: LOOM_GATEWAY_SOURCES_FILE)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streams.gateway.server import GatewayStartError, run_gateway
    from streams.gateway.sources import GatewayConfig, SourcesError

    settings = load_settings()
    overrides = {
        "gateway_host": args.host,
        "gateway_port": args.port,
        "gateway_sources_file": args.sources,
    }
    settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    try:
        config = GatewayConfig.from_file(settings.gateway_sources_file)
    except SourcesError as exc:
        print(f"loom gateway: {exc}", file=sys.stderr)
        return 2
    try:
        return run_gateway(settings, config)
    except GatewayStartError as exc:
        print(f"loom gateway: {exc}", file=sys.stderr)
        return 2
