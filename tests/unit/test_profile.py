"""Table tests for the profile aggregate: the business rules, one by one."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from resolvers.profile import (
    EMPTY_GATED_FIELDS,
    EMPTY_PROFILE,
    LEDGER_WINDOW,
    MAX_AFFINITY_CATEGORIES,
    PURPOSE_GATES,
    RECENT_ACTIVITY_LIMIT,
    Observation,
    OrderFacts,
    ProfileAggregate,
    is_granted,
    merge,
    observe,
    observe_all,
    purge,
    reachability,
    snapshot,
    with_ad_identifiers,
    with_audiences,
)

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
ALL = frozenset({"analytics", "personalization", "marketing", "ads"})
GRANTED = {p: True for p in ALL}


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ev(
    event_id: str,
    minutes: int = 0,
    *,
    type: str = "page_view",
    channel: str = "web",
    purposes: frozenset[str] = ALL,
    traits: Mapping[str, str] | None = None,
    preferences: Mapping[str, object] | None = None,
    properties: Mapping[str, object] | None = None,
    order: OrderFacts | None = None,
) -> Observation:
    return Observation(
        event_id=event_id,
        type=type,
        channel=channel,
        occurred_at=at(minutes),
        traits=traits or {},
        preferences=preferences or {},
        properties=properties or {},
        order=order,
        purposes=purposes,
    )


def order(
    event_id: str,
    minutes: int,
    order_id: str,
    total: str,
    currency: str = "NOK",
    *,
    store: str | None = None,
    payment: str | None = "card",
    categories: Sequence[str] = (),
    type: str | None = None,
    purposes: frozenset[str] = ALL,
) -> Observation:
    in_store = store is not None
    return ev(
        event_id,
        minutes,
        type=type or ("pos_sale" if in_store else "order_completed"),
        channel="pos" if in_store else "web",
        purposes=purposes,
        order=OrderFacts(
            order_id=order_id,
            total=Decimal(total),
            currency=currency,
            payment_method=payment,
            location_id=store or "online",
            categories=tuple(categories),
            in_store=in_store,
        ),
    )


def returned(
    event_id: str, minutes: int, order_id: str, total: str, currency: str = "NOK"
) -> Observation:
    return ev(
        event_id,
        minutes,
        type="order_returned",
        channel="pos",
        order=OrderFacts(order_id, Decimal(total), currency, is_return=True, in_store=True),
    )


def snap(agg: ProfileAggregate, consent: Mapping[str, object] = GRANTED) -> dict[str, Any]:
    return snapshot(
        agg,
        profile_id="p-1",
        identifiers={"email": ["ann@example.com"]},
        consent=consent,
        merged_from=["p-0", "p-0"],
        version=7,
    )


# --------------------------------------------------------------------------- shopping mode


@pytest.mark.parametrize(
    ("events", "mode", "online", "in_store"),
    [
        ([], "none", 0, 0),
        ([ev("v1", type="product_viewed")], "none", 0, 0),
        ([order("a", 1, "o1", "10")], "online", 1, 0),
        ([order("a", 1, "o1", "10", store="oslo-1")], "in_store", 0, 1),
        (
            [order("a", 1, "o1", "10"), order("b", 2, "o2", "5", store="oslo-1")],
            "omnichannel",
            1,
            1,
        ),
        # a return is not an order; order_fulfilled carries facts but does not count again
        ([returned("r", 1, "o9", "10")], "none", 0, 0),
        (
            [order("a", 1, "o1", "10"), order("f", 2, "o1", "10", type="order_fulfilled")],
            "online",
            1,
            0,
        ),
    ],
)
def test_shopping_mode_and_order_counts(
    events: list[Observation], mode: str, online: int, in_store: int
) -> None:
    doc = snap(observe_all(events))
    assert (doc["shopping_mode"], doc["orders_online"], doc["orders_in_store"]) == (
        mode,
        online,
        in_store,
    )


# ------------------------------------------------------------------ preferred store / payment


@pytest.mark.parametrize(
    ("events", "store", "payment"),
    [
        ([], None, None),
        ([order("a", 1, "o1", "10", payment=None)], None, None),
        # online orders never make a preferred store, but do count for the payment method
        ([order("a", 1, "o1", "10", payment="vipps")], None, "vipps"),
        (
            [
                order("a", 1, "o1", "1", store="bergen-2", payment="cash"),
                order("b", 2, "o2", "1", store="oslo-1", payment="card"),
                order("c", 3, "o3", "1", store="oslo-1", payment="cash"),
            ],
            "oslo-1",
            "cash",
        ),
        # tie: deterministic, smallest name wins regardless of arrival order or recency
        (
            [
                order("a", 5, "o1", "1", store="oslo-1", payment="vipps"),
                order("b", 1, "o2", "1", store="bergen-2", payment="card"),
            ],
            "bergen-2",
            "card",
        ),
        # the same order reported twice (POS retry with a new event id) counts once
        (
            [
                order("a", 1, "o1", "1", store="oslo-1"),
                order("b", 2, "o2", "1", store="bergen-2"),
                order("b2", 3, "o2", "1", store="bergen-2"),
                order("c", 4, "o3", "1", store="oslo-1"),
            ],
            "oslo-1",
            "card",
        ),
    ],
)
def test_preferred_store_and_payment_method(
    events: list[Observation], store: str | None, payment: str | None
) -> None:
    for arrival in (events, list(reversed(events))):
        doc = snap(observe_all(arrival))
        assert doc["preferred_store"] == store
        assert doc["preferred_payment_method"] == payment


# --------------------------------------------------------------------------- money


@pytest.mark.parametrize(
    ("totals", "currency", "revenue", "aov"),
    [
        (["0.10", "0.20"], "NOK", "0.30", "0.15"),  # float would give 0.30000000000000004
        (["0.1"] * 10, "EUR", "1.00", "0.10"),
        (["10.00", "10.01", "10.01"], "NOK", "30.02", "10.01"),  # 10.00666.. rounds half-even
        (["15.01", "0"], "NOK", "15.01", "7.50"),  # 7.505 -> 7.50 (half-even)
        (["15.03", "0"], "NOK", "15.03", "7.52"),  # 7.515 -> 7.52 (half-even)
        (["1000", "1001"], "JPY", "2001", "1000"),  # zero minor units: 1000.5 -> 1000
        (["1.250", "1.001"], "KWD", "2.251", "1.126"),  # three minor units
        (["19.999"], "NOK", "19.999", "20.00"),  # more digits than the currency: kept in sums
        (["12345678901234567890.01", "0.02"], "NOK", "12345678901234567890.03", None),
    ],
)
def test_revenue_and_average_order_value_are_exact_decimals(
    totals: list[str], currency: str, revenue: str, aov: str | None
) -> None:
    events = [order(f"e{i}", i, f"o{i}", t, currency) for i, t in enumerate(totals)]
    doc = snap(observe_all(events))
    assert doc["revenue"] == {currency: revenue}
    if aov is not None:
        assert doc["average_order_value"] == {currency: aov}


def test_revenue_and_aov_are_per_currency() -> None:
    doc = snap(
        observe_all(
            [
                order("a", 1, "o1", "100", "NOK"),
                order("b", 2, "o2", "50", "NOK"),
                order("c", 3, "o3", "9.99", "eur"),  # currency codes are upper-cased
            ]
        )
    )
    assert doc["revenue"] == {"EUR": "9.99", "NOK": "150.00"}
    assert doc["average_order_value"] == {"EUR": "9.99", "NOK": "75.00"}
    assert doc["last_order"] == {
        "order_id": "o3",
        "at": "2024-05-01T09:03:00Z",
        "total": "9.99",
        "currency": "EUR",
        "location_id": "online",
    }


def test_a_corrected_order_replaces_its_earlier_version() -> None:
    first = order("a", 1, "o1", "100")
    corrected = order("b", 5, "o1", "80")
    for arrival in ([first, corrected], [corrected, first]):
        doc = snap(observe_all(arrival))
        assert doc["revenue"] == {"NOK": "80.00"}
        assert doc["orders_online"] == 1
        assert doc["last_order"]["total"] == "80.00"


def test_last_order_is_latest_by_event_time_with_event_id_tie_break() -> None:
    late_arrival = order("z", 10, "o-old", "1")
    same_time_a, same_time_b = order("a", 20, "o-a", "2"), order("b", 20, "o-b", "3")
    for arrival in (
        [same_time_b, same_time_a, late_arrival],
        [late_arrival, same_time_a, same_time_b],
    ):
        assert snap(observe_all(arrival))["last_order"]["order_id"] == "o-b"


# --------------------------------------------------------------------------- returns


def test_returns_count_and_value_per_currency() -> None:
    events = [
        order("a", 1, "o1", "100"),
        returned("r1", 2, "o1", "30"),
        returned("r2", 3, "o1", "20"),  # second partial return of the same order counts
        returned("r2", 3, "o1", "20"),  # redelivery does not
        returned("r3", 4, "o7", "-5.50", "EUR"),  # sign-agnostic: value is the amount returned
    ]
    doc = snap(observe_all(events))
    assert doc["returns"] == {"count": 3, "value": {"EUR": "5.50", "NOK": "50.00"}}
    assert doc["revenue"] == {"NOK": "100.00"}  # revenue is gross; returns are reported apart
    assert doc["orders_online"] == 1


# --------------------------------------------------------------------------- activity and affinity


def test_recent_activity_keeps_the_latest_20_by_event_time() -> None:
    events = [ev(f"e{i:02d}", i, properties={"sku": f"s{i}"}) for i in range(30)]
    events.append(ev("consent", 99, type="consent_updated"))  # not activity
    for arrival in (events, list(reversed(events))):
        activity = snap(observe_all(arrival))["recent_activity"]
        assert len(activity) == RECENT_ACTIVITY_LIMIT == 20
        assert [a["event_id"] for a in activity] == [f"e{i:02d}" for i in range(29, 9, -1)]
        assert activity[0] == {
            "at": "2024-05-01T09:29:00Z",
            "event_id": "e29",
            "type": "page_view",
            "channel": "web",
            "sku": "s29",
        }


def test_recent_activity_merge_takes_top_20_of_union_with_event_id_tie_break() -> None:
    left = observe_all(ev(f"a{i:02d}", i) for i in range(15))
    right = observe_all(ev(f"b{i:02d}", i) for i in range(15))
    ids = [a["event_id"] for a in snap(merge(left, right))["recent_activity"]]
    expected = [f"{p}{i:02d}" for i in range(14, 4, -1) for p in ("b", "a")]
    assert ids == expected


def test_category_affinities_weight_views_carts_and_purchases() -> None:
    events = [
        ev("v1", 1, type="product_viewed", properties={"category": "shoes"}),
        ev("v2", 2, type="product_viewed", properties={"category": "shoes"}),
        ev("c1", 3, type="cart_updated", properties={"category": "hats"}),
        order("o", 4, "o1", "10", categories=["socks", "socks", "hats"]),
        ev("v2", 2, type="product_viewed", properties={"category": "shoes"}),  # redelivery
    ]
    doc = snap(observe_all(events))
    assert doc["category_affinities"] == {"hats": 5, "socks": 3, "shoes": 2}
    assert list(doc["category_affinities"]) == ["hats", "socks", "shoes"]  # best first


def test_affinity_snapshot_shows_top_10_and_state_is_capped() -> None:
    events = [
        ev(f"e{c}-{k}", c, type="product_viewed", properties={"category": f"cat{c:03d}"})
        for c in range(MAX_AFFINITY_CATEGORIES + 20)
        for k in range(1 + (c % 3))
    ]
    agg = observe_all(events)
    assert len(agg.personalization.ledger.totals) == MAX_AFFINITY_CATEGORIES
    top = snap(agg)["category_affinities"]
    assert len(top) == 10
    assert set(top.values()) == {3}
    assert list(top) == sorted(top)  # equal scores: name order


# --------------------------------------------------------------------------- traits and preferences


def test_traits_are_latest_by_event_time_not_arrival_and_ungated() -> None:
    new = ev("b", 10, traits={"city": "Bergen"}, purposes=frozenset())
    old = ev("a", 1, traits={"city": "Oslo", "first_name": "Ann"}, purposes=frozenset())
    blank = ev("c", 20, traits={"city": ""}, purposes=frozenset())  # blank is "not given"
    for arrival in ([old, new, blank], [blank, new, old]):
        assert snap(observe_all(arrival))["traits"] == {"city": "Bergen", "first_name": "Ann"}


def test_preferences_need_personalization_and_latest_wins() -> None:
    events = [
        ev("a", 1, preferences={"size": "M", "topics": ["running"]}),
        ev("b", 2, preferences={"size": "L"}),
        ev("c", 3, preferences={"size": "XL"}, purposes=frozenset({"analytics"})),
    ]
    assert snap(observe_all(events))["preferences"] == {"size": "L", "topics": ["running"]}


# --------------------------------------------------------------------------- consent


def test_observe_records_gated_data_only_for_allowed_purposes() -> None:
    agg = observe_all(
        [
            order(
                "a", 1, "o1", "10", categories=["shoes"], purposes=frozenset({"personalization"})
            ),
            ev("b", 2, channel="app", purposes=frozenset({"analytics"})),
        ]
    )
    doc = snap(agg)
    assert doc["orders_online"] == 0
    assert doc["revenue"] == {}
    assert doc["last_order"] is None
    assert doc["channels"] == ["app"]
    assert doc["first_seen"] == doc["last_seen"] == "2024-05-01T09:02:00Z"
    assert doc["category_affinities"] == {"shoes": 3}
    assert [a["event_id"] for a in doc["recent_activity"]] == ["a"]


@pytest.mark.parametrize("purpose", sorted(PURPOSE_GATES))
def test_purge_clears_exactly_the_fields_of_its_purpose(purpose: str) -> None:
    agg = observe_all(
        [
            ev(
                "v",
                1,
                type="product_viewed",
                properties={"category": "shoes"},
                traits={"city": "Oslo"},
            ),
            ev("p", 2, preferences={"size": "M"}),
            order("a", 3, "o1", "10", store="oslo-1"),
            order("b", 4, "o2", "20"),
            returned("r", 5, "o1", "10"),
        ]
    )
    agg = with_ad_identifiers(with_audiences(agg, ["vip"]), ["h1", "h2"])
    before = snap(agg)
    for name in EMPTY_GATED_FIELDS:
        assert before[name] != EMPTY_GATED_FIELDS[name], name  # every field has data
    revoked = {p: p != purpose for p in ALL}
    after = snap(purge(agg, purpose), revoked)
    for name in PURPOSE_GATES[purpose]:
        assert after[name] == EMPTY_GATED_FIELDS[name]
    for name, value in before.items():
        if name not in PURPOSE_GATES[purpose] and name != "consent":
            assert after[name] == value, name
    # the stored state is empty too, not only hidden by the snapshot
    if purpose != "marketing":
        assert snap(purge(agg, purpose)) == {
            **before,
            **{n: EMPTY_GATED_FIELDS[n] for n in PURPOSE_GATES[purpose]},
        }


def test_purge_necessary_is_a_no_op_and_unknown_purpose_raises() -> None:
    agg = observe(EMPTY_PROFILE, ev("a", 1))
    assert purge(agg, "necessary") is agg
    with pytest.raises(ValueError, match="unknown consent purpose"):
        purge(agg, "analytcs")


@pytest.mark.parametrize(
    ("consent", "granted"),
    [
        ({}, False),  # missing: fail closed
        ({"marketing": True}, True),
        ({"marketing": False}, False),
        ({"marketing": "yes"}, False),  # unrecognised: fail closed
        ({"marketing": 1}, False),
        ({"marketing": {"granted": True, "at": "2024-01-01T00:00:00Z", "source": "cmp"}}, True),
        ({"marketing": {"granted": False}}, False),
        ({"marketing": {"status": "granted"}}, True),
        ({"marketing": {"status": "denied"}}, False),
    ],
)
def test_is_granted_fails_closed(consent: dict[str, object], granted: bool) -> None:
    assert is_granted(consent, "marketing") is granted
    assert is_granted(consent, "necessary") is True


def test_reachability_needs_identifier_and_marketing_consent() -> None:
    ids = {"email": ["a@example.com"], "phone": []}
    assert reachability(ids, {"marketing": True}) == {"email": True, "phone": False}
    assert reachability(ids, {"marketing": False}) == {"email": False, "phone": False}
    assert reachability({"phone": ["+4712345678"]}, {"marketing": True}) == {
        "email": False,
        "phone": True,
    }


def test_snapshot_hides_everything_gated_when_consent_map_is_empty() -> None:
    agg = with_audiences(observe_all([order("a", 1, "o1", "10", categories=["x"])]), ["vip"])
    doc = snap(agg, {})
    for name, empty in EMPTY_GATED_FIELDS.items():
        assert doc[name] == empty, name
    assert doc["traits"] == {}
    assert doc["merged_from"] == ["p-0"]
    assert doc["version"] == 7
    assert doc["schema"] == "loom.profile.v1"


# --------------------------------------------------------------------------- merge specifics


def test_merge_of_profiles_that_both_saw_an_order_counts_it_once() -> None:
    shared = order("s", 5, "o-shared", "40", store="oslo-1", categories=["shoes"])
    retry = order("s-retry", 6, "o-shared", "40", store="oslo-1", categories=["shoes"])
    left = observe_all([order("a", 1, "o1", "10"), shared])
    right = observe_all([retry, order("b", 2, "o2", "20")])
    doc = snap(merge(left, right))
    assert doc["revenue"] == {"NOK": "70.00"}
    assert (doc["orders_online"], doc["orders_in_store"]) == (2, 1)
    assert doc["category_affinities"] == {"shoes": 3}
    assert merge(left, right) == observe_all(
        [order("a", 1, "o1", "10"), shared, retry, order("b", 2, "o2", "20")]
    )


def test_first_last_seen_and_channels_merge_as_min_max_union() -> None:
    left = observe_all([ev("a", 5, channel="web"), ev("b", 9, channel="app")])
    right = observe_all([ev("c", 1, channel="pos"), ev("d", 7, channel="web")])
    doc = snap(merge(left, right))
    assert doc["first_seen"] == "2024-05-01T09:01:00Z"
    assert doc["last_seen"] == "2024-05-01T09:09:00Z"
    assert doc["channels"] == ["app", "pos", "web"]


def test_audiences_and_ad_identifiers_merge_as_union() -> None:
    a = with_ad_identifiers(with_audiences(EMPTY_PROFILE, ["vip", ""]), ["h1"])
    b = with_ad_identifiers(with_audiences(EMPTY_PROFILE, ["lapsed"]), ["h2", "h1"])
    doc = snap(merge(a, b))
    assert doc["audiences"] == ["lapsed", "vip"]
    assert doc["ad_identifiers"] == ["h1", "h2"]
    assert snap(with_audiences(merge(a, b), []))["audiences"] == []


# ----------------------------------------------------------------- bounds (documented limits)


def test_ledger_window_is_bounded_and_beyond_it_a_re_reported_order_counts_again() -> None:
    first = order("first", 0, "o-first", "1")
    later = [order(f"e{i}", i + 1, f"o{i}", "1") for i in range(LEDGER_WINDOW)]
    agg = observe_all([first, *later])
    assert len(agg.analytics.ledger.window) == LEDGER_WINDOW
    assert "order:o-first" not in agg.analytics.ledger.window
    assert snap(agg)["orders_online"] == LEDGER_WINDOW + 1
    # within the window a retry is recognised ...
    assert snap(observe(agg, order("retry-recent", 99, "o3", "1")))["orders_online"] == 51
    # ... beyond it the documented limit applies: it is counted again (never silently dropped)
    assert snap(observe(agg, order("retry-old", 0, "o-first", "1")))["orders_online"] == 52


# ----------------------------------------------------------------- input validation and codec


def test_observation_and_order_facts_validate_their_input() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Observation("e", "page_view", "web", datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="event_id"):
        Observation("", "page_view", "web", T0)
    with pytest.raises(ValueError, match="finite"):
        OrderFacts("o", Decimal("NaN"), "NOK")
    with pytest.raises(ValueError, match="order_id"):
        OrderFacts("", Decimal(1), "NOK")
    with pytest.raises(ValueError, match="currency"):
        OrderFacts("o", Decimal(1), " ")


def test_offsets_are_normalised_to_utc() -> None:
    oslo = timezone(timedelta(hours=2))
    local = Observation(
        "a", "page_view", "web", datetime(2024, 5, 1, 11, 0, tzinfo=oslo), purposes=ALL
    )
    agg = observe(EMPTY_PROFILE, local)
    assert snap(agg)["first_seen"] == "2024-05-01T09:00:00Z"


def test_state_codec_round_trip_and_version_check() -> None:
    agg = observe_all(
        [
            ev(
                "v",
                1,
                type="product_viewed",
                properties={"category": "shoes"},
                traits={"city": "Oslo"},
            ),
            ev("p", 2, preferences={"size": "M", "n": 2}),
            order("a", 3, "o1", "10.50", store="oslo-1"),
            returned("r", 4, "o1", "10"),
        ]
    )
    doc = agg.to_dict()
    text = json.dumps(doc)
    assert '"10.50"' in text
    assert '"2024-05-01T09:03:00Z"' in text
    assert ProfileAggregate.from_dict(json.loads(text)) == agg
    with pytest.raises(ValueError, match="unsupported profile state version"):
        ProfileAggregate.from_dict({**doc, "v": 99})


def test_empty_profile_snapshot_has_every_gated_field_empty() -> None:
    doc = snapshot(
        EMPTY_PROFILE, profile_id="p", identifiers={}, consent=GRANTED, merged_from=[], version=0
    )
    for name, empty in EMPTY_GATED_FIELDS.items():
        assert doc[name] == empty, name
    assert set(EMPTY_GATED_FIELDS) == frozenset().union(*PURPOSE_GATES.values())
