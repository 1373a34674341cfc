"""The lane's commit bookkeeping: which offsets it commits after a batch (at most every
``LOOM_COMMIT_INTERVAL_S``), on a rebalance and on close, each with the Redis generation as
metadata; its consumer's fetch settings."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from resolvers.pipeline import INVENTORY, Prepared
from resolvers.steps import RawRecord
from streams import kafka_clients, lane_runner
from streams.batch_runner import LaneStopped
from streams.errors import StateLostError
from streams.generation import rebuild_running
from streams.lane_runner import raw_records
from streams.lane_status import LaneState, StopReason
from streams.offsets import ProcessedOffsets, next_offsets
from streams.redis_store import RedisStore
from streams.settings import LoomSettings
from streams.testing import FakeConsumer, fake_runtime


def rec(partition: int, offset: int, topic: str = "raw") -> RawRecord:
    return RawRecord(value=b"{}", topic=topic, partition=partition, offset=offset)


def test_next_offsets_are_one_past_the_last_record_of_each_partition() -> None:
    batch = [rec(1, 7), rec(0, 41), rec(1, 8), rec(0, 42), rec(3, 0)]
    got = [(tp.topic, tp.partition, tp.offset, tp.metadata) for tp in next_offsets(batch, "g1")]
    assert got == [("raw", 0, 43, "g1"), ("raw", 1, 9, "g1"), ("raw", 3, 1, "g1")]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (None, {}),
        ([], {}),
        ([("a", b"1"), ("b", None), ("c", "x")], {"a": b"1", "b": b"", "c": b"x"}),
        ({"a": b"1", "b": None}, {"a": b"1", "b": b""}),
    ],
)
def test_a_consumed_record_becomes_a_raw_record_with_its_headers_as_bytes(
    headers: Any, expected: dict[str, bytes]
) -> None:
    msg = Message(
        topic="raw",
        partition=4,
        offset=17,
        key=b"k",
        value=b"{}",
        timestamp=(1, 1_700_000_000_123),
        headers=headers,
    )
    got = lane_runner.raw_record(msg)
    assert got == RawRecord(b"{}", b"k", "raw", 4, 17, 1_700_000_000_123, expected)
    assert isinstance(got.headers, dict)


def test_a_batch_of_records_with_the_same_headers_each_get_a_dict_of_their_own() -> None:
    """``raw_records`` remembers a header list's conversion (bounded): each record still gets
    its own dict, equal to what ``raw_record`` gives, past the memo's bound too."""
    schema = ("loom-schema", b"touchpoint-v1")
    messages = [
        Message(
            topic="raw",
            partition=i % 3,
            offset=i,
            value=b"{}",
            timestamp=(1, 1_700_000_000_000 + i),
            headers=[schema] if i % 2 else [schema, ("n", str(i))],
        )
        for i in range(2 * lane_runner._HEADERS_MAX + 10)
    ]
    records = lane_runner.raw_records(messages)
    assert records == [lane_runner.raw_record(m) for m in messages]
    assert all(type(r) is RawRecord for r in records)  # built in C: the class, not a tuple
    assert records[1].headers == {"loom-schema": b"touchpoint-v1"}
    assert records[4].headers == {"loom-schema": b"touchpoint-v1", "n": b"4"}
    assert len({id(r.headers) for r in records}) == len(records)
    assert lane_runner._known_headers.cache_info().currsize <= lane_runner._HEADERS_MAX


def test_a_record_without_a_timestamp_has_none() -> None:
    msg = Message(topic="raw", partition=0, offset=0, value=b"{}", timestamp=(0, -1))
    assert lane_runner.raw_record(msg).timestamp_ms is None


def test_nothing_processed_commits_nothing() -> None:
    assert next_offsets([]) == []


def offsets(tps: list[TopicPartition]) -> list[tuple[str, int, int]]:
    return [(tp.topic, tp.partition, tp.offset) for tp in tps]


def test_processed_offsets_keep_the_latest_per_partition_until_taken() -> None:
    book = ProcessedOffsets()
    book.add(next_offsets([rec(0, 41), rec(1, 7)]))
    book.add(next_offsets([rec(0, 42), rec(2, 3)]))
    assert len(book) == 3
    # revoked partitions only, then forgotten (another member owns them now)
    assert offsets(book.take({("raw", 1), ("raw", 5)})) == [("raw", 1, 8)]
    assert offsets(book.take({("raw", 1)})) == []
    assert offsets(book.take()) == [("raw", 0, 43), ("raw", 2, 4)]  # all, on close
    assert len(book) == 0
    assert book.take() == []


def make_runner(
    monkeypatch: pytest.MonkeyPatch, **settings: Any
) -> tuple[lane_runner.LaneRunner, FakeConsumer]:
    monkeypatch.setattr(kafka_clients, "Consumer", FakeConsumer)
    rt = fake_runtime(lane=INVENTORY, settings=LoomSettings(**settings))
    runner = lane_runner.LaneRunner(rt)
    fake: FakeConsumer = runner.consumer  # type: ignore[assignment]
    return runner, fake


def test_a_worker_shares_its_lane_while_it_holds_fewer_partitions_than_the_topic_has(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``LOOM_COMMIT_CLAIMS=auto`` (ADR 0040) claims only while the lane is shared; the
    partition count is read again after each assignment (a grown topic rebalances its groups),
    once the ``consume`` that served it returned (never inside the callback: FakeConsumer)."""
    runner, fake = make_runner(monkeypatch)
    topic = runner.topic
    fake.subscribe([topic], on_assign=runner._on_assign)

    def assigned(*partitions: int) -> None:
        fake.pending.append([TopicPartition(topic, p) for p in partitions])
        assert runner._consume_messages(500, 0) == []

    assert not runner.batches.shared()  # nothing assigned yet
    assigned(0, 1, 2)
    assert runner.batches.shared()
    assigned(3, 4, 5)
    assert not runner.batches.shared()  # all 6: alone
    fake.partitions = 12  # the topic grew; the rebalance gives this worker 3 more
    assigned(6, 7, 8)
    assert runner.partitions == 12
    assert runner.batches.shared()
    fake.partitions = None  # the broker does not answer: at least one past the highest held
    assigned(13)
    assert runner.partitions == 14
    assert runner.batches.shared()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_offsets_are_committed_async_at_most_every_interval_and_sync_on_revoke_and_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    monkeypatch.setattr("streams.offsets.time.monotonic", clock)
    runner, fake = make_runner(monkeypatch, commit_interval_s=0.5)
    assert fake.config["on_commit"] == runner._on_commit  # async failures are reported there
    assert fake.config["group.id"] == "loom-inventory"
    assert fake.config["enable.auto.commit"] is False
    runner.generation = "gen-1"

    runner._batch_done([rec(0, 10), rec(1, 20)])  # the first commit goes at once
    runner._batch_done([rec(0, 11)])  # within the interval: waits
    runner._batch_done([rec(0, 12), rec(2, 5)])
    assert fake.commits == [(True, [("raw", 0, 11, "gen-1"), ("raw", 1, 21, "gen-1")])]
    clock.now += 0.4
    runner._commit_due()  # an idle turn of the loop, still within the interval
    assert len(fake.commits) == 1
    clock.now += 0.1
    runner._commit_due()  # the latest offset of each partition, once
    assert fake.commits[-1] == (True, [("raw", 0, 13, "gen-1"), ("raw", 2, 6, "gen-1")])
    runner._commit_due()
    assert len(fake.commits) == 2  # nothing due
    # a rebalance revokes partition 1: its offset is committed synchronously, even though
    # the asynchronous commit after the batch already sent it (it may have failed)
    runner._on_revoke(fake, [TopicPartition("raw", 1)])  # type: ignore[arg-type]
    assert fake.commits[-1] == (False, [("raw", 1, 21, "gen-1")])
    fake.subscribe(["raw"], on_assign=runner._on_assign)
    fake.pending.append([TopicPartition("raw", 3)])  # a join that completed meanwhile
    runner._close()  # everything still owned, synchronously
    assert fake.commits[-1] == (False, [("raw", 0, 13, "gen-1"), ("raw", 2, 6, "gen-1")])
    assert fake.closed
    assert len(runner.processed) == 0
    assert not runner.assigned  # a closed consumer holds nothing (readiness says so)


def test_a_revoked_partition_is_no_longer_due(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr("streams.offsets.time.monotonic", clock)
    runner, fake = make_runner(monkeypatch)
    runner._batch_done([rec(0, 10)])
    runner._batch_done([rec(0, 11), rec(1, 20)])  # waits for the interval
    runner._on_revoke(fake, [TopicPartition("raw", 1)])  # type: ignore[arg-type]
    clock.now += 10
    runner._commit_due()
    assert fake.commits[-1] == (True, [("raw", 0, 12, "")])  # not partition 1 again


def test_interval_zero_commits_after_every_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    runner, fake = make_runner(monkeypatch, commit_interval_s=0)
    runner._batch_done([rec(0, 10)])
    runner._batch_done([rec(0, 11)])
    assert fake.commits == [(True, [("raw", 0, 11, "")]), (True, [("raw", 0, 12, "")])]


def test_the_broker_holds_fetches_for_the_lanes_batch_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, fake = make_runner(monkeypatch, inventory_batch_timeout_s=0.02, fetch_min_bytes=4096)
    assert fake.config["fetch.wait.max.ms"] == 20
    assert fake.config["fetch.min.bytes"] == 4096


def test_by_default_a_fetch_is_answered_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    _, fake = make_runner(monkeypatch, inventory_batch_timeout_s=0.02)
    assert fake.config["fetch.min.bytes"] == 1
    assert "fetch.wait.max.ms" not in fake.config  # librdkafka's: an idle fetch waits 500 ms


def test_lost_partitions_are_not_committed(monkeypatch: pytest.MonkeyPatch) -> None:
    runner, fake = make_runner(monkeypatch)
    runner._batch_done([rec(0, 10), rec(1, 20)])
    runner._on_lost(fake, [TopicPartition("raw", 0)])  # type: ignore[arg-type]
    runner._close()
    assert fake.commits[-1] == (False, [("raw", 1, 21, "")])


def test_a_failed_commit_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    runner, _ = make_runner(monkeypatch)
    on_commit = runner._on_commit
    # librdkafka reports per-partition errors on TopicPartition.error (not settable in Python)
    failed: Any = SimpleNamespace(partition=3, error=KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
    with caplog.at_level(logging.WARNING):
        on_commit(None, [TopicPartition("raw", 4, 1)])  # success: nothing to say
        assert caplog.text == ""
        on_commit(None, [failed, TopicPartition("raw", 4, 1)])  # one partition failed
        assert "offset commit failed" in caplog.text
        assert "[3]" in caplog.text
        caplog.clear()
        on_commit(KafkaError(KafkaError._NO_OFFSET), [])  # the whole commit failed
        assert "offset commit failed" in caplog.text


def test_a_worker_collects_cycles_less_often_and_leaves_start_up_objects_alone() -> None:
    import gc

    from streams.lane_runner import GC_THRESHOLDS, tune_gc

    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0  # start-up's objects are not walked again
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_a_batch_waits_to_fill_unless_the_last_took_the_batch_timeout_to_apply() -> None:
    assert lane_runner.fill_wait(0.05, 0.0) == 0.05  # just returned: the whole timeout
    assert lane_runner.fill_wait(0.05, 0.02) == 0.05  # kept up: as many batches as ever
    assert lane_runner.fill_wait(0.05, 0.05) == 0.0  # behind: what is there, at once
    assert lane_runner.fill_wait(0.05, 0.3) == 0.0


@dataclass
class ScriptedConsumer(FakeConsumer):
    """Returns ``batches`` in turn (then stops the runner) and notes each ``consume``'s
    timeout."""

    batches: list[list[Message]] = field(default_factory=list)
    timeouts: list[float] = field(default_factory=list)
    runner: Any = None

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        self.timeouts.append(timeout)
        if not self.batches:
            self.runner.stop()
            return []
        return self.batches.pop(0)


def test_records_that_waited_while_a_batch_was_applied_are_consumed_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lane loop's ``consume`` calls: after a batch applied for longer than the batch
    timeout the next waits for nothing (its records waited during the batch); after a turn
    that found nothing, a whole timeout."""
    monkeypatch.setattr(kafka_clients, "Consumer", ScriptedConsumer)
    rt = fake_runtime(lane=INVENTORY, settings=LoomSettings(inventory_batch_timeout_s=0.05))
    runner = lane_runner.LaneRunner(rt)
    fake: ScriptedConsumer = runner.consumer  # type: ignore[assignment]
    msg = Message(topic="raw", partition=0, offset=0, value=b"{}", timestamp=(1, 1))
    fake.runner, fake.batches = runner, [[msg], [msg], [], [msg]]
    applied: list[int] = []
    now = [0.0]  # the loop's clock: only an apply moves it, so no real time is waited on
    monkeypatch.setattr(lane_runner, "time", SimpleNamespace(monotonic=lambda: now[0]))

    async def slow_apply(records: list[RawRecord], prepared: Prepared | None = None) -> None:
        applied.append(len(records))
        now[0] += 0.06  # an apply that takes longer than the batch timeout

    monkeypatch.setattr(runner.batches, "run", slow_apply)
    asyncio.run(runner._loop())
    first, after_batch, after_second, after_idle, after_last = fake.timeouts
    assert first == 0.05
    assert after_batch == after_second == 0.0  # the records arrived during the last batch
    assert after_idle == 0.05  # nothing was there: wait to fill
    assert after_last == 0.0
    assert applied == [1, 1, 1]


def test_what_survives_each_applied_batch_is_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lane loop hands every applied batch (not an empty turn) to its GC policy
    (streams.gc_policy), between batches."""
    monkeypatch.setattr(kafka_clients, "Consumer", ScriptedConsumer)
    rt = fake_runtime(lane=INVENTORY, settings=LoomSettings(inventory_batch_timeout_s=0.05))
    runner = lane_runner.LaneRunner(rt)
    fake: ScriptedConsumer = runner.consumer  # type: ignore[assignment]
    msg = Message(topic="raw", partition=0, offset=0, value=b"{}", timestamp=(1, 1))
    fake.runner, fake.batches = runner, [[msg], [], [msg]]
    events: list[str] = []

    async def apply(records: list[RawRecord], prepared: Prepared | None = None) -> None:
        events.append("apply")

    monkeypatch.setattr(runner.batches, "run", apply)
    monkeypatch.setattr(runner.gc, "after_batch", lambda: events.append("gc"))
    asyncio.run(runner._loop())
    assert events == ["apply", "gc", "apply", "gc"]
    assert runner.gc.full_interval_s == LoomSettings().gc_full_interval_s == 600


def test_the_lanes_busy_time_is_its_batches_not_its_waits_for_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``loom_lane_busy_seconds_total`` grows by each batch's time, an abandoned one's too,
    and not by the time ``consume`` waited (its rate is the lane's saturation)."""
    monkeypatch.setattr(kafka_clients, "Consumer", ScriptedConsumer)
    rt = fake_runtime(lane=INVENTORY, settings=LoomSettings(inventory_batch_timeout_s=0.05))
    runner = lane_runner.LaneRunner(rt)
    fake: ScriptedConsumer = runner.consumer  # type: ignore[assignment]
    msg = Message(topic="raw", partition=0, offset=0, value=b"{}", timestamp=(1, 1))
    fake.runner, fake.batches = runner, [[msg], [], [msg], [msg]]
    now = [0.0]
    monkeypatch.setattr(lane_runner, "time", SimpleNamespace(monotonic=lambda: now[0]))
    consume = fake.consume

    def slow_consume(num_messages: int, timeout: float) -> list[Message]:
        now[0] += 10.0  # waiting for records: never busy
        return consume(num_messages, timeout)

    monkeypatch.setattr(fake, "consume", slow_consume)
    took = iter([0.25, 0.5, 2.0])

    async def apply(records: list[RawRecord], prepared: Prepared | None = None) -> None:
        seconds = next(took)
        now[0] += seconds
        if seconds == 2.0:  # the third batch: abandoned (a stop during its retries)
            raise lane_runner.BatchAbandoned("stopping")

    monkeypatch.setattr(runner.batches, "run", apply)
    asyncio.run(runner._loop())
    busy = rt.metrics.registry.get_sample_value(
        "loom_lane_busy_seconds_total", {"lane": "inventory"}
    )
    assert busy == 0.25 + 0.5 + 2.0


def test_the_decode_caches_hits_and_misses_are_counted_after_each_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``loom_decode_cache_lookups_total{result}`` counts what the batches found in the cache
    and what they decoded, from the cache's own counts; ``loom_decode_cache_bytes`` is its
    charge. Lookups made before the runner started (another lane's) are not counted."""
    monkeypatch.setattr(kafka_clients, "Consumer", ScriptedConsumer)
    rt = fake_runtime(lane=INVENTORY, settings=LoomSettings(inventory_batch_timeout_s=0.05))
    cache = rt.decode_cache
    cache.get("earlier", b"0", bytes)  # before the runner: a miss it must not count
    runner = lane_runner.LaneRunner(rt)
    fake: ScriptedConsumer = runner.consumer  # type: ignore[assignment]
    msg = Message(topic="raw", partition=0, offset=0, value=b"{}", timestamp=(1, 1))
    fake.runner, fake.batches = runner, [[msg], [msg]]
    lookups = iter([[("a", b"1"), ("b", b"2")], [("a", b"1"), ("b", b"3"), ("a", b"1")]])

    async def apply(records: list[RawRecord], prepared: Prepared | None = None) -> None:
        for key, raw in next(lookups):
            cache.get(key, raw, bytes)

    monkeypatch.setattr(runner.batches, "run", apply)
    asyncio.run(runner._loop())
    sample = rt.metrics.registry.get_sample_value
    assert sample("loom_decode_cache_lookups_total", {"result": "hit"}) == 2
    assert sample("loom_decode_cache_lookups_total", {"result": "miss"}) == 3
    assert sample("loom_decode_cache_bytes", {}) == cache.bytes > 0


# --- the work ahead (streams.ahead, ADR 0038) -------------------------------------------------


def msgs(partition: int, offsets: range) -> list[Message]:
    return [
        Message(topic="raw", partition=partition, offset=o, value=b"{}", timestamp=(1, 1))
        for o in offsets
    ]


def where(records: list[RawRecord]) -> list[tuple[int, int]]:
    return [(r.partition, r.offset) for r in records]


def ahead_runner(
    monkeypatch: pytest.MonkeyPatch, batches: list[list[Message]], **settings: Any
) -> tuple[lane_runner.LaneRunner, ScriptedConsumer]:
    """A runner whose consumer returns ``batches`` in turn; the test's ``apply`` plays the
    store, calling ``runner.ahead`` as a round trip would."""
    monkeypatch.setattr(kafka_clients, "Consumer", ScriptedConsumer)
    rt = fake_runtime(settings=LoomSettings(batch_size=4, commit_interval_s=0, **settings))
    runner = lane_runner.LaneRunner(rt)
    fake: ScriptedConsumer = runner.consumer  # type: ignore[assignment]
    fake.runner, fake.batches = runner, batches
    assert runner.ahead is not None
    runner.ahead.thread = threading.get_ident()  # the test's apply runs in this thread
    return runner, fake


def test_records_consumed_ahead_run_next_in_order_with_what_was_prepared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each batch's round trip consumes and prepares the next: every record runs once, in the
    consumer's order, each batch with the PREPARE of its records done ahead; every batch's
    offsets are committed."""
    runner, fake = ahead_runner(
        monkeypatch, [msgs(0, range(0, 4)), msgs(0, range(4, 8)), msgs(0, range(8, 12))]
    )
    ran: list[tuple[list[tuple[int, int]], int | None]] = []

    async def apply(records: list[RawRecord], prepared: Prepared | None = None) -> None:
        ran.append((where(records), None if prepared is None else prepared.count))
        if prepared is not None:
            assert prepared.records is records
            # ``{}`` is no touchpoint: each prepared record is a dead letter of the profiles lane
            assert [d.record for d in prepared.dead] == records[: prepared.count]
        assert runner.ahead is not None
        runner.ahead(lambda: False)  # a long wait for Redis: the whole next batch

    monkeypatch.setattr(runner.batches, "run", apply)
    asyncio.run(runner._loop())
    assert ran == [
        ([(0, o) for o in range(0, 4)], None),
        ([(0, o) for o in range(4, 8)], 4),
        ([(0, o) for o in range(8, 12)], 4),
    ]
    assert [c[1] for c in fake.commits] == [
        [("raw", 0, 4, "")],
        [("raw", 0, 8, "")],
        [("raw", 0, 12, "")],
    ]
    assert fake.timeouts[1:3] == [0, 0]  # the consumes ahead: what is queued, no wait
    consumed, prepared = (
        runner.rt.metrics.registry.get_sample_value(
            "loom_lane_ahead_records_total", {"lane": "profiles", "step": step}
        )
        for step in ("consumed", "prepared")
    )
    assert (consumed, prepared) == (8, 8)


def test_fewer_records_ahead_than_a_batch_are_topped_up_as_the_loop_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner, fake = ahead_runner(
        monkeypatch,
        [msgs(0, range(0, 4)), msgs(0, range(4, 5)), msgs(0, range(5, 8))],
        inventory_batch_timeout_s=0.05,
    )
    ran: list[tuple[list[tuple[int, int]], int | None]] = []

    async def apply(records: list[RawRecord], prepared: Prepared | None = None) -> None:
        ran.append((where(records), None if prepared is None else prepared.count))
        if len(ran) == 1:
            assert runner.ahead is not None
            runner.ahead(lambda: False)  # one record was queued

    monkeypatch.setattr(runner.batches, "run", apply)
    asyncio.run(runner._loop())
    # the one record ahead, prepared, then three more: one batch
    assert ran[:2] == [([(0, o) for o in range(0, 4)], None), ([(0, o) for o in range(4, 8)], 1)]
    _first, ahead, top_up = fake.timeouts[:3]
    assert ahead == 0
    assert top_up == 0.05  # the first batch took no time: the loop waits to fill, as ever


def test_a_partition_taken_away_during_a_batch_commits_none_of_its_offsets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rebalance inside the consume ahead revokes partition 1 (its callback runs before
    the consume returns, which returns partition 0's next records only): the batch in flight
    commits only partition 0's offsets; its records of partition 1 are read again from the
    committed offset, by whoever owns it now."""
    first = [*msgs(0, range(0, 2)), *msgs(1, range(0, 2))]
    runner, fake = ahead_runner(monkeypatch, [first, msgs(0, range(2, 6))])
    ran: list[list[tuple[int, int]]] = []
    consume = fake.consume

    def consume_with_rebalance(num_messages: int, timeout: float) -> list[Message]:
        if len(ran) == 1 and timeout == 0:  # the consume ahead, during the first batch
            runner._on_revoke(fake, [TopicPartition("raw", 1)])  # type: ignore[arg-type]
        return consume(num_messages, timeout)

    monkeypatch.setattr(fake, "consume", consume_with_rebalance)

    async def apply(records: list[RawRecord], prepared: Prepared | None = None) -> None:
        ran.append(where(records))
        assert runner.ahead is not None
        runner.ahead(lambda: False)

    monkeypatch.setattr(runner.batches, "run", apply)
    asyncio.run(runner._loop())
    assert ran[:2] == [where(raw_records(first)), [(0, o) for o in range(2, 6)]]
    assert [c[1] for c in fake.commits if c[0]][:2] == [
        [("raw", 0, 2, "")],  # the first batch: partition 1 was taken away meanwhile
        [("raw", 0, 6, "")],
    ]


def test_records_ahead_of_a_partition_taken_away_before_they_run_are_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fewer records ahead than a batch: the loop tops them up, and a rebalance in that
    consume revokes partition 1. Its records ahead are not run (they are read again from
    the committed offset); partition 0's run, in order, before the new ones."""
    ahead = [*msgs(0, range(2, 3)), *msgs(1, range(0, 2))]
    runner, fake = ahead_runner(monkeypatch, [msgs(0, range(0, 2)), ahead, msgs(0, range(3, 6))])
    ran: list[tuple[list[tuple[int, int]], int | None]] = []
    consume = fake.consume

    def consume_with_rebalance(num_messages: int, timeout: float) -> list[Message]:
        if len(ran) == 1 and timeout != 0:  # the top-up, between the batches
            runner._on_revoke(fake, [TopicPartition("raw", 1)])  # type: ignore[arg-type]
        return consume(num_messages, timeout)

    monkeypatch.setattr(fake, "consume", consume_with_rebalance)

    async def apply(records: list[RawRecord], prepared: Prepared | None = None) -> None:
        ran.append((where(records), None if prepared is None else prepared.count))
        if len(ran) == 1:
            assert runner.ahead is not None
            runner.ahead(lambda: False)

    monkeypatch.setattr(runner.batches, "run", apply)
    asyncio.run(runner._loop())
    assert ran[1] == ([(0, o) for o in range(2, 6)], None)  # prepared again, in run_batch
    assert [c[1] for c in fake.commits if c[0]][:2] == [[("raw", 0, 2, "")], [("raw", 0, 6, "")]]


def test_records_ahead_of_a_stop_are_neither_run_nor_committed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner, fake = ahead_runner(monkeypatch, [msgs(0, range(0, 4)), msgs(0, range(4, 8))])
    ran: list[list[tuple[int, int]]] = []

    async def apply(records: list[RawRecord], prepared: Prepared | None = None) -> None:
        ran.append(where(records))
        assert runner.ahead is not None
        runner.ahead(lambda: False)
        runner.stop()  # SIGTERM while the batch is in flight

    monkeypatch.setattr(runner.batches, "run", apply)
    asyncio.run(runner._loop())
    assert ran == [[(0, o) for o in range(0, 4)]]
    assert [c[1] for c in fake.commits] == [[("raw", 0, 4, "")]]


def test_a_consume_error_ahead_stops_the_loop_after_the_batch_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner, fake = ahead_runner(monkeypatch, [msgs(0, range(0, 4))])
    consume = fake.consume

    def failing(num_messages: int, timeout: float) -> list[Message]:
        if timeout == 0:  # the consume ahead
            raise KafkaException(KafkaError(KafkaError._FATAL, "fenced", fatal=True))
        return consume(num_messages, timeout)

    monkeypatch.setattr(fake, "consume", failing)
    ran: list[list[tuple[int, int]]] = []

    async def apply(records: list[RawRecord], prepared: Prepared | None = None) -> None:
        ran.append(where(records))
        assert runner.ahead is not None
        runner.ahead(lambda: False)  # the round trip is not at fault: it completes

    monkeypatch.setattr(runner.batches, "run", apply)
    with pytest.raises(KafkaException, match="fenced"):
        asyncio.run(runner._loop())
    assert ran == [[(0, o) for o in range(0, 4)]]
    assert [c[1] for c in fake.commits] == [[("raw", 0, 4, "")]]  # the batch's, then raised


def test_nothing_is_consumed_ahead_between_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Between batches the loop consumes itself: a round trip of the lane's thread then (a
    store call outside a batch) must not take records ahead of the loop's own consume."""
    runner, fake = ahead_runner(monkeypatch, [msgs(0, range(0, 4)), msgs(0, range(4, 8))])
    consume = fake.consume
    ahead_calls: list[float] = []

    def consume_after_a_round_trip(num_messages: int, timeout: float) -> list[Message]:
        if timeout != 0:
            assert runner.ahead is not None
            runner.ahead(lambda: False)
        else:
            ahead_calls.append(timeout)
        return consume(num_messages, timeout)

    monkeypatch.setattr(fake, "consume", consume_after_a_round_trip)
    ran: list[list[tuple[int, int]]] = []

    async def apply(records: list[RawRecord], prepared: Prepared | None = None) -> None:
        ran.append(where(records))

    monkeypatch.setattr(runner.batches, "run", apply)

    async def main() -> None:  # as the worker runs it: the lane's blocking calls in one thread
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=1))
        assert runner.ahead is not None
        runner.ahead.thread = await asyncio.to_thread(threading.get_ident)
        await runner._loop()

    asyncio.run(main())
    assert ahead_calls == []
    assert ran == [[(0, o) for o in range(0, 4)], [(0, o) for o in range(4, 8)]]


def test_a_lane_on_redis_works_ahead_in_its_stores_waits_unless_told_not_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker's store (``RedisStore``: no connection is made here) runs the lane's work
    ahead in its load waves and commit round trips; ``LOOM_WORK_AHEAD=false`` runs none."""
    monkeypatch.setattr(kafka_clients, "Consumer", FakeConsumer)
    for ahead in (True, False):
        store = RedisStore(redis.Redis(), commit="watch", load="waves")
        rt = replace(fake_runtime(settings=LoomSettings(work_ahead=ahead)), store=store)
        runner = lane_runner.LaneRunner(rt)
        assert store.waves is not None
        assert store.watch is not None
        expected = runner.ahead if ahead else None
        assert (runner.ahead is not None) is ahead
        assert store.waves.meanwhile is expected
        assert store.watch.meanwhile is expected


@pytest.mark.parametrize("reason", [StopReason.STATE_LOST, StopReason.FATAL])
def test_the_relay_starts_only_once_redis_holds_the_lanes_state(
    monkeypatch: pytest.MonkeyPatch, reason: StopReason
) -> None:
    """A Redis that lost the lane's state gets nothing from the worker, not even the outbox's
    stream its relay would create; a lane that stops on it never starts the relay."""
    runner, _ = make_runner(monkeypatch)
    assert runner.relay is not None

    async def refused() -> None:
        raise LaneStopped(reason, StateLostError("the generation marker is gone"))

    monkeypatch.setattr(runner, "_establish_generation", refused)

    runner.stop()  # asked already: run() returns once the lane stopped and closed
    asyncio.run(runner.run())
    assert runner.status.state is LaneState.STOPPED
    assert runner.relay.task is None


def test_a_lane_refused_while_a_rebuild_runs_says_so_without_the_rebuild_remedy(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker started during a ``loom rebuild`` of its lane is refused at its first commit
    (the rebuild holds the lane's lease): its ``lane stopped`` line says to let the rebuild
    finish, and not, as for a Redis that lost its state, to run ``loom rebuild`` (one runs)."""
    runner, _ = make_runner(monkeypatch)

    async def refused() -> None:
        raise LaneStopped(StopReason.STATE_LOST, rebuild_running("loom", runner.lane))

    monkeypatch.setattr(runner, "_establish_generation", refused)
    runner.stop()
    with caplog.at_level(logging.ERROR, logger=lane_runner.__name__):
        asyncio.run(runner.run())
    (line,) = [r.getMessage() for r in caplog.records if "lane stopped" in r.getMessage()]
    assert "let the rebuild finish" in line
    assert "To recover" not in line
    assert runner.status.state is LaneState.STOPPED
