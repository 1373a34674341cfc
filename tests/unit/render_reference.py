"""main 2b8581a's ``resolvers/profile/render.py``, verbatim below this docstring (its own
docstring left as a comment): what the fifteenth pass's render is compared with
(``test_profile_render_reference``), with main's ``traits`` (``traits_reference``): the one line
changed, its import. Not imported by Loom. Changed since: an ``order_cancelled`` is a transaction
that counts toward no money, order count or affinity (its lines given back: ``traits_reference``;
``tests/pipeline/test_audience_returns.py``); a return of the whole order (``whole``) counts with
the order's categories and units, and its amount and currency unless it stated an amount, where
the person holds the order (``_whole_resolved``; ``tests/pipeline/test_segment_full_refund.py``)."""

# ruff: noqa
# mypy: ignore-errors
# The public profile snapshot (``loom.profile.v1``): a person's facts, through the consent gate.
#
# :func:`render` reads the facts of every group of the person (``resolvers.profile.facts``),
# asks :class:`~resolvers.consent.Gate` which purposes each fact may serve, and aggregates what
# it may: a transaction counts toward the order fields only when analytics may use it, a day of
# browsing shows up in ``channels`` only when analytics may, in ``recent_activity`` only when
# personalization may. Every gated field not allowed now is emitted with its empty value, so the
# document never shows what a purpose does not allow. The result is a function of the facts,
# hence of the set of the person's events.
#

from __future__ import annotations

import dataclasses
import functools
import heapq
import json
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, InvalidOperation, Overflow
from types import MappingProxyType
from typing import Any, Final

import orjson

from resolvers.consent import CONSENT_PURPOSES, PURPOSE_GATES, Gate, Purpose
from resolvers.consent.signals import from_code
from resolvers.frozen import fast_init
from resolvers.profile.facts import (
    PURCHASE_AFFINITY_WEIGHT,
    RECENT_ACTIVITY_LIMIT,
    Activity,
    Facts,
    Stamped,
    Transaction,
    lww,
)
from traits_reference import PurchaseTraits, empty_trait_fields  # (main's traits.py, kept too)
from resolvers.timefmt import format_time

# Enum members read per event, bound once (prefix: P_ purpose): on CPython
# 3.11 a member read off its class costs ~0.1 µs (its metaclass's attribute hook), a
# constant ~0.01 (ADR 0019).
_P_ANALYTICS: Final = Purpose.ANALYTICS
_P_MARKETING: Final = Purpose.MARKETING
_P_PERSONALIZATION: Final = Purpose.PERSONALIZATION


SNAPSHOT_SCHEMA: Final = "loom.profile.v1"
TOP_AFFINITIES: Final = 10

#: ISO 4217 minor units that are not 2 (used for AOV rounding and money display).
CURRENCY_MINOR_UNITS: Final[Mapping[str, int]] = MappingProxyType(
    dict.fromkeys(
        ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND"),
        0,
    )
    | dict.fromkeys(("VUV", "XAF", "XOF", "XPF"), 0)
    | dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3)
)
_CTX: Final = Context(
    prec=60, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
_ONLINE_LOCATIONS: Final = frozenset({None, "", "online"})
#: The purposes the totals of a render add facts up for (each field they fill is gated by one).
_TOTALS_PURPOSES: Final = frozenset({Purpose.ANALYTICS, Purpose.PERSONALIZATION})


def _empty_fields() -> dict[str, Any]:
    return {
        "first_seen": None,
        "last_seen": None,
        "channels": [],
        "shopping_mode": "none",
        "orders_online": 0,
        "orders_in_store": 0,
        "revenue": {},
        "average_order_value": {},
        "last_order": None,
        "preferred_payment_method": None,
        "preferred_store": None,
        "returns": {"count": 0, "value": {}},
        "category_affinities": {},
        "recent_activity": [],
        "preferences": {},
        "reachable": {"email": False, "phone": False},
        "ad_identifiers": [],
        "lifetime_value": {},
        **empty_trait_fields(),
    }


#: The value each gated field has when its purpose is not granted (or there is no data).
EMPTY_GATED_FIELDS: Final[Mapping[str, object]] = MappingProxyType(_empty_fields())


@fast_init
@dataclass(frozen=True, slots=True)
class Person:
    """Everything :func:`render` needs besides the gate."""

    profile_id: str
    version: int
    identifiers: Mapping[str, Sequence[str]]
    groups: Sequence[Facts]
    created_at: datetime
    merged_from: Sequence[str] = ()
    audiences: Sequence[str] = ()
    ad_identifiers: Sequence[str] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class _Totals:
    """What the allowed facts add up to (mutable scratch of one render)."""

    first: datetime | None = None
    last: datetime | None = None
    channels: set[str] = field(default_factory=set)
    online: int = 0
    in_store: int = 0
    revenue: dict[str, Decimal] = field(default_factory=dict)
    orders_by_currency: dict[str, int] = field(default_factory=dict)
    payments: dict[str, int] = field(default_factory=dict)
    stores: dict[str, int] = field(default_factory=dict)
    last_order: Transaction | None = None
    returns: int = 0
    returns_value: dict[str, Decimal] = field(default_factory=dict)
    categories: dict[str, int] = field(default_factory=dict)
    #: the transactions personalization may use: their activities come before ``activities``
    #: (built only for the ones :func:`_top_activities` keeps)
    purchases: list[Transaction] = field(default_factory=list)
    activities: list[Activity] = field(default_factory=list)
    preferences: dict[str, Stamped] = field(default_factory=dict)
    traits: PurchaseTraits = field(default_factory=PurchaseTraits)

    def saw(self, first: datetime, last: datetime, channels: Iterable[str]) -> None:
        self.first = first if self.first is None else min(self.first, first)
        self.last = last if self.last is None else max(self.last, last)
        self.channels.update(channels)


def _latest_transactions(groups: Iterable[Facts]) -> dict[str, Transaction]:
    """One version per order across the person's groups (the latest by time)."""
    out: dict[str, Transaction] = {}
    for facts in groups:
        for key, t in facts.transactions.items():
            old = out.get(key)
            if old is None or t.rank() > old.rank():
                out[key] = t
    return out


def _whole_resolved(ledger: Mapping[str, Transaction]) -> list[Transaction]:
    """Since whole-order returns: each takes its order's lines (and money unless stated).
    Since 2026-12-05 a return naming only its order (``whole`` 1) refunds what the order's
    other returns in its currency left, and only the earliest such return of an order does."""
    out = []
    for t in ledger.values():
        order = ledger.get(f"order:{t.order_id}")
        if t.whole and order is not None:
            stated = t.whole == 2
            amount = t.amount
            if not stated:
                same_order = [
                    r for r in ledger.values() if r.is_return and r.order_id == t.order_id
                ]
                earliest = min((r for r in same_order if r.whole == 1), key=Transaction.rank)
                stating = [
                    r.amount for r in same_order if r.whole != 1 and r.currency == order.currency
                ]
                left = _CTX.subtract(order.amount, sum(stating, Decimal(0)))
                amount = max(left, Decimal(0)) if earliest is t else Decimal(0)
            t = dataclasses.replace(
                t,
                amount=amount,
                currency=t.currency if stated else order.currency,
                categories=order.categories,
                units=order.units,
                sku=order.sku,
            )
        out.append(t)
    return out


def _count_transaction(totals: _Totals, t: Transaction, purposes: frozenset[Purpose]) -> None:
    if _P_ANALYTICS in purposes:
        totals.saw(t.at, t.at, (t.channel,))
        totals.traits.add(t, _CTX.add)
        if t.is_return:
            _add(totals.returns_value, t.currency, t.amount)
            totals.returns += 1
        elif t.type != "order_cancelled":  # since cancellations are transactions: no purchase
            _add(totals.revenue, t.currency, t.amount)
            if t.in_store:
                totals.in_store += 1
                if t.location_id not in _ONLINE_LOCATIONS:
                    _bump(totals.stores, str(t.location_id))
            else:
                totals.online += 1
            _bump(totals.orders_by_currency, t.currency)
            if t.payment_method:
                _bump(totals.payments, t.payment_method)
            if totals.last_order is None or t.rank() > totals.last_order.rank():
                totals.last_order = t
    if _P_PERSONALIZATION in purposes:
        totals.purchases.append(t)
        if not t.is_return and t.type != "order_cancelled":
            for category in t.categories:
                _bump(totals.categories, category, PURCHASE_AFFINITY_WEIGHT)


def _add(into: dict[str, Decimal], currency: str, amount: Decimal) -> None:
    into[currency] = _CTX.add(into.get(currency, Decimal(0)), amount)


def _bump(into: dict[str, int], key: str, n: int = 1) -> None:
    into[key] = into.get(key, 0) + n


def _totals(
    gate: Gate, groups: Sequence[Facts], region: str | None, asked: frozenset[Purpose]
) -> _Totals:
    """What the facts add up to for the purposes ``asked`` (those of :data:`_TOTALS_PURPOSES`
    granted now: a fact never serves a purpose not granted now)."""
    totals = _Totals()
    serves = gate.serves
    # one group (most people): its orders are one version per order id already
    transactions = _whole_resolved(
        groups[0].transactions if len(groups) == 1 else _latest_transactions(groups)
    )
    for t in transactions:
        purposes = serves(
            at=t.at, consent=from_code(t.consent), region=t.region or region, purposes=asked
        )
        _count_transaction(totals, t, purposes)
    for facts in groups:
        # a husk (neither seen nor interest: most recent events) serves nothing here: left out
        behaviour = [
            (item.code, item.region, d)
            for item in facts.recent.values()
            if (d := item.digest).seen or d.interest
        ]
        if facts.digests:
            behaviour += [
                (code, reg, d)
                for (_day, code, reg), d in facts.digests.items()
                if d.seen or d.interest
            ]
        for code, digest_region, d in behaviour:
            purposes = serves(
                at=d.first_at,
                consent=from_code(code),
                region=digest_region or None,
                behavioural=True,
                purposes=asked,
            )
            if d.seen and _P_ANALYTICS in purposes:
                totals.saw(d.first_at, d.last_at, d.channels)
            if d.interest and _P_PERSONALIZATION in purposes:
                for category, weight in d.categories.items():
                    _bump(totals.categories, category, weight)
                totals.activities.extend(d.activities)
                if d.preferences:  # ``lww`` with nothing to add is a copy of the same
                    totals.preferences = lww(totals.preferences, d.preferences)
    return totals


def render(person: Person, gate: Gate) -> dict[str, Any]:
    """The snapshot document of ``person`` (see the module docstring)."""
    region = gate.region
    granted = gate.granted_now()
    asked = granted & _TOTALS_PURPOSES
    identifiers = person.identifiers
    marketing = _P_MARKETING in granted
    reachable = {
        "email": marketing and bool(identifiers.get("email")),
        "phone": marketing and bool(identifiers.get("phone")),
    }
    if asked:
        fields = _totals_fields(_totals(gate, person.groups, region, asked))
        fields["reachable"] = reachable
        fields["audiences"] = sorted(person.audiences)
        fields["ad_identifiers"] = sorted(person.ad_identifiers)
        fields.update(orjson.loads(_hidden(granted)))
    else:  # no totals asked: every field they fill is hidden, none is computed
        template, shown = _untotalled(granted)
        fields = orjson.loads(template)
        if "reachable" in shown:
            fields["reachable"] = reachable
        if "audiences" in shown:
            fields["audiences"] = sorted(person.audiences)
        if "ad_identifiers" in shown:
            fields["ad_identifiers"] = sorted(person.ad_identifiers)
    groups = person.groups
    traits: Mapping[str, Stamped] = groups[0].traits if len(groups) == 1 else {}
    if len(groups) != 1:
        for facts in groups:
            traits = lww(traits, facts.traits)
    currents = gate.currents()
    return {
        "schema": SNAPSHOT_SCHEMA,
        "profile_id": person.profile_id,
        "version": person.version,
        "created_at": format_time(person.created_at),
        "region": region,
        "merged_from": sorted(set(merged_from)) if (merged_from := person.merged_from) else [],
        # one value (most types): ``sorted(set(v))`` is its list
        "identifiers": {
            t: list(v) if len(v) == 1 else sorted(set(v))
            for t, v in sorted(identifiers.items())
            if v
        },
        "consent": {
            name: {
                "granted": c.granted,
                "at": None if (at := c.at) is None else format_time(at),
                "source": c.source,
            }
            for p, name in _SORTED_PURPOSES
            if (c := currents[p])
        },
        "traits": {k: s.value for k, s in sorted(traits.items())},
        **fields,
        **person.extra,
    }


@functools.cache  # one per set of granted purposes: 16 at most
def _hidden(granted: frozenset[Purpose]) -> bytes:
    """The fields gated by a purpose not in ``granted``, with their empty values, as JSON:
    loaded, a fresh copy for each render in one C call."""
    empty = _empty_fields()
    return orjson.dumps(
        {
            name: empty[name]
            for purpose, gated in PURPOSE_GATES.items()
            if purpose not in granted
            for name in sorted(gated)
        }
    )


@functools.cache  # one per set of granted purposes: 16 at most
def _untotalled(granted: frozenset[Purpose]) -> tuple[bytes, frozenset[str]]:
    """What :func:`render` makes of the fields after ``traits`` when it asks no totals, as
    JSON (those fields in their order, each with its empty value if ``granted`` hides it,
    else None; the other hidden fields after them), and which of the person's fields
    (``reachable``, ``audiences``, ``ad_identifiers``) are shown: their values replace the
    Nones. The same as ``dict.fromkeys(_FIELD_ORDER)``, the person's fields set, then
    ``_hidden``'s fields over them; loaded, a fresh copy for each render in one C call."""
    hidden = orjson.loads(_hidden(granted))
    fields: dict[str, Any] = dict.fromkeys(_FIELD_ORDER)
    fields.update(hidden)
    shown = frozenset(name for name in _PERSON_FIELDS if name not in hidden)
    return orjson.dumps(fields), shown


def _totals_fields(totals: _Totals) -> dict[str, Any]:
    """The snapshot's fields in their order: those the totals fill, and the person's
    ``reachable``, ``audiences`` and ``ad_identifiers`` (None here: :func:`render` sets them).
    An empty part of the totals gives its field's empty value without a sort or a call."""
    revenue, returned = totals.revenue, totals.returns_value
    first, last, lo = totals.first, totals.last, totals.last_order
    purchases, activities = totals.purchases, totals.activities
    return {
        "first_seen": None if first is None else format_time(first),
        "last_seen": None if last is None else format_time(last),
        "channels": sorted(totals.channels),
        "shopping_mode": _shopping_mode(totals.online, totals.in_store),
        "orders_online": totals.online,
        "orders_in_store": totals.in_store,
        "revenue": {cur: _money(v, cur) for cur, v in sorted(revenue.items())} if revenue else {},
        "average_order_value": _average_order_values(revenue, totals.orders_by_currency)
        if revenue
        else {},
        "last_order": None
        if lo is None
        else {
            "order_id": lo.key.partition(":")[2],
            "at": format_time(lo.at),
            "total": _money(lo.amount, lo.currency),
            "currency": lo.currency,
            "location_id": lo.location_id,
        },
        "preferred_payment_method": _argmax(totals.payments) if totals.payments else None,
        "preferred_store": _argmax(totals.stores) if totals.stores else None,
        "returns": {
            "count": totals.returns,
            "value": {cur: _money(v, cur) for cur, v in sorted(returned.items())}
            if returned
            else {},
        },
        "category_affinities": dict(_ranked(totals.categories)[:TOP_AFFINITIES])
        if totals.categories
        else {},
        "recent_activity": [_activity_public(a) for a in _top_activities(purchases, activities)]
        if purchases or activities
        else [],
        "preferences": {k: json.loads(s.value) for k, s in sorted(totals.preferences.items())}
        if totals.preferences
        else {},
        "reachable": None,
        "audiences": None,
        "ad_identifiers": None,
        "lifetime_value": {cur: _money(v, cur) for cur, v in _net(revenue, returned)}
        if revenue or returned
        else {},
        **totals.traits.fields(_money),
    }


def _average_order_values(
    revenue: Mapping[str, Decimal], orders: Mapping[str, int]
) -> dict[str, str]:
    """Per currency with orders (sorted), the revenue over the orders, rounded half-even."""
    return {
        cur: _money(_CTX.divide(rev, Decimal(orders[cur])), cur, exact=False)
        for cur, rev in sorted(revenue.items())
        if orders.get(cur)
    }


#: An activity's or a transaction's (time, event id): ``Activity.rank`` and
#: ``Transaction.rank``, alike, read in C (a sort key called per item).
_activity_rank: Final[Callable[[Activity | Transaction], tuple[datetime, str]]] = (
    operator.attrgetter("at", "event_id")
)


def _top_activities(
    purchases: Sequence[Transaction], activities: Sequence[Activity]
) -> list[Activity]:
    """``top_activities`` of the purchases' activities followed by ``activities``: the first
    of each event id, the :data:`RECENT_ACTIVITY_LIMIT` latest by (time, event id), latest
    first. A purchase's :class:`Activity` is built only if it is kept (a long history has
    up to 1,000 of them), the latest of many found without sorting them all
    (``heapq.nlargest`` is ``sorted(..., reverse=True)[:n]``, ties too)."""
    best: dict[str, Activity | Transaction] = {}
    setdefault = best.setdefault
    for t in purchases:
        setdefault(t.event_id, t)
    for a in activities:
        setdefault(a.event_id, a)
    items = best.values()
    top = (
        heapq.nlargest(RECENT_ACTIVITY_LIMIT, items, key=_activity_rank)
        if len(best) > _NLARGEST_FROM
        else sorted(items, key=_activity_rank, reverse=True)[:RECENT_ACTIVITY_LIMIT]
    )
    return [item.activity() if isinstance(item, Transaction) else item for item in top]


#: From how many activities ``heapq.nlargest`` finds the latest 20 faster than a sort (timeit
#: on CPython 3.11: 2.5 times slower at 25, even at ~150, 4 times faster at 3,400).
_NLARGEST_FROM: Final = 150


def _net(
    revenue: Mapping[str, Decimal], returned: Mapping[str, Decimal]
) -> list[tuple[str, Decimal]]:
    """Per currency (sorted), purchases minus returns: the lifetime value."""
    zero = Decimal(0)
    return [
        (cur, _CTX.subtract(revenue.get(cur, zero), returned.get(cur, zero)))
        for cur in sorted(revenue.keys() | returned.keys())
    ]


def _shopping_mode(online: int, in_store: int) -> str:
    if online and in_store:
        return "omnichannel"
    if online:
        return "online"
    if in_store:
        return "in_store"
    return "none"


def _ranked(counter: Mapping[str, int]) -> list[tuple[str, int]]:
    """Highest value first; ties broken by name ascending (deterministic)."""
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))


def _argmax(counter: Mapping[str, int]) -> str | None:
    ranked = _ranked(counter)
    return ranked[0][0] if ranked else None


@functools.lru_cache(maxsize=4096)  # currencies come from events: bounded
def _minor_quantum(currency: str) -> Decimal:
    """The currency's minor unit."""
    return Decimal(1).scaleb(-CURRENCY_MINOR_UNITS.get(currency, 2))


def _money(value: Decimal, currency: str, *, exact: bool = True) -> str:
    """Canonical text in the currency's minor unit; ``exact`` keeps more digits if the value
    has them (an average is rounded half-even instead)."""
    quantized = value.quantize(_minor_quantum(currency), context=_CTX)
    if quantized == value or not exact:
        return format(quantized, "f")
    return format(value.normalize(_CTX), "f")


def _activity_public(act: Activity) -> dict[str, Any]:
    out: dict[str, Any] = {
        "at": format_time(act.at),
        "event_id": act.event_id,
        "type": act.type,
        "channel": act.channel,
    }
    if act.sku is not None:
        out["sku"] = act.sku
    if act.category is not None:
        out["category"] = act.category
    if act.name is not None:
        out["name"] = act.name
    return out


#: The snapshot's fields after ``traits``, in order (a render that asks no totals fills them).
_FIELD_ORDER: Final = tuple(_totals_fields(_Totals()))
#: Those of them :func:`render` fills from the person, not from the totals.
_PERSON_FIELDS: Final = ("reachable", "audiences", "ad_identifiers")
#: (purpose, its name) in the snapshot's ``consent`` order.
_SORTED_PURPOSES: Final = tuple((p, p.value) for p in sorted(CONSENT_PURPOSES))
