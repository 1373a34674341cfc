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
_TYPE_VALUES: Final = stage.TYPE_VALUES
#: The oversell counter (a named tuple's ``__new__`` is a Python call: built once).
_OVERSOLD: Final = Count(Measure.OVERSOLD)


def position_key(sku: str, location_id: str) -> str:
    """The key of a stock position's records (``inventory.changes``, compacted, and
    ``inventory.alerts``): ``<sku>@<location_id>``, the SKU's ``%`` and ``@`` written ``%25``
    and ``%40``. Both are ``Code`` (printable ASCII, ``@`` included): unescaped, SKU ``A@b`` at
    ``c`` and SKU ``A`` at ``b@c`` shared the key ``A@b@c``, and compaction kept one of them.
    The first ``@`` of a key ends the SKU; a SKU without ``%`` or ``@`` keeps its old key."""
    if "@" in sku or "%" in sku:
        sku = sku.replace("%", "%25").replace("@", "%40")
    return f"{sku}@{location_id}"


def _decode_stock(raw: bytes) -> inventory.SkuStock:
    return inventory.SkuStock.from_dict(orjson.loads(raw))


@dataclass
class LaneOutcome:
    """What a lane's stages decided for one batch (values only)."""

    effects: list[Effect] = field(default_factory=list)
    processed: list[str] = field(default_factory=list)  # event ids to mark processed
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (type, outcome)
    counts: Counter[Count] = field(default_factory=Counter)
    #: profile ids to walk from before committing (the holders of an identifier the batch
    #: erased that the load did not reach: ``ProfilesBatch._unloaded_holders``)
    need: list[str] = field(default_factory=list)


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
        seen, stocks, policy, outcomes = self.seen, self.stocks, self.ctx.ledger, out.outcomes
        for event in events:
            # ``stage.event_id`` and ``stage.event_type``, inline (two calls per event each)
            routed = event.routed
            if routed is None:
                tp = event.touchpoint
                assert tp is not None, "stage ran before parse"
                eid, event_type = tp.event_id, _TYPE_VALUES[tp.type]
            else:
                eid, event_type = routed.event_id, routed.event_type
            fresh: list[list[inventory.Movement]] = []
            if eid not in seen:  # the event id seen: none of its SKUs is fresh
                for sku, moves in stage.sku_movements(event).items():
                    key = stock_routing.marker(eid, sku)
                    if key not in seen and key not in taken:
                        taken.add(key)
                        fresh.append(moves)
            if not fresh:
                outcomes[(event_type, DUPLICATE)] += 1
                continue
            out.processed.append(routed.marker if routed is not None else eid)
            outcomes[(event_type, OK)] += 1
            for moves in fresh:
                for movement in moves:
                    sku = movement.sku
                    stock = changed.get(sku) or stocks.get(sku) or inventory.SkuStock.empty(sku)
                    new_stock, before, after = inventory.fold(stock, movement, policy)
                    if new_stock is stock:
                        continue
                    changed[sku] = new_stock
                    self._announce(movement, before, after, out)
        out.effects.extend(StockWritten(sku, stock) for sku, stock in sorted(changed.items()))
        return out

    def _announce(
        self,
        movement: inventory.Movement,
        before: inventory.LocationStock,
        after: inventory.LocationStock,
        out: LaneOutcome,
    ) -> None:
        """The records of ``inventory.apply``'s effects of ``movement`` (``StockChanged``,
        then ``Oversold``: the same rules), from the location before and after it, without
        building the effects."""
        if not inventory.stock_changed(before, after):
            return  # no StockChanged, hence no Oversold
        on_hand, committed = after.on_hand, after.committed
        available = on_hand - committed
        sku, location_id, event_id = movement.sku, movement.location_id, movement.event_id
        topics, append = self.ctx.topics, out.effects.append
        where = position_key(sku, location_id)
        occurred_at = format_time(movement.occurred_at)
        # StockChanged.available_to_sell (inventory.to_sell), inline
        to_sell = 0 if available < 0 else on_hand if available > on_hand else available
        append(
            Published(
                topics.inventory_changes,
                where,
                {
                    "sku": sku,
                    "location_id": location_id,
                    "on_hand": on_hand,
                    "committed": committed,
                    "available": available,
                    "available_to_sell": to_sell,
                    "event_id": event_id,
                    "kind": _KIND_VALUES[movement.kind],
                    "occurred_at": occurred_at,
                },
            )
        )
        append(
            Streamed("inventory", {"sku": sku, "location": location_id, "available": str(to_sell)})
        )
        if inventory.oversold(before, available):
            out.counts[_OVERSOLD] += 1
            append(
                Published(
                    topics.inventory_alerts,
                    where,
                    {
                        "alert": "oversold",
                        "sku": sku,
                        "location_id": location_id,
                        "available": available,
                        "event_id": event_id,
                        "occurred_at": occurred_at,
                    },
                )
            )
