"""``loom worker --role profiles|inventory``: run one lane's worker until stopped.

A deployment runs at least one worker of each role (they are two consumer groups reading the
same topic; ADR 0002). SIGTERM/SIGINT finish the batch in flight.
"""

from __future__ import annotations

import argparse
import sys
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
    p.add_argument("--loglevel", default="info", help="faust log level (default: info)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streams.topics import ensure_topics
    from streams.worker import run_worker

    settings = load_settings()
    ensure_topics(settings)
    sys.argv = [sys.argv[0], "worker"]  # faust's Worker reads argv; ours are parsed already
    run_worker(settings, LANES[args.role], loglevel=args.loglevel)
    return 0
