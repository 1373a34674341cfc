"""``shop/redact`` and guest checkouts, through the mapping, the gateway's memory, the profiles
lane on Redis and the privacy worker on Kafka (a review of 2026-12-04, ADR 0007's note).

An order with ``"customer": null`` and an e-mail builds a profile from that e-mail; the gateway
remembered customer ids only, so ``shop/redact`` erased the shop's customers and left the
guests' profiles (the first test failed: the registered customer was erased, the guest's
profile lived on)."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import redis
from builders import make_context
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from shopify_shop import CUSTOMER_ID, SHOP, delivery, example, payload
from topic_reader import read_topic

from resolvers.pipeline import run_batch
from resolvers.steps import RawRecord
from schemas.inbound.shopify import map_webhook
from schemas.inbound.shopify_model import Mapped
from schemas.normalize import DEFAULT
from schemas.touchpoint import EventType, dump_touchpoint, parse_touchpoint
from streams import privacy_worker
from streams.reader import ProfileReader
from streams.redis_store import RedisStore
from streams.settings import LoomSettings, Topics
from streams.shopify_memory import RedisShopifyMemory
from streams.topics import ensure_topics

pytestmark = pytest.mark.integration

#: make_context's salt (tests/builders.py): the gateway and the worker hash as the lane does
SALT = "test-salt"
GUEST_EMAIL, GUEST_PHONE = "Guest.Jane@Example.com", "+1 613 555 0142"


@pytest.fixture
def settings(kafka_bootstrap: str, redis_url: str, redis_prefix: str) -> LoomSettings:
    tag = uuid.uuid4().hex[:8]
    topics = Topics(**{name: f"sg{tag}.{name}" for name in Topics.model_fields})
    s = LoomSettings(
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        app_id=f"sg-{tag}",
        partitions=1,
        topics=topics,
        retry_backoff_max_s=0.5,
        suppression_salt=SALT,
        development=True,
    )
    ensure_topics(s)
    return s


class Shop:
    """The gateway's part (mapping, memory) and the profiles lane's part, in process."""

    def __init__(self, settings: LoomSettings, client: redis.Redis) -> None:
        self.settings, self.client = settings, client
        self.memory = RedisShopifyMemory(
            client, settings.redis_prefix, order_ttl_s=3600, salt=SALT.encode()
        )
        self.store = RedisStore(client, prefix=settings.redis_prefix)
        self.reader = ProfileReader(client, settings.redis_prefix)
        self.offset = 0
        self.now = datetime.now(UTC)

    def webhook(self, topic: str, data: Any) -> Mapped:
        """As the gateway does: map, produce (here: run through the lane), remember."""
        d = delivery(topic, received_at=self.now)
        mapped = map_webhook(SHOP, d, data, None)
        self.lane([dump_touchpoint(tp) for tp in mapped.touchpoints])
        self.memory.apply(SHOP.name, mapped.memory, answered=d.webhook_id)
        return mapped

    def lane(self, values: list[bytes]) -> None:
        records = []
        for value in values:
            records.append(RawRecord(value=value, topic="raw", partition=0, offset=self.offset))
            self.offset += 1
        now = datetime.now(UTC)
        run_batch(records, self.store, lambda: make_context(now), max_bytes=65536, config=DEFAULT)

    def order(self, order_id: str, *, guest: bool) -> dict[str, Any]:
        data = payload("orders/create")
        at = (self.now - timedelta(hours=1)).isoformat()
        data |= {"id": int(order_id), "processed_at": at, "created_at": at}
        if guest:
            data |= {"customer": None, "email": GUEST_EMAIL, "contact_email": None}
            data["phone"] = GUEST_PHONE
        return data


@pytest.fixture
def shop(settings: LoomSettings, redis_client: redis.Redis) -> Shop:
    return Shop(settings, redis_client)


@pytest.fixture
def worker(settings: LoomSettings, shop: Shop) -> Iterator[privacy_worker.PrivacyWorker]:
    running = privacy_worker.build(settings, shop.memory, shop.reader)
    stop = threading.Event()
    thread = threading.Thread(target=running.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield running
    finally:
        stop.set()
        thread.join(30)


def wait_committed(settings: LoomSettings, offset: int, timeout: float = 60) -> None:
    """Until the privacy worker committed ``offset`` (every request before it done)."""
    tp = TopicPartition(settings.topics.privacy_requests, 0)
    group = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": settings.group_id("privacy"),
    }
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        consumer = Consumer(group)
        try:
            with contextlib.suppress(KafkaException):  # the coordinator may be moving
                [done] = consumer.committed([tp], 10)
                if done.offset >= offset:
                    return
        finally:
            consumer.close()
        time.sleep(0.3)
    pytest.fail(f"privacy requests not done after {timeout}s")


def shopify_memory(shop: Shop) -> list[bytes]:
    """Every key name and value (a set's members) of the gateway's memory."""
    out: list[bytes] = []
    for key in shop.client.scan_iter(f"{shop.settings.redis_prefix}:shopify:v1:*"):
        out.append(key)
        kind = shop.client.type(key)
        if kind == b"set":
            out += shop.client.smembers(key)
        elif kind == b"string":
            value = shop.client.get(key)
            out.append(value if isinstance(value, bytes) else b"")
    return out


def test_shop_redact_erases_the_profiles_of_guest_checkouts(
    settings: LoomSettings, shop: Shop, worker: privacy_worker.PrivacyWorker
) -> None:
    shop.webhook("orders/create", shop.order("1001", guest=False))
    shop.webhook("orders/create", shop.order("1002", guest=True))
    assert shop.reader.lookup("customer_id", CUSTOMER_ID) is not None
    guest = shop.reader.lookup("email", GUEST_EMAIL)
    assert guest is not None
    assert guest["profile_id"] == shop.reader.lookup("phone", GUEST_PHONE)["profile_id"]  # type: ignore[index]
    # the gateway keeps no guest's e-mail or phone, in key names or values
    kept = b"\n".join(shopify_memory(shop)).lower()
    assert b"guest.jane" not in kept
    assert b"5550142" not in kept

    redact = shop.webhook("shop/redact", example("shop/redact"))
    assert redact.privacy is not None
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    producer.produce(
        settings.topics.privacy_requests,
        orjson.dumps(redact.privacy.to_json()),
        SHOP.name.encode(),
    )
    assert producer.flush(30) == 0
    wait_committed(settings, 1)

    # the profiles lane reads the erasures the worker requested
    erasures = [m.value() for m in read_topic(settings.kafka_bootstrap, settings.topics.raw)]
    assert {parse_touchpoint(v).type for v in erasures} == {EventType.ERASURE_REQUESTED}
    shop.lane(erasures)
    assert shop.reader.lookup("customer_id", CUSTOMER_ID) is None
    assert shop.reader.lookup("email", GUEST_EMAIL) is None, "the guest's profile lived on"
    assert shop.reader.lookup("phone", GUEST_PHONE) is None
    assert shop.reader.get(guest["profile_id"]) is None
    assert shopify_memory(shop) == []  # the shop forgotten
    # a guest checkout after the redact (a late retry) is dropped: the e-mail is suppressed
    shop.webhook("orders/create", shop.order("1003", guest=True))
    assert shop.reader.lookup("email", GUEST_EMAIL) is None
    # the audit names no guest (ids and counts only)
    audit = [m.value() for m in read_topic(settings.kafka_bootstrap, settings.topics.privacy_audit)]
    assert b"guest.jane" not in b"".join(audit).lower()
    [record] = [orjson.loads(a) for a in audit]
    assert record["outcome"] == "erasures_requested"


def test_customers_redact_naming_a_guests_email_erases_its_profile(shop: Shop) -> None:
    """A guard: ``customers/redact`` names the e-mail, so it reaches a guest's profile."""
    shop.webhook("orders/create", shop.order("1002", guest=True))
    assert shop.reader.lookup("email", GUEST_EMAIL) is not None
    data = example("customers/redact")
    data["customer"] |= {"email": GUEST_EMAIL, "phone": None}
    shop.webhook("customers/redact", data)
    assert shop.reader.lookup("email", GUEST_EMAIL) is None
    assert shop.reader.lookup("phone", GUEST_PHONE) is None
