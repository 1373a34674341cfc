"""The thread that keeps a lane's committed offsets in Redis (``streams.kept_offsets``): its
callers never wait on Redis, what waits meanwhile is written in one go (the latest offset of
each partition), and a close writes what waits, bounded. The writer here is a stand-in that
blocks until the test lets it go: the property is about waiting, not about Redis (the Redis
side is ``tests/integration/test_kept_offsets.py``)."""

from __future__ import annotations

import threading

from confluent_kafka import TopicPartition

from streams.kept_offsets import OffsetKeeper


class Writer:
    """Records each write; each blocks until :attr:`go` is set (set: none blocks)."""

    def __init__(self) -> None:
        self.writes: list[dict[tuple[str, int], int]] = []
        self.entered = threading.Semaphore(0)
        self.go = threading.Event()

    def __call__(self, offsets: list[TopicPartition]) -> None:
        self.entered.release()
        assert self.go.wait(10), "the test never let the write go"
        self.writes.append({(tp.topic, tp.partition): tp.offset for tp in offsets})


def test_a_caller_never_waits_for_redis_and_what_waits_is_written_in_one_go() -> None:
    writer = Writer()
    keeper = OffsetKeeper(writer)
    keeper.keep([TopicPartition("raw", 0, 5)])
    assert writer.entered.acquire(timeout=10)  # the thread is inside a write Redis holds
    # meanwhile the lane goes on: these return while that write still waits
    keeper.keep([TopicPartition("raw", 0, 7), TopicPartition("raw", 1, 3)])
    keeper.keep([TopicPartition("raw", 0, 9)])
    assert writer.writes == []
    writer.go.set()
    assert keeper.close(10)
    assert writer.writes == [{("raw", 0): 5}, {("raw", 0): 9, ("raw", 1): 3}]


def test_a_close_writes_what_waits_and_gives_up_on_a_redis_that_does_not_answer() -> None:
    writer = Writer()
    keeper = OffsetKeeper(writer)
    keeper.keep([TopicPartition("raw", 2, 40)])
    assert writer.entered.acquire(timeout=10)
    assert keeper.close(0.05) is False  # bounded: the write is still held
    writer.go.set()
    assert keeper.close(10)
    assert writer.writes == [{("raw", 2): 40}]


def test_a_failing_write_does_not_end_the_thread() -> None:
    calls: list[int] = []
    failed = threading.Event()

    def write(offsets: list[TopicPartition]) -> None:
        calls.append(offsets[0].offset)
        if not failed.is_set():
            failed.set()
            raise RuntimeError("the writer's own fault")

    keeper = OffsetKeeper(write)
    keeper.keep([TopicPartition("raw", 0, 1)])
    assert failed.wait(10)
    keeper.keep([TopicPartition("raw", 0, 2)])
    assert keeper.close(10)
    assert calls == [1, 2]  # the later offset was written after the failure
