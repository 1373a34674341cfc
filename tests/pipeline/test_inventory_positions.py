"""Every stock position Redis holds has its level on ``inventory.changes`` (a review of
2026-12-04): the compacted topic is how a website learns the positions and their levels
(README, topics table: "each position's last record is its stored level")."""

from __future__ import annotations

from typing import Any

import orjson
from pipeline_helpers import Runner

from resolvers.store import InMemoryStore, Kind

TOPIC = "inventory.changes"


def counted(event_id: str, sku: str, location: str, on_hand: int, hhmm: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "inventory_counted",
        "channel": "backoffice",
        "occurred_at": f"2026-11-20T{hhmm}:00+01:00",
        "inventory": {"sku": sku, "location_id": location, "on_hand": on_hand, "reason": "count"},
    }


def stored(store: InMemoryStore) -> dict[tuple[str, str], int]:
    """Every stock position Redis holds, with its on_hand."""
    return {
        (ref.name, loc): level["on_hand"]
        for ref, e in store.entities.items()
        if ref.kind is Kind.STOCK
        for loc, level in orjson.loads(e.fields["d"])["locations"].items()
    }


def last_records(store: InMemoryStore) -> dict[tuple[str, str], int]:
    """What the compacted topic keeps: each position's last record, its on_hand."""
    last: dict[bytes | None, Any] = {}
    for rec in store.outbox:
        if rec.topic == TOPIC:
            last[rec.key] = None if rec.value is None else orjson.loads(rec.value)
    return {(v["sku"], v["location_id"]): v["on_hand"] for v in last.values() if v is not None}


def test_a_new_position_counted_at_zero_is_announced_like_one_counted_at_five(
    run: Runner, store: InMemoryStore
) -> None:
    run(
        [
            counted("k-5", "SKU-5", "oslo-1", 5, "08:00"),
            counted("k-0", "SKU-0", "oslo-1", 0, "08:00"),
        ]
    )
    assert stored(store) == {("SKU-5", "oslo-1"): 5, ("SKU-0", "oslo-1"): 0}
    assert last_records(store) == stored(store)
    # and on the Redis change stream, as a position first set to 5 is
    streamed = {(f["sku"], f["location"]) for f in store.streams.get("inventory", [])}
    assert streamed == {(b"SKU-5", b"oslo-1"), (b"SKU-0", b"oslo-1")}


def test_a_cancellation_read_before_its_placement_offers_no_more_than_is_on_hand(
    run: Runner, store: InMemoryStore
) -> None:
    """The lane's change record and stream carry the storefront's ``available_to_sell``: a
    cancellation of 3 read before its placement leaves committed at -3 until the placement
    arrives; the storefront must still see the 5 on hand, not 8 (a review of 2026-12-04)."""

    def order(event_id: str, type_: str, hhmm: str) -> dict[str, Any]:
        return {
            "event_id": event_id,
            "type": type_,
            "channel": "web",
            "occurred_at": f"2026-11-20T{hhmm}:00+01:00",
            "order": {
                "order_id": "o-1",
                "total": "30.00",
                "currency": "NOK",
                "location_id": "oslo-1",
                "lines": [{"sku": "SKU-5", "quantity": 3, "unit_price": "10.00"}],
            },
        }

    run([counted("k-5", "SKU-5", "oslo-1", 5, "08:00"), order("o-1-x", "order_cancelled", "09:00")])
    records = [orjson.loads(r.value) for r in store.outbox if r.topic == TOPIC and r.value]
    last = records[-1]
    assert (last["on_hand"], last["committed"], last["available"]) == (5, -3, 8)
    assert last["available_to_sell"] == 5
    assert store.streams["inventory"][-1]["available"] == b"5"
    run([order("o-1", "order_completed", "08:30")])  # the placement settles it
    last = orjson.loads([r.value for r in store.outbox if r.topic == TOPIC and r.value][-1])
    assert (last["committed"], last["available"], last["available_to_sell"]) == (0, 5, 5)
