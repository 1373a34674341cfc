"""The public snapshot (``resolvers.profile.render``): a person's facts through the gate.

Business rules one by one (everything granted unless a test says otherwise), then what the
gate hides, and properties: nothing a purpose does not allow is shown, and the snapshot is a
function of the person's groups."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from builders import permuted, split
from hypothesis import given, settings
from hypothesis import strategies as st
from profile_worlds import (
    EVERYTHING,
    GRANT_ALL,
    POLICY,
    obs,
    observe_all,
    order,
    person_gate,
    returned,
    small_windows,
    snapshot,
    statement,
    tracked,
    worlds,
)

from resolvers.consent import (
    CONSENT_PURPOSES,
    PURPOSE_GATES,
    ConsentHistory,
    Gate,
    Purpose,
)
from resolvers.consent.signals import from_code
from resolvers.profile import render as render_module
from resolvers.profile.facts import (
    RECENT_ACTIVITY_LIMIT,
    Facts,
    Observation,
    Transaction,
)
from resolvers.profile.render import EMPTY_GATED_FIELDS, SNAPSHOT_SCHEMA, TOP_AFFINITIES

PROPS = settings(max_examples=100, deadline=None)


def snap(events: Sequence[Observation], **kwargs: Any) -> dict[str, Any]:
    """The snapshot of one group holding ``events``, everything granted."""
    return snapshot([observe_all(events)], **kwargs)


# --------------------------------------------------------------------------- shopping mode


@pytest.mark.parametrize(
    ("events", "mode", "online", "in_store"),
    [
        ([], "none", 0, 0),
        ([tracked("v1", type="product_viewed")], "none", 0, 0),
        ([order("a", 1, "o1", "10")], "online", 1, 0),
        ([order("a", 1, "o1", "10", store="oslo-1")], "in_store", 0, 1),
        (
            [order("a", 1, "o1", "10"), order("b", 2, "o2", "5", store="oslo-1")],
            "omnichannel",
            1,
            1,
        ),
        # a return is not an order; order_fulfilled is behaviour, it does not count again
        ([returned("r", 1, "o9", "10")], "none", 0, 0),
        ([order("a", 1, "o1", "10"), tracked("f", 2, type="order_fulfilled")], "online", 1, 0),
        # two versions of one order are one order
        ([order("a", 1, "o1", "10"), order("b", 2, "o1", "10", store="oslo-1")], "in_store", 0, 1),
    ],
)
def test_shopping_mode_and_order_counts(
    events: list[Observation], mode: str, online: int, in_store: int
) -> None:
    doc = snap(events)
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
        # a tie: the smallest name wins, whatever the arrival order or recency
        (
            [
                order("a", 5, "o1", "1", store="oslo-1", payment="vipps"),
                order("b", 1, "o2", "1", store="bergen-2", payment="card"),
            ],
            "bergen-2",
            "card",
        ),
        # the same order reported twice (a POS retry with a new event id) counts once
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
        doc = snap(arrival)
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
        (["1001", "1002"], "JPY", "2003", "1002"),  # 1001.5 -> 1002
        (["1.250", "1.001"], "KWD", "2.251", "1.126"),  # three minor units: 1.1255 -> 1.126
        (["19.999"], "NOK", "19.999", "20.00"),  # more digits than the currency: kept in sums
        (["12345678901234567890.01", "0.02"], "NOK", "12345678901234567890.03", None),
    ],
)
def test_revenue_and_average_order_value_are_exact_decimals(
    totals: list[str], currency: str, revenue: str, aov: str | None
) -> None:
    doc = snap([order(f"e{i}", i, f"o{i}", total, currency) for i, total in enumerate(totals)])
    assert doc["revenue"] == {currency: revenue}
    if aov is not None:
        assert doc["average_order_value"] == {currency: aov}


def test_revenue_and_aov_are_per_currency() -> None:
    doc = snap(
        [
            order("a", 1, "o1", "100", "NOK"),
            order("b", 2, "o2", "50", "NOK"),
            order("c", 3, "o3", "9.99", "eur"),  # currency codes are upper-cased
        ]
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
    first, corrected = order("a", 1, "o1", "100"), order("b", 5, "o1", "80")
    for groups in ([[first, corrected]], [[corrected, first]], [[first], [corrected]]):
        doc = snapshot([observe_all(g) for g in groups])
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
        assert snap(arrival)["last_order"]["order_id"] == "o-b"


def test_returns_count_and_value_per_currency_apart_from_gross_revenue() -> None:
    doc = snap(
        [
            order("a", 1, "o1", "100"),
            returned("r1", 2, "o1", "30"),
            returned("r2", 3, "o1", "20"),  # a second partial return of the same order counts
            returned("r2", 3, "o1", "20"),  # a redelivery does not
            returned("r3", 4, "o7", "-5.50", "EUR"),  # sign-agnostic
        ]
    )
    assert doc["returns"] == {"count": 3, "value": {"EUR": "5.50", "NOK": "50.00"}}
    assert doc["revenue"] == {"NOK": "100.00"}
    assert doc["orders_online"] == 1
    assert doc["last_order"]["order_id"] == "o1"  # a return is never the last order


# --------------------------------------------------------------------------- activity, affinity


def test_recent_activity_keeps_the_latest_20_by_event_time() -> None:
    events = [tracked(f"e{i:02d}", i, sku=f"s{i}") for i in range(30)]
    events.append(obs("consent", 99, type="consent_updated", consent=EVERYTHING))  # no activity
    for arrival in (events, list(reversed(events))):
        activity = snap(arrival)["recent_activity"]
        assert len(activity) == RECENT_ACTIVITY_LIMIT == 20
        assert [a["event_id"] for a in activity] == [f"e{i:02d}" for i in range(29, 9, -1)]
        assert activity[0] == {
            "at": "2024-05-01T09:29:00Z",
            "event_id": "e29",
            "type": "page_view",
            "channel": "web",
            "sku": "s29",
        }


def test_recent_activity_of_two_groups_is_the_top_20_of_their_union() -> None:
    left = observe_all(tracked(f"a{i:02d}", i) for i in range(15))
    right = observe_all(tracked(f"b{i:02d}", i) for i in range(15))
    ids = [a["event_id"] for a in snapshot([left, right])["recent_activity"]]
    assert ids == [f"{p}{i:02d}" for i in range(14, 4, -1) for p in ("b", "a")]


def test_recent_activity_includes_purchases_and_rolled_up_days() -> None:
    events = [
        tracked("old", days=0, type="product_viewed", sku="s1", category="shoes"),
        order("buy", 5, "o1", "10", skus=["s2"], categories=["hats"], days=40),
        tracked("new", 6, days=40),
    ]
    activity = snap(events)["recent_activity"]
    assert [(a["event_id"], a["type"]) for a in activity] == [
        ("new", "page_view"),
        ("buy", "order_completed"),
        ("old", "product_viewed"),
    ]
    assert activity[1] == {
        "at": "2024-06-10T09:05:00Z",
        "event_id": "buy",
        "type": "order_completed",
        "channel": "web",
        "sku": "s2",
        "category": "hats",
    }


def test_category_affinities_weight_views_carts_and_purchases() -> None:
    doc = snap(
        [
            tracked("v1", 1, type="product_viewed", category="shoes"),
            tracked("v2", 2, type="product_viewed", category="shoes"),
            tracked("c1", 3, type="cart_updated", category="hats"),
            order("o", 4, "o1", "10", categories=["socks", "socks", "hats"]),
            tracked("v2", 2, type="product_viewed", category="shoes"),  # redelivery
            returned("r", 5, "o1", "10"),  # a return adds no interest
        ]
    )
    assert doc["category_affinities"] == {"hats": 5, "socks": 3, "shoes": 2}
    assert list(doc["category_affinities"]) == ["hats", "socks", "shoes"]  # best first


def test_affinities_show_the_top_10_with_names_breaking_ties() -> None:
    events = [
        tracked(f"e{c}-{k}", c, type="product_viewed", category=f"cat{c:03d}")
        for c in range(40)
        for k in range(1 + (c % 3))
    ]
    top = snap(events)["category_affinities"]
    assert len(top) == TOP_AFFINITIES == 10
    assert set(top.values()) == {3}
    assert list(top) == sorted(top)


# --------------------------------------------------------------------------- traits, preferences


def test_traits_are_latest_by_event_time_and_shown_whatever_the_consent() -> None:
    new = obs("b", 10, type="profile_updated", traits={"city": "Bergen"})
    old = obs("a", 1, type="signup", traits={"city": "Oslo", "first_name": "Ann"})
    nothing = Gate(POLICY, ConsentHistory(), "DE")
    for groups in ([[old, new]], [[new], [old]]):
        doc = snapshot([observe_all(g) for g in groups], nothing)
        assert doc["traits"] == {"city": "Bergen", "first_name": "Ann"}


def test_preferences_need_personalization_and_the_latest_wins() -> None:
    doc = snap(
        [
            obs("no", 0, preferences={"fit": "slim"}, consent={"personalization": False}),
            obs("yes", 0.5, type="consent_updated", consent={"personalization": True}),
            tracked("a", 1, preferences={"size": "M", "topics": ["running"]}),
            tracked("b", 2, preferences={"size": "L"}),
            obs("c", 3, preferences={"size": "XL"}, consent={"ads": "yes"}),  # unreadable
        ]
    )
    assert doc["preferences"] == {"size": "L", "topics": ["running"]}


# --------------------------------------------------------------------------- the gate


def full_person() -> list[Facts]:
    """A person with data in every gated field."""
    return [
        observe_all(
            [
                tracked("v", 1, type="product_viewed", category="shoes", traits={"city": "Oslo"}),
                tracked("p", 2, preferences={"size": "M"}),
                order("a", 3, "o1", "10", store="oslo-1"),
                order("b", 4, "o2", "20", categories=("running",)),
                returned("r", 5, "o1", "10"),
            ]
        )
    ]


def full_snapshot(groups: Sequence[Facts], gate: Gate | None = None) -> dict[str, Any]:
    """The snapshot with identifiers, audiences and ad identifiers besides the facts."""
    return snapshot(
        groups,
        gate,
        identifiers={"email": ["a@x.no"], "phone": ["+4791234567"]},
        audiences=["vip"],
        ad_identifiers=["h2", "h1"],
    )


@pytest.mark.parametrize("purpose", sorted(PURPOSE_GATES))
def test_a_purpose_not_granted_now_empties_exactly_its_fields(purpose: Purpose) -> None:
    groups = full_person()
    before = full_snapshot(groups)
    for name, empty in EMPTY_GATED_FIELDS.items():
        assert before[name] != empty, name  # every gated field has data
    withdrawn = person_gate(groups, GRANT_ALL.merged(statement(purpose, False, 60)))
    after = full_snapshot(groups, withdrawn)
    for name in PURPOSE_GATES[purpose]:
        assert after[name] == EMPTY_GATED_FIELDS[name], name
    for name, value in before.items():
        if name not in PURPOSE_GATES[purpose] and name != "consent":
            assert after[name] == value, name
    assert after["consent"][purpose.value] == {
        "granted": False,
        "at": "2024-05-01T10:00:00Z",
        "source": "consent_updated",
    }


def test_nothing_granted_shows_no_gated_field_but_identity_and_traits() -> None:
    groups = full_person()
    doc = full_snapshot(groups, Gate(POLICY, ConsentHistory(), None))
    for name, empty in EMPTY_GATED_FIELDS.items():
        assert doc[name] == empty, name
    assert doc["traits"] == {"city": "Oslo"}
    assert doc["identifiers"] == {"email": ["a@x.no"], "phone": ["+4791234567"]}
    assert doc["consent"]["analytics"] == {"granted": False, "at": None, "source": "default"}


def test_the_empty_fields_of_one_snapshot_are_not_shared_with_the_next() -> None:
    groups = full_person()
    nothing = Gate(POLICY, ConsentHistory(), None)
    first = full_snapshot(groups, nothing)
    first["channels"].append("web")
    first["returns"]["value"]["EUR"] = "1.00"
    first["reachable"]["email"] = True
    first["category_purchases"]["shoes"] = {}
    second = full_snapshot(groups, nothing)
    for name, empty in EMPTY_GATED_FIELDS.items():
        assert second[name] == empty, name


@pytest.mark.parametrize(
    ("region", "consent", "shown"),
    [
        ("US", None, True),  # the opt-out default of the event's own region
        ("DE", None, False),  # an explicit grant of the person does not cover tracking
        (None, None, False),  # no region: unknown
        ("DE", {"personalization": True}, True),  # the event's own statement
    ],
)
def test_tracking_needs_the_event_s_own_statement_or_its_region_s_default(
    region: str | None, consent: dict[str, object] | None, shown: bool
) -> None:
    view = obs("v", 1, type="product_viewed", category="shoes", region=region, consent=consent)
    doc = snap([view])  # the person explicitly granted everything long before
    assert bool(doc["recent_activity"]) is shown
    assert bool(doc["category_affinities"]) is shown


def test_transactions_count_only_when_analytics_may_use_them() -> None:
    events = [
        order("own-no", 0, "o2", "2", consent={"analytics": False}),
        order("before-grant", 1, "o1", "1", region="DE"),  # a later grant does not cover it
        obs("grant", 2, type="consent_updated", consent={"analytics": True}),
        order("revoked", 4, "o3", "4"),
        obs("deny", 5, type="consent_updated", consent={"analytics": False}),
        obs("regrant", 6, type="consent_updated", consent={"analytics": True}),
        order("counted", 7, "o4", "8"),
        order("unreadable", 8, "o5", "16", consent={"analytics": "yes"}),
    ]
    facts = observe_all(events)
    assert len(facts.transactions) == 5  # the ledger keeps them all ...
    doc = snapshot([facts], person_gate([facts]))
    assert (doc["orders_online"], doc["revenue"]) == (1, {"NOK": "8.00"})  # ... one may count
    assert doc["last_order"]["order_id"] == "o4"


@pytest.mark.parametrize("card_group_first", [True, False])
def test_a_late_linked_purchase_counts_once_the_groups_are_one_person(
    card_group_first: bool,
) -> None:
    """Issue 14: a store sale paid with a card token lands in its own group; the account's
    sign-up granted analytics before it. Once both groups are one person it counts."""
    sale = order("sale", 5, "o-pos", "99.90", store="oslo-1", region="DE")
    account = observe_all(
        [obs("signup", 1, type="signup", consent={"analytics": True}, region="DE")]
    )
    card = observe_all([sale])
    alone = snapshot([card], person_gate([card]))
    assert alone["orders_in_store"] == 0  # on its own: the DE default denies analytics
    groups = [card, account] if card_group_first else [account, card]
    doc = snapshot(groups, person_gate(groups))
    assert (doc["orders_in_store"], doc["revenue"], doc["preferred_store"]) == (
        1,
        {"NOK": "99.90"},
        "oslo-1",
    )


@pytest.mark.parametrize(
    ("identifiers", "marketing", "reachable"),
    [
        ({"email": ["a@x.no"], "phone": []}, True, {"email": True, "phone": False}),
        ({"email": ["a@x.no"], "phone": []}, False, {"email": False, "phone": False}),
        ({"phone": ["+4712345678"]}, True, {"email": False, "phone": True}),
        ({}, True, {"email": False, "phone": False}),
    ],
)
def test_reachable_needs_the_identifier_and_marketing_now(
    identifiers: dict[str, list[str]], marketing: bool, reachable: dict[str, bool]
) -> None:
    gate = Gate(POLICY, statement(Purpose.MARKETING, marketing, 1), "DE")
    assert snapshot([], gate, identifiers=identifiers)["reachable"] == reachable


def test_ad_identifiers_need_ads_and_audiences_are_shown_as_evaluated() -> None:
    """Membership is decided by ``resolvers.audiences`` (a marketing audience needs marketing
    there); render shows it as given, and hides ad identifiers without ``ads``."""
    both = Gate(POLICY, GRANT_ALL, "DE")
    doc = snapshot([], both, audiences=["vip", "lapsed"], ad_identifiers=["h2", "h1"])
    assert (doc["audiences"], doc["ad_identifiers"]) == (["lapsed", "vip"], ["h1", "h2"])
    no_ads = Gate(POLICY, GRANT_ALL.merged(statement(Purpose.ADS, False, 1)), "DE")
    doc = snapshot([], no_ads, audiences=["vip"], ad_identifiers=["h1"])
    assert (doc["audiences"], doc["ad_identifiers"]) == (["vip"], [])


def test_the_document_around_the_fields() -> None:
    doc = snapshot(
        [],
        Gate(POLICY, ConsentHistory(), "NO"),
        identifiers={"email": ["b", "a", "a"], "phone": []},
    )
    assert doc["schema"] == SNAPSHOT_SCHEMA == "loom.profile.v1"
    assert (doc["profile_id"], doc["version"], doc["created_at"]) == (
        "p-1",
        7,
        "2024-05-01T09:00:00Z",
    )
    assert doc["merged_from"] == ["p-0"]
    assert doc["identifiers"] == {"email": ["a", "b"]}  # sorted, deduplicated, empty types out
    assert doc["region"] == "NO"
    assert list(doc["consent"]) == sorted(p.value for p in CONSENT_PURPOSES)
    assert set(EMPTY_GATED_FIELDS) == frozenset().union(*PURPOSE_GATES.values())
    for name, empty in EMPTY_GATED_FIELDS.items():
        assert doc[name] == empty, name


# --------------------------------------------------------------------------- properties


@st.composite
def grouped_worlds(draw: st.DrawFn) -> tuple[list[Observation], list[Facts]]:
    """A person: a world of events cut into groups (disjoint sets of events)."""
    events = draw(worlds())
    cuts = draw(st.lists(st.integers(0, 40), max_size=3))
    with small_windows():
        return events, [observe_all(part) for part in split(events, cuts)]


Person = tuple[list[Observation], list[Facts]]


@PROPS
@given(person=grouped_worlds(), keys=st.lists(st.integers(0, 100), max_size=5))
def test_the_snapshot_is_a_function_of_the_groups(person: Person, keys: list[int]) -> None:
    _, groups = person
    reordered = permuted(groups, keys)
    assert snapshot(reordered, person_gate(reordered)) == snapshot(groups, person_gate(groups))


@PROPS
@given(
    person=grouped_worlds(),
    now=st.dictionaries(st.sampled_from(CONSENT_PURPOSES), st.booleans()),
)
def test_every_field_of_a_purpose_not_granted_now_is_empty(
    person: Person, now: dict[Purpose, bool]
) -> None:
    _, groups = person
    latest = ConsentHistory()
    for purpose, granted in now.items():
        latest = latest.merged(statement(purpose, granted, 60 * 24 * 400))  # after every event
    gate = person_gate(groups, latest)
    doc = full_snapshot(groups, gate)
    for purpose, fields in PURPOSE_GATES.items():
        if purpose in gate.granted_now():
            continue
        for name in fields:
            assert doc[name] == EMPTY_GATED_FIELDS[name], (purpose, name)


@PROPS
@given(person=grouped_worlds())
def test_orders_and_activity_hold_only_what_the_gate_lets_serve(person: Person) -> None:
    """Order fields count exactly the latest order versions analytics may use; activity
    shows no event that its own statement, an unreadable signal or a denial at or after it
    forbids personalization."""
    events, groups = person
    gate = person_gate(groups)
    doc = snapshot(groups, gate)
    latest: dict[str, Transaction] = {}
    for facts in groups:
        for key, t in facts.transactions.items():
            if key not in latest or t.rank() > latest[key].rank():
                latest[key] = t
    region = gate.region
    counted = [
        t
        for t in latest.values()
        if not t.gives_back  # a return or a cancellation is no order
        and Purpose.ANALYTICS
        in gate.serves(at=t.at, consent=from_code(t.consent), region=t.region or region)
    ]
    if Purpose.ANALYTICS in gate.granted_now():
        assert doc["orders_online"] + doc["orders_in_store"] == len(counted)
    else:
        assert doc["orders_online"] + doc["orders_in_store"] == 0
    by_id = {e.event_id: e for e in events}
    last_denial = gate.history.of(Purpose.PERSONALIZATION).last_denial
    for shown in doc["recent_activity"]:
        event = by_id[shown["event_id"]]
        assert not event.consent.invalid, shown
        own = event.consent.stated(Purpose.PERSONALIZATION)
        assert own is None or own.granted, shown
        assert last_denial is None or last_denial.at < event.at, shown


@pytest.mark.parametrize(
    "granted",
    [
        frozenset(p for i, p in enumerate(sorted(CONSENT_PURPOSES)) if mask >> i & 1)
        for mask in range(1 << len(CONSENT_PURPOSES))
    ],
)
def test_a_render_without_totals_fills_the_fields_as_the_totals_path_would_empty_them(
    granted: frozenset[Purpose],
) -> None:
    """``_untotalled``: the fields after ``traits`` of a render that asks no totals, as the
    render built them before (main e95256f): ``dict.fromkeys`` of the fields, the person's
    fields set, then every hidden field's empty value over them. Equal, in the same order,
    for every set of purposes granted (16), with the person's fields shown or not."""
    person = {"reachable": {"email": True, "phone": False}, "audiences": ["a"]}
    person["ad_identifiers"] = ["x"]
    before: dict[str, Any] = dict.fromkeys(render_module._FIELD_ORDER)
    before.update(person)
    before.update(orjson.loads(render_module._hidden(granted)))
    template, shown = render_module._untotalled(granted)
    after = orjson.loads(template)
    for name in shown:
        after[name] = person[name]
    assert after == before
    assert list(after) == list(before)
    again = orjson.loads(template)  # each render its own copies of the empty values
    assert all(again[n] is not after[n] for n in after if isinstance(after[n], dict | list))
