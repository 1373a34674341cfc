"""The stock router registers no ``on_lost``: confluent-kafka then serves a loss (a session
or poll interval that expired) to ``on_revoke``. Measured on real Kafka (2.16.1, a review of
2026-12-04): a member past ``max.poll.interval.ms`` gets ``on_revoke``, its synchronous commit
there fails at once with ``UNKNOWN_MEMBER_ID``, and the new owner's committed offset stands.
So the router forgets what it held of the lost partitions, commits nothing for them, and
keeps going (it keeps no Redis state, cache or lease; a batch never spans a rebalance)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from resolvers.pipeline import INVENTORY
from resolvers.steps import RawRecord
from streams import kafka_clients
from streams.offsets import next_offsets
from streams.settings import LoomSettings
from streams.stock_router import StockRouter
from streams.testing import FakeConsumer, FakeProducer, fake_runtime

RAW = "touchpoints.raw"


class FencedConsumer(FakeConsumer):
    """A member the group removed: the broker refuses its commits (what real Kafka says)."""

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> Any:
        if self.closed_out:
            raise KafkaException(KafkaError(KafkaError.UNKNOWN_MEMBER_ID))
        return super().commit(offsets=offsets, asynchronous=asynchronous)

    closed_out = False

    def assign(self, partitions: list[TopicPartition]) -> None:
        pass  # the router starts its assignment where the group left it


def test_a_router_that_loses_its_partitions_forgets_them_and_commits_nothing_for_them(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(kafka_clients, "Consumer", FencedConsumer)
    monkeypatch.setattr(kafka_clients, "Producer", FakeProducer)
    router = StockRouter(fake_runtime(lane=INVENTORY, settings=LoomSettings(commit_interval_s=60)))
    consumer: FencedConsumer = router.consumer  # type: ignore[assignment]
    router._on_assign(consumer, [TopicPartition(RAW, 0), TopicPartition(RAW, 1)])  # type: ignore[arg-type]
    routed = [RawRecord(b"{}", None, RAW, 0, 41), RawRecord(b"{}", None, RAW, 1, 7)]
    router.processed.add(next_offsets(routed))
    router._due.add(next_offsets(routed))  # waiting for the commit interval
    consumer.closed_out = True  # the session expired: partition 0 now belongs to another member
    with caplog.at_level(logging.WARNING):
        router._on_revoke(consumer, [TopicPartition(RAW, 0)])  # type: ignore[arg-type]  # on_lost's stand-in
    assert router.assigned == {(RAW, 1)}
    assert "offset commit failed" in caplog.text  # refused by the broker: logged, not raised
    consumer.closed_out = False  # it rejoined with partition 1
    router._close()
    assert consumer.commits == [(False, [(RAW, 1, 8, "")])]  # nothing more of partition 0
