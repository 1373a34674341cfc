"""Shopify fulfilments (``fulfillments/create``, and each of an ``orders/fulfilled`` order's) to
``order_fulfilled`` touchpoints.

A fulfilment ships units an online order committed: ``order_fulfilled`` at Loom's ``online``
location, where the order holds them (:mod:`schemas.inbound.shopify_orders`), so on hand and
committed there go down by the shipped quantities; the location Shopify shipped from is kept as
``properties.fulfillment_location``. The event id is the fulfilment's
(``shopify:<shop>:fulfillment:<id>``): both topics carry the same fulfilment, and it applies
once.

Only orders that committed stock move any: the gateway remembers which orders it mapped as
online orders (``OrderMemo.committed_at``). A POS sale's fulfilment (Shopify fulfils POS orders
at the sale) moves nothing, since the ``pos_sale`` took the units off the shelf; nor does one of
an order the gateway never saw (nothing was committed for it). Fulfilments whose ``status`` is
``cancelled``, ``error`` or ``failure`` did not ship.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from schemas.inbound.shopify_common import (
    event_id,
    memo_identifiers,
    objects,
    path,
    required_id,
    touchpoint,
    when,
)
from schemas.inbound.shopify_model import ONLINE, Delivery, Mapped, OrderMemo, Shop
from schemas.inbound.shopify_orders import Line, item_lines
from schemas.touchpoint import EventType

#: Fulfilment statuses of fulfilments that did not happen.
NOT_FULFILLED: Final = frozenset({"cancelled", "error", "failure"})


def fulfillment_created(
    shop: Shop, delivery: Delivery, fulfillment: Mapping[str, Any], memo: OrderMemo | None
) -> Mapped:
    order_id = required_id(fulfillment, "order_id")
    return _fulfillments(shop, delivery, order_id, [(fulfillment, "")], memo)


def order_fulfilled(
    shop: Shop, delivery: Delivery, order: Mapping[str, Any], memo: OrderMemo | None
) -> Mapped:
    order_id = required_id(order, "id")
    found = objects(order.get("fulfillments"), "fulfillments")
    return _fulfillments(
        shop, delivery, order_id, [(f, f"fulfillments[{i}]") for i, f in enumerate(found)], memo
    )


def shipped(fulfillment: Mapping[str, Any]) -> bool:
    status = fulfillment.get("status")
    return not (isinstance(status, str) and status.lower() in NOT_FULFILLED)


def shipped_lines(shop: Shop, order: Mapping[str, Any]) -> list[Line]:
    """Every stock-keeping line an order's fulfilments shipped."""
    out: list[Line] = []
    for i, f in enumerate(objects(order.get("fulfillments"), "fulfillments")):
        if shipped(f):
            where = f"fulfillments[{i}].line_items"
            out += item_lines(shop, objects(f.get("line_items"), where), where)
    return out


def _fulfillments(
    shop: Shop,
    delivery: Delivery,
    order_id: str,
    fulfillments: Sequence[tuple[Mapping[str, Any], str]],
    memo: OrderMemo | None,
) -> Mapped:
    if memo is None:
        return Mapped(ignored="order_not_seen")
    if memo.committed_at is None:
        return Mapped(ignored="pos_sale")
    out = []
    for fulfillment, where in fulfillments:
        if not shipped(fulfillment):
            continue
        fid = required_id(fulfillment, "id", path(where, "id"))
        items = objects(fulfillment.get("line_items"), path(where, "line_items"))
        lines = item_lines(shop, items, path(where, "line_items"))
        if not lines:
            continue
        properties: dict[str, Any] = {}
        if fulfillment.get("location_id") is not None:
            properties["fulfillment_location"] = shop.location(
                fulfillment["location_id"], path(where, "location_id")
            )
        out.append(
            touchpoint(
                shop,
                {
                    "event_id": event_id(shop, "fulfillment", fid),
                    "type": EventType.ORDER_FULFILLED.value,
                    "channel": shop.channel.value,
                    "occurred_at": when(fulfillment, "created_at", "updated_at"),
                    "identifiers": memo_identifiers(memo),
                    "order": {
                        "order_id": order_id,
                        "location_id": ONLINE,
                        "lines": [
                            Line(ln.sku, ln.quantity, tracked=ln.tracked).as_order_line()
                            for ln in lines
                        ],
                    },
                    "properties": properties,
                },
                topic=delivery.topic,
            )
        )
    return Mapped(tuple(out)) if out else Mapped(ignored="nothing_fulfilled")
