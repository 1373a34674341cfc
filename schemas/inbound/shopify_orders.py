"""Shopify orders (``orders/create``) to touchpoints, and the stock model of a Shopify shop.

Shopify reports stock as *available* per location (``inventory_levels/update``), which already
leaves out units promised to unfulfilled orders; Loom records each level as a count of
``on_hand`` at that location (:mod:`schemas.inbound.shopify_inventory`). So an online order's
units leave the location's availability as they do in Shopify, and Loom holds them, on hand and
committed, at its ``online`` location until they ship (ADR 0007):

* POS (``source_name`` ``pos``): ``pos_sale`` at the order's ``location_id``;
* online (any other source): ``order_completed`` at ``online`` (committed += q) and, per SKU, a
  transfer of q from the shop's ``online_location`` to ``online`` (two ``inventory_adjusted``,
  reason ``transfer``). A fulfilment then ships them from ``online``
  (:mod:`schemas.inbound.shopify_fulfilments`), a cancellation puts them back
  (:mod:`schemas.inbound.shopify_refunds`).

So per location Loom shows what Shopify shows available, ``online`` shows what was sold online
and not shipped yet, and the totals are Shopify's on hand, committed and available.

The order: ``id`` -> ``order_id`` (``name``, e.g. ``#1001``, and ``source_name`` in
``properties``), ``total_price`` and ``currency`` as exact decimals, ``payment_gateway_names``
-> ``payment_method`` (:data:`PAYMENT_METHODS`), ``source_name`` -> channel (:data:`CHANNELS`),
``processed_at`` (else ``created_at``) -> ``occurred_at``; its ``customer`` (``id``, ``email``,
``phone``, names), else the order's own ``email``/``phone``, and the billing country as region.
Lines: the variant's SKU (renamed by the shop's ``skus``), quantity, unit price; lines without a
SKU (gift cards, custom items) keep no stock and are left out, and an order with none left is
invalid. A line whose variant does not track inventory (``variant_inventory_management``
``null``; Shopify changes no inventory for it) is kept with ``tracked: false``: it is part of
the purchase (the profile counts its product) and moves no stock, here or in the fulfilments,
refunds and cancellations that name it (no transfer either). The event id is the order's,
``shopify:<shop>:order:<id>``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from schemas.identifiers import Identifier
from schemas.inbound.base import currency, invalid, mapping, text
from schemas.inbound.shopify_common import (
    Person,
    amount,
    event_id,
    objects,
    person,
    quantity_of,
    required_id,
    sku_of,
    stock_tracked,
    touchpoint,
    when,
)
from schemas.inbound.shopify_model import (
    ONLINE,
    Delivery,
    Mapped,
    MemoryOp,
    OrderMemo,
    RememberCustomer,
    RememberGuest,
    RememberOrder,
    Shop,
    shopify_id_text,
)
from schemas.normalize import normalize_one
from schemas.touchpoint import Channel, EventType, InventoryReason, Touchpoint

#: ``payment_gateway_names`` -> Loom payment method (others: the name, lower-cased).
PAYMENT_METHODS: Final[Mapping[str, str]] = {
    "shopify_payments": "card",
    "credit_card": "card",
    "visa": "card",
    "mastercard": "card",
    "american_express": "card",
    "stripe": "card",
    "adyen": "card",
    "braintree": "card",
    "authorize_net": "card",
    "cash": "cash",
    "paypal": "paypal",
    "paypal_express_checkout": "paypal",
    "shop_pay": "shop_pay",
    "shop_pay_installments": "shop_pay",
    "gift_card": "gift_card",
    "manual": "manual",
    "bogus": "test",
}
#: ``source_name`` -> channel (others: the shop's channel, ``web`` by default).
CHANNELS: Final[Mapping[str, Channel]] = {
    "pos": Channel.POS,
    "iphone": Channel.APP,
    "android": Channel.APP,
    "shopify_draft_order": Channel.BACKOFFICE,
}


@dataclass(frozen=True, slots=True)
class Line:
    """A stock-keeping line item (``tracked``: its variant's stock is tracked, module doc)."""

    sku: str
    quantity: int
    unit_price: Decimal | None = None
    location: str | None = None
    tracked: bool = True

    def as_order_line(self, *, restock: bool | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"sku": self.sku, "quantity": self.quantity}
        if self.unit_price is not None:
            out["unit_price"] = str(self.unit_price)
        if restock is not None:
            out["restock"] = restock
        if not self.tracked:
            out["tracked"] = False
        return out


def summed(lines: Sequence[Line]) -> list[Line]:
    """Quantities summed per SKU (and whether it is tracked), sorted, zero quantities left out:
    the lines of a release."""
    totals: dict[tuple[str, bool], int] = {}
    for ln in lines:
        totals[(ln.sku, ln.tracked)] = totals.get((ln.sku, ln.tracked), 0) + ln.quantity
    return [Line(sku, q, tracked=t) for (sku, t), q in sorted(totals.items()) if q > 0]


def payment_method(names: object) -> str | None:
    """The Loom payment method of ``payment_gateway_names`` (a gift card only when nothing
    else paid)."""
    if not isinstance(names, list):
        return None
    methods = [
        PAYMENT_METHODS.get(key, key)[:32]
        for name in names
        if isinstance(name, str) and (key := name.strip().lower().replace(" ", "_"))
    ]
    paying = [m for m in methods if m != "gift_card"] or methods
    return paying[0] if paying else None


def channel_of(shop: Shop, order: Mapping[str, Any]) -> Channel:
    source = order.get("source_name")
    return CHANNELS.get(source, shop.channel) if isinstance(source, str) else shop.channel


def order_person(order: Mapping[str, Any]) -> Person:
    """Who placed the order: its customer, else the order's own e-mail and phone."""
    return person(
        mapping(order.get("customer"), "customer"),
        "customer",
        email=order.get("email") or order.get("contact_email"),
        phone=order.get("phone"),
        address=mapping(order.get("billing_address"), "billing_address") or None,
    )


def item_lines(shop: Shop, items: Sequence[Mapping[str, Any]], where: str) -> list[Line]:
    """The stock-keeping lines of line items (sku, quantity, unit price)."""
    out = []
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        sku = sku_of(shop, item, at)
        q = quantity_of(item, at)
        if sku is None or q == 0:
            continue
        price = amount(item["price"], f"{at}.price") if item.get("price") is not None else None
        out.append(Line(sku, q, price, tracked=stock_tracked(item)))
    return out


# --- orders/create --------------------------------------------------------------------------


def order_created(
    shop: Shop, delivery: Delivery, order: Mapping[str, Any], _memo: OrderMemo | None
) -> Mapped:
    order_id = required_id(order, "id")
    at = when(order, "processed_at", "created_at")
    who = order_person(order)
    lines = item_lines(shop, objects(order.get("line_items"), "line_items"), "line_items")
    if not lines:
        raise invalid("line_items", "no line item has a SKU (Loom keeps stock-keeping lines)")
    body = {
        "order_id": order_id,
        "currency": currency(order.get("currency"), "currency", shop.currency),
        "lines": [ln.as_order_line() for ln in lines],
    }
    total = order.get("total_price")
    if total is not None:
        body["total"] = str(amount(total, "total_price"))
    else:
        body["total"] = str(sum((ln.unit_price or Decimal(0)) * ln.quantity for ln in lines))
    if (method := payment_method(order.get("payment_gateway_names"))) is not None:
        body["payment_method"] = method
    properties = _order_properties(order)
    remember: list[MemoryOp] = []
    if who.customer_id is not None:
        remember.append(RememberCustomer(who.customer_id))
    if order.get("source_name") == "pos":
        store = shop.location(order.get("location_id"), "location_id")
        sale = touchpoint(
            shop,
            {
                "event_id": event_id(shop, "order", order_id),
                "type": EventType.POS_SALE.value,
                "channel": Channel.POS.value,
                "occurred_at": at,
                "order": {**body, "location_id": store},
                "properties": properties,
            },
            who=who,
            topic=delivery.topic,
        )
        memo = OrderMemo(customer_id=who.customer_id, committed_at=None)
        remember += guest_identifiers(sale, who)
        return Mapped((sale,), (*remember, RememberOrder(order_id, memo)))
    placed = touchpoint(
        shop,
        {
            "event_id": event_id(shop, "order", order_id),
            "type": EventType.ORDER_COMPLETED.value,
            "channel": channel_of(shop, order).value,
            "occurred_at": at,
            "order": {**body, "location_id": ONLINE},
            "properties": properties,
        },
        who=who,
        topic=delivery.topic,
    )
    moved = transfers(
        shop,
        [(ln.sku, ln.quantity, shop.online_location) for ln in lines if ln.tracked],
        to_online=True,
        at=at,
        ids=lambda i, leg: event_id(shop, "order", order_id, leg, str(i)),
        topic=delivery.topic,
    )
    memo = OrderMemo(customer_id=who.customer_id, committed_at=shop.online_location)
    remember += guest_identifiers(placed, who)
    return Mapped((placed, *moved), (*remember, RememberOrder(order_id, memo)))


#: The identifiers of a guest checkout that ``shop/redact`` erases.
GUEST_TYPES: Final = ("email", "phone")


def guest_identifiers(order: Touchpoint, who: Person) -> list[MemoryOp]:
    """A guest checkout's (no customer) e-mail and phone, canonical as the pipeline makes them
    (with the order's region), for ``shop/redact``; none for a customer's order (the customer
    id is remembered, and its erasure follows the e-mail and phone)."""
    if who.customer_id is not None:
        return []
    ids = order.identifiers.builtin()
    out: list[MemoryOp] = []
    for id_type in GUEST_TYPES:
        raw = ids.get(id_type)
        if raw is None:
            continue
        found = normalize_one(id_type, raw, region=order.region)
        if isinstance(found, Identifier):
            out.append(RememberGuest(found.type, found.value))
    return out


def _order_properties(order: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    name = text(order.get("name"), "name", max_length=64)
    if name is not None:
        out["order_name"] = name
    source = text(order.get("source_name"), "source_name", max_length=64)
    if source is not None:
        out["source_name"] = source
    return out


def transfers(
    shop: Shop,
    moves: Sequence[tuple[str, int, str]],
    *,
    to_online: bool,
    at: datetime,
    ids: Callable[[int, str], str],
    topic: str,
) -> list[Touchpoint]:
    """Per (sku, location) summed: q units from ``location`` to ``online`` (or back), as two
    ``inventory_adjusted`` touchpoints with reason ``transfer``. None when the location is
    ``online`` itself."""
    summed: dict[tuple[str, str], int] = {}
    for sku, q, location in moves:
        summed[(sku, location)] = summed.get((sku, location), 0) + q
    out = []
    sign = 1 if to_online else -1
    for i, ((sku, location), q) in enumerate(sorted(summed.items())):
        if q <= 0 or location == ONLINE:
            continue
        for leg, where, delta in (("take", location, -sign * q), ("hold", ONLINE, sign * q)):
            move = (sku, where, delta)
            reason = InventoryReason.TRANSFER
            out.append(adjustment(shop, ids(i, leg), move, reason, at=at, topic=topic))
    return out


def adjustment(
    shop: Shop,
    event: str,
    move: tuple[str, str, int],
    reason: InventoryReason,
    *,
    at: datetime,
    topic: str,
) -> Touchpoint:
    """An ``inventory_adjusted`` touchpoint: ``move`` = (sku, location, signed delta)."""
    sku, location, delta = move
    return touchpoint(
        shop,
        {
            "event_id": event,
            "type": EventType.INVENTORY_ADJUSTED.value,
            "channel": Channel.BACKOFFICE.value,
            "occurred_at": at,
            "inventory": {
                "sku": sku,
                "location_id": location,
                "delta": delta,
                "reason": reason.value,
            },
        },
        topic=topic,
    )


#: Topics of this module and whether the gateway must look up the order's memo (by which
#: payload field) before mapping.
ORDER_ID_FIELD: Final[Mapping[str, str]] = {
    "orders/fulfilled": "id",
    "orders/cancelled": "id",
    "fulfillments/create": "order_id",
    "refunds/create": "order_id",
}


def memo_order_id(topic: str, payload: Mapping[str, Any]) -> str | None:
    """The id of the order whose memo mapping ``topic`` needs, if any."""
    name = ORDER_ID_FIELD.get(topic)
    if name is None:
        return None
    return shopify_id_text(payload.get(name), name)
