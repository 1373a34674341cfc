"""What the privacy trail keeps of a customer (schemas.inbound.shopify_privacy, ADR 0007's note
on the salt): a ``customers/redact`` is recorded with its customer and orders as salted
digests, ``privacy.audit`` names customers by digest only, and the request topic, where a data
request names the customer's id, is kept 30 days. The end-to-end proof is
tests/e2e/test_erasure_leftovers_e2e.py."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import orjson
from shopify_shop import SHOP, delivery, payload

from schemas.inbound.shopify import map_webhook
from schemas.inbound.shopify_model import PrivacyKind
from schemas.inbound.shopify_privacy import audit_record, recorded, request_from_json
from streams.settings import LoomSettings
from streams.topics import topic_specs

SALT = b"a-salt-of-the-deployment"
DONE = datetime(2022, 1, 10, 12, 5, tzinfo=UTC)


def salted(value: str) -> str:
    return hashlib.sha256(SALT + value.encode()).hexdigest()


def test_a_redact_is_recorded_and_audited_without_the_customers_or_orders_ids() -> None:
    request = map_webhook(SHOP, delivery("customers/redact"), payload("customers/redact")).privacy
    assert request is not None
    assert request.customer_id == "191167"
    kept = recorded(request, SALT)
    record = orjson.dumps(kept.to_json())
    for plain in (b"191167", b"299938", b"280263", b"220458"):
        assert plain not in record
    back = request_from_json(orjson.loads(record))
    assert back.kind is PrivacyKind.CUSTOMER_REDACT
    assert back.customer_digest == salted("191167")
    assert back.order_digests == tuple(sorted(salted(o) for o in ("220458", "280263", "299938")))
    assert back.erasure_event_id == request.erasure_event_id
    audit = orjson.dumps(audit_record(back, "erasure_requested", DONE, salt=SALT, erasures=1))
    assert b"191167" not in audit
    assert orjson.loads(audit)["customer_digest"] == salted("191167")


def test_a_data_request_keeps_the_id_the_worker_needs_and_its_audit_names_the_digest() -> None:
    request = map_webhook(
        SHOP, delivery("customers/data_request"), payload("customers/data_request")
    ).privacy
    assert request is not None
    back = request_from_json(orjson.loads(orjson.dumps(recorded(request, SALT).to_json())))
    assert (back.customer_id, back.customer_digest) == ("191167", salted("191167"))
    # the audit is kept forever: the digest, even for a request read without one
    for asked in (back, request):
        audit = audit_record(asked, "exported", DONE, salt=SALT, profiles=1)
        assert "customer_id" not in audit
        assert audit["customer_digest"] == salted("191167")


def test_the_requests_are_kept_thirty_days_and_the_audit_for_good() -> None:
    settings = LoomSettings()
    specs = topic_specs(settings)
    t = settings.topics
    month, day = str(30 * 24 * 3600 * 1000), str(24 * 3600 * 1000)
    for name in (t.privacy_requests, t.privacy_exports):
        assert (specs[name][1]["retention.ms"], specs[name][1]["segment.ms"]) == (month, day)
    assert specs[t.privacy_audit][1]["retention.ms"] == "-1"
