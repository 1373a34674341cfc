"""Before a worker or a command works: are Kafka and Redis there, and do they let Loom in?

:func:`check_kafka` and :func:`check_redis` make one round trip each and turn whatever goes
wrong into one :class:`InfraError` line naming the server and the reason (never a secret, never
a traceback): unreachable, TLS not verified, credentials refused, ACL missing. An error is
*fatal* when retrying cannot help (credentials, certificates, ACL): a worker exits on it at
once. :func:`wait_for_infra` is what a worker runs first: it retries the others with capped
backoff and logs one line per attempt. Commands call the checks once and exit with the line.

:func:`refuse_unsafe_defaults` stops a worker that would hash identifiers with the public
development salt outside development mode.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
from confluent_kafka import KafkaError, KafkaException

from streams import kafka_clients, redis_clients
from streams.backoff import Backoff
from streams.redact import redact_text
from streams.settings import ConfigError, LoomSettings

log = logging.getLogger(__name__)


class InfraError(Exception):
    """Kafka or Redis cannot be used; ``str()`` is one line for users. ``fatal``: retrying
    with the same configuration cannot succeed."""

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


#: librdkafka texts that no retry fixes (the configuration or the certificates must change).
_FATAL_KAFKA = ("certificate verify failed", "bad certificate", "certificate required")


class _CapturedLog(kafka_clients.LibrdkafkaLog):
    """The probe's librdkafka log: kept (the reason behind "all brokers down"), then passed on."""

    def __init__(self) -> None:
        super().__init__(logging.getLogger(kafka_clients.LIBRDKAFKA_LOGGER), {})
        self.failures: list[str] = []

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        text = str(msg) % args if args else str(msg)
        if "FAIL" in text or "Disconnected" in text:
            self.failures.append(text.split("]: ", 1)[-1])
        super().log(level, msg, *args, **kwargs)


def check_kafka(settings: LoomSettings, *, timeout_s: float = 5.0) -> None:
    """One metadata request through the deployment's configuration; :class:`InfraError` if
    it does not answer within ``timeout_s`` (at once when the error is fatal)."""
    report, captured = kafka_clients.ErrorReport(every_s=None), _CapturedLog()
    admin = kafka_clients.admin(settings, error_cb=report, logger=captured)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin.list_topics(timeout=min(0.5, max(0.05, deadline - time.monotonic())))
            return
        except KafkaException:
            admin.poll(0)  # serve error_cb
        fatal = _kafka_fatal(report.recent, captured.failures)
        if fatal or time.monotonic() >= deadline:
            break
    reason = _kafka_reason(report.recent, captured.failures)
    if not settings.kafka_security_protocol.endswith("SSL") and "closed by peer" in reason:
        reason += " (a TLS listener? see LOOM_KAFKA_SECURITY_PROTOCOL)"
    raise InfraError(
        f"Kafka {settings.kafka_bootstrap}: " + redact_text(reason, settings.secrets()),
        fatal=fatal,
    )


def _kafka_reason(errors: Sequence[KafkaError], failures: Sequence[str]) -> str:
    specific = [e for e in errors if e.code() != KafkaError._ALL_BROKERS_DOWN]
    if any(e.code() == KafkaError._AUTHENTICATION for e in specific):
        auth = next(e for e in specific if e.code() == KafkaError._AUTHENTICATION)
        return "authentication failed: " + _tail(kafka_clients.error_text(auth))
    if specific:
        return _tail(kafka_clients.error_text(specific[-1]))
    if failures:
        return _tail(kafka_clients.error_text(failures[-1]))
    return "no broker answered (is it running, and is the address right?)"


def _tail(text: str) -> str:
    """librdkafka's text without the broker prefix (``sasl_ssl://host:port/bootstrap: ``)."""
    head, sep, rest = text.partition("/bootstrap: ")
    text = rest if sep else text
    head, sep, rest = text.partition(": ")
    return (rest if sep and "://" in head else text).rstrip(".")


def _kafka_fatal(errors: Sequence[KafkaError], failures: Sequence[str]) -> bool:
    texts = [e.str() for e in errors] + list(failures)
    return any(e.code() == KafkaError._AUTHENTICATION for e in errors) or any(
        marker in t for t in texts for marker in _FATAL_KAFKA
    )


def check_redis(settings: LoomSettings) -> None:
    """``PING`` and one read under the key prefix (so a missing ACL key pattern shows now)."""
    client = redis_clients.client(settings, socket_timeout=5.0)
    where = redis_clients.describe(settings)
    try:
        client.ping()
        client.exists(f"{settings.redis_prefix}:v1:stats")
    except redis.AuthenticationError as exc:
        raise InfraError(f"{where}: authentication failed: {exc}", fatal=True) from None
    except redis.exceptions.NoPermissionError as exc:
        raise InfraError(
            f"{where}: the ACL user may not do what Loom needs ({exc}); "
            "grant the rules in the README (Redis ACL)",
            fatal=True,
        ) from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        text = redact_text(str(exc), settings.secrets())
        if not settings.redis_tls and "reset by peer" in text:
            text += " (a TLS port? use rediss://)"
        raise InfraError(f"{where}: {text}", fatal="CERTIFICATE_VERIFY_FAILED" in text) from None
    except redis.ResponseError as exc:
        raise InfraError(f"{where}: {exc}", fatal=True) from None
    finally:
        client.close()


def wait_for_infra(
    settings: LoomSettings,
    *,
    sleep: Callable[[float], None] = time.sleep,
    checks: Sequence[Callable[[LoomSettings], None]] = (check_kafka, check_redis),
) -> None:
    """Until every check passes: back off (1 s doubling, capped at ``LOOM_RETRY_BACKOFF_MAX_S``)
    and log one line per attempt. A fatal :class:`InfraError` is raised at once."""
    backoff, attempt = Backoff(settings.retry_backoff_max_s, first_s=1.0), 1
    while True:
        problems = []
        for check in checks:
            try:
                check(settings)
            except InfraError as exc:
                if exc.fatal:
                    raise
                problems.append(str(exc))
        if not problems:
            if attempt > 1:
                log.info("Kafka and Redis answer after %d attempts", attempt)
            return
        delay = backoff.next()
        log.warning(
            "waiting for %s (attempt %d; next in %.0fs)", "; ".join(problems), attempt, delay
        )
        sleep(delay)
        attempt += 1


def refuse_unsafe_defaults(settings: LoomSettings) -> None:
    """A worker outside development mode must not run with the development salt: the
    suppression hashes of erased people would be computable by anyone with the source."""
    if settings.uses_dev_salt and not settings.development:
        raise ConfigError(
            "LOOM_SUPPRESSION_SALT is the public development default; set a secret salt "
            "(e.g. `openssl rand -hex 32`, or LOOM_SUPPRESSION_SALT_FILE), or set "
            "LOOM_DEVELOPMENT=true for a development setup"
        )
