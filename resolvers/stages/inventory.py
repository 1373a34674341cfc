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
from collections.abc import Mapping
from typing import Final

from resolvers import stock_routing
from resolvers.inventory import Movement, MovementKind
from resolvers.steps import DeadLetter, Event, Ok, RawRecord
from resolvers.tuples import new_tuple
from schemas.touchpoint import EventType, Touchpoint

NAME = "inventory"
#: DLQ reason of a stock-movement record the routed lane cannot decode (ADR 0014).
INVALID_MOVEMENT_RECORD: Final = "invalid_movement_record"
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


def skus(tp: Touchpoint) -> set[str]:
    """SKUs the touchpoint moves stock of."""
    return {m.sku for m in movements(tp)}


def with_movements(event: Event) -> Event | None:
    """The event with its movements per SKU computed once (the direct lane's ``takes``), or
    None when it moves no stock."""
    # ``stock_routing.by_sku(movements(tp))``: ``movements`` gives at most one movement per
    # SKU, in SKU order (an order's lines are summed per SKU and sorted; any other event
    # moves one SKU), so each SKU's group is its one movement
    per_sku = {m.sku: [m] for m in movements(event.tp)}
    if not per_sku:
        return None
    # ``event._replace(stock=per_sku)`` in one C call (``_replace`` is two Python calls)
    record, touchpoint, identifiers, hashes, routed, _ = event
    return new_tuple(Event, (record, touchpoint, identifiers, hashes, routed, per_sku))


# --- an event of the lane: a touchpoint (direct) or one routed record (by SKU, ADR 0014) ------


def event_id(event: Event) -> str:
    """The id of the touchpoint the event's movements come from."""
    return event.routed.event_id if event.routed is not None else event.tp.event_id


#: Each event type's value (an enum's ``.value`` is a Python-level descriptor call).
TYPE_VALUES: Final = {t: t.value for t in EventType}


def event_type(event: Event) -> str:
    return event.routed.event_type if event.routed is not None else TYPE_VALUES[event.tp.type]


def sku_movements(event: Event) -> Mapping[str, list[Movement]]:
    """The event's movements per SKU (a routed record: its one SKU)."""
    if event.routed is not None:
        return {event.routed.sku: list(event.routed.movements)}
    if event.stock is not None:
        return event.stock
    return stock_routing.by_sku(movements(event.tp))


def event_skus(event: Event) -> list[str]:
    """SKUs whose state the batch must load for this event."""
    return list(sku_movements(event))  # sorted: by_sku's order


def markers(event: Event) -> list[str]:
    """Every processed marker that says (part of) the event was applied: the event id (what a
    direct worker marks) and ``<event id> <sku>`` per SKU (what a routed applier marks): both
    are read by both modes, so switching modes never applies a movement twice."""
    eid = event_id(event)
    return [eid, *(stock_routing.marker(eid, sku) for sku in event_skus(event))]


def decode_routed(record: RawRecord) -> Ok | DeadLetter:
    """A record of the stock-movement topic as an event of the routed lane, or its dead letter
    (reason :data:`INVALID_MOVEMENT_RECORD`; the message never quotes the input)."""
    try:
        routed = stock_routing.decode(record.value)
    except stock_routing.InvalidRoutedRecordError as exc:
        return DeadLetter(record, NAME, INVALID_MOVEMENT_RECORD, type(exc).__name__, str(exc))
    return Ok(Event(record=record, routed=routed))
