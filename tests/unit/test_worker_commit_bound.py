"""A worker's synchronous offsets commits (on revoke, on close) wait a bound, not for ever.

librdkafka's synchronous commit has no timeout, and one under way while the broker stalled for
over a minute never returned, though the broker answered again at once (measured for ``loom
rebuild``, whose commits are bounded since: ``test_rebuild_commit.py``). A worker commits
synchronously in its revoke callback, inside ``consume``: such a commit held the lane's thread,
and with it the group's rebalance, for as long as it waited; on close, the worker never left
the group. Here the consumer is a stand-in whose commit never returns: only the bound is under
test."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from resolvers.steps import RawRecord
from streams import kafka_clients, lane_runner
from streams.offsets import next_offsets
from streams.testing import FakeConsumer, fake_runtime

BOUND_S = 0.3


class NeverAnswers(FakeConsumer):
    """A consumer whose synchronous commit returns only once ``answer`` is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answer = threading.Event()

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> Any:
        if not asynchronous:
            self.answer.wait()
        return super().commit(offsets=offsets, asynchronous=asynchronous)


def returns_within(call: Callable[[], object], seconds: float) -> bool:
    """Whether ``call()`` returned within ``seconds`` (run on a daemon thread)."""
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive()


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> lane_runner.LaneRunner:
    """A lane's runner on a :class:`NeverAnswers` consumer that has processed a
    batch of partition 0 (its offset waits to be committed), the bound lowered to BOUND_S."""
    monkeypatch.setattr(kafka_clients, "Consumer", NeverAnswers)
    monkeypatch.setattr(lane_runner, "SYNC_COMMIT_TIMEOUT_S", BOUND_S, raising=False)
    run = lane_runner.LaneRunner(fake_runtime())
    record = RawRecord(value=b"{}", topic=run.topic, partition=0, offset=41, timestamp_ms=0)
    run.processed.add(next_offsets([record]))
    run.assigned.add((run.topic, 0))
    return run


def test_a_revoke_whose_commit_kafka_never_answers_goes_on_after_the_bound(
    runner: lane_runner.LaneRunner, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: the revoke callback waited for ever (still waiting after 10 s)."""
    consumer: NeverAnswers = runner.consumer  # type: ignore[assignment]
    revoked = [TopicPartition(runner.topic, 0)]
    with caplog.at_level(logging.WARNING, logger=lane_runner.__name__):
        done = returns_within(lambda: runner._on_revoke(consumer, revoked), 10)
    consumer.answer.set()  # lets the stand-in's commit return either way
    assert done, "the revoke still waits after 10 s"
    assert runner.assigned == set()  # the rebalance went on
    (line,) = [r.getMessage() for r in caplog.records if "did not return" in r.getMessage()]
    assert f"offset commit of partitions [0] did not return within {BOUND_S:g} s" in line
    assert "redelivered" in line


def test_a_close_whose_commit_kafka_never_answers_leaves_without_waiting_on_it(
    runner: lane_runner.LaneRunner,
) -> None:
    """Before: the close waited for ever on the commit, and then would have on the consumer's
    ``close`` (which waits for the commit under way): now neither is waited for."""
    consumer: NeverAnswers = runner.consumer  # type: ignore[assignment]
    done = returns_within(runner._close, 10)
    consumer.answer.set()
    assert done, "the close still waits after 10 s"
    assert not consumer.closed


def test_a_commit_that_answers_is_made_and_the_consumer_closed(
    runner: lane_runner.LaneRunner,
) -> None:
    consumer: NeverAnswers = runner.consumer  # type: ignore[assignment]
    consumer.answer.set()
    runner._close()
    assert consumer.closed
    assert consumer.commits == [(False, [(runner.topic, 0, 42, "")])]
