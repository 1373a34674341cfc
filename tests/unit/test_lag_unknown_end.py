"""``loom lag`` with a partition Kafka cannot answer for now (no leader: its broker away, its
topic being created or deleted; a secured session's ``loom lag --all`` met librdkafka's
``_NOENT`` "No leaders found" and exited 3): that partition's end and lag are unknown, every
other partition's are read, and the metrics leave its end out. An error that says the request
was refused still raises. (The reader's admin client is a fake here: what it assembles is
pure; ``tests/integration/test_lag.py`` compares the rest with Kafka's own tool.)"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry

from streams.lag import TP, LagReader
from streams.metrics import ExporterMetrics

ENDS = {("t", 0): 100, ("t", 1): 70}  # t/2 has no leader


class Admin:
    """``list_offsets`` as confluent-kafka's: a future per partition, ``error`` for t/2's."""

    def __init__(self, error: int) -> None:
        self.error = error

    def list_offsets(self, wanted: dict[TopicPartition, Any], **_: Any) -> dict[Any, Future]:
        futures: dict[Any, Future] = {}
        for tp in wanted:
            f: Future = Future()
            end = ENDS.get((tp.topic, tp.partition))
            if end is None:
                f.set_exception(KafkaException(KafkaError(self.error)))
            else:
                f.set_result(type("Info", (), {"offset": end})())
            futures[tp] = f
        return futures


def reader(error: int) -> LagReader:
    r = LagReader("127.0.0.1:1")  # no connection is made until a call
    r._admin = Admin(error)  # type: ignore[assignment]
    r.describe = lambda groups: {}  # type: ignore[method-assign]
    committed: dict[TP, int | None] = {("t", 0): 90, ("t", 1): 40, ("t", 2): 5}
    r._committed = lambda group, internal: committed  # type: ignore[method-assign]
    r.next_record_times = lambda positions: {}  # type: ignore[method-assign]
    return r


@pytest.mark.parametrize(
    "code", [KafkaError._NOENT, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART]
)
def test_a_partition_without_a_leader_has_an_unknown_end_and_the_others_are_read(
    code: int,
) -> None:
    (group,) = reader(code).read(["loom.profiles"]).groups
    rows = {p.partition: (p.committed, p.end, p.lag, p.lag_seconds) for p in group.partitions}
    assert rows[0][:3] == (90, 100, 10)
    assert rows[1][:3] == (40, 70, 30)
    assert rows[2] == (5, None, None, None)
    assert (group.total_lag, group.max_lag) == (40, 30)
    assert group.to_json()["partitions"][2]["end"] is None

    metrics = ExporterMetrics.create(CollectorRegistry())
    metrics.lag.update(reader(code).read(["loom.profiles"]), [])
    families = {f.name: f for f in metrics.registry.collect()}
    latest = {s.labels["partition"] for s in families["kafka_partition_latest_offset"].samples}
    lag = {s.labels["partition"] for s in families["kafka_consumergroup_group_lag"].samples}
    assert (latest, lag) == ({"0", "1"}, {"0", "1"})


@pytest.mark.parametrize("code", [KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError._INVALID_ARG])
def test_a_refused_request_still_raises(code: int) -> None:
    with pytest.raises(KafkaException):
        reader(code).read(["loom.profiles"])
