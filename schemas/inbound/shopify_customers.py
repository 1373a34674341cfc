"""Shopify ``customers/create`` and ``customers/update`` to touchpoints, marketing consent included.

* the customer: ``id`` -> ``customer_id``, ``email``, ``phone`` -> identifiers; ``first_name``,
  ``last_name``, ``default_address`` city and zip -> traits; ``default_address.country_code``
  -> region (else the shop's); Shopify's per-channel marketing states are kept as the traits
  ``email_marketing`` and ``sms_marketing`` (``subscribed``, ``not_subscribed``, ...);
* ``customers/create`` -> ``signup`` for a customer with an account (``state`` ``enabled``),
  else ``profile_updated``; ``customers/update`` -> ``profile_updated``; at ``created_at`` /
  ``updated_at``;
* marketing consent: Loom has one ``marketing`` purpose; it is granted while the customer is
  subscribed on any channel (``email_marketing_consent`` or ``sms_marketing_consent`` state
  ``subscribed``) and denied otherwise (``not_subscribed``, ``unsubscribed``, ``pending``
  double opt-in, ``redacted``, ``invalid``). It becomes a ``consent_updated`` touchpoint
  stamped with Shopify's ``consent_updated_at``: for a grant, the earliest of the subscribed
  channels' (each has been subscribed since its own); for a denial, the latest of them all (the
  moment the last subscription ended). A state without a time is stamped with the customer's
  ``updated_at``. A customer with neither consent object sends no consent.

Since API version 2025-01 Shopify leaves both consent objects out of the customer webhooks and
sends each channel's changes on a topic of its own: ``customers_email_marketing_consent/update``
(``customer_id``, ``email_address``, ``email_marketing_consent``) and
``customers_marketing_consent/update`` (``id``, ``phone``, ``sms_marketing_consent``). Each
becomes a ``profile_updated`` keeping that channel's state as its trait, and a
``consent_updated`` of ``marketing`` stamped with the channel's ``consent_updated_at``: granted
when the channel is subscribed, denied otherwise. A denial without that time is stamped with
``X-Shopify-Triggered-At``; a subscription without it is invalid (dead-lettered): Shopify signs
the body, not the header, so a captured "subscribed" body posted again under a new trigger
time would otherwise grant marketing after a later unsubscription (a timed one loses to it:
the lane orders consent by time). One
channel's webhook does not say the other's state, so a channel that stops denies marketing even
while the other may still be subscribed (fail closed: a withdrawal is never ignored); the next
subscription grants it again from its own time.

Event ids: ``shopify:<shop>:customer:<verb>:<delivery>`` (``verb``: ``created``, ``updated``,
``email_marketing``, ``sms_marketing``; the delivery: ``X-Shopify-Event-Id``, else the webhook
id; the consent's with ``:consent``). One delivery carries one customer, so the customer's id is
not needed, and it must not be there: event ids go into the consent audit, which holds no
identifiers (docs/consent.md) and which erasing the customer does not reach.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from schemas.inbound.base import invalid, mapping, timestamp
from schemas.inbound.shopify_common import (
    delivery_key,
    event_id,
    person,
    required_id,
    touchpoint,
    when,
)
from schemas.inbound.shopify_model import Delivery, Mapped, OrderMemo, RememberCustomer, Shop
from schemas.touchpoint import EventType, Touchpoint

#: Shopify's consent objects and the trait each state is kept as.
CONSENT_FIELDS: Final[Mapping[str, str]] = {
    "email_marketing_consent": "email_marketing",
    "sms_marketing_consent": "sms_marketing",
}
SUBSCRIBED: Final = "subscribed"


def customer_created(
    shop: Shop, delivery: Delivery, customer: Mapping[str, Any], _memo: OrderMemo | None
) -> Mapped:
    return _customer(shop, delivery, customer, created=True)


def customer_updated(
    shop: Shop, delivery: Delivery, customer: Mapping[str, Any], _memo: OrderMemo | None
) -> Mapped:
    return _customer(shop, delivery, customer, created=False)


def _customer(
    shop: Shop, delivery: Delivery, customer: Mapping[str, Any], *, created: bool
) -> Mapped:
    customer_id = required_id(customer, "id")
    who = person(customer, "")
    at = (
        when(customer, "created_at", "updated_at")
        if created
        else when(customer, "updated_at", "created_at")
    )
    states = _states(customer)
    traits = {CONSENT_FIELDS[name]: state for name, (state, _) in states.items()}
    kind = (
        EventType.SIGNUP
        if created and customer.get("state") == "enabled"
        else EventType.PROFILE_UPDATED
    )
    verb = "created" if created else "updated"
    base = event_id(shop, "customer", verb, delivery_key(delivery))  # not the customer (module doc)
    out = [
        touchpoint(
            shop,
            {
                "event_id": base,
                "type": kind.value,
                "channel": shop.channel.value,
                "occurred_at": at,
                "traits": traits,
            },
            who=who,
            topic=delivery.topic,
        )
    ]
    decision = marketing(states, fallback=when(customer, "updated_at", "created_at"))
    if decision is not None:
        out.append(_marketing_consent(shop, delivery, base, customer_id, decision))
    return Mapped(tuple(out), (RememberCustomer(customer_id),))


def _marketing_consent(
    shop: Shop, delivery: Delivery, base: str, customer_id: str, decision: tuple[bool, datetime]
) -> Touchpoint:
    """The ``consent_updated`` of Loom's marketing purpose: granted or not, since when."""
    granted, since = decision
    return touchpoint(
        shop,
        {
            "event_id": f"{base}:consent",
            "type": EventType.CONSENT_UPDATED.value,
            "channel": shop.channel.value,
            "occurred_at": since,
            "consent": {"marketing": granted},
            "identifiers": {"customer_id": customer_id},
        },
        topic=delivery.topic,
    )


def _states(customer: Mapping[str, Any]) -> dict[str, tuple[str, datetime | None]]:
    """Per consent object present: its ``state`` (lower case) and ``consent_updated_at``."""
    out = {}
    for name in CONSENT_FIELDS:
        consent = mapping(customer.get(name), name)
        state = consent.get("state")
        if not isinstance(state, str) or not state.strip():
            continue
        at = timestamp(consent.get("consent_updated_at"), f"{name}.consent_updated_at")
        out[name] = (state.strip().lower()[:32], at)
    return out


def marketing(
    states: Mapping[str, tuple[str, datetime | None]], *, fallback: datetime
) -> tuple[bool, datetime] | None:
    """Loom's marketing decision of Shopify's channel states, and since when (module doc)."""
    if not states:
        return None
    subscribed = [at or fallback for state, at in states.values() if state == SUBSCRIBED]
    if subscribed:
        return True, min(subscribed)
    return False, max(at or fallback for _, at in states.values())


def email_consent_updated(
    shop: Shop, delivery: Delivery, payload: Mapping[str, Any], _memo: OrderMemo | None
) -> Mapped:
    """``customers_email_marketing_consent/update`` (module doc)."""
    customer = {"id": payload.get("customer_id"), "email": payload.get("email_address")}
    return _channel_consent(
        shop, delivery, payload, customer, ("customer_id", "email_marketing_consent")
    )


def sms_consent_updated(
    shop: Shop, delivery: Delivery, payload: Mapping[str, Any], _memo: OrderMemo | None
) -> Mapped:
    """``customers_marketing_consent/update``: the SMS channel's consent (module doc)."""
    customer = {"id": payload.get("id"), "phone": payload.get("phone")}
    return _channel_consent(shop, delivery, payload, customer, ("id", "sms_marketing_consent"))


def _channel_consent(
    shop: Shop,
    delivery: Delivery,
    payload: Mapping[str, Any],
    customer: Mapping[str, Any],
    names: tuple[str, str],
) -> Mapped:
    """One channel's consent webhook; ``names``: its customer id field and consent object."""
    id_name, field = names
    customer_id = required_id(customer, "id", id_name)
    states = _states({field: payload.get(field)})
    decision = marketing(states, fallback=delivery.at)
    if decision is None:
        raise invalid(f"{field}.state", "required")
    if decision[0] and states[field][1] is None:
        # a grant must say since when: X-Shopify-Triggered-At is not signed, so a captured
        # body posted again with a new one would grant after a later withdrawal (module doc)
        raise invalid(f"{field}.consent_updated_at", "is required for a subscribed state")
    since = decision[1]
    verb = CONSENT_FIELDS[field]  # email_marketing / sms_marketing
    base = event_id(shop, "customer", verb, delivery_key(delivery))  # not the customer (module doc)
    traits = {CONSENT_FIELDS[name]: state for name, (state, _) in states.items()}
    profile = touchpoint(
        shop,
        {
            "event_id": base,
            "type": EventType.PROFILE_UPDATED.value,
            "channel": shop.channel.value,
            "occurred_at": since,
            "traits": traits,
        },
        who=person(customer, ""),
        topic=delivery.topic,
    )
    consent = _marketing_consent(shop, delivery, base, customer_id, decision)
    return Mapped((profile, consent), (RememberCustomer(customer_id),))
