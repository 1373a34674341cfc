"""``loom exporter``: Prometheus exporter of consumer lag and Burrow-style group status.

Serves ``/metrics`` (kafka-lag-exporter compatible names), ``/livez`` and ``/readyz`` on
``--host`` (default ``LOOM_WEB_HOST``: 127.0.0.1, like the workers; ``0.0.0.0`` in containers)
and ``--port`` (default ``LOOM_EXPORTER_PORT``, 9308) and polls every ``--interval`` seconds.
Watches the lane groups that exist (``<LOOM_APP_ID>-profiles``, ``<LOOM_APP_ID>-inventory``),
or every group with ``--all``.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from prometheus_client import CollectorRegistry

from streams import kafka_clients
from streams.cli.lag import lane_groups
from streams.cli.options import add_kafka_options, connect, port
from streams.exporter import ExporterConfig, LagExporter, run_exporter
from streams.metrics import ExporterMetrics
from streams.settings import LoomSettings


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("exporter", help="Prometheus exporter of consumer lag and status")
    p.add_argument("--port", type=port, default=None, help="HTTP port (default LOOM_EXPORTER_PORT)")
    p.add_argument("--host", default=None, help="bind address (default LOOM_WEB_HOST, 127.0.0.1)")
    p.add_argument("--interval", type=float, default=15.0, help="poll interval, seconds")
    p.add_argument(
        "--window", type=float, default=None, help="status window, seconds (LOOM_LAG_WINDOW_S)"
    )
    p.add_argument("--all", action="store_true", help="all groups, not only the lanes'")
    p.add_argument("--cluster-name", default="loom", help="cluster_name label value")
    p.add_argument(
        "--no-commit-log",
        action="store_true",
        help="do not read __consumer_offsets (STALL then cannot be told from STOP)",
    )
    add_kafka_options(p)
    p.set_defaults(func=run)


def listen_host(args: argparse.Namespace, settings: LoomSettings) -> str:
    """``--host``, else ``LOOM_WEB_HOST`` (127.0.0.1 unless a container says 0.0.0.0)."""
    return str(args.host or settings.web_host)


def run(args: argparse.Namespace) -> int:
    settings = connect(args, kafka=True)
    host = listen_host(args, settings)
    config = ExporterConfig(
        bootstrap=settings.kafka_bootstrap,
        kafka_config=kafka_clients.connection_config(settings),
        group_prefix=None if args.all else settings.app_id,
        groups=None if args.all else tuple(lane_groups(settings)),
        window_s=args.window if args.window is not None else settings.lag_window_s,
        interval_s=args.interval,
        cluster_name=args.cluster_name,
        use_commit_log=not args.no_commit_log,
    )
    exporter = LagExporter(
        config, ExporterMetrics.create(CollectorRegistry(), cluster_name=config.cluster_name)
    )
    port = args.port if args.port is not None else settings.exporter_port

    def started(bound: int) -> None:
        print(f"loom exporter listening on {host}:{bound}", flush=True)

    asyncio.run(run_exporter(exporter, host, port, on_started=started))
    return 0
