"""Computed traits (``resolvers.profile.traits``) and ad identifiers, through render."""

from __future__ import annotations

from hashlib import sha256

from hypothesis import given
from hypothesis import strategies as st
from profile_worlds import (
    GRANT_ALL,
    POLICY,
    observe_all,
    order,
    person_gate,
    returned,
    snapshot,
    statement,
)

from resolvers.consent import Gate, Purpose
from resolvers.profile.ad_identifiers import ad_identifiers
from resolvers.profile.facts import Observation
from resolvers.profile.traits import median_gap


def _buyer() -> list[Observation]:
    return [
        order("a", 0, "o1", "1000", categories=("running", "socks"), days=0),
        order("b", 0, "o2", "1200", categories=("running",), days=180),
        order("c", 0, "o3", "900", categories=("running",), days=370),
        order("d", 0, "o4", "50", "EUR", store="oslo-1", categories=("socks",), days=371),
        returned("r", 60 * 24 * 372, "o4", "50", "EUR"),
    ]


def test_traits_per_category_currency_and_channel() -> None:
    doc = snapshot([observe_all(_buyer())])
    assert doc["lifetime_value"] == {"EUR": "0.00", "NOK": "3100.00"}
    running = doc["category_purchases"]["running"]
    assert running["orders"] == 3
    assert running["spend"] == {"NOK": "3100.00"}
    assert running["first_purchase"] < running["last_purchase"]
    assert running["repurchase_interval_days"] == 185.0  # gaps 180 and 190: median 185
    socks = doc["category_purchases"]["socks"]
    assert (socks["orders"], socks["spend"]) == (2, {"EUR": "50.00", "NOK": "1000.00"})
    assert doc["preferred_channel"] == "web"  # 3 web orders, 1 store sale


def test_traits_are_analytics_data() -> None:
    groups = [observe_all(_buyer())]
    denied = person_gate(groups, GRANT_ALL.merged(statement(Purpose.ANALYTICS, False, 10**6)))
    doc = snapshot(groups, denied)
    assert (doc["lifetime_value"], doc["category_purchases"], doc["preferred_channel"]) == (
        {},
        {},
        None,
    )


@given(keys=st.permutations(range(5)), cut=st.integers(0, 5))
def test_traits_do_not_depend_on_order_or_grouping(keys: list[int], cut: int) -> None:
    events = [_buyer()[k] for k in keys]
    groups = [observe_all(events[:cut]), observe_all(events[cut:])]
    fields = ("lifetime_value", "category_purchases", "preferred_channel")
    expected = snapshot([observe_all(_buyer())])
    got = snapshot(groups)
    assert {f: got[f] for f in fields} == {f: expected[f] for f in fields}


def test_median_gap() -> None:
    assert median_gap([5]) is None
    assert median_gap([5, 5]) is None  # one purchase day
    assert median_gap([30, 0, 10]) == 15.0
    assert median_gap([0, 1, 11, 12]) == 1.0


def test_ad_identifiers_are_the_platforms_normalized_hashes() -> None:
    ids = ad_identifiers({"email": ["ann@x.no"], "phone": ["+4791234567"], "customer_id": ["C"]})

    def h(text: str) -> str:
        return sha256(text.encode()).hexdigest()

    assert ids == sorted(
        [
            f"sha256_email:{h('ann@x.no')}",
            f"sha256_phone:{h('+4791234567')}",
            f"sha256_phone_digits:{h('4791234567')}",
        ]
    )
    assert ad_identifiers({"email": ["  Ann@X.no "]}) == [f"sha256_email:{h('ann@x.no')}"]


def test_ad_identifiers_go_with_ads() -> None:
    ids = ad_identifiers({"email": ["ann@x.no"]})
    granted = Gate(POLICY, GRANT_ALL, "NO")
    assert snapshot([], granted, ad_identifiers=ids)["ad_identifiers"] == ids
    gpc = Gate(POLICY, GRANT_ALL.merged(statement(Purpose.ADS, False, 1)), "NO")
    assert snapshot([], gpc, ad_identifiers=ids)["ad_identifiers"] == []
