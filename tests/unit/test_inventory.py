"""Inventory ledger arithmetic: movement table, event-time ordering, idempotency, effects."""

from __future__ import annotations

import gc
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from resolvers.inventory import (
    InvalidMovementError,
    InvalidStateError,
    LedgerPolicy,
    Movement,
    MovementKind,
    Oversold,
    SkuStock,
    StockChanged,
    apply,
    apply_all,
    encode,
    snapshot,
)

SKU = "SKU-1"
LOC = "oslo-1"
T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def mv(
    event_id: str,
    kind: MovementKind | str,
    quantity: int,
    minutes: float,
    *,
    location: str = LOC,
    reason: str | None = None,
) -> Movement:
    return Movement(event_id, SKU, location, MovementKind(kind), quantity, at(minutes), reason)


def fold(*movements: Movement, policy: LedgerPolicy | None = None) -> SkuStock:
    stock, _ = apply_all(SkuStock.empty(SKU), movements, *(() if policy is None else (policy,)))
    return stock


def levels(stock: SkuStock, location: str = LOC) -> tuple[int, int, int]:
    loc = stock.location(location)
    return loc.on_hand, loc.committed, loc.available


# --- every movement kind, from a counted start of 10 on hand and 3 committed ------------------

START = (mv("count-0", "count", 10, 0), mv("placed-0", "order_placed", 3, 1))


@pytest.mark.parametrize(
    ("kind", "quantity", "expected"),
    [
        ("order_placed", 2, (10, 5, 5)),
        ("order_fulfilled", 2, (8, 1, 7)),
        ("order_cancelled", 2, (10, 1, 9)),
        ("pos_sale", 2, (8, 3, 5)),
        ("return_restock", 2, (12, 3, 9)),
        ("adjustment", -4, (6, 3, 3)),
        ("adjustment", 4, (14, 3, 11)),
        ("count", 7, (7, 3, 4)),
        ("count", 0, (0, 3, -3)),
    ],
)
def test_each_movement_kind(kind: str, quantity: int, expected: tuple[int, int, int]) -> None:
    stock = fold(*START, mv("e1", kind, quantity, 5, reason="damage"))
    assert levels(stock) == expected
    loc = snapshot(stock)["locations"][LOC]
    assert (loc["on_hand"], loc["committed"], loc["available"]) == expected
    assert loc["available_to_sell"] == max(0, expected[2])
    assert loc["oversold"] is (expected[2] < 0)


def test_without_any_count_on_hand_is_the_sum_of_deltas() -> None:
    stock = fold(
        mv("r1", "return_restock", 5, 1),
        mv("s1", "pos_sale", 2, 2),
        mv("a1", "adjustment", -1, 3, reason="shrinkage"),
    )
    assert levels(stock) == (2, 0, 2)
    assert snapshot(stock)["locations"][LOC]["last_count_at"] is None


# --- ordering by occurred_at, never arrival ------------------------------------------------------


def test_day_of_a_store_is_exact_even_with_a_late_offline_sale() -> None:
    morning_count = mv("count-am", "count", 20, 0)  # 08:00
    day = [
        mv("sale-1", "pos_sale", 2, 60),  # 09:00
        mv("web-1", "order_placed", 3, 75),  # online order reserves 3
        mv("sale-2", "pos_sale", 1, 120),
        mv("return-1", "return_restock", 1, 180),
        mv("restock-1", "adjustment", 12, 240, reason="restock"),
        mv("web-1f", "order_fulfilled", 3, 300),
        mv("sale-3", "pos_sale", 4, 400),
    ]
    # a till that was offline syncs in the evening a sale rung up at 07:30, before the count:
    late_offline = mv("sale-offline", "pos_sale", 5, -30)
    stock, effects = apply_all(SkuStock.empty(SKU), [morning_count, *day, late_offline])
    assert levels(stock) == (20 - 2 - 1 + 1 + 12 - 3 - 4, 0, 23)
    assert not [e for e in effects if e.event_id == "sale-offline"]  # the count already had it
    # and the same when the offline sale arrives first (before the count)
    stock2, _ = apply_all(SkuStock.empty(SKU), [late_offline, morning_count, *day])
    assert snapshot(stock2) == snapshot(stock)
    assert stock2.to_dict() == stock.to_dict()
    doc = snapshot(stock)
    assert doc["locations"][LOC]["last_count_at"] == "2026-11-22T08:00:00Z"
    assert doc["locations"][LOC]["updated_at"] == "2026-11-22T14:40:00Z"
    assert doc["totals"]["on_hand"] == 23


def test_delta_arriving_before_a_later_count_is_superseded_by_it() -> None:
    stock = fold(mv("s1", "pos_sale", 2, 10), mv("c1", "count", 50, 20))
    assert levels(stock) == (50, 0, 50)
    assert "s1" not in stock.location(LOC).ledger  # pruned: it can never matter again


def test_delta_after_the_count_counts_even_when_it_arrived_before_it() -> None:
    stock = fold(mv("s1", "pos_sale", 2, 30), mv("c1", "count", 50, 20))
    assert levels(stock) == (48, 0, 48)


def test_fulfilment_before_the_count_still_releases_its_reservation() -> None:
    placed = mv("p1", "order_placed", 2, 5)
    fulfilled = mv("f1", "order_fulfilled", 2, 10)
    count = mv("c1", "count", 40, 20)
    for order in (
        [placed, fulfilled, count],
        [count, fulfilled, placed],
        [fulfilled, count, placed],
    ):
        assert levels(fold(*order)) == (40, 0, 40)


def test_delta_at_the_same_instant_as_the_count_is_included_in_the_count() -> None:
    before = fold(mv("s1", "pos_sale", 2, 20), mv("c1", "count", 50, 20))
    after = fold(mv("c1", "count", 50, 20), mv("s1", "pos_sale", 2, 20))
    assert levels(before) == levels(after) == (50, 0, 50)


def test_older_count_changes_nothing() -> None:
    stock = fold(mv("c2", "count", 30, 60), mv("s1", "pos_sale", 1, 70))
    later, effects = apply(stock, mv("c1", "count", 99, 10))
    assert later is stock  # nothing to write
    stale_sale, _ = apply(stock, mv("s0", "pos_sale", 5, 59))
    assert stale_sale is stock
    assert levels(later) == (29, 0, 29)
    assert effects == ()
    assert later.location(LOC).count_event_id == "c2"


def test_counts_at_the_same_instant_tie_break_on_the_greater_event_id() -> None:
    a, b = mv("count-a", "count", 5, 10), mv("count-b", "count", 7, 10)
    assert levels(fold(a, b)) == levels(fold(b, a)) == (7, 0, 7)
    assert fold(a, b).location(LOC).count_event_id == "count-b"


def test_reservations_are_not_touched_by_counts() -> None:
    stock = fold(mv("p1", "order_placed", 4, 5), mv("c1", "count", 10, 20))
    assert levels(stock) == (10, 4, 6)


def test_locations_are_independent_and_totalled() -> None:
    stock = fold(
        mv("c1", "count", 10, 0),
        mv("c2", "count", 4, 0, location="bergen-1"),
        mv("s1", "pos_sale", 1, 5, location="bergen-1"),
        mv("p1", "order_placed", 2, 6, location="online"),
    )
    doc = snapshot(stock)
    assert list(doc["locations"]) == ["bergen-1", "online", "oslo-1"]
    assert doc["locations"]["bergen-1"]["on_hand"] == 3
    assert doc["locations"]["online"]["available"] == -2
    assert doc["totals"] == {
        "on_hand": 13,
        "committed": 2,
        "available": 11,
        "available_to_sell": 11,
        "oversold": True,
        "updated_at": "2026-11-22T08:06:00Z",
    }


# --- orders ---------------------------------------------------------------------------------------


def test_online_order_placed_then_cancelled_restores_availability() -> None:
    stock = fold(mv("c1", "count", 5, 0))
    stock, placed_effects = apply(stock, mv("o1", "order_placed", 2, 10, location=LOC))
    assert levels(stock) == (5, 2, 3)
    assert placed_effects == (
        StockChanged(SKU, LOC, 5, 2, 3, "o1", MovementKind.ORDER_PLACED, at(10)),
    )
    stock, cancel_effects = apply(stock, mv("o1-cancel", "order_cancelled", 2, 20))
    assert levels(stock) == (5, 0, 5)
    assert snapshot(stock)["locations"][LOC]["available_to_sell"] == 5
    assert [e.available for e in cancel_effects if isinstance(e, StockChanged)] == [5]


def test_oversell_raises_an_alert_and_the_storefront_never_sees_negative_stock() -> None:
    stock = fold(mv("c1", "count", 2, 0))
    stock, ok = apply(stock, mv("o1", "order_placed", 2, 1))
    assert not [e for e in ok if isinstance(e, Oversold)]
    stock, effects = apply(stock, mv("s1", "pos_sale", 1, 2))
    assert Oversold(SKU, LOC, -1, "s1", at(2)) in effects
    loc = snapshot(stock)["locations"][LOC]
    assert (loc["available"], loc["available_to_sell"], loc["oversold"]) == (-1, 0, True)
    assert snapshot(stock)["totals"]["available_to_sell"] == 0
    # getting better while still negative is not a new alert; getting worse is
    stock, better = apply(stock, mv("r1", "return_restock", 0, 3))
    assert better == ()
    stock, worse = apply(stock, mv("s2", "pos_sale", 1, 4))
    assert [type(e) for e in worse] == [StockChanged, Oversold]
    # the same shortfall after a fulfilment (on hand and committed down together): a change
    # of the stock, not a new alert
    stock, same = apply(stock, mv("f1", "order_fulfilled", 1, 4.5))
    assert [type(e) for e in same] == [StockChanged]
    assert levels(stock)[2] == -2
    stock, recovered = apply(stock, mv("a1", "adjustment", 5, 5, reason="restock"))
    assert not [e for e in recovered if isinstance(e, Oversold)]
    assert snapshot(stock)["locations"][LOC]["oversold"] is False


# --- idempotency -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "movement",
    [
        mv("x", "order_placed", 2, 30),
        mv("x", "order_fulfilled", 2, 30),
        mv("x", "order_cancelled", 2, 30),
        mv("x", "pos_sale", 2, 30),
        mv("x", "return_restock", 2, 30),
        mv("x", "adjustment", -2, 30),
        mv("x", "count", 2, 30),
        mv("x", "pos_sale", 2, -30),  # pruned by the count, still a no-op when redelivered
    ],
)
def test_applying_a_movement_twice_equals_once(movement: Movement) -> None:
    base = fold(mv("c1", "count", 10, 0), mv("p1", "order_placed", 1, 1))
    once, _ = apply(base, movement)
    twice, effects = apply(once, movement)
    assert twice is once
    assert effects == ()


def test_stock_changed_only_when_a_level_changes() -> None:
    stock = fold(mv("c1", "count", 10, 0))
    _, effects = apply(stock, mv("a0", "adjustment", 0, 5, reason="correction"))
    assert effects == ()
    _, effects = apply(stock, mv("a1", "adjustment", -3, 5, reason="damage"))
    assert effects == (
        StockChanged(SKU, LOC, 7, 0, 7, "a1", MovementKind.ADJUSTMENT, at(5), "damage"),
    )


def test_apply_is_pure() -> None:
    stock = fold(mv("c1", "count", 10, 0), mv("s1", "pos_sale", 1, 5))
    frozen = stock.to_dict()
    apply(stock, mv("s2", "pos_sale", 1, 6))
    apply(stock, mv("c2", "count", 1, 7))
    assert stock.to_dict() == frozen


# --- bounded state ---------------------------------------------------------------------------


def test_ledger_is_compacted_beyond_max_entries_and_stays_exact_for_sums() -> None:
    policy = LedgerPolicy(max_entries=4)
    sales = [mv(f"s{i}", "pos_sale", 1, i) for i in range(1, 11)]
    orders = [mv(f"p{i}", "order_placed", 1, i + 0.5) for i in range(1, 4)]
    stock = fold(mv("c1", "count", 100, 0), *sales, *orders, policy=policy)
    loc = stock.location(LOC)
    assert 3 <= len(loc.ledger) <= 4  # over the cap it folds down to 3/4 of it
    assert levels(stock) == (90, 3, 87)
    assert loc.horizon is not None
    # a count after the horizon is exact: everything folded is before it
    later = fold(
        mv("c1", "count", 100, 0), *sales, *orders, mv("c2", "count", 50, 9.5), policy=policy
    )
    assert levels(later) == (49, 3, 46)  # s10 is after c2


def test_compaction_by_age_uses_event_time_not_wall_clock() -> None:
    policy = LedgerPolicy(max_entries=100, max_age=timedelta(hours=1))
    stock = fold(
        mv("s1", "pos_sale", 1, 0),
        mv("s2", "pos_sale", 1, 30),
        mv("s3", "pos_sale", 1, 120),
        policy=policy,
    )
    loc = stock.location(LOC)
    assert set(loc.ledger) == {"s3"}
    assert loc.base_on_hand == -2
    assert loc.horizon == at(30)
    assert levels(stock) == (-3, 0, -3)


def test_count_older_than_the_horizon_drops_the_compacted_base() -> None:
    """Documented trade-off: the late count is taken to cover every folded delta."""
    policy = LedgerPolicy(max_entries=2)
    stock = fold(*(mv(f"s{i}", "pos_sale", 1, i) for i in range(1, 6)), policy=policy)
    assert stock.location(LOC).horizon == at(3)
    stock, _ = apply(stock, mv("c-late", "count", 10, 2), policy)
    assert levels(stock) == (8, 0, 8)  # exact would be 7 (s3 folded, after the count)


def test_a_late_stock_take_behind_more_sales_than_the_ledger_keeps_ends_exact() -> None:
    """A store counts 1,000 units at opening and uploads the count in the evening, after 300
    sales stamped later were applied: the ledger keeps 256 entries, so the oldest sales were
    compacted, and the count, taken to cover every compacted delta, dropped them (765 on
    hand, against 700 when the count arrived first). A count older than every compacted
    delta that moved on hand covers none of them: the answer no longer depends on arrival."""
    sales = [mv(f"s{i}", "pos_sale", 1, 1 + i) for i in range(300)]
    count = mv("c-open", "count", 1000, 0)
    assert levels(fold(count, *sales)) == (700, 0, 700)
    assert fold(*sales).location(LOC).base_on_hand < 0  # compacted before the count arrives
    assert levels(fold(*sales, count)) == (700, 0, 700)
    # read back from its stored state, the next count still knows what it may drop
    again = SkuStock.from_dict(orjson.loads(orjson.dumps(fold(*sales).to_dict())))
    assert levels(apply(again, count)[0]) == (700, 0, 700)


# --- serialization ---------------------------------------------------------------------------


def test_state_round_trips_through_json() -> None:
    stock = fold(
        mv("c1", "count", 10, 0),
        mv("p1", "order_placed", 2, 1.000001),
        mv("s1", "pos_sale", 1, 2, location="bergen-1"),
        mv("a1", "adjustment", 3, 3, reason="restock"),
        policy=LedgerPolicy(max_entries=1),
    )
    data = orjson.loads(orjson.dumps(stock.to_dict()))
    assert SkuStock.from_dict(data) == stock
    assert data["format"] == 1
    assert data["locations"][LOC]["count"] == {
        "on_hand": 10,
        "at": "2026-11-22T08:00:00Z",
        "event_id": "c1",
    }
    assert data["locations"][LOC]["base"]["committed"] == 2
    assert SkuStock.from_dict(data).location(LOC).ledger["a1"].occurred_at == at(3)


def test_a_write_encodes_only_the_locations_it_moved() -> None:
    stock = fold(mv("c1", "count", 10, 0), mv("s1", "pos_sale", 1, 1, location="bergen-1"))
    encode(stock, 1)
    kept = stock.location("bergen-1")
    moved, _ = apply(stock, mv("s2", "pos_sale", 2, 2))
    assert moved.location("bergen-1") is kept  # the same object: its encoding is reused
    state, document = encode(moved, 2)
    assert state == orjson.dumps(moved.to_dict())
    assert orjson.loads(document) == snapshot(moved) | {"version": 2}
    assert orjson.loads(document)["locations"][LOC]["on_hand"] == 8


def test_a_location_keeps_its_encoding_right_sized() -> None:
    # orjson.dumps returns bytes that keep its whole buffer (>= 4 KiB since orjson 3.12), and
    # a worker's decode cache keeps the ledgers it wrote, encodings included
    stocks = [fold(mv(f"s{i}", "pos_sale", 1, i)) for i in range(2_000)]
    gc.collect()
    tracemalloc.start()
    try:
        for stock in stocks:
            encode(stock, 1)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held / len(stocks) < 1024  # two small fragments per location, not 2 x 4 KiB


@pytest.mark.parametrize(
    "data",
    [
        {"format": 2, "sku": SKU, "locations": {}},
        {"format": 1, "sku": SKU},
        {"format": 1, "sku": SKU, "locations": {LOC: {"count": None}}},
        {
            "format": 1,
            "sku": SKU,
            "locations": {
                LOC: {
                    "count": None,
                    "ledger": {"e": ["2026-11-22T08:00:00", 1, 0]},
                    "base": {"on_hand": 0, "committed": 0, "horizon": None},
                    "updated_at": None,
                }
            },
        },
    ],
)
def test_unreadable_state_is_rejected(data: dict[str, object]) -> None:
    with pytest.raises(InvalidStateError):
        SkuStock.from_dict(data)


def _one_entry_state(entry: list[object]) -> dict[str, object]:
    location = {
        "count": None,
        "ledger": {"e": entry},
        "base": {"on_hand": 0, "committed": 0, "horizon": None},
        "updated_at": None,
    }
    return {"format": 1, "sku": SKU, "locations": {LOC: location}}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (["2026-11-22T08:00:00", 1, 0], "without offset"),
        ([None, 1, 0], "missing timestamp"),
        ([1, 1, 0], "cannot read"),
        (["yesterday", 1, 0], "cannot read"),
        (["2026-11-22T08:00:00Z", True, 0], "expected an integer"),
        (["2026-11-22T08:00:00Z", 1, "0"], "expected an integer"),
        (["2026-11-22T08:00:00Z", 1], "cannot read"),
    ],
)
def test_an_unreadable_ledger_entry_says_why(entry: list[object], message: str) -> None:
    with pytest.raises(InvalidStateError, match=message):
        SkuStock.from_dict(_one_entry_state(entry))


def test_a_ledger_time_with_another_offset_is_read_in_utc() -> None:
    stock = SkuStock.from_dict(_one_entry_state(["2026-11-22T09:00:00+01:00", -1, 0]))
    entry = stock.location(LOC).ledger["e"]
    assert (entry.occurred_at, entry.occurred_at.tzinfo, entry.on_hand_delta) == (T0, UTC, -1)
    assert stock.location(LOC).on_hand == -1


def test_timestamps_are_normalised_to_utc() -> None:
    oslo = timezone(timedelta(hours=1))
    m = Movement("e", SKU, LOC, MovementKind.POS_SALE, 1, datetime(2026, 11, 22, 9, tzinfo=oslo))
    assert m.occurred_at == T0
    assert m.occurred_at.tzinfo is UTC
    zulu = timezone(timedelta(0), "Z")  # another UTC object (e.g. pydantic's): made UTC too
    m = Movement("e", SKU, LOC, MovementKind.POS_SALE, 1, datetime(2026, 11, 22, 8, tzinfo=zulu))
    assert (m.occurred_at, m.occurred_at.tzinfo) == (T0, UTC)


def test_a_kind_given_as_text_becomes_the_member() -> None:
    m = Movement("e", SKU, LOC, "pos_sale", 1, T0)  # type: ignore[arg-type]
    assert m.kind is MovementKind.POS_SALE
    assert m.on_hand_delta == -1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"quantity": -1},
        {"occurred_at": datetime(2026, 11, 22, 8)},  # naive
        {"event_id": ""},
        {"kind": "teleport"},
        {"quantity": 1.5},
        {"quantity": True},
    ],
)
def test_invalid_movements_are_rejected(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {
        "event_id": "e",
        "sku": SKU,
        "location_id": LOC,
        "kind": MovementKind.POS_SALE,
        "quantity": 1,
        "occurred_at": T0,
    }
    fields.update(kwargs)
    with pytest.raises(ValueError, match=r".+"):
        Movement(**fields)  # type: ignore[arg-type]


def test_movement_for_another_sku_is_refused() -> None:
    with pytest.raises(InvalidMovementError):
        apply(SkuStock.empty("OTHER"), mv("e", "pos_sale", 1, 0))


@pytest.mark.parametrize(
    ("early", "before_placement", "settled"),
    [
        # a cancellation read before its placement: committed -3 for a while
        (mv("o1-cancel", "order_cancelled", 3, 20), (5, -3, 8), (5, 0, 5)),
        # a fulfilment read before its placement: 2 shipped, committed -2 for a while
        (mv("o1-ship", "order_fulfilled", 2, 20), (3, -2, 5), (3, 0, 3)),
    ],
)
def test_the_storefront_never_sees_more_to_sell_than_is_on_hand(
    early: Movement, before_placement: tuple[int, int, int], settled: tuple[int, int, int]
) -> None:
    """A release read before the placement it releases leaves committed negative (the fold is
    order-free: the placement settles it). ``available`` then exceeds what is on hand; the
    storefront's ``available_to_sell`` must not (a review of 2026-12-04: it showed 8 of 5)."""
    placed = mv("o1", "order_placed", early.quantity, 10)
    stock = fold(mv("c1", "count", 5, 0), early)
    assert levels(stock) == before_placement
    on_hand = before_placement[0]
    doc = snapshot(stock)
    assert doc["locations"][LOC]["available_to_sell"] == on_hand
    assert doc["totals"]["available_to_sell"] == on_hand
    _, view = encode(stock, 1)
    assert orjson.loads(view)["totals"]["available_to_sell"] == on_hand
    assert orjson.loads(view)["locations"][LOC]["available_to_sell"] == on_hand
    changed = [
        e for e in apply(fold(mv("c1", "count", 5, 0)), early)[1] if isinstance(e, StockChanged)
    ]
    assert [e.available_to_sell for e in changed] == [on_hand]
    settled_stock = fold(mv("c1", "count", 5, 0), early, placed)
    assert levels(settled_stock) == settled
    assert snapshot(settled_stock)["locations"][LOC]["available_to_sell"] == settled[2]


def test_the_web_total_offers_no_unit_that_no_location_offers() -> None:
    """A cancellation read before its placement at one store leaves that store's ``committed``
    negative; its own ``available_to_sell`` is capped at what it holds (0), but the totals
    summed the raw ``available``, so the other store's reserved units showed as sellable on
    the web (2 to sell while every location offered 0). The web total never exceeds the sum
    of the locations' ``available_to_sell``; an oversold location is still served from the
    others' stock."""
    stock = fold(
        mv("c-oslo", "count", 0, 0),
        mv("o1-cancel", "order_cancelled", 2, 20),  # o1's placement is late
        mv("c-bergen", "count", 5, 0, location="bergen-1"),
        mv("o2", "order_placed", 5, 10, location="bergen-1"),
    )
    doc = snapshot(stock)
    assert [loc["available_to_sell"] for loc in doc["locations"].values()] == [0, 0]
    assert doc["totals"]["available_to_sell"] == 0
    assert orjson.loads(encode(stock, 1)[1])["totals"]["available_to_sell"] == 0
    # once the placement arrives the positions settle: still nothing to sell anywhere
    settled = apply(stock, mv("o1", "order_placed", 2, 5))[0]
    assert snapshot(settled)["totals"]["available_to_sell"] == 0
    # an oversold store is served from another one (unchanged)
    oversold = fold(
        mv("c-oslo", "count", 1, 0),
        mv("s1", "pos_sale", 3, 5),
        mv("c-bergen", "count", 5, 0, location="bergen-1"),
    )
    assert snapshot(oversold)["totals"]["available_to_sell"] == 3
