"""Properties of the inventory ledger: arrival order and redelivery never change the result."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from resolvers.inventory import (
    LedgerPolicy,
    Movement,
    MovementKind,
    SkuStock,
    apply,
    apply_all,
    encode,
    snapshot,
)

SKU = "SKU-P"
T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
LOCATIONS = ("oslo-1", "online")
#: Enough locations that a write usually keeps most of them as they were.
MANY_LOCATIONS = ("bergen-1", "online", "oslo-1", "oslo-2", "trondheim-1")
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)


@st.composite
def movement_sets(
    draw: st.DrawFn, *, max_size: int = 25, locations: tuple[str, ...] = LOCATIONS
) -> list[Movement]:
    """Distinct event ids; times from a small grid so counts and deltas often tie."""
    size = draw(st.integers(min_value=0, max_value=max_size))
    movements = []
    for i in range(size):
        kind = draw(st.sampled_from(list(MovementKind)))
        if kind is MovementKind.ADJUSTMENT:
            quantity = draw(st.integers(min_value=-20, max_value=20))
        else:
            quantity = draw(st.integers(min_value=0, max_value=20))
        minute = draw(st.integers(min_value=0, max_value=12))
        movements.append(
            Movement(
                event_id=f"e{i:03d}",
                sku=SKU,
                location_id=draw(st.sampled_from(locations)),
                kind=kind,
                quantity=quantity,
                occurred_at=T0 + timedelta(minutes=minute),
                reason="correction" if kind is MovementKind.ADJUSTMENT else None,
            )
        )
    return movements


def reference(movements: list[Movement], location: str) -> tuple[int, int]:
    """Square's rule stated directly: latest count + later on_hand deltas; committed = sum."""
    here = [m for m in movements if m.location_id == location]
    counts = [m for m in here if m.kind is MovementKind.COUNT]
    committed = sum(m.committed_delta for m in here)
    if not counts:
        return sum(m.on_hand_delta for m in here), committed
    latest = max(counts, key=lambda m: (m.occurred_at, m.event_id))
    later = sum(m.on_hand_delta for m in here if m.occurred_at > latest.occurred_at)
    return latest.quantity + later, committed


def fold(movements: list[Movement], policy: LedgerPolicy | None = None) -> SkuStock:
    stock, _ = apply_all(SkuStock.empty(SKU), movements, *(() if policy is None else (policy,)))
    return stock


@PROPERTY_SETTINGS
@given(st.data())
def test_any_arrival_order_gives_the_same_state_and_snapshot(data: st.DataObject) -> None:
    movements = data.draw(movement_sets())
    shuffled = data.draw(st.permutations(movements))
    in_order, other_order = fold(movements), fold(shuffled)
    assert snapshot(other_order) == snapshot(in_order)
    assert other_order.to_dict() == in_order.to_dict()


@PROPERTY_SETTINGS
@given(movement_sets())
def test_projection_matches_the_ledger_rule(movements: list[Movement]) -> None:
    stock = fold(movements)
    for location in LOCATIONS:
        loc = stock.location(location)
        assert (loc.on_hand, loc.committed) == reference(movements, location)
        doc = snapshot(stock)["locations"].get(location)
        if doc is not None:
            assert doc["available"] == loc.on_hand - loc.committed
            to_sell = doc["available_to_sell"]
            assert to_sell == max(0, min(loc.on_hand, doc["available"])) >= 0
            assert to_sell <= max(0, loc.on_hand)  # never a unit that is not on hand
    assert snapshot(stock)["totals"]["on_hand"] == sum(
        reference(movements, location)[0] for location in LOCATIONS
    )
    # the web total offers no unit that no location offers
    located = snapshot(stock)["locations"].values()
    assert snapshot(stock)["totals"]["available_to_sell"] <= sum(
        doc["available_to_sell"] for doc in located
    )


@PROPERTY_SETTINGS
@given(st.data())
def test_redelivery_anywhere_equals_delivery_once(data: st.DataObject) -> None:
    movements = data.draw(movement_sets(max_size=15))
    redelivered = data.draw(st.lists(st.sampled_from(movements), max_size=10)) if movements else []
    stream = data.draw(st.permutations(movements + redelivered))
    assert fold(stream).to_dict() == fold(movements).to_dict()


@PROPERTY_SETTINGS
@given(movement_sets(), st.data())
def test_applying_a_movement_twice_equals_once(
    movements: list[Movement], data: st.DataObject
) -> None:
    stock = fold(movements)
    extra = data.draw(movement_sets(max_size=1).filter(bool))[0]
    extra = Movement(
        "extra", SKU, extra.location_id, extra.kind, extra.quantity, extra.occurred_at, extra.reason
    )
    once, _ = apply(stock, extra)
    twice, effects = apply(once, extra)
    assert twice == once
    assert effects == ()


@PROPERTY_SETTINGS
@given(st.data())
def test_compaction_keeps_sums_exact_in_any_order_without_counts(data: st.DataObject) -> None:
    movements = [
        m for m in data.draw(movement_sets(max_size=30)) if m.kind is not MovementKind.COUNT
    ]
    policy = LedgerPolicy(max_entries=data.draw(st.integers(min_value=1, max_value=5)))
    stock = fold(data.draw(st.permutations(movements)), policy)
    for location in LOCATIONS:
        loc = stock.location(location)
        assert len(loc.ledger) <= policy.max_entries
        assert (loc.on_hand, loc.committed) == reference(movements, location)


@PROPERTY_SETTINGS
@given(st.data())
def test_compaction_is_exact_while_counts_arrive_in_time_order(data: st.DataObject) -> None:
    """Counts never older than the horizon (they arrive in event-time order) stay exact."""
    movements = data.draw(movement_sets(max_size=30))
    counts = sorted(
        (m for m in movements if m.kind is MovementKind.COUNT),
        key=lambda m: (m.occurred_at, m.event_id),
    )
    deltas = [m for m in movements if m.kind is not MovementKind.COUNT]
    # every delta arrives before the first count later than it: a "timely" stream
    stream = sorted(
        [*counts, *deltas],
        key=lambda m: (m.occurred_at, m.kind is not MovementKind.COUNT, m.event_id),
    )
    policy = LedgerPolicy(max_entries=data.draw(st.integers(min_value=1, max_value=4)))
    stock = fold(stream, policy)
    for location in LOCATIONS:
        loc = stock.location(location)
        assert (loc.on_hand, loc.committed) == reference(movements, location)


@PROPERTY_SETTINGS
@given(st.data())
def test_a_stock_take_older_than_every_delta_is_exact_whenever_it_arrives(
    data: st.DataObject,
) -> None:
    """A count stamped before every delta of its location (a stock-take uploaded late) covers
    none of them, however many were compacted before it arrived."""
    deltas = [m for m in data.draw(movement_sets(max_size=30)) if m.kind is not MovementKind.COUNT]
    counts = [
        Movement(
            f"c-{loc}",
            SKU,
            loc,
            MovementKind.COUNT,
            data.draw(st.integers(0, 50)),
            T0 - timedelta(minutes=1),
        )
        for loc in LOCATIONS
    ]
    stream = data.draw(st.permutations([*deltas, *counts]))
    policy = LedgerPolicy(max_entries=data.draw(st.integers(min_value=1, max_value=4)))
    stock = fold(stream, policy)
    for location in LOCATIONS:
        loc = stock.location(location)
        assert (loc.on_hand, loc.committed) == reference([*deltas, *counts], location)


# --- the stored bytes ------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(st.data())
def test_the_stored_bytes_are_state_and_snapshot_encoded_whatever_was_written_before(
    data: st.DataObject,
) -> None:
    """``encode`` reuses each location's encoding while the location is the same object (a
    later write of the SKU, a ledger remembered decoded): the bytes are still exactly
    ``to_dict`` and ``snapshot`` encoded, and what they decode to is the ledger written,
    which encodes to the same bytes (what a worker's decode cache may hold instead of it)."""
    movements = data.draw(movement_sets(max_size=30, locations=MANY_LOCATIONS))
    policy = LedgerPolicy(max_entries=data.draw(st.integers(min_value=1, max_value=8)))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(movements)), max_size=4)))
    stock, done = SkuStock.empty(SKU), 0
    for version, cut in enumerate([*cuts, len(movements)], start=1):
        stock, _ = apply_all(stock, movements[done:cut], policy)
        done = cut
        state, document = encode(stock, version)
        assert state == orjson.dumps(stock.to_dict())
        assert document == orjson.dumps({**snapshot(stock), "version": version})
        decoded = SkuStock.from_dict(orjson.loads(state))
        assert decoded == stock
        assert [(loc.on_hand, loc.committed) for loc in decoded.locations.values()] == [
            (stock.locations[loc_id].on_hand, stock.locations[loc_id].committed)
            for loc_id in decoded.locations
        ]
        assert encode(decoded, version) == (state, document)
        if data.draw(st.booleans()):  # the next batch loads it from the store, not the cache
            stock = decoded
