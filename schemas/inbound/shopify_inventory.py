"""Shopify inventory levels to stock counts.

* ``inventory_levels/update`` and ``inventory_levels/connect`` (an item stocked at a location):
  ``available`` -> ``inventory_counted`` with that ``on_hand`` at the location, at
  ``updated_at``. Shopify's available already leaves out units promised to unfulfilled orders;
  Loom holds those at ``online`` (:mod:`schemas.inbound.shopify_orders`). A negative available
  (Shopify kept selling) counts as 0; ``available: null`` (stock not tracked) is ignored.
* ``inventory_levels/disconnect`` (no longer stocked there): a count of 0, at the time Shopify
  fired the webhook.

The SKU comes from the shop's ``inventory_items`` (inventory item id -> Loom SKU): the payload
names no SKU, and an item missing there is invalid (dead-lettered) rather than guessed.
Counts are ordered by time; two in the same second by when Shopify fired them (the event id
starts with that time). ``X-Shopify-Triggered-At`` is not signed: an older level of the same
second, or a disconnect (no time of its own), posted again under a later one wins until the
next level (ADR 0007's 2026-12-04 note; an older second loses).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from schemas.inbound.base import invalid, timestamp
from schemas.inbound.shopify_common import (
    delivery_key,
    event_id,
    required_id,
    touchpoint,
    trigger_key,
)
from schemas.inbound.shopify_model import Delivery, Mapped, OrderMemo, Shop
from schemas.touchpoint import Channel, EventType, InventoryReason


def level_changed(
    shop: Shop, delivery: Delivery, level: Mapping[str, Any], _memo: OrderMemo | None
) -> Mapped:
    available = level.get("available")
    if available is None:
        return Mapped(ignored="not_tracked")
    if isinstance(available, bool) or not isinstance(available, int):
        raise invalid("available", "must be a whole number")
    at = timestamp(level.get("updated_at"), "updated_at") or delivery.at
    return _count(shop, delivery, level, max(0, available), at)


def level_disconnected(
    shop: Shop, delivery: Delivery, level: Mapping[str, Any], _memo: OrderMemo | None
) -> Mapped:
    return _count(shop, delivery, level, 0, delivery.at)


def _count(
    shop: Shop, delivery: Delivery, level: Mapping[str, Any], on_hand: int, at: datetime
) -> Mapped:
    item = required_id(level, "inventory_item_id")
    sku = shop.inventory_items.get(item)
    if sku is None:
        raise invalid("inventory_item_id", "not in the shop's inventory_items (configuration)")
    location = shop.location(level.get("location_id"), "location_id")
    count = touchpoint(
        shop,
        {
            "event_id": event_id(shop, "level", trigger_key(delivery), delivery_key(delivery)),
            "type": EventType.INVENTORY_COUNTED.value,
            "channel": Channel.BACKOFFICE.value,
            "occurred_at": at,
            "inventory": {
                "sku": sku,
                "location_id": location,
                "on_hand": on_hand,
                "reason": InventoryReason.COUNT.value,
            },
        },
        topic=delivery.topic,
    )
    return Mapped((count,))
