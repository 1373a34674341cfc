"""``loom`` entry point: a thin argparse dispatcher over one module per subcommand.

Each module in :data:`COMMANDS` exposes ``register(subparsers)`` which adds its parser and sets
``func`` to a callable ``(args) -> int``. Settings are read once here and handed down.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException
from redis import RedisError

from streams.errors import StateLostError
from streams.kafka_clients import show_librdkafka_lines
from streams.producer import DeliveryError
from streams.redact import redact_text
from streams.settings import ConfigError, load_settings
from streams.startup import InfraError

#: Exit codes of every command for what went wrong outside it (a command's own codes, such
#: as ``loom produce``'s 1 for rejected lines, stay below 2 or mean the same).
EXIT_CONFIG = 2  # the configuration or the command line cannot work (like a usage error)
EXIT_INFRA = 3  # Kafka or Redis unreachable or refusing (as "not delivered" in produce)
EXIT_PIPE = 141  # stdout closed by its reader (`loom ... | head`): 128 + SIGPIPE, like a shell

#: Subcommand modules under ``streams.cli``, in the order ``loom --help`` lists them.
COMMANDS: tuple[str, ...] = (
    "infra",
    "lag",
    "exporter",
    "worker",
    "relay",
    "rebuild",
    "gateway",
    "privacy_worker",
    "demo",
    "produce",
    "simulate",
    "profile",
    "audiences",
    "inventory",
    "privacy",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loom", description="Loom: real-time identity resolution for retailers."
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging, librdkafka's lines included"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"streams.cli.{name}")
        module.register(sub)
    _name_commands(parser)
    return parser


def _name_commands(parser: argparse.ArgumentParser) -> None:
    """Every (sub)command knows its full name (``loom profile get``) for its error lines."""
    parser.set_defaults(prog=parser.prog)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _name_commands(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    show_librdkafka_lines(args.verbose)  # errors still come, once, through ErrorReport
    try:
        rc: int = args.func(args)
        sys.stdout.flush()  # a reader gone shows here, not in the flush at exit
    except BrokenPipeError:
        return _reader_gone()
    except KeyboardInterrupt:
        return 130
    except ConfigError as exc:
        return _fail(args, str(exc), EXIT_CONFIG)
    except KafkaException as exc:
        if _refused_setting(exc):  # -X or LOOM_KAFKA_CONFIG: the configuration, not Kafka
            return _fail(args, f"librdkafka setting: {exc.args[0].str()}", EXIT_CONFIG)
        return _fail(args, str(exc), EXIT_INFRA)
    except (InfraError, DeliveryError, RedisError, StateLostError) as exc:
        return _fail(args, str(exc), EXIT_INFRA)
    return rc


def _reader_gone() -> int:
    """Stdout's reader closed the pipe (``loom profiles export | head -n 1``): stop quietly, as
    a Unix filter SIGPIPE ends. What is still buffered goes to /dev/null, so that the flush at
    exit raises nothing either (the recipe of Python's ``signal`` documentation)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_PIPE


def _refused_setting(exc: KafkaException) -> bool:
    """librdkafka refused a client's configuration (a property unknown or its value invalid)."""
    err = exc.args[0] if exc.args else None
    return (
        isinstance(err, KafkaError)
        and err.code() == KafkaError._INVALID_ARG
        and "configuration property" in err.str()
    )


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    """One line on stderr, secrets masked: no traceback for what the user has to fix."""
    try:
        secrets = load_settings().secrets()
    except ConfigError:
        secrets = []
    line = redact_text(" ".join(message.split()), secrets)
    print(f"{args.prog}: {line}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
