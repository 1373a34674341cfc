"""A worker's synchronous offsets commit on close waits a bound, not for ever; the one on
revoke is made in the rebalance callback's own thread.

librdkafka's synchronous commit has no timeout, and one under way while the broker stalled for
over a minute never returned, though the broker answered again at once (measured for ``loom
rebuild``, whose commits are bounded since: ``test_rebuild_commit.py``). On close, a worker
whose commit never returned never left the group. Here the consumer is a stand-in whose commit
returns only when told: only the bound and the thread are under test."""

from __future__ import annotations

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


def test_a_revoke_commits_in_the_callbacks_own_thread(
    runner: lane_runner.LaneRunner,
) -> None:
    """The revoke's commit is not bounded from another thread: made so while the consuming
    thread was inside the revoke callback, librdkafka's commit did not return (the first CI run
    of the bound: test_rebalance_e2e, 20 s, then the revoked partitions' offsets never
    committed). It is made synchronously in the callback's thread, as librdkafka asks."""
    consumer: NeverAnswers = runner.consumer  # type: ignore[assignment]
    consumer.answer.set()
    threads: list[int] = []
    real = consumer.commit

    def commit(*, offsets: list[TopicPartition], asynchronous: bool) -> Any:
        threads.append(threading.get_ident())
        return real(offsets=offsets, asynchronous=asynchronous)

    consumer.commit = commit  # type: ignore[method-assign]
    runner._on_revoke(consumer, [TopicPartition(runner.topic, 0)])
    assert threads == [threading.get_ident()]
    assert consumer.commits == [(False, [(runner.topic, 0, 42, "")])]
    assert runner.assigned == set()


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
