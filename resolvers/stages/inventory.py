"""Stage: stock movements of an event applied to the SKU ledgers (identity plays no part).

Touchpoint types map to movements (quantities summed per sku and location within an event):

=====================  =================  ====================================
type                   movement           location
=====================  =================  ====================================
order_completed        order_placed       order.location_id, else ``online``
order_fulfilled        order_fulfilled    order.location_id, else ``online``
order_cancelled        order_cancelled    order.location_id, else ``online``
pos_sale               pos_sale           order.location_id
order_returned         return_restock     order.location_id; lines with restock
inventory_adjusted     adjustment         inventory.location_id (signed delta)
inventory_counted      count              inventory.location_id (absolute)
=====================  =================  ====================================

Order lines with ``tracked: false`` (stock the seller does not track) move nothing.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Final

from resolvers.inventory import Movement, MovementKind
from schemas.touchpoint import EventType, Touchpoint

NAME = "inventory"
ONLINE: Final = "online"

_ORDER_KINDS: Final = {
    EventType.ORDER_COMPLETED: MovementKind.ORDER_PLACED,
    EventType.ORDER_FULFILLED: MovementKind.ORDER_FULFILLED,
    EventType.ORDER_CANCELLED: MovementKind.ORDER_CANCELLED,
    EventType.POS_SALE: MovementKind.POS_SALE,
    EventType.ORDER_RETURNED: MovementKind.RETURN_RESTOCK,
}


#: Types that can move stock: the inventory lane decodes only these (``resolvers.pipeline``).
STOCK_TYPES: Final = frozenset(
    t.value for t in (*_ORDER_KINDS, EventType.INVENTORY_ADJUSTED, EventType.INVENTORY_COUNTED)
)


def movements(tp: Touchpoint) -> list[Movement]:
    """The stock movements a touchpoint implies (empty for most behavioural events)."""
    kind = _ORDER_KINDS.get(tp.type)
    if kind is not None and tp.order is not None:
        location = tp.order.location_id or ONLINE
        quantities: dict[str, int] = defaultdict(int)
        for line in tp.order.lines:
            if line.tracked is False or (kind is MovementKind.RETURN_RESTOCK and not line.restock):
                continue
            quantities[line.sku] += line.quantity
        return [
            Movement(tp.event_id, sku, location, kind, q, tp.occurred_at)
            for sku, q in sorted(quantities.items())
        ]
    inv = tp.inventory
    if inv is None:
        return []
    if tp.type is EventType.INVENTORY_COUNTED and inv.on_hand is not None:
        return [
            Movement(
                tp.event_id,
                inv.sku,
                inv.location_id,
                MovementKind.COUNT,
                inv.on_hand,
                tp.occurred_at,
                "count",
            )
        ]
    if tp.type is EventType.INVENTORY_ADJUSTED and inv.delta is not None:
        reason = inv.reason.value if inv.reason is not None else None
        return [
            Movement(
                tp.event_id,
                inv.sku,
                inv.location_id,
                MovementKind.ADJUSTMENT,
                inv.delta,
                tp.occurred_at,
                reason,
            )
        ]
    return []


def moves_stock(tp: Touchpoint) -> bool:
    """Whether the touchpoint moves any stock (the inventory lane's ``takes``)."""
    return bool(movements(tp))


def skus(tp: Touchpoint) -> set[str]:
    """SKUs whose state the batch must load for this event."""
    return {m.sku for m in movements(tp)}
