"""Every Kafka client Loom makes is configured here: producers, consumers and admin clients.

One place builds the librdkafka configuration from :class:`~streams.settings.LoomSettings`,
so a setting that concerns every client (the bootstrap servers, how librdkafka logs, the
connection's security) is applied to all of them alike. Callers add only what is theirs
(a group id, idempotence, batching) as keyword overrides; the connection's part
(:func:`connection_config`: security, then the operator's ``LOOM_KAFKA_CONFIG`` / ``-X``
settings) goes on top of them. Nothing else in Loom calls a confluent_kafka constructor (a
unit test checks the sources), so every client gets it.

Security (``LOOM_KAFKA_SECURITY_PROTOCOL``): PLAINTEXT, SSL (optionally mTLS with a client
certificate), SASL_PLAINTEXT or SASL_SSL with PLAIN, SCRAM-SHA-256/512 or OAUTHBEARER. For
OAUTHBEARER Loom uses the OIDC client-credentials grant: librdkafka fetches and refreshes the
token itself (``sasl.oauthbearer.method=oidc``).

librdkafka's own log lines do not go to the console raw (``%4|1732...|GETPID|...``): they are
routed through Python logging, on the ``librdkafka`` logger, one level lower than librdkafka
rates them (its warnings are mostly transient: a broker not ready yet, a reconnect, which it
retries by itself), and entry points show them only when asked (``-v``, ``--loglevel debug``;
:func:`show_librdkafka_lines`). What really fails reaches every client's ``error_cb``,
:class:`ErrorReport`: one line per distinct error and minute on this module's logger (a broker
that rejects the credentials makes librdkafka log the same failure dozens of times a second).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient

from streams.settings import LoomSettings

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

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


def show_librdkafka_lines(verbose: bool) -> None:
    """Entry points: librdkafka's own lines only when ``verbose`` (errors come through
    :class:`ErrorReport` anyway)."""
    logging.getLogger(LIBRDKAFKA_LOGGER).setLevel(
        logging.NOTSET if verbose else logging.CRITICAL + 1
    )


#: the parts of librdkafka's error texts that vary between repeats of one error: how long the
#: connection was in its state, how many repeats its log suppressed, how many brokers are down
_VARYING = re.compile(
    r" \(after \d+ms in state \w+(?:, \d+ identical error\(s\) suppressed)?\)"
    r"| \(\d+ identical error\(s\) suppressed\)"
    r"|\d+/\d+ (?=brokers)"
)


def error_text(err: KafkaError | str) -> str:
    """librdkafka's text of ``err`` without the parts that vary between repeats."""
    return _VARYING.sub("", err if isinstance(err, str) else err.str()).strip()


class ErrorReport:
    """Default ``error_cb`` of every client: logs each distinct error once per ``every_s``
    seconds (by code and text; never with ``every_s=None``) and keeps the most recent ones
    (the startup checks read them)."""

    def __init__(self, every_s: float | None = 60.0, clock: Any = time.monotonic) -> None:
        self.every_s, self.clock = every_s, clock
        self._logged: dict[tuple[int, str], float] = {}
        self._lock = threading.Lock()
        self.recent: list[KafkaError] = []

    def __call__(self, err: KafkaError) -> None:
        key = (err.code(), error_text(err))
        with self._lock:
            self.recent = [*self.recent[-9:], err]
            now = self.clock()
            if self.every_s is None or now - self._logged.get(key, -self.every_s) < self.every_s:
                return
            self._logged[key] = now
        log.warning("kafka: %s", key[1])


def base_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    """What every client gets, for code that has only the bootstrap servers."""
    return {
        "bootstrap.servers": bootstrap,
        "logger": _librdkafka_log(),
        "error_cb": ErrorReport(),
        **overrides,
    }


def security_config(settings: LoomSettings) -> dict[str, Any]:
    """librdkafka's settings for the connection's security (``{}`` for plain PLAINTEXT)."""
    s = settings
    conf: dict[str, Any] = {}
    if s.kafka_security_protocol != "PLAINTEXT":
        conf["security.protocol"] = s.kafka_security_protocol
    if s.kafka_sasl_mechanism is not None:
        conf["sasl.mechanisms"] = s.kafka_sasl_mechanism
    if s.kafka_sasl_mechanism == "OAUTHBEARER":
        conf |= {
            "sasl.oauthbearer.method": "oidc",
            "sasl.oauthbearer.token.endpoint.url": s.kafka_oauth_token_url,
            "sasl.oauthbearer.client.id": s.kafka_oauth_client_id,
            "sasl.oauthbearer.client.secret": _secret(s.kafka_oauth_client_secret),
        }
        if s.kafka_oauth_scope:
            conf["sasl.oauthbearer.scope"] = s.kafka_oauth_scope
        if s.kafka_oauth_extensions:
            conf["sasl.oauthbearer.extensions"] = s.kafka_oauth_extensions
    elif s.kafka_sasl_mechanism is not None:
        conf["sasl.username"] = s.kafka_sasl_username
        conf["sasl.password"] = _secret(s.kafka_sasl_password)
    files = {
        "ssl.ca.location": s.kafka_ssl_ca_file,
        "ssl.certificate.location": s.kafka_ssl_cert_file,
        "ssl.key.location": s.kafka_ssl_key_file,
    }
    conf |= {key: str(path) for key, path in files.items() if path is not None}
    if s.kafka_ssl_key_password is not None:
        conf["ssl.key.password"] = _secret(s.kafka_ssl_key_password)
    return conf


def _secret(value: Any) -> str:
    return "" if value is None else str(value.get_secret_value())


def connection_config(settings: LoomSettings) -> dict[str, Any]:
    """What every client of this deployment gets on top of its own settings: the security
    part, then the operator's librdkafka settings (``LOOM_KAFKA_CONFIG``, ``-X k=v``)."""
    return {**security_config(settings), **settings.kafka_config}


def client_config(settings: LoomSettings, **overrides: Any) -> dict[str, Any]:
    """The configuration of one client: the bootstrap servers and logger, the caller's
    ``overrides``, then :func:`connection_config` (which a caller cannot drop)."""
    return base_config(settings.kafka_bootstrap, **{**overrides, **connection_config(settings)})


#: Producers that must not lose or duplicate what they send (DLQ, outbox relay, replays).
RELIABLE_PRODUCER: Final[Mapping[str, Any]] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "compression.type": "lz4",
}


# --- the only constructors of confluent_kafka clients in Loom -------------------------------


def new_producer(config: Mapping[str, Any]) -> Producer:
    return Producer(dict(config))


def new_consumer(config: Mapping[str, Any]) -> Consumer:
    return Consumer(dict(config))


def new_admin(config: Mapping[str, Any]) -> AdminClient:
    return AdminClient(dict(config))


def producer(settings: LoomSettings, **overrides: Any) -> Producer:
    """An idempotent ``acks=all`` producer (overrides go on top)."""
    return new_producer(client_config(settings, **{**RELIABLE_PRODUCER, **overrides}))


def consumer(settings: LoomSettings, group: str, **overrides: Any) -> Consumer:
    """A consumer of ``group`` (it joins the group only when it subscribes)."""
    return new_consumer(client_config(settings, **{"group.id": group, **overrides}))


def admin(settings: LoomSettings, **overrides: Any) -> AdminClient:
    return new_admin(client_config(settings, **overrides))
