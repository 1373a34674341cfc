"""``loom rebuild`` of the profiles lane with audiences, on real Kafka and Redis: a replay
publishes on ``audiences.changes`` only what the rebuilt profiles are members of, once, never a
membership an event later in the history undoes.

The replay goes through each customer's history in batches at today's clock: after the first
pair of running shoes (170 days ago) and before the second (10 days ago), the profile looked
due for the reminder. The record a marketing tool acts on (``enter``) must not go out for that
moment: the customer bought a new pair 10 days ago."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition
from deployment import deployment_settings, rebuild
from test_lookup import live_snapshots

from resolvers.timefmt import format_time
from streams.generation import committed_offsets
from streams.settings import LoomSettings

pytestmark = pytest.mark.integration

REMINDER = "running-shoe-reminder"
AUDIENCES = f"""
[audiences.{REMINDER}]
expression = "category_orders.running >= 1 and days_since_last_purchase.running between 150 and 200"
marketing = true

[audiences.runners]
expression = "category_orders.running >= 1"
"""
NOW = datetime.now(UTC).replace(microsecond=0)


def _ev(event_id: str, type_: str, days_ago: float, customer: str, **fields: Any) -> bytes:
    return orjson.dumps({
        "event_id": event_id, "type": type_, "channel": "web",
        "occurred_at": format_time(NOW - timedelta(days=days_ago)), "region": "NO",
        "identifiers": {"customer_id": customer},
        "consent": {"analytics": True, "personalization": True, "marketing": True},
        **fields,
    })  # fmt: skip


def _shoes(event_id: str, days_ago: float, customer: str) -> bytes:
    return _ev(event_id, "order_completed", days_ago, customer, order={
        "order_id": f"o-{event_id}", "total": "1200.00", "currency": "NOK",
        "lines": [{"sku": "RUN-42", "quantity": 1, "unit_price": "1200.00",
                   "category": "running"}],
    })  # fmt: skip


@pytest.fixture
def settings(
    kafka_bootstrap: str,
    redis_url: str,
    redis_client: redis.Redis,
    unique_topic: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[LoomSettings]:
    """A raw topic (one partition) with ANN's two pairs (170 and 10 days ago), BOB's one
    (170 days ago) and CAT's one (170 days ago, erased 5 days ago), read back in batches of
    one event."""
    raw = unique_topic(partitions=1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    erasure = _ev("c2", "erasure_requested", 5, "CAT")
    history = (_shoes("a1", 170, "ANN"), _shoes("b1", 170, "BOB"), _shoes("c1", 170, "CAT"))
    for value in (*history, _shoes("a2", 10, "ANN"), erasure):
        producer.produce(raw, value=value, partition=0)
    assert producer.flush(30) == 0
    warm = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"warm-{raw}"})
    committed_offsets(warm, raw, [0], timeout_s=60)  # the offsets topic, made at first ask
    warm.close()
    path = tmp_path / "audiences.toml"
    path.write_text(AUDIENCES)
    tag = f"rebuild-aud-{uuid.uuid4().hex[:8]}"
    yield deployment_settings(
        monkeypatch,
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        tag=tag,
        raw=raw,
        LOOM_BATCH_SIZE="1",
        LOOM_AUDIENCES_FILE=str(path),
    )
    keys = list(redis_client.scan_iter(match=f"{tag}:*", count=1000))
    if keys:
        redis_client.unlink(*keys)


def _changes(settings: LoomSettings, kafka_bootstrap: str) -> list[tuple[str, str, str]]:
    """(profile id, audience, change) of every record on audiences.changes, in order."""
    topic = settings.topics.audience_changes
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"read-{topic}"})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in parts}  # fmt: skip
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        out: list[tuple[str, str, str]] = []
        while sum(ends.values()) > len(out):
            for m in consumer.consume(100, 1.0):
                assert m.error() is None, m.error()
                value = orjson.loads(m.value())
                out.append((value["profile_id"], value["audience"], value["change"]))
        return out
    finally:
        consumer.close()


def test_a_rebuild_publishes_no_reminder_a_later_purchase_or_erasure_undoes(
    settings: LoomSettings, redis_client: redis.Redis, kafka_bootstrap: str
) -> None:
    report = rebuild(settings)
    assert report.outbox_left == 0
    snapshots = live_snapshots(redis_client, settings.redis_prefix)
    ids = {doc["identifiers"]["customer_id"][0]: pid for pid, doc in snapshots.items()}
    ann, bob = ids["ANN"], ids["BOB"]
    assert snapshots[ann]["audiences"] == ["runners"]
    assert snapshots[bob]["audiences"] == sorted(["runners", REMINDER])
    assert "CAT" not in ids
    changes = _changes(settings, kafka_bootstrap)
    assert {c[0] for c in changes} == {ann, bob}  # nothing for the erased customer
    assert [c for c in changes if c[0] == ann] == [(ann, "runners", "enter")]
    assert sorted(c for c in changes if c[0] == bob) == sorted(
        [(bob, "runners", "enter"), (bob, REMINDER, "enter")]
    )
