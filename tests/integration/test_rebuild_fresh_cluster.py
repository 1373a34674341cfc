"""``loom rebuild`` on a Kafka cluster that has just started, on a broker of its own: its
offsets topic does not exist until the first group asks for its coordinator, and every group
question is answered "not coordinator" / "loading" until the coordinator has loaded it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer
from deployment import deployment_settings, rebuild
from local_infra import LocalInfra

from streams.generation import committed_offsets

pytestmark = pytest.mark.integration


@pytest.fixture
def fresh_cluster() -> Iterator[LocalInfra]:
    """A Kafka broker (and Redis) started for this test: no group has asked anything yet."""
    infra = LocalInfra()
    infra.up()
    try:
        yield infra
    finally:
        infra.down()


def test_a_rebuild_on_a_cluster_just_started_waits_for_the_group_coordinator(
    fresh_cluster: LocalInfra, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rebuild is the first to ask the cluster about a group, right after its topics were
    created (the raw topic is empty: with records produced first, this machine's broker had
    settled by the time the rebuild asked). The offsets topic does not exist yet, and the
    question whether the lane's group has members was answered NOT_COORDINATOR at once, or
    not at all (_TIMED_OUT after 15 s): the rebuild failed with that KafkaException. Now it
    asks again, within a bound, as the committed offsets are."""
    tag = f"fresh-{uuid.uuid4().hex[:8]}"
    settings = deployment_settings(  # its topics made: that asks no group anything
        monkeypatch,
        kafka_bootstrap=fresh_cluster.endpoints.kafka_bootstrap,
        redis_url=fresh_cluster.endpoints.redis_url,
        tag=tag,
    )
    report = rebuild(settings)

    assert report.total == 0
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap, "group.id": settings.group_id("profiles")}
    )
    try:  # the switch-over: the group's offsets, stamped with the rebuild's generation
        got = committed_offsets(consumer, settings.topics.raw, [0])
    finally:
        consumer.close()
    assert [(tp.offset, tp.metadata) for tp in got] == [(0, report.generation)]
