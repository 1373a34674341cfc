"""The inventory lane's consume loop: which offsets it commits after a batch, on a rebalance
and on close."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition

from streams import kafka_clients, lane_consumer
from streams.lane_consumer import ProcessedOffsets, next_offsets
from streams.settings import LoomSettings


@dataclass
class FakeMessage:  # the three accessors next_offsets reads
    t: str
    p: int
    o: int

    def topic(self) -> str:
        return self.t

    def partition(self) -> int:
        return self.p

    def offset(self) -> int:
        return self.o


def test_next_offsets_are_one_past_the_last_record_of_each_partition() -> None:
    batch: list[Any] = [
        FakeMessage("raw", 1, 7),
        FakeMessage("raw", 0, 41),
        FakeMessage("raw", 1, 8),
        FakeMessage("raw", 0, 42),
        FakeMessage("raw", 3, 0),
    ]
    got = [(tp.topic, tp.partition, tp.offset) for tp in next_offsets(batch)]
    assert got == [("raw", 0, 43), ("raw", 1, 9), ("raw", 3, 1)]


def test_nothing_processed_commits_nothing() -> None:
    assert next_offsets([]) == []


def offsets(tps: list[TopicPartition]) -> list[tuple[str, int, int]]:
    return [(tp.topic, tp.partition, tp.offset) for tp in tps]


def test_processed_offsets_keep_the_latest_per_partition_until_taken() -> None:
    book = ProcessedOffsets()
    book.add(next_offsets([FakeMessage("raw", 0, 41), FakeMessage("raw", 1, 7)]))  # type: ignore[list-item]
    book.add(next_offsets([FakeMessage("raw", 0, 42), FakeMessage("raw", 2, 3)]))  # type: ignore[list-item]
    assert len(book) == 3
    # revoked partitions only, then forgotten (another member owns them now)
    assert offsets(book.take({("raw", 1), ("raw", 5)})) == [("raw", 1, 8)]
    assert offsets(book.take({("raw", 1)})) == []
    assert offsets(book.take()) == [("raw", 0, 43), ("raw", 2, 4)]  # all, on close
    assert len(book) == 0
    assert book.take() == []


@dataclass
class FakeConsumer:
    """Records commits; stands in for confluent-kafka's Consumer (no broker)."""

    config: dict[str, Any]
    commits: list[tuple[bool, list[tuple[str, int, int]]]] = field(default_factory=list)
    closed: bool = False

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> Any:
        self.commits.append((asynchronous, [(t.topic, t.partition, t.offset) for t in offsets]))
        return None if asynchronous else offsets

    def close(self) -> None:
        self.closed = True


def test_offsets_are_committed_async_per_batch_and_again_sync_on_revoke_and_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kafka_clients, "Consumer", FakeConsumer)
    rt: Any = SimpleNamespace(lane=SimpleNamespace(name="inventory"))
    lane = lane_consumer.LaneConsumer(LoomSettings(), rt)
    fake: FakeConsumer = lane.consumer  # type: ignore[assignment]
    assert fake.config["on_commit"] == lane._on_commit  # async failures are reported there

    lane._batch_done([FakeMessage("raw", 0, 10), FakeMessage("raw", 1, 20)])  # type: ignore[list-item]
    lane._batch_done([FakeMessage("raw", 0, 11)])  # type: ignore[list-item]
    assert fake.commits == [
        (True, [("raw", 0, 11), ("raw", 1, 21)]),
        (True, [("raw", 0, 12)]),
    ]
    # a rebalance revokes partition 1: its offset is committed synchronously, even though
    # the asynchronous commit after the batch already sent it (it may have failed)
    lane._on_revoke(fake, [TopicPartition("raw", 1)])  # type: ignore[arg-type]
    assert fake.commits[-1] == (False, [("raw", 1, 21)])
    lane._close()
    assert fake.commits[-1] == (False, [("raw", 0, 12)])  # only what is still owned
    assert fake.closed
    assert len(lane.processed) == 0


def test_a_failed_commit_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    lane: Any = SimpleNamespace(group="loom-inventory")
    on_commit = lane_consumer.LaneConsumer._on_commit
    failed: Any = SimpleNamespace(partition=3, error=KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
    with caplog.at_level(logging.WARNING):
        on_commit(lane, None, [TopicPartition("raw", 4, 1)])  # success: nothing to say
        assert caplog.text == ""
        on_commit(lane, None, [failed, TopicPartition("raw", 4, 1)])  # one partition failed
        assert "offset commit failed" in caplog.text
        assert "[3]" in caplog.text
        caplog.clear()
        on_commit(lane, KafkaError(KafkaError._NO_OFFSET), [])  # the whole commit failed
        assert "offset commit failed" in caplog.text
