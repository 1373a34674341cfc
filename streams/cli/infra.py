"""``loom infra up|down|status [--json]``: start, stop or inspect the local Kafka and Redis.

A thin wrapper over ``deploy/infra.sh`` (the script holds all the logic and documents its
environment variables: ``LOOM_KAFKA_PORT``, ``LOOM_REDIS_PORT``, ``LOOM_DATA_DIR``, ...). It needs
a source checkout; with Docker, use ``docker compose up`` instead.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

#: ``deploy/infra.sh`` of the checkout this package was imported from.
DEFAULT_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "infra.sh"

ACTIONS = ("up", "down", "status")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "infra",
        help="start/stop/inspect the local Kafka broker and Redis (deploy/infra.sh)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=ACTIONS, help="what to do")
    parser.add_argument(
        "--json", action="store_true", help="status only: print one JSON object instead of text"
    )
    parser.set_defaults(func=run)


def script_path() -> Path:
    """The infra script: ``$LOOM_INFRA_SCRIPT`` if set, else the checkout's deploy/infra.sh."""
    override = os.environ.get("LOOM_INFRA_SCRIPT")
    return Path(override) if override else DEFAULT_SCRIPT


def build_command(action: str, *, as_json: bool, script: Path) -> list[str]:
    """The argv that runs ``script`` for ``action``; ``--json`` is only valid with status."""
    if action not in ACTIONS:
        raise ValueError(f"unknown infra action {action!r}")
    if as_json and action != "status":
        raise ValueError("--json only applies to `loom infra status`")
    command = ["bash", str(script), action]
    if as_json:
        command.append("--json")
    return command


def run(args: argparse.Namespace) -> int:
    script = script_path()
    if not script.is_file():
        print(
            f"loom infra: {script} not found; it needs a source checkout of Loom "
            "(with Docker, use `docker compose up`)",
            file=sys.stderr,
        )
        return 2
    try:
        command = build_command(args.action, as_json=args.json, script=script)
    except ValueError as exc:
        print(f"loom infra: {exc}", file=sys.stderr)
        return 2
    # The script's output goes straight to our stdout/stderr; its exit code is ours.
    return subprocess.call(command)  # fixed argv, no shell
