"""The worker's batch retry: infrastructure errors back off and retry; bad code does not."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from resolvers.pipeline import BatchResult
from resolvers.steps import RawRecord
from streams import worker
from streams.settings import LoomSettings


@dataclass
class FlakyRuntime:
    """Stands in for ``worker.Runtime``: ``process`` fails ``failures`` times, then succeeds."""

    failures: list[Exception]
    settings: LoomSettings = field(default_factory=lambda: LoomSettings(retry_backoff_max_s=0.05))
    calls: int = 0

    def process(self, records: Any) -> BatchResult:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return BatchResult(processed=len(records))


RECORDS = [RawRecord(value=b"{}", topic="t", partition=0, offset=7)]


def test_redis_and_kafka_outages_are_retried_until_the_batch_succeeds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sleeps: list[float] = []

    async def fake_sleep(delay: float) -> None:
        sleeps.append(delay)

    monkeypatch.setattr(worker.asyncio, "sleep", fake_sleep)
    rt = FlakyRuntime(
        [
            redis.ConnectionError("down"),
            redis.TimeoutError("slow"),
            worker.KafkaException("broker gone"),
            redis.ConnectionError("down"),
        ]
    )
    result = asyncio.run(worker.process_with_retry(rt, RECORDS))  # type: ignore[arg-type]
    assert result.processed == 1
    assert rt.calls == 5
    assert sleeps == [0.1, 0.05, 0.05, 0.05]  # exponential, capped by retry_backoff_max_s


def test_a_programming_error_is_not_retried() -> None:
    rt = FlakyRuntime([ZeroDivisionError("bug")])
    with pytest.raises(ZeroDivisionError):
        asyncio.run(worker.process_with_retry(rt, RECORDS))  # type: ignore[arg-type]
    assert rt.calls == 1
