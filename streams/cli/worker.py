"""``loom worker --role profiles|inventory``: run one lane's worker until stopped.

A deployment runs at least one worker of each role (they are two consumer groups reading the
same topic; ADR 0002). Both roles run the same loop (:mod:`streams.lane_runner`); the role
picks the lane, its consumer group, batch timeout and HTTP port. SIGTERM/SIGINT finish the
batch being applied, commit and leave the group.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from resolvers.pipeline import LANES
from streams.settings import load_settings


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
    p.add_argument(
        "--loglevel",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log level (default: info)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streams.lane_runner import run_lane
    from streams.runtime import build_runtime
    from streams.topics import ensure_topics

    logging.getLogger().setLevel(args.loglevel.upper())
    settings = load_settings()
    ensure_topics(settings)
    return run_lane(build_runtime(settings, LANES[args.role]))
