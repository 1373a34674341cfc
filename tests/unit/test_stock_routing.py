"""The stock-movement record (ADR 0014): encoding round-trips, bad bytes are refused with one
error class and never quoted, markers never collide."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolvers import stock_routing
from resolvers.inventory import Movement, MovementKind
from resolvers.pipeline import ROUTED_INVENTORY, prepare
from resolvers.stages import inventory as stage
from resolvers.steps import DeadLetter, Event, RawRecord
from schemas.identifiers import Identifier
from schemas.normalize import DEFAULT
from schemas.touchpoint import validate_touchpoint
from streams.settings import LoomSettings
from streams.topics import topic_specs

CODE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=24)
TIMES = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@st.composite
def routed(draw: st.DrawFn) -> stock_routing.Routed:
    event_id, sku = draw(CODE), draw(CODE)
    moves = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(MovementKind))
        low = -1000 if kind is MovementKind.ADJUSTMENT else 0
        moves.append(
            Movement(
                event_id,
                sku,
                draw(CODE),
                kind,
                draw(st.integers(low, 10**6)),
                draw(TIMES),
                draw(st.none() | st.text(max_size=20)),
            )
        )
    event_type = draw(st.sampled_from(sorted(stage.STOCK_TYPES)))
    return stock_routing.Routed(event_id, event_type, sku, tuple(moves))


@given(routed())
def test_a_routed_record_round_trips(r: stock_routing.Routed) -> None:
    assert stock_routing.decode(stock_routing.encode(r)) == r


@given(st.binary(max_size=200) | routed().map(stock_routing.encode).map(lambda b: b[:-3]))
def test_any_bytes_decode_or_are_refused_with_one_error_class(value: bytes) -> None:
    """Decoding never raises anything else (the applier dead-letters exactly that class)."""
    try:
        got = stock_routing.decode(value)
    except stock_routing.InvalidRoutedRecordError:
        return
    assert stock_routing.decode(stock_routing.encode(got)) == got


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"v": 2}, "format"),
        ({"sku": "two words"}, "sku"),
        # the type becomes a metrics label (loom_events_total{type=...}): free text never
        ({"type": "customer_jane_doe"}, "type"),
        ({"type": "page_view"}, "type"),
        ({"movements": []}, "movements"),
        ({"movements": [{"location_id": "oslo-1", "kind": "pos_sale", "quantity": -1,
                          "occurred_at": "2026-11-22T10:00:00Z"}]}, "invalid movement"),
        ({"movements": [{"location_id": "oslo-1", "kind": "teleport", "quantity": 1,
                          "occurred_at": "2026-11-22T10:00:00Z"}]}, "invalid movement"),
        ({"movements": [{"location_id": "oslo-1", "kind": "pos_sale", "quantity": 1,
                          "occurred_at": "2026-11-22T10:00:00"}]}, "invalid movement"),
        ({"movements": [{"location_id": "oslo-1", "kind": "adjustment", "quantity": -(2**40),
                          "occurred_at": "2026-11-22T10:00:00Z"}]}, "invalid movement"),
    ],
)  # fmt: skip
def test_a_bad_record_says_what_is_wrong_without_quoting_it(
    change: dict[str, object], why: str
) -> None:
    good = orjson.loads(stock_routing.encode(SALE))
    with pytest.raises(stock_routing.InvalidRoutedRecordError, match=why) as exc:
        stock_routing.decode(orjson.dumps({**good, **change}))
    assert "oslo-1" not in str(exc.value)
    assert "two words" not in str(exc.value)


AT = datetime(2026, 11, 22, 10, tzinfo=UTC)
SALE = stock_routing.Routed(
    "e-1",
    "pos_sale",
    "SKU-1",
    (Movement("e-1", "SKU-1", "oslo-1", MovementKind.POS_SALE, 2, AT),),
)


def test_route_groups_one_events_movements_per_sku() -> None:
    moves = [
        Movement("e-2", sku, loc, MovementKind.ORDER_PLACED, 1, AT + timedelta(seconds=i))
        for i, (sku, loc) in enumerate([("B", "x"), ("A", "x"), ("B", "y")])
    ]
    got = stock_routing.route("e-2", "order_completed", moves)
    assert [(r.sku, [m.location_id for m in r.movements]) for r in got] == [
        ("A", ["x"]),
        ("B", ["x", "y"]),
    ]
    assert [r.marker for r in got] == ["e-2 A", "e-2 B"]


@given(CODE, CODE, CODE, CODE)
def test_markers_of_different_event_sku_pairs_never_collide(a: str, b: str, c: str, d: str) -> None:
    if (a, b) != (c, d):
        assert stock_routing.marker(a, b) != stock_routing.marker(c, d)
        assert stock_routing.marker(a, b) not in (c, d)  # nor a plain event id


def test_the_routed_lane_decodes_movement_records_and_dead_letters_the_rest() -> None:
    good = RawRecord(value=stock_routing.encode(SALE), key=b"SKU-1", topic="m", offset=0)
    bad = RawRecord(value=b'{"v": 1}', key=b"x", topic="m", offset=1)
    events, dead = prepare(
        [good, bad], max_bytes=65536, config=DEFAULT, salt=b"", lane=ROUTED_INVENTORY
    )
    assert [e.routed for e in events] == [SALE]
    assert stage.markers(events[0]) == ["e-1", "e-1 SKU-1"]
    assert [(d.record.offset, d.stage, d.reason) for d in dead] == [
        (1, "inventory", "invalid_movement_record")
    ]
    assert isinstance(dead[0], DeadLetter)


def test_the_stock_movement_topic_has_the_raw_topics_partitions() -> None:
    settings = LoomSettings(partitions=12)
    specs = topic_specs(settings)
    assert specs[settings.topics.stock_movements][0] == specs[settings.topics.raw][0] == 12
    assert settings.router_group_id() == "loom-inventory-router"
    assert LoomSettings().inventory_routing == "direct"


def test_loom_lag_and_the_exporter_watch_the_router_group_when_routing_by_sku() -> None:
    from streams.cli.lag import lane_groups

    assert lane_groups(LoomSettings()) == ["loom-profiles", "loom-inventory"]
    routed_groups = lane_groups(LoomSettings(inventory_routing="by-sku"))
    assert routed_groups == ["loom-profiles", "loom-inventory", "loom-inventory-router"]


def test_the_direct_lane_keeps_every_field_of_an_event_and_adds_its_movements() -> None:
    tp = validate_touchpoint(
        {
            "event_id": "e-9",
            "type": "pos_sale",
            "channel": "pos",
            "occurred_at": "2026-11-22T10:00:00+01:00",
            "order": {
                "order_id": "o-9",
                "total": "30.00",
                "currency": "NOK",
                "location_id": "oslo-1",
                # two lines of one SKU: one movement of their sum (with_movements relies on it)
                "lines": [
                    {"sku": "B", "quantity": 2},
                    {"sku": "A", "quantity": 1},
                    {"sku": "B", "quantity": 3},
                ],
            },
        }
    )
    event = Event(
        record=RawRecord(value=b"{}", topic="raw", offset=9),
        touchpoint=tp,
        identifiers=(Identifier("email", "a@example.com"),),
        suppression_hashes=("h",),
    )
    # a field added to Event must be carried by with_movements too: this list names them all
    assert list(Event._fields) == [
        "record",
        "touchpoint",
        "identifiers",
        "suppression_hashes",
        "routed",
        "stock",
    ]
    taken = stage.with_movements(event)
    assert taken == event._replace(stock=stock_routing.by_sku(stage.movements(tp)))
    assert taken is not None
    assert taken.stock is not None
    assert [(sku, [m.quantity for m in moves]) for sku, moves in taken.stock.items()] == [
        ("A", [1]),
        ("B", [5]),
    ]


def test_the_routed_types_are_the_types_that_move_stock() -> None:
    assert stock_routing.EVENT_TYPES == stage.STOCK_TYPES
