"""``loom rebuild``'s commits of the group's offsets wait a bound, not for ever.

librdkafka's synchronous commit has no timeout, and one under way while the broker stalled for
over a minute never returned, though the broker answered again at once (measured on the test
broker, SIGSTOPped for 75 s: still waiting 200 s after it resumed, while other consumers'
commits went through). The rebuild commits synchronously after every batch: such a stall
during a rebuild hung it for good (a CI run's ``loom rebuild`` that never returned is one
candidate). Here the consumer is a stand-in whose commit never returns: only the bound is
under test."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

from confluent_kafka import TopicPartition

from streams.rebuild import Rebuild
from streams.startup import InfraError


class NeverAnswers:
    """A consumer whose synchronous commit returns only once ``answer`` is set."""

    def __init__(self) -> None:
        self.answer = threading.Event()

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> list[Any]:
        self.answer.wait()
        return offsets


def test_a_commit_kafka_never_answers_ends_the_rebuild_with_one_line() -> None:
    """Before: the commit waited for ever (still waiting after 10 s with a 0.5 s bound)."""
    consumer = NeverAnswers()
    rebuild: Any = SimpleNamespace(
        consumer=consumer, commit_timeout_s=0.5, group="g-profiles", lane="profiles"
    )
    raised: list[BaseException] = []

    def commit() -> None:
        try:
            Rebuild._commit(rebuild, [TopicPartition("raw", 0, 5)])
        except BaseException as exc:  # what the rebuild's caller sees
            raised.append(exc)

    thread = threading.Thread(target=commit, daemon=True)
    thread.start()
    thread.join(10)
    waiting = thread.is_alive()
    consumer.answer.set()  # lets the stand-in's commit return either way
    assert not waiting, "the commit still waits after 10 s"
    (error,) = raised
    assert isinstance(error, InfraError)
    assert "did not answer the commit of g-profiles's offsets within 0.5 s" in str(error)
    assert "loom rebuild --lane profiles --resume" in str(error)
    assert rebuild._commit_stuck  # so the rebuild does not close the consumer behind it


def test_a_commit_that_answers_returns_what_it_committed() -> None:
    consumer = NeverAnswers()
    consumer.answer.set()
    rebuild: Any = SimpleNamespace(
        consumer=consumer,
        commit_timeout_s=5.0,
        group="g-profiles",
        lane="profiles",
        _commit_stuck=False,
    )
    Rebuild._commit(rebuild, [TopicPartition("raw", 0, 5)])  # no error: returns
    assert not rebuild._commit_stuck
