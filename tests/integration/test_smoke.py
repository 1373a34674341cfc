"""Smoke test of the shared server fixtures: a real Kafka round trip and a real Redis round trip."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis
from confluent_kafka import Consumer, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient

pytestmark = pytest.mark.integration


def test_produce_then_consume_round_trips_every_record_with_confirmed_delivery(
    kafka_bootstrap: str, unique_topic: Callable[..., str], unique_group: str
) -> None:
    topic = unique_topic(partitions=3)
    sent = {f"key-{i}".encode(): f"value-{i}".encode() for i in range(20)}
    delivered: list[Message] = []
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            delivered.append(msg)

    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for key, value in sent.items():
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert errors == []
    assert len(delivered) == len(sent)
    assert {m.partition() for m in delivered} <= {0, 1, 2}

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": unique_group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    received: dict[bytes, bytes] = {}
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(received) < len(sent) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            assert msg.topic() == topic
            got_key = msg.key()
            got_value = msg.value()
            assert got_key is not None
            assert got_value is not None
            received[got_key] = got_value
    finally:
        consumer.close()
    assert received == sent


def test_unique_topic_creates_the_requested_partitions(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic(partitions=4)
    metadata = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(topic, timeout=10)
    assert len(metadata.topics[topic].partitions) == 4


#: Prefixes the Redis tests of this module wrote under; the fixture must have emptied them.
_WRITTEN_PREFIXES: list[str] = []


def test_redis_write_then_read_back_bytes(redis_client: redis.Redis, redis_prefix: str) -> None:
    _WRITTEN_PREFIXES.append(redis_prefix)
    key = f"{redis_prefix}:smoke"
    assert redis_client.ping() is True
    assert redis_client.set(key, b"\x00loom\xff") is True
    assert redis_client.get(key) == b"\x00loom\xff"
    assert redis_client.hset(f"{key}:h", mapping={b"a": b"1", b"b": b"2"}) == 2
    assert redis_client.hgetall(f"{key}:h") == {b"a": b"1", b"b": b"2"}


def test_redis_prefix_keys_are_isolated_per_test(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """The previous test's keys (two, under its own prefix) were deleted when it ended, and this
    test got a different prefix."""
    if not _WRITTEN_PREFIXES:
        pytest.skip("needs test_redis_write_then_read_back_bytes to have run first")
    assert redis_prefix not in _WRITTEN_PREFIXES
    for prefix in _WRITTEN_PREFIXES:
        assert list(redis_client.scan_iter(match=f"{prefix}*")) == [], prefix
