"""``loom privacy-worker``'s loop (streams.privacy_worker) on real Kafka and Redis: a data request
exports the profile the pipeline wrote, a shop redact requests one erasure per remembered
customer and forgets the shop, every request is audited, and a batch whose Redis call fails is
done again (same ids) before its offsets are committed."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import redis
from builders import make_context
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from topic_reader import read_topic

from resolvers.pipeline import run_batch
from resolvers.steps import RawRecord
from schemas.inbound.shopify_model import PrivacyKind, PrivacyRequest, RememberCustomer
from schemas.inbound.shopify_privacy import request_from_json, shop_erasures
from schemas.normalize import DEFAULT
from schemas.touchpoint import EventType, parse_touchpoint
from streams import privacy_worker
from streams.reader import ProfileReader
from streams.redis_store import RedisStore
from streams.settings import LoomSettings, Topics
from streams.shopify_memory import RedisShopifyMemory
from streams.topics import ensure_topics

AT = datetime(2022, 1, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def settings(kafka_bootstrap: str, redis_url: str, redis_prefix: str) -> LoomSettings:
    tag = uuid.uuid4().hex[:8]
    topics = Topics(**{name: f"pw{tag}.{name}" for name in Topics.model_fields})
    s = LoomSettings(
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        app_id=f"pw-{tag}",
        partitions=1,
        topics=topics,
        retry_backoff_max_s=0.5,
        development=True,
    )
    ensure_topics(s)
    return s


class FailingOnce:
    """The memory, with the first ``forget_shop`` failing as a Redis outage would."""

    def __init__(self, memory: RedisShopifyMemory) -> None:
        self.memory = memory
        self.failures = 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.memory, name)

    def forget_shop(self, shop: str) -> int:
        if self.failures:
            self.failures -= 1
            raise redis.ConnectionError("injected")
        return self.memory.forget_shop(shop)


def request(kind: PrivacyKind, webhook: str, customer: str | None = None) -> bytes:
    return orjson.dumps(
        PrivacyRequest(
            request_id=f"shopify:jsmith:privacy:{webhook}",
            kind=kind,
            shop="jsmith",
            shop_domain="jsmith.myshopify.com",
            received_at=AT,
            customer_id=customer,
            data_request_id="9999" if kind is PrivacyKind.DATA_REQUEST else None,
        ).to_json()
    )


@pytest.fixture
def running(
    settings: LoomSettings, redis_client: redis.Redis
) -> Iterator[tuple[privacy_worker.PrivacyWorker, FailingOnce]]:
    base = RedisShopifyMemory(redis_client, settings.redis_prefix, order_ttl_s=3600, salt=b"s")
    memory = FailingOnce(base)
    reader = ProfileReader(redis_client, settings.redis_prefix)
    worker = privacy_worker.build(settings, memory, reader)  # type: ignore[arg-type]
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield worker, memory
    finally:
        stop.set()
        thread.join(30)


def committed(settings: LoomSettings) -> int:
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap, "group.id": settings.group_id("privacy")}
    )
    try:
        tp = TopicPartition(settings.topics.privacy_requests, 0)
        [done] = consumer.committed([tp], 10)
        return int(done.offset)
    finally:
        consumer.close()


def wait_committed(settings: LoomSettings, offset: int, timeout: float = 60) -> None:
    """Until the worker committed ``offset`` (every request before it fully done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(KafkaException):  # the group's coordinator may be moving
            if committed(settings) >= offset:
                return
        time.sleep(0.3)
    pytest.fail(f"privacy requests not done after {timeout}s")


def read(settings: LoomSettings, topic: str) -> list[Any]:
    return [orjson.loads(m.value()) for m in read_topic(settings.kafka_bootstrap, topic)]


def test_exports_erasures_audit_and_a_failed_batch_done_again(
    settings: LoomSettings,
    redis_client: redis.Redis,
    running: tuple[privacy_worker.PrivacyWorker, FailingOnce],
) -> None:
    worker, memory = running
    # a profile the pipeline wrote for customer 191167, and two customers the gateway saw
    signup = {
        "event_id": "e-1", "type": "signup", "channel": "web", "region": "US",
        "occurred_at": "2022-01-01T10:00:00Z", "identifiers": {"customer_id": "191167",
        "email": "john@example.com"},
    }  # fmt: skip
    store = RedisStore(redis_client, prefix=settings.redis_prefix)
    raw = [RawRecord(value=orjson.dumps(signup), topic="t", partition=0, offset=0)]
    run_batch(raw, store, make_context, max_bytes=65536, config=DEFAULT)
    memory.apply("jsmith", [RememberCustomer("191167"), RememberCustomer("555")])

    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for value in (
        request(PrivacyKind.DATA_REQUEST, "w1", "191167"),
        request(PrivacyKind.DATA_REQUEST, "w2", "404"),
        b"not a request",
        request(PrivacyKind.SHOP_REDACT, "w3"),
        request(PrivacyKind.CUSTOMER_REDACT, "w4", "191167"),
    ):
        producer.produce(settings.topics.privacy_requests, value, b"jsmith")
    assert producer.flush(30) == 0

    wait_committed(settings, 5)
    assert memory.failures == 0  # the shop redact's batch failed once and was done again
    audit = read(settings, settings.topics.privacy_audit)
    outcomes = {(a["request_id"].rsplit(":", 1)[1], a["outcome"]) for a in audit}
    assert outcomes == {
        ("w1", "exported"), ("w2", "not_found"), ("w3", "erasures_requested"),
        ("w4", "erasure_requested"),
    }  # fmt: skip
    found = {e["customer_id"]: e for e in read(settings, settings.topics.privacy_exports)}
    assert found["191167"]["found"] is True
    assert found["191167"]["profile"]["identifiers"]["customer_id"] == ["191167"]
    assert found["191167"]["data_request_id"] == "9999"
    assert found["404"] == {**found["404"], "found": False, "profile": None}

    erasures = [parse_touchpoint(m.value()) for m in read_topic(settings.kafka_bootstrap,
                                                                settings.topics.raw)]  # fmt: skip
    assert {tp.type for tp in erasures} == {EventType.ERASURE_REQUESTED}
    ids = {tp.event_id for tp in erasures}  # done twice, the same two ids
    shop_redact = request_from_json(orjson.loads(request(PrivacyKind.SHOP_REDACT, "w3")))
    assert ids == {tp.event_id for tp in shop_erasures(shop_redact, ["191167", "555"])}
    assert {tp.identifiers.as_mapping()["customer_id"] for tp in erasures} == {"191167", "555"}
    assert list(memory.customers("jsmith")) == []
    assert list(redis_client.scan_iter(f"{settings.redis_prefix}:shopify:v1:jsmith:*")) == []
    assert worker.metrics.requests.labels("unknown", "unreadable")._value.get() == 1
    # dead-lettered (again when its batch was done again: at least once)
    dead = read_topic(settings.kafka_bootstrap, settings.topics.dlq)
    assert {(m.value(), dict(m.headers())["loom.stage"]) for m in dead} == {
        (b"not a request", b"privacy")
    }
