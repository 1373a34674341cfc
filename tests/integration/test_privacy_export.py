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
