"""The simulator: deterministic by seed, always valid, realistic mix."""

from __future__ import annotations

import itertools
from collections import Counter

from schemas.errors import InvalidEvent
from schemas.normalize import normalize_identifiers
from schemas.touchpoint import EventType, Touchpoint, dump_touchpoint, parse_touchpoint
from streams.simulate import Simulator


def take(sim: Simulator, n: int) -> list[Touchpoint]:
    return list(itertools.islice(sim.events(), n))


def test_same_seed_same_stream_other_seed_differs() -> None:
    a = [dump_touchpoint(tp) for tp in take(Simulator(7, 100, 3, 40), 800)]
    b = [dump_touchpoint(tp) for tp in take(Simulator(7, 100, 3, 40), 800)]
    c = [dump_touchpoint(tp) for tp in take(Simulator(8, 100, 3, 40), 800)]
    assert a == b
    assert a != c
    assert list(itertools.islice(Simulator(7, 10, 1, 5).lines(0.1), 300)) == list(
        itertools.islice(Simulator(7, 10, 1, 5).lines(0.1), 300)
    )


def test_all_events_validate_round_trip_and_ids_unique() -> None:
    events = take(Simulator(1, 200, 5, 60), 2000)
    for tp in events:
        assert parse_touchpoint(dump_touchpoint(tp)) == tp
    assert len({tp.event_id for tp in events}) == len(events)


def test_mix_contains_every_event_type_channel_and_region() -> None:
    events = take(Simulator(2, 300, 5, 80), 8000)
    types = Counter(tp.type for tp in events)
    assert set(types) == set(EventType)  # all 20 appear
    assert types[EventType.PRODUCT_VIEWED] > types[EventType.ORDER_COMPLETED]
    assert {tp.channel.value for tp in events} >= {"web", "app", "pos", "email", "support"}
    assert {tp.region for tp in events} == {"NO", "SE", "DE", "GB", "US"}


def test_simulated_time_never_goes_backwards() -> None:
    events = take(Simulator(3, 50, 2, 20), 3000)
    times = [tp.occurred_at for tp in events]
    assert times == sorted(times)


def test_anonymous_browsing_later_identified() -> None:
    events = take(Simulator(4, 100, 2, 20), 2000)
    signups = [
        tp
        for tp in events
        if tp.type in (EventType.SIGNUP, EventType.LOGIN) and tp.identifiers.anonymous_id
    ]
    assert signups
    anon_seen = {tp.identifiers.anonymous_id for tp in events if tp.type is EventType.PAGE_VIEW}
    assert any(tp.identifiers.anonymous_id in anon_seen for tp in signups)


def test_pos_sales_reference_catalog_and_stores() -> None:
    sim = Simulator(5, 100, 4, 30)
    skus = {s.sku for s in sim.skus}
    stores = {s.location_id for s in sim.stores}
    sales = [tp for tp in take(sim, 3000) if tp.type is EventType.POS_SALE]
    assert sales
    for tp in sales:
        assert tp.order is not None
        assert tp.order.location_id in stores
        assert {line.sku for line in tp.order.lines} <= skus
        assert tp.order.total == sum(
            (line.unit_price or 0) * line.quantity for line in tp.order.lines
        )


def test_phones_valid_for_region_and_some_junk_identifiers() -> None:
    events = take(Simulator(6, 200, 3, 30), 3000)
    phones = accepted = rejected_junk = 0
    for tp in events:
        result = normalize_identifiers(tp.identifiers.as_mapping(), region=tp.region)
        accepted += len(result.accepted)
        rejected_junk += sum(r.reason == "blocked_value" for r in result.rejected)
        raw_phone = tp.identifiers.phone
        if raw_phone and raw_phone != "0000000000":
            phones += 1
            assert result.get("phone") is not None, "simulated phone must be valid"
    assert phones > 20
    assert rejected_junk > 0
    assert rejected_junk < accepted * 0.05


def test_bad_records_are_all_invalid_with_every_reason() -> None:
    reasons: Counter[str] = Counter()
    for raw in itertools.islice(Simulator(9, 5, 1, 5).bad_records(), 40):
        try:
            parse_touchpoint(raw)
        except InvalidEvent as exc:
            reasons[exc.reason] += 1
        else:
            raise AssertionError("bad record parsed")
    assert set(reasons) == {
        "malformed_json",
        "invalid_utf8",
        "oversize",
        "schema_violation",
        "unknown_type",
    }


def test_bad_fraction_roughly_respected() -> None:
    lines = list(itertools.islice(Simulator(1, 50, 2, 20).lines(0.1), 2000))
    bad = 0
    for raw in lines:
        try:
            parse_touchpoint(raw)
        except InvalidEvent:
            bad += 1
    assert 100 < bad < 300


def test_opening_counts_cover_every_sku_in_every_store_first() -> None:
    import itertools

    sim = Simulator(seed=5, customers=10, stores=3, skus=4, opening_counts=True)
    first = list(itertools.islice(sim.events(), 16))
    assert {e.type.value for e in first} == {"inventory_counted"}
    pairs = {(e.inventory.sku, e.inventory.location_id) for e in first if e.inventory}
    sites = [s.location_id for s in sim.stores] + ["online"]
    assert pairs == {(k.sku, site) for site in sites for k in sim.skus}
    plain = list(itertools.islice(Simulator(seed=5, customers=10, stores=3, skus=4).events(), 12))
    assert sum(e.type.value == "inventory_counted" for e in plain) < 12
