"""The render's totals (``resolvers.profile.render._totals`` and ``_totals_fields``) against
the code main c513c0e ran, kept verbatim below: the same fields, values and key order (the
same JSON bytes) for any person, gate and set of purposes asked.

What changed (issue 17.2, thirteenth pass): one group's orders are not copied into a dict of
latest versions; a purchase's activity is built only if it is among the shown ones, found
with ``heapq.nlargest`` instead of sorting them all; an empty part of the totals gives its
empty field without a sort or a call; a purchase trait scratch without purchases returns its
empty fields at once. Since (2026-12-04): an ``order_cancelled`` is a transaction that
counts toward no money, order count or affinity (``tests/pipeline/test_audience_returns.py``);
a return of the whole order counts with the order's lines (``render_reference._whole_resolved``)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from profile_worlds import (
    EVERYTHING,
    GRANT_ALL,
    POLICY,
    observe_all,
    order,
    person_gate,
    small_windows,
    statement,
    tracked,
    worlds,
)
from render_reference import _whole_resolved

from resolvers.consent import CONSENT_PURPOSES, ConsentHistory, Gate, Purpose
from resolvers.consent.signals import from_code
from resolvers.profile import render as render_module
from resolvers.profile.facts import (
    PURCHASE_AFFINITY_WEIGHT,
    Facts,
    Transaction,
    lww,
    top_activities,
)
from resolvers.profile.traits import PurchaseTraits, median_gap
from resolvers.timefmt import format_optional, format_time

PROPS = settings(max_examples=200, deadline=None)


# --------------------------------------------------------------------------- main c513c0e


def _old_latest_transactions(groups: Iterable[Facts]) -> dict[str, Transaction]:
    out: dict[str, Transaction] = {}
    for facts in groups:
        for key, t in facts.transactions.items():
            old = out.get(key)
            if old is None or t.rank() > old.rank():
                out[key] = t
    return out


def _old_bump(into: dict[str, int], key: str, n: int = 1) -> None:
    into[key] = into.get(key, 0) + n


def _old_add(into: dict[str, Decimal], currency: str, amount: Decimal) -> None:
    into[currency] = render_module._CTX.add(into.get(currency, Decimal(0)), amount)


def _old_net(
    revenue: Mapping[str, Decimal], returned: Mapping[str, Decimal]
) -> list[tuple[str, Decimal]]:
    zero = Decimal(0)
    return [
        (cur, render_module._CTX.subtract(revenue.get(cur, zero), returned.get(cur, zero)))
        for cur in sorted(revenue.keys() | returned.keys())
    ]


def _old_count_transaction(totals: Any, t: Transaction, purposes: frozenset[Purpose]) -> None:
    if Purpose.ANALYTICS in purposes:
        totals.saw(t.at, t.at, (t.channel,))
        totals.traits.add(t, render_module._CTX.add)
        if t.is_return:
            _old_add(totals.returns_value, t.currency, t.amount)
            totals.returns += 1
        elif t.type != "order_cancelled":  # since cancellations are transactions: no order
            _old_add(totals.revenue, t.currency, t.amount)
            if t.in_store:
                totals.in_store += 1
                if t.location_id not in render_module._ONLINE_LOCATIONS:
                    _old_bump(totals.stores, str(t.location_id))
            else:
                totals.online += 1
            _old_bump(totals.orders_by_currency, t.currency)
            if t.payment_method:
                _old_bump(totals.payments, t.payment_method)
            if totals.last_order is None or t.rank() > totals.last_order.rank():
                totals.last_order = t
    if Purpose.PERSONALIZATION in purposes:
        totals.activities.append(t.activity())
        if not t.gives_back:
            for category in t.categories:
                _old_bump(totals.categories, category, PURCHASE_AFFINITY_WEIGHT)


def _old_totals(
    gate: Gate, groups: Sequence[Facts], region: str | None, asked: frozenset[Purpose]
) -> Any:
    totals = render_module._Totals()
    # since whole-order returns (``test_segment_full_refund``): resolved as ``render_reference``
    for t in _whole_resolved(_old_latest_transactions(groups)):
        purposes = gate.serves(
            at=t.at, consent=from_code(t.consent), region=t.region or region, purposes=asked
        )
        _old_count_transaction(totals, t, purposes)
    for facts in groups:
        behaviour = [(item.code, item.region, item.digest) for item in facts.recent.values()]
        behaviour += [(code, reg, d) for (_day, code, reg), d in facts.digests.items()]
        for code, digest_region, d in behaviour:
            if not d.seen and not d.interest:
                continue  # a husk
            purposes = gate.serves(
                at=d.first_at,
                consent=from_code(code),
                region=digest_region or None,
                behavioural=True,
                purposes=asked,
            )
            if d.seen and Purpose.ANALYTICS in purposes:
                totals.saw(d.first_at, d.last_at, d.channels)
            if d.interest and Purpose.PERSONALIZATION in purposes:
                for category, weight in d.categories.items():
                    _old_bump(totals.categories, category, weight)
                totals.activities.extend(d.activities)
                totals.preferences = lww(totals.preferences, d.preferences)
    return totals


def _old_trait_fields(traits: PurchaseTraits, money: Callable[[Decimal, str], str]) -> Any:
    ranked = sorted(traits.channels.items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "category_purchases": {
            name: {
                "orders": cat.orders,
                "spend": {cur: money(v, cur) for cur, v in sorted(cat.spend.items())},
                "first_purchase": format_time(cat.first) if cat.first else None,
                "last_purchase": format_time(cat.last) if cat.last else None,
                "repurchase_interval_days": median_gap(cat.days),
            }
            for name, cat in sorted(traits.categories.items())
        },
        "preferred_channel": ranked[0][0] if ranked else None,
    }


def _old_totals_fields(totals: Any) -> dict[str, Any]:
    aov = {
        cur: render_module._money(
            render_module._CTX.divide(rev, Decimal(totals.orders_by_currency[cur])),
            cur,
            exact=False,
        )
        for cur, rev in totals.revenue.items()
        if totals.orders_by_currency.get(cur)
    }
    lo = totals.last_order
    return {
        "first_seen": format_optional(totals.first),
        "last_seen": format_optional(totals.last),
        "channels": sorted(totals.channels),
        "shopping_mode": render_module._shopping_mode(totals.online, totals.in_store),
        "orders_online": totals.online,
        "orders_in_store": totals.in_store,
        "revenue": {cur: render_module._money(v, cur) for cur, v in sorted(totals.revenue.items())},
        "average_order_value": dict(sorted(aov.items())),
        "last_order": None
        if lo is None
        else {
            "order_id": lo.key.partition(":")[2],
            "at": format_time(lo.at),
            "total": render_module._money(lo.amount, lo.currency),
            "currency": lo.currency,
            "location_id": lo.location_id,
        },
        "preferred_payment_method": render_module._argmax(totals.payments),
        "preferred_store": render_module._argmax(totals.stores),
        "returns": {
            "count": totals.returns,
            "value": {
                cur: render_module._money(v, cur) for cur, v in sorted(totals.returns_value.items())
            },
        },
        "category_affinities": dict(
            render_module._ranked(totals.categories)[: render_module.TOP_AFFINITIES]
        ),
        "recent_activity": [
            render_module._activity_public(a) for a in top_activities(totals.activities)
        ],
        "preferences": {k: json.loads(s.value) for k, s in sorted(totals.preferences.items())},
        "reachable": None,
        "audiences": None,
        "ad_identifiers": None,
        "lifetime_value": {
            cur: render_module._money(v, cur)
            for cur, v in _old_net(totals.revenue, totals.returns_value)
        },
        **_old_trait_fields(totals.traits, render_module._money),
    }


# --------------------------------------------------------------------------- the property


def _same(new: Mapping[str, Any], old: Mapping[str, Any]) -> None:
    assert new == old
    assert orjson.dumps(new) == orjson.dumps(old)  # the same key order, all the way down


@st.composite
def people(draw: st.DrawFn) -> tuple[list[Facts], Gate]:
    """A person of 1 to 3 groups (disjoint events), and their gate: with or without an
    explicit grant of everything before the events, and a later statement of some purposes
    (denials and grants after some of the facts). Half of the worlds delete nothing (every
    event grants personalization itself): more of their facts serve."""
    events = draw(worlds(60, deletions=draw(st.booleans())))
    cuts = draw(st.lists(st.integers(0, 60), max_size=2))
    with small_windows(recent_events=30, transactions=40):
        groups = [observe_all(events[a:b]) for a, b in _parts(len(events), cuts)]
    later = draw(st.sampled_from([ConsentHistory(), GRANT_ALL]))
    for purpose, granted in draw(
        st.dictionaries(st.sampled_from(sorted(CONSENT_PURPOSES)), st.booleans(), max_size=2)
    ).items():
        later = later.merged(statement(purpose, granted, draw(st.integers(0, 60 * 24 * 20))))
    return groups, person_gate(groups, later)


def _parts(n: int, cuts: list[int]) -> list[tuple[int, int]]:
    bounds = [0, *sorted(min(c, n) for c in cuts), n]
    return list(itertools.pairwise(bounds))


_ASKED = st.sampled_from(
    [
        frozenset(s)
        for s in ({Purpose.ANALYTICS}, {Purpose.PERSONALIZATION}, render_module._TOTALS_PURPOSES)
    ]
)


@PROPS
@given(person=people(), asked=_ASKED)
def test_the_totals_fields_are_those_main_rendered(
    person: tuple[list[Facts], Gate], asked: frozenset[Purpose]
) -> None:
    groups, gate = person
    new = render_module._totals_fields(render_module._totals(gate, groups, gate.region, asked))
    old = _old_totals_fields(_old_totals(gate, groups, gate.region, asked))
    _same(new, old)


def test_a_long_history_shows_the_latest_activities_of_purchases_and_browsing() -> None:
    """More purchases and browsing than ``recent_activity`` shows, some at equal times (ties
    broken by event id), enough for ``heapq.nlargest``: the same 20, in the same order, as
    main's full sort."""
    events = [tracked(f"b{i:03d}", i // 3, category="shoes", sku="s1") for i in range(120)]
    events += [
        order(f"o{i:03d}", i // 2, f"ord{i}", "10.00", consent=EVERYTHING, categories=("hats",))
        for i in range(70)
    ]
    groups = [observe_all(events[::2]), observe_all(events[1::2])]
    gate = person_gate(groups, ConsentHistory())
    totals = render_module._totals(gate, groups, gate.region, render_module._TOTALS_PURPOSES)
    assert len(totals.purchases) + len(totals.activities) > render_module._NLARGEST_FROM
    new = render_module._totals_fields(totals)
    old = _old_totals_fields(_old_totals(gate, groups, gate.region, render_module._TOTALS_PURPOSES))
    assert len(new["recent_activity"]) == 20
    assert {a["type"] for a in new["recent_activity"]} == {"order_completed", "page_view"}
    _same(new, old)
    assert POLICY is gate.policy
