"""A profile's snapshot (``resolvers.profile.render.render``) against the code main 2b8581a ran,
kept verbatim in ``render_reference``: the same document (equal, and the same JSON bytes: the
same key order all the way down) for any person and gate.

What changed (issue 17.2, fifteenth pass): the totals' scratch is a plain class with slots; a
transaction is counted without a call per sum, count and rank; the lifetime value of a
currency without returns is the revenue's own text (``v - 0`` is ``v``); the ``consent`` of a
person without consent history is built once per shared ``currents`` mapping and copied; a
render that asks no totals loads its whole snapshot from one template and sets the fields
before the totals' in place; no traits, no sort.

Nineteenth pass: every render copies a template of the snapshot's keys (``dict.copy``) and sets
its values in place, the totals' fields too (``_totals_fields`` into the copy); a render that
asks no totals makes each list and dict of its template anew."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any

import orjson
import render_reference as reference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from profile_worlds import (
    EVERYTHING,
    GRANT_ALL,
    POLICY,
    T0,
    observe_all,
    order,
    returned,
    small_windows,
    statement,
    worlds,
)

from resolvers.consent import CONSENT_PURPOSES, ConsentHistory, Gate, Purpose
from resolvers.profile import facts as facts_module
from resolvers.profile import render as render_module
from resolvers.profile.facts import Facts, Stamped
from resolvers.profile.render import Person

PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _same(new: Mapping[str, Any], old: Mapping[str, Any]) -> None:
    assert new == old
    assert orjson.dumps(new) == orjson.dumps(old)  # the same key order, all the way down


def _parts(n: int, cuts: list[int]) -> list[tuple[int, int]]:
    bounds = [0, *sorted(min(c, n) for c in cuts), n]
    return list(itertools.pairwise(bounds))


#: Identifier values by type as a person may carry them: one or several, repeated, unsorted,
#: none (a type without values is left out).
_IDENTIFIERS = st.dictionaries(
    st.sampled_from(["email", "phone", "anonymous_id", "customer_id"]),
    st.lists(st.sampled_from(["b", "a", "c", "a@x"]), max_size=3).map(tuple),
    max_size=4,
)
_IDS = st.lists(st.sampled_from(["p_0", "p_2", "x", "a"]), max_size=3)


@st.composite
def people(draw: st.DrawFn) -> tuple[Person, Gate]:
    """A person of 1 to 3 groups (disjoint events, some with traits, regions and consent of
    their own): without consent history (the gate's shared defaults of a region), with an
    explicit grant of everything before the events, or later statements of some purposes;
    identifiers, ids merged from, audiences and ad identifiers as a person may carry them."""
    events = draw(worlds(40, deletions=draw(st.booleans())))
    cuts = draw(st.lists(st.integers(0, 40), max_size=2))
    with small_windows(recent_events=20, transactions=30):
        groups = [observe_all(events[a:b]) for a, b in _parts(len(events), cuts)]
    history = draw(st.sampled_from([ConsentHistory(), GRANT_ALL]))
    for purpose, granted in draw(
        st.dictionaries(st.sampled_from(sorted(CONSENT_PURPOSES)), st.booleans(), max_size=2)
    ).items():
        history = history.merged(statement(purpose, granted, draw(st.integers(0, 60 * 24 * 20))))
    region: Stamped | None = None
    for facts in groups:
        history = history.merged(facts.consent)
        region = facts_module.later(region, facts.region)
    gate_region = draw(st.sampled_from([region.value if region is not None else None, "DE"]))
    person = Person(
        profile_id="p_1",
        version=draw(st.integers(1, 5)),
        identifiers=draw(_IDENTIFIERS),
        groups=groups,
        created_at=T0 + timedelta(minutes=draw(st.integers(0, 3))),
        merged_from=draw(_IDS),
        audiences=tuple(draw(_IDS)),
        ad_identifiers=tuple(draw(_IDS)),
        extra=draw(st.sampled_from([{}, {"note": 1}, {"version": 9, "z": [1]}])),
    )
    return person, Gate(POLICY, history, gate_region)


@PROPS
@given(person=people())
def test_a_snapshot_is_rendered_as_main_rendered_it(person: tuple[Person, Gate]) -> None:
    """Twice (the second time from the remembered parts: consent fields, templates) and
    once more after another person's render with other defaults."""
    who, gate = person
    _same(render_module.render(who, gate), reference.render(who, gate))
    _same(render_module.render(who, gate), reference.render(who, gate))
    other = Gate(POLICY, ConsentHistory(), "US" if gate.region != "US" else None)
    render_module.render(who, other)
    _same(render_module.render(who, gate), reference.render(who, gate))


def test_a_snapshot_owns_its_consent_fields() -> None:
    """Two renders of people without consent history share no dict: a change of one
    snapshot's ``consent`` is not seen in the next one."""
    gate = Gate(POLICY, ConsentHistory(), None)
    person = Person("p_1", 1, {}, [Facts()], T0)
    first = render_module.render(person, gate)
    first["consent"]["analytics"]["granted"] = "changed"
    first["consent"].clear()
    _same(render_module.render(person, gate), reference.render(person, gate))


#: Amounts of every shape a sum can take: exponents above and below the minor unit, more
#: digits than it, zeros of any exponent.
_AMOUNTS = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: abs(d.adjusted()) < 20
) | st.sampled_from([Decimal(s) for s in ("0", "0E+3", "0.000", "1E+2", "12.5", "0.001")])
_SUMS = st.dictionaries(st.sampled_from(["NOK", "JPY", "KWD", "eur"]), _AMOUNTS, max_size=3)


@PROPS
@given(
    revenue=_SUMS,
    returns=_SUMS,
    orders=st.dictionaries(st.sampled_from(["NOK", "JPY"]), st.integers(0, 3)),
)
def test_the_money_fields_are_those_main_rendered(
    revenue: dict[str, Decimal], returns: dict[str, Decimal], orders: dict[str, int]
) -> None:
    """Revenue, average order value, returns and lifetime value of any sums, with and without
    returns in the revenue's currencies."""
    new, old = render_module._Totals(), reference._Totals()
    for totals in (new, old):
        totals.revenue = dict(revenue)
        totals.returns_value = dict(returns)
        totals.orders_by_currency = {cur: orders.get(cur, 1) for cur in revenue}
    _same(render_module._totals_fields(new), reference._totals_fields(old))


def test_totals_count_a_transaction_as_main_did() -> None:
    """The counting of ``_count_transaction`` (inline sums, counts and rank) on a history of
    orders, returns, store sales and equal times, every purpose asked."""
    events = [
        order(
            f"o{i}",
            i // 2,
            f"ord{i % 7}",
            f"{i}.5",
            "NOK" if i % 3 else "JPY",
            consent=EVERYTHING,
            store="oslo-1" if i % 4 == 0 else None,
            payment=None if i % 5 == 0 else "card",
            categories=("shoes", "hats")[: i % 3],
        )
        for i in range(30)
    ]
    events += [returned(f"r{i}", i, f"ord{i}", "2.25", consent=EVERYTHING) for i in range(3)]
    groups: Sequence[Facts] = [observe_all(events[:20]), observe_all(events[20:])]
    gate = Gate(POLICY, GRANT_ALL, None)
    asked = render_module._TOTALS_PURPOSES
    # and the transactions alone (no behaviour to see the same times again)
    alone = [dataclasses.replace(g, recent={}, digests={}) for g in groups]
    for chosen in (groups, groups[:1], alone, alone[1:]):
        new = render_module._totals_fields(render_module._totals(gate, chosen, None, asked))
        old = reference._totals_fields(reference._totals(gate, chosen, None, asked))
        _same(new, old)
    person = Person("p_1", 1, {"email": ("a",)}, groups, T0)
    _same(render_module.render(person, gate), reference.render(person, gate))
    assert {Purpose.ANALYTICS, Purpose.PERSONALIZATION} <= gate.granted_now()


def _containers(value: Any) -> list[Any]:
    """Every list and dict in ``value``, itself included, depth first."""
    if isinstance(value, dict):
        return [value, *(c for v in value.values() for c in _containers(v))]
    if isinstance(value, list):
        return [value, *(c for v in value for c in _containers(v))]
    return []


def _spoil(value: Any) -> None:
    """Change every list and dict in ``value`` in place."""
    for container in _containers(value):
        if isinstance(container, dict):
            container["spoiled"] = True
        else:
            container.append("spoiled")


@PROPS
@given(person=people(), other=people())
def test_a_snapshot_shares_no_list_or_dict_with_another(
    person: tuple[Person, Gate], other: tuple[Person, Gate]
) -> None:
    """Nineteenth pass: a snapshot is a copy of a template (``dict.copy``) whose lists and
    dicts are made anew for each render. Two renders (of one person, of two) share none, and
    every list and dict of earlier snapshots changed in place is not seen in the next one."""
    who, gate = person
    first, second = render_module.render(who, gate), render_module.render(*other)
    third = render_module.render(who, gate)
    # (``extra``'s values are the person's own, put in as they are, as main did)
    ids = [
        id(c)
        for doc, extra in ((first, who.extra), (second, other[0].extra), (third, who.extra))
        for c in [doc, *(c for k, v in doc.items() if k not in extra for c in _containers(v))]
    ]
    assert len(ids) == len(set(ids))
    _spoil(first)
    _spoil(second)
    _same(render_module.render(who, gate), reference.render(who, gate))
    _same(render_module.render(*other), reference.render(*other))
