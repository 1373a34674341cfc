"""A data request's export (``customers/data_request``, ``loom privacy-worker``) on real Redis:
what the pipeline wrote for the customer, read back as the worker reads it (no Kafka I/O:
``PrivacyWorker.handle`` builds the records it would produce)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import redis
from builders import make_context

from resolvers.pipeline import run_batch
from resolvers.steps import RawRecord
from schemas.inbound.shopify_model import PrivacyKind, PrivacyRequest
from schemas.normalize import DEFAULT
from streams.privacy_worker import Outputs, PrivacyWorker
from streams.reader import ProfileReader
from streams.redis_store import RedisStore
from streams.settings import LoomSettings
from streams.shopify_memory import InMemoryShopifyMemory

AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _export(redis_client: redis.Redis, prefix: str, customer_id: str) -> dict[str, Any]:
    settings = LoomSettings(redis_prefix=prefix, development=True)
    reader = ProfileReader(redis_client, prefix)
    worker = PrivacyWorker(
        settings,
        consumer=None,  # type: ignore[arg-type]  (handle does no Kafka I/O)
        producer=None,  # type: ignore[arg-type]
        reader=reader,
        memory=InMemoryShopifyMemory(),
        clock=lambda: AT,
    )
    request = PrivacyRequest(
        request_id="shopify:jsmith:privacy:w1",
        kind=PrivacyKind.DATA_REQUEST,
        shop="jsmith",
        shop_domain="jsmith.myshopify.com",
        received_at=AT,
        customer_id=customer_id,
        data_request_id="9999",
    )
    out = Outputs()
    worker.handle(request, out)
    [export] = [
        orjson.loads(v) for t, _, v, _ in out.records if t == settings.topics.privacy_exports
    ]
    return dict(export)


def test_an_export_holds_the_orders_loom_keeps_even_those_consent_hides(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    # an EEA customer who never consented to analytics: the order is kept for the books
    # (docs/consent.md) but hidden from the snapshot; the customer's copy must still hold it
    order = {
        "event_id": "e-1", "type": "order_completed", "channel": "web", "region": "NO",
        "occurred_at": "2026-11-10T10:00:00Z", "identifiers": {"customer_id": "191167"},
        "order": {"order_id": "O-1", "total": "499.00", "currency": "NOK",
                  "payment_method": "card",
                  "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price": "499.00",
                             "category": "shoes"}]},
    }  # fmt: skip
    store = RedisStore(redis_client, prefix=redis_prefix)
    raw = [RawRecord(value=orjson.dumps(order), topic="t", partition=0, offset=0)]
    run_batch(raw, store, make_context, max_bytes=65536, config=DEFAULT)

    export = _export(redis_client, redis_prefix, "191167")
    assert export["found"] is True
    assert export["profile"]["orders_online"] == 0  # the snapshot shows what consent allows
    [held] = export["transactions"]
    assert held == {**held, "order_id": "O-1", "type": "order_completed", "amount": "499.00",
                    "currency": "NOK", "payment_method": "card", "categories": ["shoes"],
                    "at": "2026-11-10T10:00:00Z"}  # fmt: skip


def test_an_export_holds_the_behaviour_loom_keeps_even_what_consent_hides(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    # a US shopper denies personalization, then browses stating nothing: Loom keeps the view
    # (an explicit grant would let it serve again, docs/consent.md) but the snapshot hides it;
    # what Loom holds about her is hers to see
    who = {"customer_id": "191167"}
    events = [
        {"event_id": "c-1", "type": "consent_updated", "channel": "web", "region": "US",
         "occurred_at": "2026-11-10T10:00:00Z", "identifiers": who,
         "consent": {"personalization": False}},
        {"event_id": "v-1", "type": "product_viewed", "channel": "app", "region": "US",
         "occurred_at": "2026-11-11T10:00:00Z", "identifiers": who,
         "properties": {"category": "tents", "sku": "TENT-2"}},
    ]  # fmt: skip
    store = RedisStore(redis_client, prefix=redis_prefix)
    raw = [
        RawRecord(value=orjson.dumps(e), topic="t", partition=0, offset=i)
        for i, e in enumerate(events)
    ]
    run_batch(raw, store, make_context, max_bytes=65536, config=DEFAULT)
    [key] = [k for k in redis_client.scan_iter(f"{redis_prefix}:v1:profile:*")]
    assert b'"v-1"' in (redis_client.hget(key, "s") or b"")  # Loom holds the view

    export = _export(redis_client, redis_prefix, "191167")
    assert export["profile"]["recent_activity"] == []  # personalization denied: not shown
    assert b'"v-1"' in orjson.dumps(export), "the export leaves out a view Loom holds"
    [held] = [b for b in export["behaviour"] if b["event_id"] == "v-1"]
    assert held == {**held, "type": "product_viewed", "channel": "app", "category": "tents",
                    "at": "2026-11-11T10:00:00Z"}  # fmt: skip
    # her consent statements, which Loom keeps to prove them, are hers to see too
    [denial] = export["consent_history"]["personalization"]
    assert denial == {"granted": False, "at": "2026-11-10T10:00:00Z",
                      "source": "consent_updated"}  # fmt: skip


def test_an_export_holds_nothing_of_another_person_on_a_shared_device(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    # Ann and Bob log in on one tablet (shared: it links neither), each buys; someone browses
    # on it logged out. Ann's export is Ann's: her order and views, none of Bob's or the
    # tablet's anonymous browsing, though every purpose is granted
    every = {"analytics": True, "personalization": True, "marketing": True, "ads": True}

    def ev(eid: str, type_: str, day: int, ids: dict[str, str], **more: Any) -> dict[str, Any]:
        return {"event_id": eid, "type": type_, "channel": "web", "region": "US",
                "occurred_at": f"2026-11-0{day}T10:00:00Z", "identifiers": ids,
                "consent": every, **more}  # fmt: skip

    def order(oid: str, category: str) -> dict[str, Any]:
        return {"order_id": oid, "total": "10.00", "currency": "USD",
                "lines": [{"sku": f"S-{category}", "quantity": 1, "unit_price": "10.00",
                           "category": category}]}  # fmt: skip

    ann, bob = {"customer_id": "191167"}, {"customer_id": "555"}
    events = [
        ev("a1", "login", 1, {**ann, "anonymous_id": "tab", "email": "ann@x.no"}),
        ev("a2", "order_completed", 2, {**ann, "anonymous_id": "tab"}, order=order("O-A", "yarn")),
        ev("a3", "product_viewed", 2, {"anonymous_id": "tab", **ann},
           properties={"category": "needles"}),
        ev("b1", "login", 3, {**bob, "anonymous_id": "tab", "email": "bob@x.no"}),
        ev("b2", "order_completed", 4, {**bob, "anonymous_id": "tab"}, order=order("O-B", "golf")),
        ev("b3", "product_viewed", 4, {**bob}, properties={"category": "clubs"}),
        ev("x1", "product_viewed", 5, {"anonymous_id": "tab"}, properties={"category": "fishing"}),
    ]  # fmt: skip
    store = RedisStore(redis_client, prefix=redis_prefix)
    for i, e in enumerate(events):  # one batch each: the tablet becomes shared on the way
        raw = [RawRecord(value=orjson.dumps(e), topic="t", partition=0, offset=i)]
        run_batch(raw, store, make_context, max_bytes=65536, config=DEFAULT)

    export = _export(redis_client, redis_prefix, "191167")
    text = orjson.dumps(export)
    for bobs in (b"555", b"bob@x.no", b"O-B", b"golf", b"clubs", b"fishing", b'"b1"', b'"x1"'):
        assert bobs not in text, bobs
    assert [t["order_id"] for t in export["transactions"]] == ["O-A"]
    assert "needles" in {b.get("category") for b in export["behaviour"]}
