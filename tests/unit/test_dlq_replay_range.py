"""``loom dlq replay``'s range: the group's committed offsets are read as every other reader
of them reads them (``streams.generation.committed_offsets``)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from test_committed_read import AnsweringConsumer

from streams.cli.privacy import _replay_range


class _Consumer(AnsweringConsumer):
    """Watermarks (0, 3) on every partition; ``committed`` answers each of ``answers`` in turn
    (an exception is raised)."""

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        return 0, 3


class _Failed:
    """A partition of ``committed``'s answer whose fetch failed, as librdkafka reports it."""

    def __init__(self, partition: int, code: int) -> None:
        self.topic, self.partition, self.offset, self.metadata = "dlq", partition, -1001, None
        self.error = KafkaError(code)


def test_a_coordinator_that_moves_or_loads_is_asked_again() -> None:
    """A fresh cluster's first group, or a coordinator moving (a broker restarted): the replay
    ended with ``KafkaError{code=NOT_COORDINATOR,...}``, exit 3 (seen on the test broker when
    tests/integration/test_dlq_replay.py runs first)."""
    consumer = _Consumer(
        KafkaException(KafkaError(KafkaError.NOT_COORDINATOR)),
        [TopicPartition("dlq", 0, 3), TopicPartition("dlq", 1, 1)],
    )
    ends, todo = _replay_range(consumer, "dlq", [0, 1])
    assert (ends, todo) == ({0: 3, 1: 3}, {1})
    assert consumer.asked == 2


def test_a_partition_whose_fetch_failed_is_an_error_not_never_committed() -> None:
    """Read as "never committed", partition 0 was replayed again from its earliest record."""
    consumer = _Consumer(
        [_Failed(0, KafkaError.TOPIC_AUTHORIZATION_FAILED), TopicPartition("dlq", 1, 3)]
    )
    with pytest.raises(KafkaException) as raised:
        _replay_range(consumer, "dlq", [0, 1])
    assert raised.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
