"""The worker's batch retry: infrastructure errors back off and retry; bad code does not."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from confluent_kafka import KafkaError, KafkaException

from resolvers.consent import ConsentPolicy
from resolvers.identity_rules import IdentityRules
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
    succeeded: int = 0

    def process(self, records: Any) -> BatchResult:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        self.succeeded += 1
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
            KafkaException(KafkaError(KafkaError._TRANSPORT)),
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


def test_cancelling_during_the_backoff_still_lets_the_batch_finish_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """faust acks a batch's events when the agent is cancelled: the batch must be in Redis by
    then, also when the cancellation lands between two attempts."""
    real_sleep = asyncio.sleep

    async def main() -> None:
        in_backoff = asyncio.Event()

        async def backoff(delay: float) -> None:
            in_backoff.set()
            await real_sleep(0.05)

        monkeypatch.setattr(asyncio, "sleep", backoff)  # what worker calls
        rt = FlakyRuntime([redis.ConnectionError("down"), redis.ConnectionError("down")])
        agent = asyncio.create_task(worker.process_with_retry(rt, RECORDS))  # type: ignore[arg-type]
        await in_backoff.wait()  # the first attempt failed; the retry loop is sleeping
        assert (rt.calls, rt.succeeded) == (1, 0)
        agent.cancel()
        await real_sleep(0.01)
        agent.cancel()  # a second cancellation does not cut the wait short either
        with pytest.raises(asyncio.CancelledError):
            await agent
        assert (rt.calls, rt.succeeded) == (3, 1)  # retried to success before propagating

    asyncio.run(main())


def test_cancelling_during_an_attempt_waits_for_the_retries_too() -> None:
    async def main() -> None:
        started = threading.Event()
        release = threading.Event()

        class Blocking(FlakyRuntime):
            def process(self, records: Any) -> BatchResult:
                started.set()
                release.wait(5)
                return super().process(records)

        rt = Blocking([redis.TimeoutError("slow")])
        agent = asyncio.create_task(worker.process_with_retry(rt, RECORDS))  # type: ignore[arg-type]
        await asyncio.to_thread(started.wait, 5)
        agent.cancel()  # while the first attempt runs (and then fails)
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await agent
        assert (rt.calls, rt.succeeded) == (2, 1)

    asyncio.run(main())


def test_a_programming_error_after_a_cancellation_is_raised_not_hidden() -> None:
    async def main() -> None:
        release = threading.Event()

        class Failing(FlakyRuntime):
            def process(self, records: Any) -> BatchResult:
                release.wait(5)
                return super().process(records)

        rt = Failing([ZeroDivisionError("bug")])
        agent = asyncio.create_task(worker.process_with_retry(rt, RECORDS))  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
        agent.cancel()
        release.set()
        with pytest.raises(ZeroDivisionError):
            await agent
        assert (rt.calls, rt.succeeded) == (1, 0)

    asyncio.run(main())


def test_the_batch_context_reuses_its_constant_parts() -> None:
    times = iter([datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)])
    rt = worker.Runtime(
        settings=LoomSettings(),
        store=None,  # type: ignore[arg-type]
        redis=None,  # type: ignore[arg-type]
        producer=None,  # type: ignore[arg-type]
        relay=None,  # type: ignore[arg-type]
        metrics=None,  # type: ignore[arg-type]
        rules=IdentityRules(),
        policy=ConsentPolicy(),
        clock=lambda: next(times),
    )
    a, b = rt.context(), rt.context()
    assert (a.now.day, b.now.day) == (1, 2)  # the clock, read per batch (and per attempt)
    assert a.topics is b.topics
    assert a.salt is b.salt
    assert a.cache is b.cache is rt.decode_cache
    assert a.topics.profile_changes == rt.settings.topics.profile_changes
    assert a.salt == rt.settings.suppression_salt.get_secret_value().encode()
