"""An older signed Shopify body posted again under new headers (a review of 2026-12-04).

Shopify signs the body, not ``X-Shopify-Webhook-Id``, ``X-Shopify-Event-Id`` or
``X-Shopify-Triggered-At``, and the customer, consent, inventory level and privacy webhooks take
their event ids from those headers: whoever holds an older body (a proxy's log, a dead letter)
can post it again as a new event. These tests drive the gateway's mapping and both lanes:

* a consent body with its ``consent_updated_at`` and a level with its ``updated_at`` lose to a
  later state: the lanes order consent and counts by those signed times, not by arrival
  (guards: these held before the review);
* a subscription without ``consent_updated_at`` took the unsigned trigger time, so posted again
  it subscribed a customer who had unsubscribed since: it is now dead-lettered;
* a shop's erasures named the Shopify customer in their event ids, kept on
  ``privacy.erasures`` after the erasure: a digest now.

Known limits (README "Shopify", ADR 0007's note): two levels stamped in the same second are
ordered by ``X-Shopify-Triggered-At``, and a disconnect (its body has no time) is a count of 0
at that time, so an older body of either, posted again, wins there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pipeline_helpers import record, run_lanes
from shopify_shop import SHOP, WAREHOUSE, delivery, level_payload, payload

from resolvers.pipeline import BatchResult
from resolvers.store import InMemoryStore, Kind
from schemas.errors import InvalidEvent
from schemas.inbound.shopify import map_webhook
from schemas.inbound.shopify_privacy import shop_erasures
from schemas.touchpoint import dump_touchpoint
from streams.dlq import dlq_headers

EMAIL = "customers_email_marketing_consent/update"
SMS = "customers_marketing_consent/update"
CONSENT = {
    EMAIL: ("email_marketing_consent", "email_marketing"),
    SMS: ("sms_marketing_consent", "sms_marketing"),
}
LEVEL = "inventory_levels/update"
#: The customer of the consent fixtures; the customer of customers/redact.
CUSTOMER, REDACTED = "706405506930370084", "191167"


def posted(topic: str, body: dict[str, Any], n: int, at: datetime) -> list[dict[str, Any]]:
    """What the gateway sends to the raw topic for ``body`` posted as delivery ``n`` (its own
    webhook and event ids, fired at ``at``): nothing when it is dead-lettered."""
    sent = delivery(topic, webhook_id=f"w-{n}", event_id=f"e-{n}", triggered_at=at)
    try:
        mapped = map_webhook(SHOP, sent, body)
    except InvalidEvent:
        return []
    return [orjson.loads(dump_touchpoint(tp)) for tp in mapped.touchpoints]


def run(store: InMemoryStore, events: list[dict[str, Any]], first: int) -> BatchResult:
    return run_lanes([record(e, first + i) for i, e in enumerate(events)], store)


def consent_body(topic: str, state: str, at: str | None) -> dict[str, Any]:
    body = payload(topic)
    name, _ = CONSENT[topic]
    body[name] = {**body[name], "state": state, "consent_updated_at": at}
    return body


def marketing(store: InMemoryStore, topic: str) -> tuple[bool, str]:
    """The customer's marketing consent and the channel's state trait, as the profile holds them."""
    [profile] = [
        orjson.loads(e.fields["d"])
        for ref, e in store.entities.items()
        if ref.kind is Kind.PROFILE and "d" in e.fields
    ]
    return profile["consent"]["marketing"]["granted"], profile["traits"][CONSENT[topic][1]]


def on_hand(store: InMemoryStore, location: str) -> int:
    [level] = [
        orjson.loads(e.fields["d"])["locations"][location]
        for ref, e in store.entities.items()
        if ref.kind is Kind.STOCK
    ]
    return int(level["on_hand"])


T1, T2, LATER = (datetime(2022, 1, d, 14, 0, tzinfo=UTC) for d in (5, 7, 9))


def subscribed_then_unsubscribed(topic: str) -> tuple[InMemoryStore, dict[str, Any]]:
    """A store where the customer subscribed (Jan 5) and then unsubscribed (Jan 7) on
    ``topic``'s channel, and the subscription's body."""
    store = InMemoryStore()
    subscribed = consent_body(topic, "subscribed", "2022-01-05T09:00:00-05:00")
    unsubscribed = consent_body(topic, "unsubscribed", "2022-01-07T09:00:00-05:00")
    run(store, posted(topic, subscribed, 1, T1) + posted(topic, unsubscribed, 2, T2), 0)
    return store, subscribed


@pytest.mark.parametrize("topic", [EMAIL, SMS])
def test_an_older_subscription_posted_again_does_not_subscribe_the_customer_again(
    topic: str,
) -> None:
    store, subscribed = subscribed_then_unsubscribed(topic)
    again = posted(topic, subscribed, 3, LATER)
    assert again, "mapped again: a new event to the workers"
    run(store, again, 100)
    assert marketing(store, topic) == (False, "unsubscribed")


@pytest.mark.parametrize("topic", [EMAIL, SMS])
def test_a_subscription_without_its_time_posted_again_does_not_subscribe_the_customer_again(
    topic: str,
) -> None:
    store, _ = subscribed_then_unsubscribed(topic)
    # a captured body whose subscription has no time: the trigger time (a header) stamped it
    timeless = consent_body(topic, "subscribed", None)
    run(store, posted(topic, timeless, 3, LATER), 100)
    assert marketing(store, topic) == (False, "unsubscribed")


def test_an_older_level_posted_again_does_not_restore_it() -> None:
    store = InMemoryStore()
    eight, three = level_payload(WAREHOUSE, 8, T1), level_payload(WAREHOUSE, 3, T2)
    run(store, posted(LEVEL, eight, 1, T1) + posted(LEVEL, three, 2, T2), 0)
    again = posted(LEVEL, eight, 3, LATER)
    assert again, "mapped again: a new event to the workers"
    run(store, again, 100)
    assert on_hand(store, "ottawa-warehouse") == 3


def test_a_shops_erasures_name_no_customer_on_privacy_erasures() -> None:
    store = InMemoryStore()
    run(store, posted(EMAIL, payload(EMAIL), 1, T1), 0)
    request = map_webhook(SHOP, delivery("shop/redact", webhook_id="w-2"), payload("shop/redact"))
    assert request.privacy is not None
    erasures = [
        orjson.loads(dump_touchpoint(tp)) for tp in shop_erasures(request.privacy, [CUSTOMER])
    ]
    assert [e["identifiers"] for e in erasures] == [{"customer_id": CUSTOMER}]
    run(store, erasures, 100)
    erased = [r.value for r in store.outbox if r.topic == "privacy.erasures" and r.value]
    assert erased, "the customer's profile was erased"
    assert [value for value in erased if CUSTOMER.encode() in value] == []
    # the same request and customer: the same id (done again, it requests nothing new)
    assert shop_erasures(request.privacy, [CUSTOMER])[0].event_id == erasures[0]["event_id"]


def test_a_customer_redacts_ids_and_dead_letter_headers_name_no_customer() -> None:
    body = payload("customers/redact")
    named = [REDACTED, body["customer"]["email"], body["customer"]["phone"]]
    mapped = map_webhook(SHOP, delivery("customers/redact", webhook_id="w-1"), body)
    assert mapped.privacy is not None
    [erasure] = mapped.touchpoints
    ids = [erasure.event_id, mapped.privacy.request_id, mapped.privacy.erasure_event_id or ""]
    assert not [i for i in ids for value in named if value in i]
    # the erasure dead-lettered by a lane (stamped beyond the clock skew): its headers
    future = delivery(
        "customers/redact", webhook_id="w-2", triggered_at=datetime(2099, 1, 1, tzinfo=UTC)
    )
    [late] = map_webhook(SHOP, future, body).touchpoints
    result = run(InMemoryStore(), [orjson.loads(dump_touchpoint(late))], 0)
    [dead] = result.dead_letters
    headers = b"".join(
        (k.encode() + (v.encode() if isinstance(v, str) else v or b""))
        for k, v in dlq_headers(dead, T1, lane="profiles")
    )
    assert not [value for value in named if value.encode() in headers]


def customer_body(first_name: str, state: str, at: str) -> dict[str, Any]:
    body = payload("customers/update")
    body.update({"first_name": first_name, "updated_at": at})
    body["email_marketing_consent"] = {**body["email_marketing_consent"], "state": state,
                                       "consent_updated_at": at}  # fmt: skip
    del body["sms_marketing_consent"]
    return body


def test_an_older_customer_update_posted_again_restores_neither_its_traits_nor_its_consent() -> (
    None
):
    store = InMemoryStore()
    older = customer_body("Robert", "subscribed", "2022-01-05T09:00:00-05:00")
    newer = customer_body("Bob", "unsubscribed", "2022-01-07T09:00:00-05:00")
    topic = "customers/update"
    run(store, posted(topic, older, 1, T1) + posted(topic, newer, 2, T2), 0)
    again = posted(topic, older, 3, LATER)
    assert again, "mapped again: a new event to the workers"
    run(store, again, 100)
    assert marketing(store, EMAIL) == (False, "unsubscribed")
    [profile] = [
        orjson.loads(e.fields["d"])
        for ref, e in store.entities.items()
        if ref.kind is Kind.PROFILE and "d" in e.fields
    ]
    assert profile["traits"]["first_name"] == "Bob"
