"""The worker's wait for Kafka and Redis: backoff, one line per attempt, fatal errors at once;
and how librdkafka's errors become one line."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError

from streams import kafka_clients, startup
from streams.settings import LoomSettings
from streams.startup import InfraError, wait_for_infra


class Flaky:
    """A check that fails ``failures`` times with ``error``, then passes."""

    def __init__(self, failures: int, error: InfraError) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self, _settings: LoomSettings) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error


def test_waits_with_capped_backoff_and_one_line_per_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sleeps: list[float] = []
    kafka = Flaky(5, InfraError("Kafka k:1: Connection refused"))
    redis_check = Flaky(2, InfraError("Redis r:1: Connection refused"))
    with caplog.at_level(logging.INFO, logger="streams.startup"):
        wait_for_infra(
            LoomSettings(retry_backoff_max_s=4), sleep=sleeps.append, checks=(kafka, redis_check)
        )
    assert sleeps == [1, 2, 4, 4, 4]
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 5
    assert lines[0] == (
        "waiting for Kafka k:1: Connection refused; Redis r:1: Connection refused "
        "(attempt 1; next in 1s)"
    )
    assert lines[4] == "waiting for Kafka k:1: Connection refused (attempt 5; next in 4s)"
    assert all("\n" not in line for line in lines)


def test_a_fatal_error_ends_the_wait_at_once() -> None:
    sleeps: list[float] = []
    refused = Flaky(99, InfraError("Kafka k:1: authentication failed", fatal=True))
    with pytest.raises(InfraError, match="authentication failed"):
        wait_for_infra(LoomSettings(), sleep=sleeps.append, checks=(refused,))
    assert (refused.calls, sleeps) == (1, [])


def err(code: int, text: str) -> KafkaError:
    return KafkaError(code, text)


@pytest.mark.parametrize(
    ("errors", "failures", "reason", "fatal"),
    [
        (
            [
                err(
                    KafkaError._AUTHENTICATION,
                    "sasl_ssl://h:9/bootstrap: SASL authentication error: Authentication failed "
                    "due to invalid credentials with SASL mechanism SCRAM-SHA-512 "
                    "(after 307ms in state AUTH_REQ)",
                ),
                err(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"),
            ],
            [],
            "authentication failed: SASL authentication error: Authentication failed due to "
            "invalid credentials with SASL mechanism SCRAM-SHA-512",
            True,
        ),
        (
            [
                err(
                    KafkaError._SSL,
                    "ssl://h:9/bootstrap: SSL handshake failed: certificate verify failed",
                )
            ],
            [],
            "SSL handshake failed: certificate verify failed",
            True,
        ),
        (
            [err(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down")],
            [
                "ssl://h:9/bootstrap: Receive failed: ssl/tls alert bad certificate"
                " (after 0ms in state X)"
            ],
            "Receive failed: ssl/tls alert bad certificate",
            True,
        ),
        (
            [
                err(
                    KafkaError._TRANSPORT,
                    "h:9/bootstrap: Connect to ipv4#h:9 failed: Connection refused",
                )
            ],
            [],
            "Connect to ipv4#h:9 failed: Connection refused",
            False,
        ),
        ([], [], "no broker answered (is it running, and is the address right?)", False),
    ],
    ids=["credentials", "untrusted-broker", "client-certificate-required", "refused", "silence"],
)
def test_librdkafka_errors_become_one_reason(
    errors: list[KafkaError], failures: list[str], reason: str, fatal: bool
) -> None:
    assert startup._kafka_reason(errors, failures) == reason
    assert startup._kafka_fatal(errors, failures) is fatal


@pytest.mark.parametrize(
    "text",
    [
        "Connect to ipv4#h:9 failed: Connection refused (after 0ms in state CONNECT)",
        # librdkafka's log counts repeats inside the same parentheses once one was suppressed
        "Connect to ipv4#h:9 failed: Connection refused "
        "(after 1ms in state CONNECT, 1 identical error(s) suppressed)",
        "Connect to ipv4#h:9 failed: Connection refused (558 identical error(s) suppressed)",
    ],
    ids=["after", "after-and-suppressed", "suppressed"],
)
def test_error_text_drops_what_varies_between_repeats(text: str) -> None:
    assert kafka_clients.error_text(text) == "Connect to ipv4#h:9 failed: Connection refused"


def test_error_text_keeps_the_rest_of_the_text() -> None:
    assert kafka_clients.error_text("1/1 brokers are down") == "brokers are down"
    assert kafka_clients.error_text("SSL handshake failed (see the broker log)") == (
        "SSL handshake failed (see the broker log)"
    )


def test_the_error_report_logs_each_distinct_error_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    report = kafka_clients.ErrorReport(every_s=60, clock=lambda: now[0])
    auth = "sasl_ssl://h:9/bootstrap: SASL authentication error: invalid credentials"
    with caplog.at_level(logging.WARNING, logger="streams.kafka_clients"):
        for i in range(200):  # librdkafka repeats a refused login many times a second
            now[0] = i * 0.05
            report(err(KafkaError._AUTHENTICATION, f"{auth} (after {i}ms in state AUTH_REQ)"))
            report(err(KafkaError._ALL_BROKERS_DOWN, f"{i % 3 + 1}/3 brokers are down"))
        now[0] = 61.0
        report(err(KafkaError._AUTHENTICATION, f"{auth} (after 5ms in state AUTH_REQ)"))
    assert [r.getMessage() for r in caplog.records] == [
        f"kafka: {auth}",
        "kafka: brokers are down",
        f"kafka: {auth}",
    ]
    assert len(report.recent) == 10
