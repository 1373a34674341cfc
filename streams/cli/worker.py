"""``loom worker --role profiles|inventory``: run one lane's worker until stopped.

A deployment runs at least one worker of each role (they are two consumer groups reading the
same topic; ADR 0002). Both roles run the same loop (:mod:`streams.lane_runner`); the role
picks the lane, its consumer group, batch timeout and HTTP port. SIGTERM/SIGINT finish the
batch being applied, commit and leave the group (exit codes in :mod:`streams.lane_runner`).

Before it consumes, a worker refuses the development suppression salt outside development
mode, then waits for Kafka and Redis (one log line per attempt, capped backoff) and exits with
one line if they refuse its credentials or certificates, then creates missing topics.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from resolvers.pipeline import LANES, ROUTED_INVENTORY, Lane
from streams import kafka_clients
from streams.cli.options import (
    add_kafka_options,
    add_loglevel_option,
    add_redis_options,
    lane_settings,
)
from streams.startup import refuse_unsafe_defaults, wait_for_infra


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "worker", help="run a pipeline worker (one per role: profiles, inventory)"
    )
    p.add_argument(
        "--role",
        required=True,
        choices=sorted(LANES),
        help="the lane this worker runs: profiles (identity, consent, profiles, DLQ) or "
        "inventory (stock); run both",
    )
    add_loglevel_option(p)
    add_kafka_options(p)
    add_redis_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streams import allocator
    from streams.lane_runner import run_lane
    from streams.runtime import build_runtime
    from streams.topics import ensure_topics

    allocator.cap_arenas()  # before the first thread (librdkafka's, the lane's)
    allocator.hold_freed_pages()
    allocator.Trimmer().start()
    logging.getLogger().setLevel(args.loglevel.upper())
    settings = lane_settings(args, args.role)  # the lane's own Redis (ADR 0008)
    refuse_unsafe_defaults(settings)
    kafka_clients.show_librdkafka_lines(args.verbose or args.loglevel == "debug")
    wait_for_infra(settings)
    ensure_topics(settings)
    return run_lane(build_runtime(settings, lane_of(args.role, settings.inventory_routing)))


def lane_of(role: str, routing: str) -> Lane:
    """The lane a worker of ``role`` runs: the inventory lane routed by SKU (a router and an
    applier in one process, ADR 0014) with ``LOOM_INVENTORY_ROUTING=by-sku``."""
    if role == "inventory" and routing == "by-sku":
        return ROUTED_INVENTORY
    return LANES[role]
