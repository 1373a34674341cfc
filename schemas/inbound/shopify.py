"""Shopify webhooks (Admin API, JSON) to touchpoint v1: which topic goes where.

One webhook becomes a :class:`~schemas.inbound.shopify_common.Mapped`: zero or more touchpoints
(an online order is the order and its stock transfers; a fulfilment of a POS sale is nothing),
what the gateway must remember of orders and customers, and for the privacy topics a request
record. The README's "Shopify" section documents the table; each topic's module documents its
rules:

=============================================================  ===============================
topics                                                          module
=============================================================  ===============================
``orders/create``                                                :mod:`.shopify_orders`
``orders/fulfilled``, ``fulfillments/create``                   :mod:`.shopify_fulfilments`
``orders/cancelled``, ``refunds/create``                        :mod:`.shopify_refunds`
``customers/create``, ``customers/update``, the consent topics :mod:`.shopify_customers`
``inventory_levels/update``, ``/connect``, ``/disconnect``      :mod:`.shopify_inventory`
``customers/redact``, ``shop/redact``, ``customers/data_request``  :mod:`.shopify_privacy`
=============================================================  ===============================

Pure: the gateway passes the shop's configuration, the delivery's headers and, for the topics
that need it (:func:`memo_order_id`), what it remembers of the order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from schemas.errors import UNKNOWN_TYPE, InvalidEvent
from schemas.inbound import shopify_customers as customers
from schemas.inbound import shopify_fulfilments as fulfilments
from schemas.inbound import shopify_inventory as inventory
from schemas.inbound import shopify_orders as orders
from schemas.inbound import shopify_privacy as privacy
from schemas.inbound import shopify_refunds as refunds
from schemas.inbound.base import invalid
from schemas.inbound.shopify_model import Delivery, Mapped, OrderMemo, Shop

Handler = Callable[[Shop, Delivery, Mapping[str, Any], OrderMemo | None], Mapped]

#: Every topic Loom maps (``X-Shopify-Topic``) and its handler.
TOPICS: Final[Mapping[str, Handler]] = {
    "orders/create": orders.order_created,
    "orders/fulfilled": fulfilments.order_fulfilled,
    "fulfillments/create": fulfilments.fulfillment_created,
    "orders/cancelled": refunds.order_cancelled,
    "refunds/create": refunds.refund_created,
    "customers/create": customers.customer_created,
    "customers/update": customers.customer_updated,
    "customers_email_marketing_consent/update": customers.email_consent_updated,
    "customers_marketing_consent/update": customers.sms_consent_updated,
    "inventory_levels/update": inventory.level_changed,
    "inventory_levels/connect": inventory.level_changed,
    "inventory_levels/disconnect": inventory.level_disconnected,
    "customers/redact": privacy.customer_redact,
    "shop/redact": privacy.shop_redact,
    "customers/data_request": privacy.data_request,
}
#: The compliance topics every public Shopify app must handle.
COMPLIANCE_TOPICS: Final = ("customers/data_request", "customers/redact", "shop/redact")


# --- does the body fit its topic? ------------------------------------------------------------
#
# Shopify signs the body, not ``X-Shopify-Topic``: whoever holds one signed body (a dead letter
# keeps it with its signature, a proxy's log) can post it again under another topic. Each topic
# names the kind of body it carries; a body is refused when it lacks a key its topic's bodies
# always carry, or carries a key only another kind's bodies carry (top-level keys of Shopify's
# documented payloads, ``tests/fixtures/shopify/reference/``). Topics of one kind carry the
# same resource (an order under orders/create, /fulfilled, /cancelled): there a value says
# which, where it matters (an order that is not cancelled is no cancellation).

#: Keys only one kind of body carries at its top level.
MARKS: Final[Mapping[str, frozenset[str]]] = {
    "order": frozenset({"order_number", "financial_status", "total_price", "line_item_groups"}),
    "fulfillment": frozenset({"tracking_number", "tracking_numbers", "shipment_status"}),
    "refund": frozenset({"refund_line_items", "order_adjustments"}),
    "customer": frozenset({"state", "verified_email", "addresses", "multipass_identifier"}),
    "email_consent": frozenset({"email_address", "customer_id"}),
    "sms_consent": frozenset(),
    "level": frozenset({"available"}),
    "level_gone": frozenset(),
    "customer_redact": frozenset({"orders_to_redact"}),
    "data_request": frozenset({"data_request", "orders_requested"}),
    "shop_redact": frozenset(),
}


@dataclass(frozen=True, slots=True)
class Shape:
    """A topic's body: its kind (:data:`MARKS`), the keys it always carries, and those that
    must also not be null."""

    kind: str
    needs: tuple[str, ...]
    not_null: tuple[str, ...] = ()

    def refused(self) -> frozenset[str]:
        return frozenset().union(*(m for kind, m in MARKS.items() if kind != self.kind))


_ORDER: Final = ("id", "line_items", "financial_status")
_COMPLIANCE: Final = ("shop_id", "shop_domain")
SHAPES: Final[Mapping[str, Shape]] = {
    "orders/create": Shape("order", _ORDER),
    "orders/fulfilled": Shape("order", _ORDER),
    "orders/cancelled": Shape("order", _ORDER, not_null=("cancelled_at",)),
    "fulfillments/create": Shape("fulfillment", ("id", "order_id", "line_items")),
    "refunds/create": Shape("refund", ("id", "order_id", "refund_line_items")),
    "customers/create": Shape("customer", ("id", "state")),
    "customers/update": Shape("customer", ("id", "state")),
    "customers_email_marketing_consent/update": Shape(
        "email_consent", ("customer_id", "email_marketing_consent")
    ),
    "customers_marketing_consent/update": Shape("sms_consent", ("id", "sms_marketing_consent")),
    "inventory_levels/update": Shape("level", ("inventory_item_id", "location_id", "available")),
    "inventory_levels/connect": Shape("level", ("inventory_item_id", "location_id", "available")),
    "inventory_levels/disconnect": Shape("level_gone", ("inventory_item_id", "location_id")),
    "customers/redact": Shape("customer_redact", (*_COMPLIANCE, "customer", "orders_to_redact")),
    "shop/redact": Shape("shop_redact", _COMPLIANCE),
    "customers/data_request": Shape("data_request", (*_COMPLIANCE, "customer", "data_request")),
}
_REFUSED: Final[Mapping[str, frozenset[str]]] = {t: s.refused() for t, s in SHAPES.items()}


def check_topic(topic: str, payload: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidEvent` (naming the key, never a value) unless ``payload`` is a body
    of ``topic`` (a topic Loom maps)."""
    shape = SHAPES[topic]
    for key in shape.needs:
        if key not in payload:
            raise invalid(key, f"is required: the body is not a {topic} body")
    for key in shape.not_null:
        if payload.get(key) is None:
            raise invalid(key, f"is null: the body is not a {topic} body")
    if foreign := sorted(_REFUSED[topic].intersection(payload)):
        raise invalid(foreign[0], f"belongs to another topic: the body is not a {topic} body")


def memo_order_id(topic: str, payload: object) -> str | None:
    """The order whose memo the gateway must look up before mapping ``payload``, if any."""
    if not isinstance(payload, Mapping):
        return None
    try:
        return orders.memo_order_id(topic, payload)
    except InvalidEvent:
        return None  # the mapping reports it


def map_webhook(
    shop: Shop, delivery: Delivery, payload: object, memo: OrderMemo | None = None
) -> Mapped:
    """One webhook's touchpoints, memory and privacy request; raises :class:`InvalidEvent`
    naming Shopify's field (``X-Shopify-Topic`` for a topic Loom does not map)."""
    handler = TOPICS.get(delivery.topic)
    if handler is None:
        raise InvalidEvent(UNKNOWN_TYPE, "not a topic Loom maps", field="X-Shopify-Topic")
    if not isinstance(payload, Mapping):
        raise invalid(None, "the payload must be a JSON object")
    check_topic(delivery.topic, payload)
    return handler(shop, delivery, payload, memo)
