"""TouchpointProducer against the real broker: delivery, keys, headers, validation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer

from schemas.errors import InvalidEvent
from schemas.touchpoint import parse_touchpoint
from streams.producer import DeliveryReport, TouchpointProducer
from streams.settings import LoomSettings

pytestmark = pytest.mark.integration


def event(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"it-{n}",
        "type": "login",
        "channel": "web",
        "occurred_at": "2024-05-01T12:00:00+02:00",
        "region": "NO",
        "identifiers": {"email": f" User{n}@Example.COM ", "anonymous_id": f"a-{n}"},
        **extra,
    }


def consume_all(bootstrap: str, topic: str, group: str, expected: int) -> list[Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    out: list[Any] = []
    try:
        for _ in range(60):
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                assert msg.error() is None
                out.append(msg)
            if len(out) >= expected:
                break
    finally:
        consumer.close()
    return out


def test_send_delivers_keyed_records_readable_back(
    kafka_bootstrap: str, unique_topic: Callable[..., str], unique_group: str
) -> None:
    topic = unique_topic(partitions=3)
    reports: list[DeliveryReport] = []
    with TouchpointProducer(LoomSettings(kafka_bootstrap=kafka_bootstrap), topic=topic) as p:
        keys = [p.send(event(n), on_delivery=reports.append) for n in range(20)]
        future = p.submit(parse_touchpoint(orjson.dumps(event(99))))
        assert p.flush(30) == 0
        report = future.result(timeout=1)
    assert report.ok
    assert report.topic == topic
    assert report.offset is not None
    assert keys[3] == b"email:user3@example.com"  # normalized, most stable identifier
    assert len(reports) == 20
    assert all(r.ok and r.offset is not None for r in reports)
    assert p.stats.delivered == 21
    assert p.stats.in_flight == 0

    messages = consume_all(kafka_bootstrap, topic, unique_group, 21)
    assert len(messages) == 21
    by_id = {orjson.loads(m.value())["event_id"]: m for m in messages}
    msg = by_id["it-3"]
    assert msg.key() == b"email:user3@example.com"
    assert dict(msg.headers())["loom-schema"] == b"touchpoint-v1"
    assert parse_touchpoint(msg.value()).identifiers.email == " User3@Example.COM "
    # same key -> same partition
    assert {m.partition() for m in messages if m.key() == msg.key()} == {msg.partition()}


def test_invalid_event_raises_and_sends_nothing(
    kafka_bootstrap: str, unique_topic: Callable[..., str], unique_group: str
) -> None:
    topic = unique_topic()
    with TouchpointProducer(bootstrap=kafka_bootstrap, topic=topic) as p:
        bad = event(1)
        bad["occurred_at"] = "2024-05-01T12:00:00"
        with pytest.raises(InvalidEvent) as info:
            p.send(bad)
        assert info.value.field == "occurred_at"
        with pytest.raises(InvalidEvent) as info:
            p.send_json(b'{"event_id": "x", "type": "teleport"}')
        assert info.value.reason == "unknown_type"
        with pytest.raises(InvalidEvent) as info:
            p.send({**event(2), "properties": {f"k{i}": "x" * 2000 for i in range(40)}})
        assert info.value.reason == "oversize"
        p.send_raw(b"not json", key=b"k")  # raw goes through unvalidated
        assert p.flush(30) == 0
    assert p.stats.enqueued == 1
    messages = consume_all(kafka_bootstrap, topic, unique_group, 1)
    assert [(m.key(), m.value()) for m in messages] == [(b"k", b"not json")]


def test_send_json_keeps_original_bytes(
    kafka_bootstrap: str, unique_topic: Callable[..., str], unique_group: str
) -> None:
    topic = unique_topic()
    raw = orjson.dumps({**event(5), "x_future_field": 1})
    with TouchpointProducer(bootstrap=kafka_bootstrap, topic=topic) as p:
        tp = p.send_json(raw)
    assert tp.event_id == "it-5"
    (msg,) = consume_all(kafka_bootstrap, topic, unique_group, 1)
    assert msg.value() == raw
    assert msg.key() == b"email:user5@example.com"


def test_delivery_failure_is_reported_not_raised() -> None:
    reports: list[DeliveryReport] = []
    p = TouchpointProducer(
        bootstrap="127.0.0.1:1",  # nothing listens here
        topic="loomtest-nowhere",
        config={"message.timeout.ms": 1500, "socket.connection.setup.timeout.ms": 1000},
    )
    p.send(event(1), on_delivery=reports.append)
    p.flush(10)
    p.close(1)
    assert len(reports) == 1
    assert not reports[0].ok
    assert reports[0].error
    assert p.stats.failed == 1
    with pytest.raises(RuntimeError):
        p.send(event(2))
