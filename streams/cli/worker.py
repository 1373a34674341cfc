"""``loom worker``: run the stream processor until stopped (SIGTERM/SIGINT finish the batch)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from streams.settings import load_settings


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("worker", help="run the pipeline worker")
    p.add_argument("--loglevel", default="info", help="faust log level (default: info)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streams.topics import ensure_topics
    from streams.worker import run_worker

    settings = load_settings()
    ensure_topics(settings)
    sys.argv = [sys.argv[0], "worker"]  # faust's Worker reads argv; ours are parsed already
    run_worker(settings, loglevel=args.loglevel)
    return 0
