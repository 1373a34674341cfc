"""The inventory lane's fold and announcements as they were before issue 17's nineteenth pass
(main 887a301), kept verbatim as the reference the lane is compared with
(``test_inventory_lane_reference``): ``InventoryBatch.run``, ``_fresh`` and ``_announce``
(methods: ``self`` is the batch), ``resolvers.inventory.apply`` and
``resolvers.stages.inventory.with_movements`` (the direct lane's ``takes``). Only the binding
changed: the methods are functions of ``self``, and ``run`` calls ``inventory.apply`` and
``self._fresh``/``self._announce``, which ``install`` puts in place of today's. The names
they read are imported. Not used by Loom."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import replace
from unittest import mock

from resolvers import inventory, stock_routing
from resolvers.effects import Count, Measure, Published, StockWritten, Streamed
from resolvers.inventory import (
    _EMPTY_LOCATION,
    DEFAULT_POLICY,
    InvalidMovementError,
    InventoryEffect,
    LedgerPolicy,
    Movement,
    MovementKind,
    SkuStock,
    _apply_count,
    _apply_delta,
    _compact,
    _effects,
)
from resolvers.lanes.inventory import _KIND_VALUES, InventoryBatch, LaneOutcome
from resolvers.pipeline import INVENTORY, Lane
from resolvers.stages import inventory as stage
from resolvers.stages.inventory import movements
from resolvers.steps import DUPLICATE, OK, Event
from resolvers.timefmt import format_time

# --------------------------------------------------------------------------- resolvers.inventory


def apply(
    stock: SkuStock, movement: Movement, policy: LedgerPolicy = DEFAULT_POLICY
) -> tuple[SkuStock, tuple[InventoryEffect, ...]]:
    """Fold one movement into ``stock``. Pure; duplicates and superseded movements are no-ops.

    A no-op returns ``stock`` itself (``new is stock``), so callers can skip the write.
    """
    if movement.sku != stock.sku:
        raise InvalidMovementError(f"movement for sku {movement.sku!r} applied to {stock.sku!r}")
    location_id, event_id = movement.location_id, movement.event_id
    before = stock.locations.get(location_id, _EMPTY_LOCATION)
    if event_id in before.ledger or (
        before.count is not None and before.count.event_id == event_id
    ):
        return stock, ()  # seen
    if movement.kind is MovementKind.COUNT:
        after = _apply_count(before, movement)
    else:
        after = _apply_delta(before, movement)
    after = _compact(after, policy)
    if after == before and location_id in stock.locations:
        return stock, ()  # superseded (stamped at or before the latest count): nothing to write
    locations = dict(stock.locations)
    locations[location_id] = after
    new_stock = SkuStock(sku=stock.sku, locations=locations)
    return new_stock, _effects(stock.sku, movement, before, after)


# ------------------------------------------------------------ resolvers.stages.inventory


def with_movements(event: Event) -> Event | None:
    """The event with its movements per SKU computed once (the direct lane's ``takes``), or
    None when it moves no stock."""
    per_sku = stock_routing.by_sku(movements(event.tp))
    if not per_sku:
        return None
    return event._replace(stock=per_sku)


# ---------------------------------------------------------------------------- InventoryBatch


def run(self: InventoryBatch, events: Sequence[Event]) -> LaneOutcome:
    """Fold the events' movements into the ledgers. Dedupe is per event and SKU: a SKU's
    movements of an event are skipped when the event id or its ``<event id> <sku>``
    marker was processed (``stage.markers``) or came earlier in the batch. A direct
    event marks its id, a routed record (ADR 0014) its ``<event id> <sku>``."""
    out = LaneOutcome()
    taken: set[str] = set()
    changed: dict[str, inventory.SkuStock] = {}
    for event in events:
        eid = stage.event_id(event)
        fresh = [
            moves
            for sku, moves in stage.sku_movements(event).items()
            if self._fresh(eid, sku, taken)
        ]
        if not fresh:
            out.outcomes[(stage.event_type(event), DUPLICATE)] += 1
            continue
        routed = event.routed
        out.processed.append(routed.marker if routed is not None else eid)
        out.outcomes[(stage.event_type(event), OK)] += 1
        for movement in (m for moves in fresh for m in moves):
            stock = changed.get(movement.sku) or self.stocks.get(movement.sku)
            stock = stock or inventory.SkuStock.empty(movement.sku)
            new_stock, effects = inventory.apply(stock, movement, self.ctx.ledger)
            if new_stock is stock:
                continue
            changed[movement.sku] = new_stock
            self._announce(effects, out)
    out.effects.extend(StockWritten(sku, stock) for sku, stock in sorted(changed.items()))
    return out


def _fresh(self: InventoryBatch, event_id: str, sku: str, taken: set[str]) -> bool:
    """Whether the event's movements of ``sku`` are to be applied (and note them)."""
    key = stock_routing.marker(event_id, sku)
    if event_id in self.seen or key in self.seen or key in taken:
        return False
    taken.add(key)
    return True


def _announce(
    self: InventoryBatch, effects: Sequence[inventory.InventoryEffect], out: LaneOutcome
) -> None:
    topics, append = self.ctx.topics, out.effects.append
    for effect in effects:
        where = f"{effect.sku}@{effect.location_id}"
        if type(effect) is inventory.StockChanged:
            to_sell = max(0, min(effect.on_hand, effect.available))  # effect.available_to_sell
            append(
                Published(
                    topics.inventory_changes,
                    where,
                    {
                        "sku": effect.sku,
                        "location_id": effect.location_id,
                        "on_hand": effect.on_hand,
                        "committed": effect.committed,
                        "available": effect.available,
                        "available_to_sell": to_sell,
                        "event_id": effect.event_id,
                        "kind": _KIND_VALUES[effect.kind],
                        "occurred_at": format_time(effect.occurred_at),
                    },
                )
            )
            append(
                Streamed(
                    "inventory",
                    {
                        "sku": effect.sku,
                        "location": effect.location_id,
                        "available": str(to_sell),
                    },
                )
            )
        else:
            out.counts[Count(Measure.OVERSOLD)] += 1
            append(
                Published(
                    topics.inventory_alerts,
                    where,
                    {
                        "alert": "oversold",
                        "sku": effect.sku,
                        "location_id": effect.location_id,
                        "available": effect.available,
                        "event_id": effect.event_id,
                        "occurred_at": format_time(effect.occurred_at),
                    },
                )
            )


#: The direct inventory lane with the old ``takes``.
REFERENCE_INVENTORY: Lane = replace(INVENTORY, takes=with_movements)


@contextlib.contextmanager
def install() -> Iterator[None]:
    """The batch's ``run`` and the ledger's ``apply`` as they were (use with
    :data:`REFERENCE_INVENTORY` for the old ``takes`` too)."""
    with (
        mock.patch.object(InventoryBatch, "run", run),
        mock.patch.object(InventoryBatch, "_fresh", _fresh, create=True),
        mock.patch.object(InventoryBatch, "_announce", _announce),
        mock.patch.object(inventory, "apply", apply),
    ):
        yield
