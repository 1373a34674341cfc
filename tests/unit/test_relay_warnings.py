"""The relay supervisor's warnings while passes fail: one when they start failing, then at
most one a minute however fast the passes go (a record parked for hours fails a pass every
``LOOM_RELAY_INTERVAL_S``: thousands of passes an hour), and one when they recover."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from streams.errors import RecordRefusedError
from streams.metrics import RelayMetrics
from streams.relay import RelaySupervisor


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def supervisor(clock: Clock) -> RelaySupervisor:
    relay: Any = object()  # the warnings never touch the relay
    return RelaySupervisor(
        lambda: relay,
        RelayMetrics.create(CollectorRegistry()),
        backoff_max_s=1.0,
        failing_after_s=60.0,
        clock=clock,
    )


def warnings(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


@pytest.mark.parametrize("pass_s", [0.05, 0.5, 7.0])
def test_still_failing_is_said_at_most_once_a_minute_and_at_least_every_few(
    caplog: pytest.LogCaptureFixture, pass_s: float
) -> None:
    clock = Clock()
    sup = supervisor(clock)
    error = RecordRefusedError("MSG_SIZE_TOO_LARGE")
    minutes = 10
    with caplog.at_level(logging.WARNING, logger="streams.relay"):
        for _ in range(round(minutes * 60 / pass_s)):
            sup._failed(error)
            clock.now += pass_s
        sup._recovered()
    assert warnings(caplog, "outbox relay failing") == 1
    still = warnings(caplog, "still failing")
    # at most one a minute (the clock moved `minutes` minutes), and not silent for long:
    # one at least every 20 passes' or a minute's time, whichever is longer
    assert still <= minutes
    assert still >= minutes * 60 // max(60.0, 20 * pass_s) - 1
    assert warnings(caplog, "recovered after") == 1
    assert sup.failures == 0
    assert sup.failing_since is None
