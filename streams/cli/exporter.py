"""``loom exporter``: Prometheus exporter of consumer lag and Burrow-style group status.

Serves ``/metrics`` (kafka-lag-exporter compatible names), ``/livez`` and ``/readyz`` on
``--port`` (default ``LOOM_EXPORTER_PORT``, 9308) and polls every ``--interval`` seconds.
Watches the lane groups that exist (``<LOOM_APP_ID>-profiles``, ``<LOOM_APP_ID>-inventory``),
or every group with ``--all``.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from prometheus_client import CollectorRegistry

from streams.cli.lag import lane_groups
from streams.exporter import ExporterConfig, LagExporter, run_exporter
from streams.metrics import ExporterMetrics
from streams.settings import load_settings


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("exporter", help="Prometheus exporter of consumer lag and status")
    p.add_argument("--port", type=int, default=None, help="HTTP port (default LOOM_EXPORTER_PORT)")
    p.add_argument("--host", default="0.0.0.0", help="bind address (default 0.0.0.0)")  # noqa: S104
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
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (default LOOM_KAFKA_BOOTSTRAP)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    config = ExporterConfig(
        bootstrap=args.bootstrap or settings.kafka_bootstrap,
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
        print(f"loom exporter listening on {args.host}:{bound}", flush=True)

    asyncio.run(run_exporter(exporter, args.host, port, on_started=started))
    return 0
