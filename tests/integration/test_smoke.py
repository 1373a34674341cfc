"""Smoke test of the shared server fixtures: a real Kafka round trip and a real Redis round trip,
on the plain servers and on the secured ones (SASL_SSL Kafka; TLS Redis under an ACL user
limited to the test's key prefix), through Loom's client factories."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from confluent_kafka import KafkaError, Message
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]
from loom_servers import Servers

from streams import kafka_clients, redis_clients
from streams.settings import LoomSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(any_servers: Servers) -> LoomSettings:
    return any_servers.settings(prefix=f"smoke{uuid.uuid4().hex[:12]}")


@pytest.fixture
def topic(settings: LoomSettings) -> Iterator[str]:
    admin = kafka_clients.admin(settings)
    name = f"loomtest-smoke-{uuid.uuid4().hex[:12]}"
    for future in admin.create_topics([NewTopic(name, 3, 1)]).values():
        future.result(timeout=60)
    yield name
    for future in admin.delete_topics([name]).values():
        future.result(timeout=60)


def test_produce_then_consume_round_trips_every_record_with_confirmed_delivery(
    settings: LoomSettings, topic: str
) -> None:
    sent = {f"key-{i}".encode(): f"value-{i}".encode() for i in range(20)}
    delivered: list[Message] = []
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            delivered.append(msg)

    producer = kafka_clients.producer(settings)
    for key, value in sent.items():
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert errors == []
    assert len(delivered) == len(sent)
    assert {m.partition() for m in delivered} <= {0, 1, 2}

    consumer = kafka_clients.consumer(
        settings,
        f"loomtest-group-{uuid.uuid4().hex[:12]}",
        **{"auto.offset.reset": "earliest", "enable.auto.commit": False},
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


def test_the_topic_has_the_requested_partitions(settings: LoomSettings, topic: str) -> None:
    metadata = kafka_clients.admin(settings).list_topics(topic, timeout=10)
    assert len(metadata.topics[topic].partitions) == 3


def test_redis_write_then_read_back_bytes(settings: LoomSettings) -> None:
    client = redis_clients.client(settings)
    key = f"{settings.redis_prefix}:smoke"
    try:
        assert client.ping() is True
        assert client.set(key, b"\x00loom\xff") is True
        assert client.get(key) == b"\x00loom\xff"
        assert client.hset(f"{key}:h", mapping={b"a": b"1", b"b": b"2"}) == 2
        assert client.hgetall(f"{key}:h") == {b"a": b"1", b"b": b"2"}
    finally:
        client.delete(key, f"{key}:h")
        client.close()


def test_the_redis_client_reaches_only_keys_under_its_prefix(
    settings: LoomSettings, any_servers: Servers
) -> None:
    """Secured: the ACL user of a prefix cannot touch another prefix's keys."""
    client = redis_clients.client(settings)
    try:
        if any_servers.secured:
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.set("someone-else:key", b"x")
        else:  # the plain server has one all-powerful default user
            assert client.set(f"{settings.redis_prefix}-other:key", b"x") is True
            client.delete(f"{settings.redis_prefix}-other:key")
    finally:
        client.close()


#: Prefixes the Redis fixture tests of this module wrote under; the fixture must have emptied them.
_WRITTEN_PREFIXES: list[str] = []


def test_redis_prefix_fixture_writes(redis_client: redis.Redis, redis_prefix: str) -> None:
    _WRITTEN_PREFIXES.append(redis_prefix)
    assert redis_client.set(f"{redis_prefix}:smoke", b"1") is True
    assert redis_client.set(f"{redis_prefix}:smoke2", b"2") is True


def test_redis_prefix_keys_are_isolated_per_test(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """The previous test's keys (two, under its own prefix) were deleted when it ended, and this
    test got a different prefix."""
    if not _WRITTEN_PREFIXES:
        pytest.skip("needs test_redis_prefix_fixture_writes to have run first")
    assert redis_prefix not in _WRITTEN_PREFIXES
    for prefix in _WRITTEN_PREFIXES:
        assert list(redis_client.scan_iter(match=f"{prefix}*")) == [], prefix
