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
    return handler(shop, delivery, payload, memo)
