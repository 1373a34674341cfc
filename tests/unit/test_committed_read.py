"""``Committed.read``: a group coordinator that moves or loads is asked again, nothing else is;
a partition whose fetch failed is an error, never "no committed offset"."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from streams.generation import Committed


class AnsweringConsumer:
    """Answers ``committed`` with each of ``answers`` in turn (an exception is raised)."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.asked = 0

    def committed(self, partitions: list[TopicPartition], timeout: float) -> Any:
        self.asked += 1
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def _error(code: int) -> KafkaException:
    return KafkaException(KafkaError(code))


OFFSETS = [TopicPartition("raw", 0, 5, "g1"), TopicPartition("raw", 1, -1001)]


ASKED_AGAIN = [
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.UNSTABLE_OFFSET_COMMIT,
]


@pytest.mark.parametrize("code", ASKED_AGAIN)
def test_a_coordinator_that_moves_or_loads_is_asked_again(code: int) -> None:
    consumer = AnsweringConsumer(_error(code), _error(code), OFFSETS)
    waits: list[float] = []
    found = Committed.read(consumer, "raw", [0, 1], sleep=waits.append)  # type: ignore[arg-type]
    assert found == Committed(1, frozenset({"g1"}))
    assert consumer.asked == 3
    assert len(waits) == 2


def test_other_errors_raise_at_once() -> None:
    consumer = AnsweringConsumer(_error(KafkaError.GROUP_AUTHORIZATION_FAILED), OFFSETS)
    with pytest.raises(KafkaException) as raised:
        Committed.read(consumer, "raw", [0, 1], sleep=lambda s: None)  # type: ignore[arg-type]
    assert raised.value.args[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    assert consumer.asked == 1


def test_a_coordinator_still_moving_at_the_deadline_raises() -> None:
    consumer = AnsweringConsumer(*[_error(KafkaError.NOT_COORDINATOR)] * 3)
    with pytest.raises(KafkaException):
        Committed.read(consumer, "raw", [0], timeout_s=0.0, sleep=lambda s: None)  # type: ignore[arg-type]
    assert consumer.asked == 1


class _Failed:
    """A partition of ``committed``'s answer whose fetch failed, as librdkafka reports it: the
    error on the partition, no offset (``TopicPartition.error`` cannot be set from Python)."""

    def __init__(self, partition: int, code: int) -> None:
        self.topic, self.partition, self.offset, self.metadata = "raw", partition, -1001, None
        self.error = KafkaError(code)


def test_a_partition_whose_fetch_failed_raises_not_reads_as_never_committed() -> None:
    """Read as "never committed", every partition failing looked like a group that never
    committed, and ``establish`` started a new generation on a Redis that had lost its state
    (a review of the twenty-ninth pass)."""
    answer = [TopicPartition("raw", 0, 5, "g1"), _Failed(1, KafkaError.TOPIC_AUTHORIZATION_FAILED)]
    consumer = AnsweringConsumer(answer)
    with pytest.raises(KafkaException) as raised:
        Committed.read(consumer, "raw", [0, 1], sleep=lambda s: None)  # type: ignore[arg-type]
    assert raised.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert consumer.asked == 1


@pytest.mark.parametrize("code", ASKED_AGAIN)
def test_a_partition_answering_a_passing_error_is_asked_again(code: int) -> None:
    failing = [_Failed(0, code), _Failed(1, code)]
    consumer = AnsweringConsumer(failing, OFFSETS)
    waits: list[float] = []
    found = Committed.read(consumer, "raw", [0, 1], sleep=waits.append)  # type: ignore[arg-type]
    assert found == Committed(1, frozenset({"g1"}))
    assert (consumer.asked, len(waits)) == (2, 1)


def test_a_partition_still_failing_at_the_deadline_raises() -> None:
    consumer = AnsweringConsumer([_Failed(0, KafkaError.UNSTABLE_OFFSET_COMMIT)])
    with pytest.raises(KafkaException):
        Committed.read(consumer, "raw", [0], timeout_s=0.0, sleep=lambda s: None)  # type: ignore[arg-type]
    assert consumer.asked == 1
