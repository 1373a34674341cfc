"""A batch through a lane: infrastructure errors back off and retry; anything else stops the
lane without completing the batch; a stop request abandons a retrying batch."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import redis
from confluent_kafka import KafkaError, KafkaException

from resolvers.steps import RawRecord
from streams import batch_runner
from streams.batch_runner import BatchAbandoned, BatchRunner, LaneStopped
from streams.errors import StateLostError
from streams.lane_status import LaneState, LaneStatus, StopReason
from streams.settings import LoomSettings
from streams.testing import FakeProducer, FlakyStore, fake_runtime


def sale(n: int) -> RawRecord:
    event = {
        "event_id": f"e{n}",
        "type": "page_view",
        "channel": "web",
        "occurred_at": "2026-11-01T10:00:00+00:00",
        "identifiers": {"anonymous_id": f"dev-{n}"},
    }
    return RawRecord(value=orjson.dumps(event), topic="raw", partition=0, offset=n)


RECORDS = [sale(n) for n in range(3)]


def run(runner: BatchRunner, records: list[RawRecord] = RECORDS) -> Any:
    async def main() -> Any:
        return await runner.run(records)

    return asyncio.run(main())


def runner_on(store: FlakyStore, **kw: Any) -> tuple[BatchRunner, LaneStatus]:
    status = LaneStatus()
    status.running()
    rt = fake_runtime(store=store, **kw)
    return BatchRunner(rt, status, asyncio.Event()), status


def test_redis_and_kafka_outages_are_retried_until_the_batch_succeeds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []
    real_wait_for = asyncio.wait_for

    async def no_wait(aw: Any, timeout: float) -> Any:  # noqa: ASYNC109 - wait_for's signature
        waits.append(timeout)
        return await real_wait_for(aw, 0)

    monkeypatch.setattr(batch_runner.asyncio, "wait_for", no_wait)
    store = FlakyStore(
        [
            redis.ConnectionError("down"),
            redis.TimeoutError("slow"),
            KafkaException(KafkaError(KafkaError._TRANSPORT)),
            redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
        ]
    )
    runner, status = runner_on(store, settings=LoomSettings(retry_backoff_max_s=0.3))
    states: list[LaneState] = []
    status._on_change = lambda _old, new: states.append(new)
    result = run(runner)
    assert result.processed == 3
    assert store.loads == 5
    assert waits == pytest.approx([0.1, 0.2, 0.3, 0.3])  # doubling, capped by the setting
    assert states == [LaneState.RETRYING, LaneState.RUNNING]
    assert store.seen["profiles"] == {"e0", "e1", "e2"}


def test_a_fatal_error_stops_the_lane_without_applying_the_batch() -> None:
    store = FlakyStore([redis.exceptions.NoPermissionError("no permissions to run 'evalsha'")])
    runner, _ = runner_on(store)
    with pytest.raises(LaneStopped) as stopped:
        run(runner)
    assert stopped.value.reason is StopReason.FATAL
    assert store.loads == 1
    assert store.seen == {}


def test_lost_state_stops_the_lane_with_its_own_reason() -> None:
    store = FlakyStore([StateLostError("generation gone")])
    runner, _ = runner_on(store)
    with pytest.raises(LaneStopped) as stopped:
        run(runner)
    assert stopped.value.reason is StopReason.STATE_LOST


def test_a_stop_request_abandons_a_retrying_batch() -> None:
    async def main() -> None:
        store = FlakyStore([redis.ConnectionError("down")] * 1000)
        runner, status = runner_on(store, settings=LoomSettings(retry_backoff_max_s=30))
        retrying = asyncio.Event()
        status._on_change = lambda _old, new: retrying.set()
        task = asyncio.create_task(runner.run(RECORDS))
        await retrying.wait()
        runner.stopping.set()
        with pytest.raises(BatchAbandoned):
            await asyncio.wait_for(task, 5)  # not after 30 s of backoff
        assert store.seen == {}  # nothing applied: the batch will be redelivered

    asyncio.run(main())


def test_dead_letters_are_delivered_after_the_commit_and_only_the_undelivered_resent() -> None:
    producer = FakeProducer(fail_next=[KafkaError._MSG_TIMED_OUT])
    store = FlakyStore()
    runner, _ = runner_on(store, producer=producer)
    bad = RawRecord(value=b"{not json", topic="raw", partition=0, offset=9)
    bad2 = RawRecord(value=b"[]", topic="raw", partition=0, offset=10)
    result = run(runner, [*RECORDS, bad, bad2])
    assert len(result.dead_letters) == 2
    sent = [
        (dict(s.headers)["loom.source_offset"], dict(s.headers)["loom.reason"])
        for s in producer.sent
    ]
    # the first delivery of offset 9 timed out: re-sent alone, offset 10 once
    assert sorted(sent) == [(b"10", b"schema_violation"), (b"9", b"malformed_json")]
    assert store.seen["profiles"] == {"e0", "e1", "e2"}


def test_the_batch_context_reuses_its_constant_parts() -> None:
    times = iter([datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)])
    rt = fake_runtime(clock=lambda: next(times))
    a, b = rt.context(), rt.context()
    assert (a.now.day, b.now.day) == (1, 2)  # the clock, read per batch (and per attempt)
    assert a.topics is b.topics
    assert a.salt is b.salt
    assert a.cache is b.cache is rt.decode_cache
    assert a.topics.profile_changes == rt.settings.topics.profile_changes
    assert a.salt == rt.settings.suppression_salt.get_secret_value().encode()


def page_views(n: int) -> list[RawRecord]:
    return [sale(i) for i in range(n)]


def test_a_poison_record_is_found_by_bisecting_and_dead_lettered_and_the_rest_applied() -> None:
    store = FlakyStore()
    store.poison(["e5"], ValueError("jane@example.com is not a thing"))
    producer = FakeProducer()
    runner, status = runner_on(store, producer=producer)
    applied = run(runner, page_views(8))
    assert store.seen["profiles"] == {f"e{i}" for i in range(8)} - {"e5"}
    (letter,) = applied.dead_letters
    assert (letter.record.offset, letter.reason, letter.error_class) == (
        5,
        "processing_error",
        "ValueError",
    )
    assert "jane@example.com" not in letter.message  # where it was raised, not what it said
    assert letter.message.startswith("ValueError at streams/testing.py:")
    (sent,) = producer.sent
    assert dict(sent.headers)["loom.reason"] == b"processing_error"
    assert dict(sent.headers)["loom.lane"] == b"profiles"
    assert status.state is LaneState.RUNNING
    assert store.loads <= 2 * 3 + 2  # log2(8) levels, two halves each, not 8 single records
    poison = scrape_value(runner, "loom_poison_records_total")
    assert poison == {("profiles", "pipeline"): 1.0}


def test_a_batch_failing_once_is_bisected_and_applied_whole() -> None:
    store = FlakyStore([TypeError("a bug that does not come back")])
    runner, _ = runner_on(store)
    applied = run(runner, page_views(4))
    assert applied.dead_letters == []
    assert store.seen["profiles"] == {"e0", "e1", "e2", "e3"}


def test_too_many_poison_records_trip_the_breaker_and_dead_letter_nothing() -> None:
    store = FlakyStore()
    store.poison(["e1", "e3", "e5", "e7"], KeyError("x"))
    producer = FakeProducer()
    runner, _ = runner_on(store, producer=producer, settings=LoomSettings(poison_limit=2))
    with pytest.raises(LaneStopped) as stopped:
        run(runner, page_views(8))
    assert stopped.value.reason is StopReason.CIRCUIT_OPEN
    assert producer.sent == []  # the batch is not committed to Kafka: nothing dead-lettered


def test_a_dead_letter_kafka_refuses_for_good_stops_the_lane() -> None:
    producer = FakeProducer(fail_next=[KafkaError.MSG_SIZE_TOO_LARGE])
    runner, _ = runner_on(FlakyStore(), producer=producer)
    with pytest.raises(LaneStopped) as stopped:
        run(runner, [RawRecord(value=b"{", topic="raw", partition=0, offset=1)])
    assert stopped.value.reason is StopReason.FATAL


def test_a_dead_letter_write_failing_with_an_unknown_broker_error_is_retried() -> None:
    """``UNKNOWN_SERVER_ERROR`` says nothing about the record: it was read as a refusal for
    good, and the lane stopped (fatal) on a broker's passing fault; now it is retried."""
    producer = FakeProducer(fail_next=[KafkaError.UNKNOWN])
    runner, _ = runner_on(FlakyStore(), producer=producer)
    result = run(runner, [RawRecord(value=b"{", topic="raw", partition=0, offset=1)])
    assert len(result.dead_letters) == 1
    assert [dict(s.headers)["loom.source_offset"] for s in producer.sent] == [b"1"]


def scrape_value(runner: BatchRunner, name: str) -> dict[tuple[str, ...], float]:
    out = {}
    for family in runner.rt.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sample.labels.values())] = sample.value
    return out


def test_the_lanes_cpu_is_its_batch_threads_attempts_retries_included(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``loom_lane_cpu_seconds_total`` adds the CPU time of the thread each attempt ran on
    (``time.thread_time``), a failed attempt's too."""
    monkeypatch.setattr(batch_runner.asyncio, "wait_for", _no_wait)
    readings = iter(range(0, 1000, 3))  # each attempt reads twice: 3 s of CPU apart
    monkeypatch.setattr(batch_runner.time, "thread_time", lambda: next(readings))
    store = FlakyStore([redis.ConnectionError("down"), redis.TimeoutError("slow")])
    runner, _ = runner_on(store, settings=LoomSettings(retry_backoff_max_s=0.1))
    assert run(runner).processed == 3
    assert store.loads == 3
    cpu = runner.rt.metrics.registry.get_sample_value(
        "loom_lane_cpu_seconds_total", {"lane": "profiles"}
    )
    assert cpu == 3 * 3


def test_the_lanes_wait_for_a_cpu_is_its_batch_threads_run_queue_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``loom_lane_runnable_seconds_total`` adds how much longer the batch thread waited on a
    run queue across each attempt (``procinfo.thread_runnable_s``); where the kernel does not
    say, nothing is added."""
    readings = iter([1.0, 1.25, 7.0, 7.5])  # two batches: 0.25 s and 0.5 s queued
    monkeypatch.setattr(batch_runner, "thread_runnable_s", lambda: next(readings))
    runner, _ = runner_on(FlakyStore([]))
    run(runner)
    run(runner)
    labels = {"lane": "profiles"}
    runnable = runner.rt.metrics.registry.get_sample_value(
        "loom_lane_runnable_seconds_total", labels
    )
    assert runnable == pytest.approx(0.75)
    monkeypatch.setattr(batch_runner, "thread_runnable_s", lambda: None)
    run(runner)
    assert runner.rt.metrics.registry.get_sample_value(
        "loom_lane_runnable_seconds_total", labels
    ) == pytest.approx(0.75)


async def _no_wait(aw: Any, timeout: float) -> Any:  # noqa: ASYNC109 - wait_for's signature
    """``asyncio.wait_for`` without its backoff wait (the stop event never fires)."""
    return await _WAIT_FOR(aw, 0)


_WAIT_FOR = asyncio.wait_for
