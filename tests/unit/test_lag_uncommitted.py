"""streams.lag.uncommitted_or_unknown: a passing broker error is "not known yet", not a crash."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from streams.lag import uncommitted_or_unknown


class Consumer:
    """``committed`` raises ``error`` as librdkafka does (the group's answer failed), else
    every partition is at offset 3 of end offset 10."""

    def __init__(self, error: int | None) -> None:
        self.error = error

    def committed(self, tps: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        if self.error is not None:
            raise KafkaException(KafkaError(self.error))
        return [TopicPartition(tp.topic, tp.partition, 3) for tp in tps]

    def offsets_for_times(self, tps: list[TopicPartition], timeout: float) -> list[Any]:
        return [TopicPartition(tp.topic, tp.partition, 10) for tp in tps]


def test_the_lag_when_kafka_answers() -> None:
    assert uncommitted_or_unknown(Consumer(None), "raw", 2) == 2 * (10 - 3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "code", [KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS]
)
def test_a_coordinator_moving_or_loading_is_not_known_yet(code: int) -> None:
    assert uncommitted_or_unknown(Consumer(code), "raw", 2) is None  # type: ignore[arg-type]


def test_an_error_that_will_not_pass_is_raised() -> None:
    with pytest.raises(KafkaException):
        uncommitted_or_unknown(Consumer(KafkaError.GROUP_AUTHORIZATION_FAILED), "raw", 2)  # type: ignore[arg-type]
