"""Shopify's mandatory privacy webhooks, and the records Loom's privacy worker writes for them.

* ``customers/redact`` -> an ``erasure_requested`` touchpoint naming the customer's id, e-mail
  and phone (the same pipeline, suppression and announcements as ``loom erase``), the gateway
  forgets the customer and the orders to redact, and the request is recorded;
* ``shop/redact`` -> recorded; ``loom privacy-worker`` then requests the erasure of every
  customer the gateway remembers for the shop and of every guest checkout's e-mail and phone
  that Loom holds under the hashes the gateway remembers (:func:`shop_erasures`), and forgets
  the shop;
* ``customers/data_request`` -> recorded; ``loom privacy-worker`` exports the customer's profile
  as Loom holds it (:func:`export_record`) for the retailer to send.

The request record (:class:`~schemas.inbound.shopify_common.PrivacyRequest`) holds the shop, the
customer and order ids and the ids linking it to what followed, never an e-mail or phone. Its
id is ``shopify:<shop>:privacy:<webhook id>``: a retried webhook is the same request.

What Loom keeps of the person after an erasure names them only through the suppression salt:
a ``customers/redact`` is recorded (:func:`recorded`) with the customer and the orders to
redact as salted SHA-256 digests, and ``privacy.audit`` (kept forever) names every request's
customer by its digest (:func:`audit_record`). In the clear, the request's ``erasure_event_id``
joined ``privacy.erasures`` (its profile id) and the order ids the consent audit's event ids
(``shopify:<shop>:order:<id>``): both joined the erased profile's audit trail to the customer.
Only a ``customers/data_request`` keeps the plain customer id (the privacy worker looks the
profile up by it), on ``privacy.requests``, kept 30 days.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from schemas.inbound.base import invalid, mapping, rfc3339, text
from schemas.inbound.shopify_common import delivery_key, event_id, required_id, touchpoint
from schemas.inbound.shopify_model import (
    ONLINE,
    Delivery,
    ForgetCustomer,
    Mapped,
    OrderMemo,
    PrivacyKind,
    PrivacyRequest,
    Shop,
    shopify_id_text,
)
from schemas.touchpoint import Channel, EventType, Touchpoint


def customer_redact(
    shop: Shop, delivery: Delivery, payload: Mapping[str, Any], _memo: OrderMemo | None
) -> Mapped:
    _same_shop(shop, payload)
    customer = mapping(payload.get("customer"), "customer")
    customer_id = required_id(customer, "id", "customer.id")
    ids = {
        "customer_id": customer_id,
        "email": text(customer.get("email"), "customer.email"),
        "phone": text(customer.get("phone"), "customer.phone"),
    }
    erasure = touchpoint(
        shop,
        {
            "event_id": event_id(shop, "redact", delivery_key(delivery)),
            "type": EventType.ERASURE_REQUESTED.value,
            "channel": Channel.BACKOFFICE.value,
            "occurred_at": delivery.at,
            "identifiers": {k: v for k, v in ids.items() if v is not None},
        },
        topic=delivery.topic,
    )
    orders = _ids(payload.get("orders_to_redact"), "orders_to_redact")
    request = _request(
        shop,
        delivery,
        PrivacyKind.CUSTOMER_REDACT,
        customer_id=customer_id,
        order_ids=orders,
        erasure_event_id=erasure.event_id,
    )
    return Mapped((erasure,), (ForgetCustomer(customer_id, orders),), request)


def shop_redact(
    shop: Shop, delivery: Delivery, payload: Mapping[str, Any], _memo: OrderMemo | None
) -> Mapped:
    _same_shop(shop, payload)
    return Mapped(privacy=_request(shop, delivery, PrivacyKind.SHOP_REDACT))


def data_request(
    shop: Shop, delivery: Delivery, payload: Mapping[str, Any], _memo: OrderMemo | None
) -> Mapped:
    _same_shop(shop, payload)
    customer = mapping(payload.get("customer"), "customer")
    request = mapping(payload.get("data_request"), "data_request")
    return Mapped(
        privacy=_request(
            shop,
            delivery,
            PrivacyKind.DATA_REQUEST,
            customer_id=required_id(customer, "id", "customer.id"),
            order_ids=_ids(payload.get("orders_requested"), "orders_requested"),
            data_request_id=shopify_id_text(request.get("id"), "data_request.id"),
        )
    )


def _same_shop(shop: Shop, payload: Mapping[str, Any]) -> None:
    domain = payload.get("shop_domain")
    if domain is not None and (not isinstance(domain, str) or domain.lower() != shop.domain):
        raise invalid("shop_domain", "is not the shop that signed the webhook")


def _ids(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise invalid(where, "must be a list of ids")
    found = (shopify_id_text(v, f"{where}[{i}]") for i, v in enumerate(value))
    return tuple(sorted({v for v in found if v is not None}))


def _request(shop: Shop, delivery: Delivery, kind: PrivacyKind, **fields: Any) -> PrivacyRequest:
    return PrivacyRequest(
        request_id=event_id(shop, "privacy", delivery_key(delivery)),
        kind=kind,
        shop=shop.name,
        shop_domain=shop.domain,
        received_at=delivery.at,
        **fields,
    )


# --- what the privacy worker writes ----------------------------------------------------------


def shop_erasures(
    request: PrivacyRequest,
    customer_ids: Iterable[str],
    guests: Iterable[tuple[str, str]] = (),
) -> list[Touchpoint]:
    """``shop/redact``: one ``erasure_requested`` per customer of the shop, and per identifier
    ``(type, canonical value)`` of its guest checkouts that Loom holds. Its id is derived from
    the request and the customer (or identifier), so doing it twice requests nothing new,
    through a digest: an erasure's event id is kept on ``privacy.erasures``, which must not
    hold the erased customer's id, e-mail or phone."""
    shop = Shop(name=request.shop, domain=request.shop_domain, online_location=ONLINE)
    named = [(c, {"customer_id": c}) for c in sorted(set(customer_ids))]
    # "type:value" never equals a Shopify customer id (digits): the keys do not collide
    named += [(f"{t}:{v}", {t: v}) for t, v in sorted(set(guests))]
    return [
        touchpoint(
            shop,
            {
                "event_id": event_id(shop, "shop-redact", _erasure_key(request, key)),
                "type": EventType.ERASURE_REQUESTED.value,
                "channel": Channel.BACKOFFICE.value,
                "occurred_at": request.received_at,
                "identifiers": identifiers,
            },
            topic="shop/redact",
        )
        for key, identifiers in named
    ]


def _erasure_key(request: PrivacyRequest, customer_id: str) -> str:
    """A digest of the request and one of its customers: it does not show the customer's id
    (only someone who knows both could confirm it)."""
    text = f"{request.request_id}\n{customer_id}".encode()
    return hashlib.sha256(text).hexdigest()[:32]


def export_record(
    request: PrivacyRequest,
    profile: Mapping[str, Any] | None,
    exported_at: datetime,
    *,
    held: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``customers/data_request``: the customer's profile snapshot as Loom holds it (``None``
    when Loom holds nothing), with what the profile keeps that the snapshot may not show
    (``held``: ``transactions``, every order and return kept for the books; ``behaviour``,
    every kept event and day digest; ``consent_history``, the statements per purpose; each
    ``None`` when not read), for the retailer to send to the customer."""
    kept = held or {}
    return {
        "request_id": request.request_id,
        "shop": request.shop,
        "shop_domain": request.shop_domain,
        "data_request_id": request.data_request_id,
        "customer_id": request.customer_id,
        "orders_requested": list(request.order_ids),
        "found": profile is not None,
        "profile": dict(profile) if profile is not None else None,
        "transactions": _listed(kept.get("transactions")),
        "behaviour": _listed(kept.get("behaviour")),
        "consent_history": kept.get("consent_history"),
        "exported_at": rfc3339(exported_at),
    }


def digest(salt: bytes, value: str) -> str:
    """The salted SHA-256 (hex) by which the privacy trail names a customer or an order: the
    retailer, holding the salt, can find a customer's requests; nobody else can link them (the
    same digest as the gateway's ``redacted`` set, :mod:`streams.shopify_memory`)."""
    return hashlib.sha256(salt + value.encode()).hexdigest()


def recorded(request: PrivacyRequest, salt: bytes) -> PrivacyRequest:
    """The request as ``privacy.requests`` keeps it: a ``customers/redact`` without its
    customer's and orders' ids, which are in its digests instead (module doc); any other
    request with its customer's digest beside the id."""
    if request.customer_id is None:
        return request
    named = digest(salt, request.customer_id)
    if request.kind is not PrivacyKind.CUSTOMER_REDACT:
        return replace(request, customer_digest=named)
    return replace(
        request,
        customer_id=None,
        order_ids=(),
        customer_digest=named,
        order_digests=tuple(sorted(digest(salt, o) for o in request.order_ids)),
    )


def _listed(entries: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]] | None:
    return [dict(e) for e in entries] if entries is not None else None


def audit_record(
    request: PrivacyRequest, outcome: str, done_at: datetime, *, salt: bytes, **counts: int
) -> dict[str, Any]:
    """What Loom did about a privacy request (``privacy.audit``, kept forever): ids and counts
    only, the customer by salted digest (never their id: module doc)."""
    named = request.customer_digest
    if named is None and request.customer_id is not None:
        named = digest(salt, request.customer_id)
    return {
        "request_id": request.request_id,
        "kind": request.kind.value,
        "shop": request.shop,
        "customer_digest": named,
        "outcome": outcome,
        **counts,
        "done_at": rfc3339(done_at),
    }


def request_from_json(data: Mapping[str, Any]) -> PrivacyRequest:
    """A request record read back from ``privacy.requests``."""
    try:
        received = datetime.fromisoformat(str(data["received_at"]))
        return PrivacyRequest(
            request_id=str(data["request_id"]),
            kind=PrivacyKind(data["kind"]),
            shop=str(data["shop"]),
            shop_domain=str(data["shop_domain"]),
            received_at=received,
            customer_id=data.get("customer_id"),
            order_ids=tuple(data.get("order_ids") or ()),
            data_request_id=data.get("data_request_id"),
            erasure_event_id=data.get("erasure_event_id"),
            customer_digest=data.get("customer_digest"),
            order_digests=tuple(data.get("order_digests") or ()),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise invalid(None, f"not a privacy request record ({type(exc).__name__})") from None
