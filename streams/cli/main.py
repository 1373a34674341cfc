"""``loom`` entry point: a thin argparse dispatcher over one module per subcommand.

Each module in :data:`COMMANDS` exposes ``register(subparsers)`` which adds its parser and sets
``func`` to a callable ``(args) -> int``. Settings are read once here and handed down.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from streams.kafka_clients import LIBRDKAFKA_LOGGER

#: Subcommand modules under ``streams.cli``, in the order ``loom --help`` lists them.
COMMANDS: tuple[str, ...] = (
    "infra",
    "lag",
    "exporter",
    "worker",
    "gateway",
    "privacy_worker",
    "demo",
    "produce",
    "simulate",
    "profile",
    "inventory",
    "privacy",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loom", description="Loom: real-time identity resolution for retailers."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"streams.cli.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:  # librdkafka's lines (already a level lower) only with -v
        logging.getLogger(LIBRDKAFKA_LOGGER).setLevel(logging.WARNING)
    try:
        rc: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return rc


if __name__ == "__main__":
    sys.exit(main())
