"""Loom's stock of a Shopify shop equals Shopify's own (ADR 0007), whatever the shop does.

A small model of Shopify's inventory (per location: on hand, committed; available = on hand -
committed) runs a random day: online orders (committed at the warehouse), their fulfilments,
POS sales in the store, returns restocked anywhere, cancellations with restock, stock takes.
Each step sends the webhooks Shopify sends (with ``inventory_levels/update`` after each change of
``available``, or without any level webhook but the initial ones), some of them twice. Loom's
side is the real mapping (schemas.inbound.shopify) and the real inventory ledger
(resolvers.inventory) fed in any arrival order. Then, per location, Loom's on hand is Shopify's
available, ``online`` holds exactly the units committed to unshipped orders, and the totals
are Shopify's on hand, committed and available.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from shopify_shop import (
    SHOP,
    STORE,
    WAREHOUSE,
    delivery,
    fulfillment_payload,
    level_payload,
    order_payload,
    refund_payload,
)

from resolvers.inventory import SkuStock, apply_all
from resolvers.stages.inventory import movements
from schemas.inbound.shopify import map_webhook, memo_order_id
from schemas.inbound.shopify_model import ONLINE, OrderMemo, RememberOrder
from schemas.touchpoint import Touchpoint

SKU = "SKU-IPOD-PINK"
LOOM = {WAREHOUSE: "ottawa-warehouse", STORE: "ottawa-store"}
START = datetime(2022, 1, 1, 8, 0, tzinfo=UTC)


@dataclass
class Shopify:
    """Shopify's inventory of one item, and the webhooks it sends."""

    levels: bool
    on_hand: dict[str, int] = field(default_factory=lambda: {WAREHOUSE: 20, STORE: 8})
    committed: dict[str, int] = field(default_factory=lambda: {WAREHOUSE: 0, STORE: 0})
    open_orders: list[dict[str, Any]] = field(default_factory=list)
    shipped: list[dict[str, Any]] = field(default_factory=list)
    webhooks: list[tuple[str, dict[str, Any], datetime]] = field(default_factory=list)
    clock: int = 0
    ids: int = 1000

    def available(self, location: str) -> int:
        return self.on_hand[location] - self.committed[location]

    def tick(self) -> datetime:
        self.clock += 1
        return START + timedelta(minutes=self.clock)

    def next_id(self) -> int:
        self.ids += 1
        return self.ids

    def send(self, topic: str, data: dict[str, Any], at: datetime) -> None:
        self.webhooks.append((topic, data, at))

    def level(self, location: str, at: datetime, *, always: bool = False) -> None:
        if self.levels or always:
            self.send(
                "inventory_levels/update", level_payload(location, self.available(location), at), at
            )

    # --- what happens in the shop ---------------------------------------------------------
    def start(self) -> None:
        at = START
        for location in (WAREHOUSE, STORE):
            self.level(location, at, always=True)

    def online_order(self, q: int) -> None:
        if self.available(WAREHOUSE) < q:
            return
        at = self.tick()
        order = order_payload(self.next_id(), q, at)
        self.committed[WAREHOUSE] += q
        self.open_orders.append(order)
        self.send("orders/create", order, at)
        self.level(WAREHOUSE, at)

    def ship(self, k: int) -> None:
        if not self.open_orders:
            return
        order = self.open_orders.pop(k % len(self.open_orders))
        at = self.tick()
        q = order["line_items"][0]["quantity"]
        self.on_hand[WAREHOUSE] -= q
        self.committed[WAREHOUSE] -= q  # available unchanged: no level webhook
        self.shipped.append(order)
        self.send(
            "fulfillments/create", fulfillment_payload(self.next_id(), order, WAREHOUSE, at), at
        )

    def pos_sale(self, q: int) -> None:
        if self.available(STORE) < q:
            return
        at = self.tick()
        self.on_hand[STORE] -= q
        self.send("orders/create", order_payload(self.next_id(), q, at, pos_location=STORE), at)
        self.level(STORE, at)

    def give_back(self, k: int, location: str) -> None:
        if not self.shipped:
            return
        order = self.shipped[k % len(self.shipped)]
        at = self.tick()
        self.on_hand[location] += 1
        self.send(
            "refunds/create", refund_payload(self.next_id(), order, 1, "return", location, at), at
        )
        self.level(location, at)

    def cancel(self, k: int) -> None:
        if not self.open_orders:
            return
        order = self.open_orders.pop(k % len(self.open_orders))
        at = self.tick()
        q = order["line_items"][0]["quantity"]
        self.committed[WAREHOUSE] -= q
        refund = refund_payload(self.next_id(), order, q, "cancel", WAREHOUSE, at)
        cancelled = {**order, "cancelled_at": at.isoformat(), "refunds": [refund]}
        self.send("refunds/create", refund, at)
        self.send("orders/cancelled", cancelled, at)
        self.level(WAREHOUSE, at)

    def stock_take(self, location: str, counted: int) -> None:
        at = self.tick()
        self.on_hand[location] = counted + self.committed[location]
        self.level(location, at, always=True)


STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("online_order"), st.integers(1, 3)),
        st.tuples(st.just("ship"), st.integers(0, 5)),
        st.tuples(st.just("pos_sale"), st.integers(1, 2)),
        st.tuples(st.just("give_back"), st.integers(0, 5), st.sampled_from([WAREHOUSE, STORE])),
        st.tuples(st.just("cancel"), st.integers(0, 5)),
        st.tuples(st.just("stock_take"), st.sampled_from([WAREHOUSE, STORE]), st.integers(0, 30)),
    ),
    max_size=25,
)


def loom_touchpoints(shop: Shopify, twice: set[int]) -> list[Touchpoint]:
    """What the gateway produces for the shop's webhooks in the order they arrive (some twice),
    remembering orders as it does."""
    memos: dict[str, OrderMemo] = {}
    out: list[Touchpoint] = []
    for i, (topic, data, at) in enumerate(shop.webhooks):
        for _ in range(2 if i in twice else 1):
            order_id = memo_order_id(topic, data)
            mapped = map_webhook(
                SHOP, delivery(topic, triggered_at=at, webhook_id=f"w{i}"), data,
                memos.get(order_id) if order_id else None,
            )  # fmt: skip
            out += mapped.touchpoints
            for op in mapped.memory:
                if isinstance(op, RememberOrder):
                    memos[op.order_id] = op.memo
    return out


def loom_stock(touchpoints: list[Touchpoint], seed: int) -> SkuStock:
    """The inventory lane's ledger over the touchpoints in a shuffled arrival order, each event
    id applied once (the lane's dedupe)."""
    arrival = list(touchpoints)
    random.Random(seed).shuffle(arrival)
    seen: set[str] = set()
    stock = SkuStock.empty(SKU)
    for tp in arrival:
        if tp.event_id in seen:
            continue
        seen.add(tp.event_id)
        stock, _ = apply_all(stock, [m for m in movements(tp) if m.sku == SKU])
    return stock


@settings(max_examples=150, deadline=None)
@given(STEPS, st.booleans(), st.sets(st.integers(0, 60)), st.integers(0, 2**32))
def test_loom_holds_what_shopify_holds_per_location_and_in_total(
    steps: list[tuple[Any, ...]], levels: bool, twice: set[int], seed: int
) -> None:
    shop = Shopify(levels=levels)
    shop.start()
    for name, *args in steps:
        getattr(shop, name)(*args)
    stock = loom_stock(loom_touchpoints(shop, twice), seed)
    for shopify_id, loom_id in LOOM.items():
        here = stock.location(loom_id)
        assert (here.on_hand, here.committed) == (shop.available(shopify_id), 0), loom_id
    held = stock.location(ONLINE)
    open_units = sum(o["line_items"][0]["quantity"] for o in shop.open_orders)
    assert (held.on_hand, held.committed, held.available) == (open_units, open_units, 0)
    assert stock.on_hand == sum(shop.on_hand.values())
    assert stock.committed == sum(shop.committed.values())
    assert stock.available == sum(shop.available(loc) for loc in LOOM)


def test_a_day_in_arrival_order_and_shuffled_agree_with_shopify() -> None:
    """One concrete day (the e2e scenario's shape), checked number by number."""
    shop = Shopify(levels=True)
    shop.start()
    shop.online_order(2)
    shop.ship(0)
    shop.pos_sale(1)
    shop.give_back(0, STORE)
    shop.stock_take(WAREHOUSE, 17)
    shop.online_order(3)
    touchpoints = loom_touchpoints(shop, twice=set(range(len(shop.webhooks))))
    for seed in range(5):
        stock = loom_stock(touchpoints, seed)
        assert stock.location("ottawa-warehouse").on_hand == 14  # 17 counted, 3 promised
        assert stock.location("ottawa-store").on_hand == 8  # 8 - 1 sold + 1 returned
        assert (stock.location(ONLINE).on_hand, stock.location(ONLINE).committed) == (3, 3)
        assert (stock.on_hand, stock.committed, stock.available) == (25, 3, 22)
