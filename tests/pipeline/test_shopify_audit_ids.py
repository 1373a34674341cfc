"""The consent audit holds no identifiers (docs/consent.md "Audit"), Shopify's customers
included: the event ids the Shopify mapping derives for a customer's webhooks name the delivery,
not the customer (a review of 2026-12-04: ``shopify:<shop>:customer:<customer id>:...`` put the
Shopify customer id, a ``customer_id`` identifier, into every audit record of those events,
where erasing the customer cannot reach it)."""

from __future__ import annotations

from builders import make_context
from pipeline_helpers import record
from shopify_shop import SHOP, delivery, payload

from resolvers.pipeline import PROFILES, run_batch
from resolvers.store import InMemoryStore
from schemas.inbound.shopify import map_webhook
from schemas.normalize import DEFAULT
from schemas.touchpoint import touchpoint_to_json

CUSTOMER = "706405506930370084"  # the customer of the customers/* fixtures
TOPICS = (
    ("customers/create", "w-1"),
    ("customers/update", "w-2"),  # unsubscribes: a revocation, audited on its own
    ("customers_email_marketing_consent/update", "w-3"),
)


def test_no_audit_record_of_a_shopify_customers_events_names_the_customer() -> None:
    touchpoints = [
        tp
        for topic, webhook in TOPICS
        for tp in map_webhook(
            SHOP, delivery(topic, webhook_id=webhook), payload(topic), None
        ).touchpoints
    ]
    assert any(CUSTOMER in tp.identifiers.as_mapping().values() for tp in touchpoints)
    store = InMemoryStore()
    raw = [record(touchpoint_to_json(tp), i) for i, tp in enumerate(touchpoints)]
    run_batch(raw, store, make_context, max_bytes=64 * 1024, config=DEFAULT, lane=PROFILES)
    audits = [r.value for r in store.outbox if r.topic == "consent.audit" and r.value]
    assert audits, "the unsubscription is audited"
    assert all(CUSTOMER.encode() not in value for value in audits)
    assert all(CUSTOMER not in tp.event_id for tp in touchpoints)
