"""Two stock positions never share a key on the compacted ``inventory.changes`` topic (a
review of 2026-12-04; this test failed before ``resolvers.lanes.inventory.position_key``).

The record key was ``f"{sku}@{location_id}"`` and both fields are ``Code`` (printable ASCII,
``@`` included), so SKU ``A@b`` at ``c`` and SKU ``A`` at ``b@c`` are both keyed ``A@b@c``.
Compaction keeps one record per key: one of the two positions loses its last record (and, once
the cleaner ran, every record), so "each position's last record on ``inventory.changes`` is its
stored level" (README, topics table; ADR 0043) fails for it.
"""

from __future__ import annotations

from typing import Any

import pytest
from e2e_harness import Loom

pytestmark = pytest.mark.e2e

DAY = "2026-11-22"


def counted(event_id: str, hhmm: str, sku: str, location: str, on_hand: int) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "inventory_counted",
        "channel": "backoffice",
        "occurred_at": f"{DAY}T{hhmm}:00+01:00",
        "inventory": {"sku": sku, "location_id": location, "on_hand": on_hand, "reason": "count"},
    }


def test_each_stock_position_keeps_its_own_last_record_on_the_compacted_change_topic(
    loom: Loom,
) -> None:
    positions = {("A@b", "c"): 7, ("A", "b@c"): 3}
    loom.start_worker("inventory")
    loom.produce(
        [
            counted("k-1", "08:00", "A@b", "c", 7),
            counted("k-2", "08:00", "A", "b@c", 3),
        ]
    )
    loom.wait_idle("inventory")
    # what Redis holds: both positions, each at its own level
    stored = {}
    for sku, loc in positions:
        doc = loom.stock(sku)
        assert doc is not None
        stored[(sku, loc)] = doc["locations"][loc]["on_hand"]
    assert stored == positions
    # what a compacted topic keeps: the last record of each key
    last: dict[str | None, Any] = {}
    for key, value in loom.decoded(loom.settings.topics.inventory_changes):
        last[key] = value
    kept = {(v["sku"], v["location_id"]): v["on_hand"] for v in last.values() if v is not None}
    assert kept == stored, (
        f"compaction keeps {kept} of the stored levels {stored} "
        f"(keys {sorted(k for k in last if k is not None)})"
    )


def test_a_new_position_counted_at_zero_has_its_record_on_the_compacted_change_topic(
    loom: Loom,
) -> None:
    """A stocktake saying 0 on hand for a SKU never seen at that location: Redis stores the
    position at 0, and so must the topic's last record of it, as for a position counted at 5
    (a review of 2026-12-04: before, no record, so a website never learnt the position)."""
    loom.start_worker("inventory")
    loom.produce(
        [counted("z-5", "08:00", "Z-5", "oslo-1", 5), counted("z-0", "08:00", "Z-0", "oslo-1", 0)]
    )
    loom.wait_idle("inventory")
    stored = {}
    for sku in ("Z-5", "Z-0"):
        doc = loom.stock(sku)
        assert doc is not None
        stored[(sku, "oslo-1")] = doc["locations"]["oslo-1"]["on_hand"]
    assert stored == {("Z-5", "oslo-1"): 5, ("Z-0", "oslo-1"): 0}
    last: dict[str | None, Any] = {}
    for key, value in loom.decoded(loom.settings.topics.inventory_changes):
        last[key] = value
    kept = {(v["sku"], v["location_id"]): v["on_hand"] for v in last.values() if v is not None}
    assert kept == stored
