"""Options every command that talks to Kafka or Redis shares, named like Kafka's and Redis's
own tools, and the settings they produce.

* ``--bootstrap-server HOST:PORT[,...]`` (``--bootstrap`` still works): ``LOOM_KAFKA_BOOTSTRAP``;
* ``-X KEY=VALUE`` (repeatable): a librdkafka setting for every Kafka client the command makes,
  on top of ``LOOM_KAFKA_CONFIG`` (like ``kafkacat -X``);
* ``--redis-url URL`` and ``--prefix P``: ``LOOM_REDIS_URL`` and ``LOOM_REDIS_PREFIX``.

Security (SASL, TLS, ACL users, Sentinel) comes from the ``LOOM_*`` settings only, so that no
secret ever sits on a command line.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from streams.settings import ConfigError, LoomSettings, load_settings
from streams.startup import check_kafka, check_redis


def port(text: str) -> int:
    """An ``argparse`` type: a TCP port, 0-65535 (0: any free one). Outside it a server died
    binding it with an ``OverflowError`` traceback; now a usage error, exit 2."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0-65535)")
    return value


def add_kafka_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bootstrap-server",
        "--bootstrap",
        dest="bootstrap_server",
        metavar="HOST:PORT",
        help="Kafka bootstrap servers, comma-separated (default: LOOM_KAFKA_BOOTSTRAP)",
    )
    p.add_argument(
        "-X",
        dest="kafka_overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="librdkafka setting for every Kafka client of this command, e.g. "
        "-X socket.timeout.ms=30000 (repeatable; adds to LOOM_KAFKA_CONFIG)",
    )


def add_loglevel_option(p: argparse.ArgumentParser) -> None:
    """``--loglevel`` of a long-running process (``loom worker``, ``loom relay``)."""
    p.add_argument(
        "--loglevel",
        default="info",
        choices=["debug", "info", "warning", "error"],
        type=str.lower,
        help="log level (default: info)",
    )


def add_redis_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis-url", metavar="URL", help="Redis URL (default: LOOM_REDIS_URL)")
    p.add_argument("--prefix", help="Redis key prefix (default: LOOM_REDIS_PREFIX)")


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``-X`` values as a dict; :class:`ConfigError` for one without ``=``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            # its head only: what follows a `:`, `=` or space may be the value, a secret
            head = re.split(r"[:=\s]", item, maxsplit=1)[0]
            raise ConfigError(f"-X expects KEY=VALUE, got {head!r}{' ...' if head != item else ''}")
        out[key.strip()] = value
    return out


def settings_from(args: argparse.Namespace, **extra: Any) -> LoomSettings:
    """The settings with this command's options applied (``extra`` too)."""
    overrides: dict[str, Any] = dict(extra)
    if getattr(args, "bootstrap_server", None):
        overrides["kafka_bootstrap"] = args.bootstrap_server
    if getattr(args, "redis_url", None):
        overrides["redis_url"] = args.redis_url
    if getattr(args, "prefix", None):
        overrides["redis_prefix"] = args.prefix
    cli_config = parse_overrides(getattr(args, "kafka_overrides", None) or [])
    if cli_config:
        overrides["kafka_config"] = {**load_settings().kafka_config, **cli_config}
    return load_settings(**overrides)


def lane_settings(args: argparse.Namespace, lane: str, **extra: Any) -> LoomSettings:
    """:func:`settings_from` as ``lane`` uses them: its own Redis (``LoomSettings.for_lane``,
    ADR 0008), unless this command's ``--redis-url`` names one (the command line wins)."""
    settings = settings_from(args, **extra)
    return settings if getattr(args, "redis_url", None) else settings.for_lane(lane)


def connect(
    args: argparse.Namespace,
    *,
    kafka: bool = False,
    redis: bool = False,
    lane: str = "profiles",
    **extra: Any,
) -> LoomSettings:
    """:func:`settings_from` (as ``lane`` uses them: its Redis), then one round trip to each
    server the command needs, so that an unreachable server or refused credentials end the
    command with one line (:class:`~streams.startup.InfraError`) instead of a timeout deep
    inside it."""
    settings = lane_settings(args, lane, **extra)
    if kafka:
        check_kafka(settings)
    if redis:
        check_redis(settings)
    return settings
