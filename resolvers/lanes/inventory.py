"""The inventory lane's batch: SKU ledgers in, stock movements applied, effects out.

Identity plays no part: stock moves for a shopper who consented to nothing. Per event, its
movements (``resolvers.stages.inventory``) fold into the SKU's ledger (``resolvers.inventory``,
ordered by occurred_at, never arrival); each change is announced on ``inventory.changes`` and
the Redis change stream, each oversell on ``inventory.alerts``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import orjson

from resolvers import inventory, stock_routing
from resolvers.context import Context
from resolvers.decode_cache import DecodeCache
from resolvers.effects import Count, Effect, Measure, Published, StockWritten, Streamed
from resolvers.stages import inventory as stage
from resolvers.steps import DUPLICATE, OK, Event
from resolvers.store import Kind, Loaded, Ref
from resolvers.timefmt import format_time

#: Each movement kind's value (an enum's ``.value`` is a Python-level descriptor call).
_KIND_VALUES: Final = {kind: kind.value for kind in inventory.MovementKind}


def _decode_stock(raw: bytes) -> inventory.SkuStock:
    return inventory.SkuStock.from_dict(orjson.loads(raw))


@dataclass
class LaneOutcome:
    """What a lane's stages decided for one batch (values only)."""

    effects: list[Effect] = field(default_factory=list)
    processed: list[str] = field(default_factory=list)  # event ids to mark processed
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (type, outcome)
    counts: Counter[Count] = field(default_factory=Counter)
    need: list[str] = field(default_factory=list)  # profile ids to load before committing


@dataclass
class InventoryBatch:
    ctx: Context
    versions: dict[Ref, int]
    stocks: dict[str, inventory.SkuStock]
    seen: frozenset[str]

    @classmethod
    def from_loaded(cls, loaded: Loaded, ctx: Context) -> InventoryBatch:
        cache = ctx.cache or DecodeCache(max_bytes=0)
        versions: dict[Ref, int] = {}
        stocks: dict[str, inventory.SkuStock] = {}
        for ref, entity in loaded.entities.items():
            versions[ref] = entity.version
            if entity.exists and ref.kind is Kind.STOCK:
                stocks[ref.name] = cache.get(ref, entity.fields["s"], _decode_stock)
        return cls(ctx, versions, stocks, loaded.seen)

    def run(self, events: Sequence[Event]) -> LaneOutcome:
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

    def _fresh(self, event_id: str, sku: str, taken: set[str]) -> bool:
        """Whether the event's movements of ``sku`` are to be applied (and note them)."""
        key = stock_routing.marker(event_id, sku)
        if event_id in self.seen or key in self.seen or key in taken:
            return False
        taken.add(key)
        return True

    def _announce(self, effects: Sequence[inventory.InventoryEffect], out: LaneOutcome) -> None:
        topics, append = self.ctx.topics, out.effects.append
        for effect in effects:
            where = f"{effect.sku}@{effect.location_id}"
            if type(effect) is inventory.StockChanged:
                to_sell = max(0, effect.available)  # effect.available_to_sell
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
