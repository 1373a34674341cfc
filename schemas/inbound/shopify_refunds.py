"""Shopify refunds (``refunds/create``) and cancellations (``orders/cancelled``) to touchpoints.

Per refund line item, by ``restock_type``:

* ``return`` (and the older ``legacy_restock``): the customer brought the units back; an
  ``order_returned`` line with ``restock: true`` at the line's ``location_id`` (on hand += q
  there; no location: the shop's ``online_location``);
* ``no_restock``: refunded, nothing back on a shelf: an ``order_returned`` line without restock
  (a return for the profile, no stock);
* ``cancel``: units never shipped are released: ``order_cancelled`` at ``online`` (committed -=
  q) and a transfer of the units from ``online`` back to the line's location (where Shopify
  makes them available again), for orders that committed stock only.

The returns of one refund are one ``order_returned`` per location they are restocked at (lines
not restocked join the first); its amount is the lines' ``subtotal`` in the shop's currency.
Ids: ``shopify:<shop>:refund:<id>:return`` (``:return:2`` ...), ``...:cancel`` and its transfers.

``orders/cancelled`` carries the order's refunds: each is mapped exactly as its
``refunds/create`` (same ids, so whichever arrives first applies it), and units of an online
order that no fulfilment shipped and no refund released are released at ``online`` too (the
order's ``...:order:<id>:cancel``); where they went (back on a shelf, or written off), Shopify's
next inventory levels say.

Refunds name no customer: the customer is the one the gateway remembers for the order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from schemas.inbound.base import currency, mapping
from schemas.inbound.shopify_common import (
    amount,
    event_id,
    memo_identifiers,
    objects,
    path,
    quantity_of,
    required_id,
    shop_money,
    sku_of,
    stock_tracked,
    touchpoint,
    when,
)
from schemas.inbound.shopify_fulfilments import shipped_lines
from schemas.inbound.shopify_model import ONLINE, Delivery, Mapped, OrderMemo, Shop
from schemas.inbound.shopify_orders import (
    Line,
    adjustment,
    channel_of,
    item_lines,
    summed,
    transfers,
)
from schemas.touchpoint import EventType, InventoryReason, Touchpoint

#: Restock types that put the units back on a shelf (``legacy_restock``: API before 2019-10).
RESTOCKED: Final = frozenset({"return", "legacy_restock"})
CANCEL: Final = "cancel"
RETURN: Final = "return"


@dataclass(frozen=True, slots=True)
class RefundLine:
    line: Line
    restock_type: str
    subtotal: Decimal
    currency: str | None

    @property
    def restocked(self) -> bool:
        return self.restock_type in RESTOCKED


def refund_created(
    shop: Shop, delivery: Delivery, refund: Mapping[str, Any], memo: OrderMemo | None
) -> Mapped:
    out = _refund(shop, delivery, refund, "", memo)
    return Mapped(tuple(out)) if out else Mapped(ignored="nothing_refunded")


def order_cancelled(
    shop: Shop, delivery: Delivery, order: Mapping[str, Any], memo: OrderMemo | None
) -> Mapped:
    order_id = required_id(order, "id")
    out: list[Touchpoint] = []
    refunded: list[Line] = []
    for i, refund in enumerate(objects(order.get("refunds"), "refunds")):
        out += _refund(shop, delivery, refund, f"refunds[{i}]", memo)
        refunded += [r.line for r in refund_lines(shop, refund, f"refunds[{i}]")]
    if memo is not None and memo.committed_at is not None:
        out += _release_rest(shop, delivery, order, order_id, refunded=refunded, memo=memo)
    return Mapped(tuple(out)) if out else Mapped(ignored="nothing_committed")


def refund_lines(shop: Shop, refund: Mapping[str, Any], where: str) -> list[RefundLine]:
    """The refund's stock-keeping lines."""
    out = []
    items = objects(refund.get("refund_line_items"), path(where, "refund_line_items"))
    for i, item in enumerate(items):
        at = f"{path(where, 'refund_line_items')}[{i}]"
        line_item = mapping(item.get("line_item"), f"{at}.line_item")
        sku = sku_of(shop, line_item, f"{at}.line_item")
        q = quantity_of(item, at)
        if sku is None or q == 0:
            continue
        restock = item.get("restock_type")
        restock_type = restock.strip().lower() if isinstance(restock, str) else "no_restock"
        location = (
            shop.location(item["location_id"], f"{at}.location_id")
            if item.get("location_id") is not None
            else None
        )
        price = line_item.get("price")
        unit = amount(price, f"{at}.line_item.price") if price is not None else None
        subtotal, code = shop_money(item, "subtotal", at)
        line = Line(sku, q, unit, location, tracked=stock_tracked(line_item))
        out.append(RefundLine(line, restock_type, subtotal, code))
    return out


@dataclass(frozen=True, slots=True)
class _Refund:
    """One refund being mapped."""

    shop: Shop
    delivery: Delivery
    refund_id: str
    order_id: str
    at: datetime
    memo: OrderMemo | None

    def event_id(self, *parts: str) -> str:
        return event_id(self.shop, "refund", self.refund_id, *parts)

    def touchpoint(self, kind: EventType, order: dict[str, Any], *id_parts: str) -> Touchpoint:
        return touchpoint(
            self.shop,
            {
                "event_id": self.event_id(*id_parts),
                "type": kind.value,
                "channel": self.shop.channel.value,
                "occurred_at": self.at,
                "identifiers": memo_identifiers(self.memo),
                "order": {"order_id": self.order_id, **order},
            },
            topic=self.delivery.topic,
        )

    def returns(self, returned: Sequence[RefundLine]) -> list[Touchpoint]:
        groups: dict[str | None, list[RefundLine]] = {}
        for r in returned:
            key = (r.line.location or self.shop.online_location) if r.restocked else None
            groups.setdefault(key, []).append(r)
        if None in groups and len(groups) > 1:  # lines not restocked join the first group
            first = min(k for k in groups if k is not None)
            groups[first] += groups.pop(None)
        out = []
        for n, location in enumerate(sorted(groups, key=lambda k: k or "")):
            group = groups[location]
            code = next((r.currency for r in group if r.currency), None)
            order: dict[str, Any] = {
                "total": str(sum((r.subtotal for r in group), Decimal(0))),
                "currency": currency(code, "refund_line_items.subtotal_set", self.shop.currency),
                "lines": [r.line.as_order_line(restock=r.restocked) for r in group],
            }
            if location is not None:
                order["location_id"] = location
            suffix = (RETURN, str(n + 1)) if n else (RETURN,)  # one event per location
            out.append(self.touchpoint(EventType.ORDER_RETURNED, order, *suffix))
        return out

    def cancellations(self, cancelled: Sequence[RefundLine]) -> list[Touchpoint]:
        if not cancelled or self.memo is None or self.memo.committed_at is None:
            return []  # nothing cancelled, or nothing was committed for this order
        committed_at = self.memo.committed_at
        released = [ln.as_order_line() for ln in summed([r.line for r in cancelled])]
        release = self.touchpoint(
            EventType.ORDER_CANCELLED, {"location_id": ONLINE, "lines": released}, CANCEL
        )
        back = transfers(
            self.shop,
            [
                (r.line.sku, r.line.quantity, r.line.location or committed_at)
                for r in cancelled
                if r.line.tracked
            ],
            to_online=False,
            at=self.at,
            ids=lambda i, leg: self.event_id(CANCEL, leg, str(i)),
            topic=self.delivery.topic,
        )
        return [release, *back]


def _refund(
    shop: Shop,
    delivery: Delivery,
    refund: Mapping[str, Any],
    where: str,
    memo: OrderMemo | None,
) -> list[Touchpoint]:
    """A refund's touchpoints: its returns and its released units (module doc)."""
    mapper = _Refund(
        shop,
        delivery,
        required_id(refund, "id", path(where, "id")),
        required_id(refund, "order_id", path(where, "order_id")),
        when(refund, "processed_at", "created_at"),
        memo,
    )
    lines = refund_lines(shop, refund, where)
    return mapper.returns([r for r in lines if r.restock_type != CANCEL]) + mapper.cancellations(
        [r for r in lines if r.restock_type == CANCEL]
    )


def _release_rest(
    shop: Shop,
    delivery: Delivery,
    order: Mapping[str, Any],
    order_id: str,
    *,
    refunded: Sequence[Line],
    memo: OrderMemo,
) -> list[Touchpoint]:
    """Units of a cancelled online order that no fulfilment shipped and no refund released:
    released at ``online`` (committed and held units)."""
    ordered = item_lines(shop, objects(order.get("line_items"), "line_items"), "line_items")
    gone = [replace(ln, quantity=-ln.quantity) for ln in [*shipped_lines(shop, order), *refunded]]
    known = {(ln.sku, ln.tracked) for ln in ordered}
    left = summed([*ordered, *(ln for ln in gone if (ln.sku, ln.tracked) in known)])
    if not left:
        return []
    at = when(order, "cancelled_at", "updated_at")
    release = touchpoint(
        shop,
        {
            "event_id": event_id(shop, "order", order_id, CANCEL),
            "type": EventType.ORDER_CANCELLED.value,
            "channel": channel_of(shop, order).value,
            "occurred_at": at,
            "identifiers": memo_identifiers(memo),
            "order": {
                "order_id": order_id,
                "location_id": ONLINE,
                "lines": [ln.as_order_line() for ln in left],
            },
        },
        topic=delivery.topic,
    )
    unheld = [
        adjustment(
            shop,
            event_id(shop, "order", order_id, CANCEL, str(i)),
            (ln.sku, ONLINE, -ln.quantity),
            InventoryReason.CORRECTION,
            at=at,
            topic=delivery.topic,
        )
        for i, ln in enumerate(left)
        if ln.tracked
    ]
    return [release, *unheld]
