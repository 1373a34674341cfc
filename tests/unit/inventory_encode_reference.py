"""The SKU ledger's stored bytes as ``resolvers.inventory`` encoded them before issue 17's
nineteenth pass (main 887a301), kept verbatim as the reference ``test_inventory_encode_reference``
compares with: ``SkuStock.to_dict`` (a function of the stock), ``_location_to_dict``,
``_location_snapshot``, ``_fragment`` and ``encode`` (which keeps each location's parts on it,
as today's does: compare them on separate but equal stocks). The names they read are imported.
Not used by Loom."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from resolvers import timefmt
from resolvers.decode_cache import right_sized
from resolvers.inventory import (
    STATE_FORMAT,
    LocationStock,
    SkuStock,
    _ledger_order,
    format_time,
)


def to_dict(self: SkuStock) -> dict[str, Any]:
    """Stable JSON-ready form (format :data:`STATE_FORMAT`); ledgers sorted by time, id."""
    return {
        "format": STATE_FORMAT,
        "sku": self.sku,
        "locations": {
            loc_id: _location_to_dict(loc) for loc_id, loc in sorted(self.locations.items())
        },
    }


def _location_to_dict(loc: LocationStock) -> dict[str, Any]:
    count, fmt = loc.count, timefmt.format_time
    return {
        "count": None
        if count is None
        else {"on_hand": count.on_hand, "at": fmt(count.at), "event_id": count.event_id},
        "ledger": {
            event_id: [fmt(e.occurred_at), e.on_hand_delta, e.committed_delta]
            for event_id, e in sorted(loc.ledger.items(), key=_ledger_order)
        },
        "base": {
            "on_hand": loc.base_on_hand,
            "committed": loc.base_committed,
            "horizon": format_time(loc.horizon),
            # the compacted on-hand deltas' earliest time, when known (2026-12-04)
            **({} if loc.base_since is None else {"since": format_time(loc.base_since)}),
        },
        "updated_at": format_time(loc.updated_at),
    }


def _location_snapshot(loc: LocationStock) -> dict[str, Any]:
    available = loc.on_hand - loc.committed
    return {
        "on_hand": loc.on_hand,
        "committed": loc.committed,
        "available": available,
        "available_to_sell": max(0, min(loc.on_hand, available)),
        "oversold": available < 0,
        "last_count_at": None if loc.count is None else timefmt.format_time(loc.count.at),
        "updated_at": format_time(loc.updated_at),
    }


def _fragment(value: dict[str, Any]) -> orjson.Fragment:
    """``value`` encoded (right-sized: it is kept with its location, maybe for long)."""
    return orjson.Fragment(right_sized(orjson.dumps(value)))


def encode(stock: SkuStock, version: int) -> tuple[bytes, bytes]:
    """What the writer stores of ``stock``: its state, ``orjson.dumps(stock.to_dict())``, and
    its public document at ``version``, ``orjson.dumps(snapshot(stock) | {"version":
    version})``. Each location's parts are encoded once per location value, so a write of a
    SKU re-encodes only the locations its batch moved."""
    states: dict[str, orjson.Fragment] = {}
    views: dict[str, orjson.Fragment] = {}
    on_hand = committed = 0
    oversold = False
    updated: datetime | None = None
    for loc_id, loc in sorted(stock.locations.items()):
        loc_on_hand, loc_committed = loc.on_hand, loc.committed
        on_hand += loc_on_hand
        committed += loc_committed
        if loc_on_hand < loc_committed:
            oversold = True
        at = loc.updated_at
        if at is not None and (updated is None or at > updated):
            updated = at
        state, view = loc._state_json, loc._view_json
        if state is None:
            state = _fragment(_location_to_dict(loc))
            object.__setattr__(loc, "_state_json", state)
        if view is None:
            view = _fragment(_location_snapshot(loc))
            object.__setattr__(loc, "_view_json", view)
        states[loc_id] = state
        views[loc_id] = view
    available = on_hand - committed
    document = {
        "sku": stock.sku,
        "locations": views,
        "totals": {
            "on_hand": on_hand,
            "committed": committed,
            "available": available,
            # the web total counts a negative committed as 0 per location (2026-12-04)
            "available_to_sell": max(
                0, sum(loc.on_hand - max(0, loc.committed) for loc in stock.locations.values())
            ),
            "oversold": oversold,
            "updated_at": format_time(updated),
        },
        "version": version,
    }
    state_doc = {"format": STATE_FORMAT, "sku": stock.sku, "locations": states}
    return orjson.dumps(state_doc), orjson.dumps(document)
