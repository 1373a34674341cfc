"""Every Kafka client Loom makes is configured here: producers, consumers and admin clients.

One place builds the librdkafka configuration from :class:`~streams.settings.LoomSettings`,
so a setting that concerns every client (the bootstrap servers, how librdkafka logs, the
connection's security) is applied to all of them alike. Callers add only what is theirs
(a group id, idempotence, batching) as keyword overrides.

librdkafka's own log lines do not go to the console raw (``%4|1732...|GETPID|...``): they are
routed through Python logging, on the ``librdkafka`` logger, one level lower than librdkafka
rates them (its warnings are mostly transient: a broker not ready yet, a reconnect, which it
retries by itself; Loom reports what really fails through errors and callbacks). So they show
with ``-v`` / ``--loglevel debug``, in Loom's log format, and never in the demo's story.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from streams.settings import LoomSettings

#: The logger librdkafka's log lines go to (see the module docstring).
LIBRDKAFKA_LOGGER: Final = "librdkafka"

_DEMOTED: Final = {
    logging.CRITICAL: logging.ERROR,
    logging.ERROR: logging.WARNING,
    logging.WARNING: logging.INFO,
    logging.INFO: logging.DEBUG,
}


class LibrdkafkaLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """What librdkafka logs through (its ``logger`` property), one level lower (see above)."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        super().log(_DEMOTED.get(level, level), msg, *args, **kwargs)


def _librdkafka_log() -> LibrdkafkaLog:
    return LibrdkafkaLog(logging.getLogger(LIBRDKAFKA_LOGGER), {})


def base_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    """What every client gets, for code that has only the bootstrap servers."""
    return {"bootstrap.servers": bootstrap, "logger": _librdkafka_log(), **overrides}


def client_config(settings: LoomSettings, **overrides: Any) -> dict[str, Any]:
    """The configuration every client of this deployment starts from, plus ``overrides``."""
    return base_config(settings.kafka_bootstrap, **overrides)


#: Producers that must not lose or duplicate what they send (DLQ, outbox relay, replays).
RELIABLE_PRODUCER: Final[Mapping[str, Any]] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "compression.type": "lz4",
}


def producer(settings: LoomSettings, **overrides: Any) -> Producer:
    """An idempotent ``acks=all`` producer (overrides go on top)."""
    return Producer(client_config(settings, **{**RELIABLE_PRODUCER, **overrides}))


def consumer(settings: LoomSettings, group: str, **overrides: Any) -> Consumer:
    """A consumer of ``group`` (it joins the group only when it subscribes)."""
    return Consumer(client_config(settings, **{"group.id": group, **overrides}))


def admin(settings: LoomSettings, **overrides: Any) -> AdminClient:
    return AdminClient(client_config(settings, **overrides))
