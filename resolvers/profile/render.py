"""The public profile snapshot (``loom.profile.v1``): a person's facts, through the consent gate.

:func:`render` reads the facts of every group of the person (``resolvers.profile.facts``),
asks :class:`~resolvers.consent.Gate` which purposes each fact may serve, and aggregates what
it may: a transaction counts toward the order fields only when analytics may use it, a day of
browsing shows up in ``channels`` only when analytics may, in ``recent_activity`` only when
personalization may. Every gated field not allowed now is emitted with its empty value, so the
document never shows what a purpose does not allow. The result is a function of the facts,
hence of the set of the person's events.
"""

from __future__ import annotations

import functools
import heapq
import json
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, InvalidOperation, Overflow
from types import MappingProxyType
from typing import Any, Final

import orjson

from resolvers.consent import CONSENT_PURPOSES, PURPOSE_GATES, Current, Gate, Purpose
from resolvers.consent.signals import from_code
from resolvers.frozen import fast_init
from resolvers.profile.facts import (
    CANCEL_TYPE,
    PURCHASE_AFFINITY_WEIGHT,
    RECENT_ACTIVITY_LIMIT,
    WHOLE_ORDER,
    WHOLE_STATED,
    Activity,
    Digest,
    Facts,
    Stamped,
    Transaction,
    lww,
)
from resolvers.profile.traits import PurchaseTraits, empty_trait_fields
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


class _Totals:
    """What the allowed facts add up to (mutable scratch of one render). A plain class with
    slots: one is made per render that asks totals, its fields set by plain stores (a
    dataclass's ``__init__`` called ten default factories through its keyword defaults)."""

    __slots__ = (
        "activities",
        "categories",
        "channels",
        "first",
        "in_store",
        "last",
        "last_order",
        "online",
        "orders_by_currency",
        "payments",
        "preferences",
        "purchases",
        "returns",
        "returns_value",
        "revenue",
        "stores",
        "traits",
    )

    def __init__(self) -> None:
        self.first: datetime | None = None
        self.last: datetime | None = None
        self.channels: set[str] = set()
        self.online = 0
        self.in_store = 0
        self.revenue: dict[str, Decimal] = {}
        self.orders_by_currency: dict[str, int] = {}
        self.payments: dict[str, int] = {}
        self.stores: dict[str, int] = {}
        self.last_order: Transaction | None = None
        self.returns = 0
        self.returns_value: dict[str, Decimal] = {}
        self.categories: dict[str, int] = {}
        #: the transactions personalization may use: their activities come before
        #: ``activities`` (built only for the ones :func:`_top_activities` keeps)
        self.purchases: list[Transaction] = []
        self.activities: list[Activity] = []
        self.preferences: dict[str, Stamped] = {}
        self.traits = PurchaseTraits()

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


def _whole_returns_resolved(ledger: Mapping[str, Transaction]) -> Iterable[Transaction]:
    """The person's transactions, each return of a whole order (``Transaction.whole``: a full
    refund, which names no lines) with the categories and units of that order, and its amount
    and currency unless it stated an amount (``WHOLE_STATED``), where the person has the order
    (its latest version); without it, such a return counts as it came. A full refund naming
    only its order refunds what the order's other returns (in its currency) left of its
    amount, and only the first such refund (by rank) does: an order is never refunded past
    its amount. A function of the set of transactions: the same whichever came first."""
    values = ledger.values()
    if not any(t.whole for t in values):  # most people: nothing to resolve
        return values
    given: dict[str, Decimal] = {}  # order id -> what its returns stating an amount gave back
    first: dict[str, Transaction] = {}  # order id -> its first return naming only the order
    for t in values:
        if (oid := t.order_id) is None or not t.is_return:
            continue
        if t.whole == WHOLE_ORDER:
            if (seen := first.get(oid)) is None or t.rank() < seen.rank():
                first[oid] = t
        elif (order := ledger.get(f"order:{oid}")) is not None and t.currency == order.currency:
            given[oid] = _CTX.add(given.get(oid, _ZERO), t.amount)
    out: list[Transaction] = []
    for t in values:
        order = ledger.get(f"order:{t.order_id}") if t.whole else None
        if order is None:
            out.append(t)
            continue
        if t.whole == WHOLE_STATED:
            amount, currency = t.amount, t.currency
        else:
            oid = str(t.order_id)  # (the order was found by it)
            left = (
                _CTX.subtract(order.amount, given.get(oid, _ZERO)) if first.get(oid) is t else _ZERO
            )
            amount, currency = max(left, _ZERO), order.currency
        out.append(
            replace(
                t,
                amount=amount,
                currency=currency,
                categories=order.categories,
                units=order.units,
                sku=order.sku,
            )
        )
    return out


def held_transactions(groups: Iterable[Facts]) -> list[dict[str, Any]]:
    """Every transaction the person's groups keep (one version per order, by time), whatever
    consent allows now: kept for the books (docs/consent.md), shown in the snapshot only where
    a purpose allows. A data export (``customers/data_request``) adds them to the snapshot."""
    held = sorted(_whole_returns_resolved(_latest_transactions(groups)), key=Transaction.rank)
    return [_transaction_public(t) for t in held]


def held_behaviour(groups: Iterable[Facts]) -> list[dict[str, Any]]:
    """Every behavioural event and day digest the person's groups keep, whatever consent
    shows now (docs/consent.md keeps some hidden: an opt-out region's browsing after a
    denial, until a grant lifts it): a data export holds them. A kept event is its
    activities (type, channel, category, ...), or, where only a husk or its analytics part
    is kept, its time, id and channels; a day rolled up is its times, count, channels,
    categories, activities and preferences. By time."""
    out: list[tuple[datetime, str, dict[str, Any]]] = []
    for facts in groups:
        for recent in facts.recent.values():
            d = recent.digest
            if d.activities:
                out += ((a.at, a.event_id, _activity_public(a)) for a in d.activities)
            else:
                at = format_time(d.first_at)
                kept = {"at": at, "event_id": recent.event_id, "channels": sorted(d.channels)}
                out.append((d.first_at, recent.event_id, kept))
            if d.preferences:
                out.append((d.first_at, recent.event_id, _day_public(d, recent.event_id)))
        for d in facts.digests.values():
            out.append((d.first_at, "", _day_public(d, None)))
    return [entry for _, _, entry in sorted(out, key=lambda e: (e[0], e[1]))]


def _day_public(d: Digest, event_id: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "from": format_time(d.first_at),
        "to": format_time(d.last_at),
        "events": d.events,
        "channels": sorted(d.channels),
        "categories": dict(sorted(d.categories.items())),
        "activities": [_activity_public(a) for a in d.activities],
        "preferences": {k: json.loads(v.value) for k, v in sorted(d.preferences.items())},
    }
    if event_id is not None:  # a kept event's preferences
        out = {"event_id": event_id, "at": out["from"], "preferences": out["preferences"]}
    return out


def held_consent(groups: Iterable[Facts]) -> dict[str, list[dict[str, Any]]]:
    """Per purpose, the consent statements the person's groups keep (the latest, the latest
    denial and the explicit grants since: ``resolvers.consent.history``), by time: Loom keeps
    them to prove consent (docs/consent.md), and a data export holds them."""
    out: dict[str, dict[tuple[datetime, int, str], dict[str, Any]]] = {}
    for facts in groups:
        for purpose, h in facts.consent.purposes.items():
            records = [r for r in (h.latest, h.last_denial, *h.grants) if r is not None]
            kept = out.setdefault(purpose.value, {})
            for r in records:
                kept[r.key] = {"granted": r.granted, "at": format_time(r.at), "source": r.source}
    return {p: [v for _, v in sorted(kept.items())] for p, kept in sorted(out.items())}


def _transaction_public(t: Transaction) -> dict[str, Any]:
    return {
        "at": format_time(t.at),
        "event_id": t.event_id,
        "type": t.type,
        "channel": t.channel,
        "region": t.region,
        # a return's or a cancellation's is the order it names (kept when it gives back lines)
        "order_id": t.order_id if t.gives_back else t.key.removeprefix("order:"),
        "in_store": t.in_store,
        "amount": _money(t.amount, t.currency),
        "currency": t.currency,
        "payment_method": t.payment_method,
        "location_id": t.location_id,
        "categories": list(t.categories),
        "sku": t.sku,
    }


def _count_transaction(totals: _Totals, t: Transaction, purposes: frozenset[Purpose]) -> None:
    """Count ``t`` toward what ``purposes`` allow (``_Totals.saw``, the sums, the counts and
    ``Transaction.rank``, inline: a long history counts up to 1,000 at each render)."""
    if _P_ANALYTICS in purposes:
        at = t.at
        first, last = totals.first, totals.last
        totals.first = at if first is None else min(first, at)
        totals.last = at if last is None else max(last, at)
        totals.channels.add(t.channel)
        totals.traits.add(t, _CTX.add)
        currency = t.currency
        if t.is_return:
            returned = totals.returns_value
            returned[currency] = _CTX.add(returned.get(currency, _ZERO), t.amount)
            totals.returns += 1
        elif t.type != CANCEL_TYPE:  # a cancellation: its lines given back (traits) only
            revenue = totals.revenue
            revenue[currency] = _CTX.add(revenue.get(currency, _ZERO), t.amount)
            if t.in_store:
                totals.in_store += 1
                if t.location_id not in _ONLINE_LOCATIONS:
                    stores = totals.stores
                    store = str(t.location_id)
                    stores[store] = stores.get(store, 0) + 1
            else:
                totals.online += 1
            orders = totals.orders_by_currency
            orders[currency] = orders.get(currency, 0) + 1
            if method := t.payment_method:
                payments = totals.payments
                payments[method] = payments.get(method, 0) + 1
            lo = totals.last_order
            if lo is None or (at, t.event_id) > (lo.at, lo.event_id):
                totals.last_order = t
    if _P_PERSONALIZATION in purposes:
        totals.purchases.append(t)
        if t.categories and not t.gives_back:
            categories = totals.categories
            for category in t.categories:
                categories[category] = categories.get(category, 0) + PURCHASE_AFFINITY_WEIGHT


#: The sums' start (``Decimal(0)``, built once).
_ZERO: Final = Decimal(0)


def _totals(
    gate: Gate, groups: Sequence[Facts], region: str | None, asked: frozenset[Purpose]
) -> _Totals:
    """What the facts add up to for the purposes ``asked`` (those of :data:`_TOTALS_PURPOSES`
    granted now: a fact never serves a purpose not granted now)."""
    totals = _Totals()
    serves = gate.serves
    # one group (most people): its orders are one version per order id already
    transactions = _whole_returns_resolved(
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
                categories = totals.categories  # counted inline: asked per category of each day
                for category, weight in d.categories.items():
                    categories[category] = categories.get(category, 0) + weight
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
    groups = person.groups
    # the traits are only read (sorted into the snapshot's dict below): a group without any
    # (most) joins nothing, and the first group with some is taken as it is, not copied
    traits: Mapping[str, Stamped] = _NO_TRAITS
    for facts in groups:
        if group_traits := facts.traits:
            traits = lww(traits, group_traits) if traits else group_traits
    # the snapshot's keys in order, from a template copied whole (``dict.copy``: its key
    # table at once), its values set in place: a key inserted costs ~400-500 instructions
    # (cachegrind), a dict literal and a merge inserted every key twice before
    if asked:
        doc = _TOTALLED.copy()  # every value set below
    else:  # no totals asked: every field they fill is hidden, none is computed
        template, containers, shown = _untotalled_doc(granted)
        doc = template.copy()
        for name, empty in containers:  # a snapshot owns its lists and dicts
            doc[name] = empty()
    # the fields before the totals' (``schema``, first, is the template's)
    doc["profile_id"] = person.profile_id
    doc["version"] = person.version
    doc["created_at"] = format_time(person.created_at)
    doc["region"] = region
    doc["merged_from"] = sorted(set(merged_from)) if (merged_from := person.merged_from) else []
    # one value (most types): ``sorted(set(v))`` is its list
    doc["identifiers"] = {
        t: list(v) if len(v) == 1 else sorted(set(v))
        for t in sorted(identifiers)
        if (v := identifiers[t])
    }
    doc["consent"] = _consent(gate)
    doc["traits"] = {k: s.value for k, s in sorted(traits.items())} if traits else {}
    if asked:
        _totals_fields(_totals(gate, groups, region, asked), doc)
        doc["reachable"] = _reachable(granted, identifiers)
        doc["audiences"] = sorted(person.audiences)
        doc["ad_identifiers"] = sorted(person.ad_identifiers)
        doc.update(orjson.loads(_hidden(granted)))
    else:
        if "reachable" in shown:
            doc["reachable"] = _reachable(granted, identifiers)
        if "audiences" in shown:
            doc["audiences"] = sorted(person.audiences)
        if "ad_identifiers" in shown:
            doc["ad_identifiers"] = sorted(person.ad_identifiers)
    if extra := person.extra:
        doc.update(extra)
    return doc


def _reachable(
    granted: frozenset[Purpose], identifiers: Mapping[str, Sequence[str]]
) -> dict[str, bool]:
    marketing = _P_MARKETING in granted
    return {
        "email": marketing and bool(identifiers.get("email")),
        "phone": marketing and bool(identifiers.get("phone")),
    }


def _consent(gate: Gate) -> dict[str, dict[str, Any]]:
    """The snapshot's ``consent``: each purpose's current choice. A person without consent
    history (most) has their region's defaults, one ``currents`` mapping shared by all such
    gates of the policy (``Gate.currents``): its fields are built once per mapping and copied
    for each snapshot (a snapshot owns its dicts; the values are the same objects)."""
    currents = gate.currents()
    if gate.history.purposes:
        return _consent_of(currents)
    found = _CONSENT_SHOWN.get(id(currents))
    if found is None or found[0] is not currents:
        found = (currents, tuple(_consent_of(currents).items()))
        if len(_CONSENT_SHOWN) >= _CONSENT_SHOWN_SIZE:
            _CONSENT_SHOWN.clear()
        _CONSENT_SHOWN[id(currents)] = found  # the mapping is kept: its id stays its own
    return {name: shown.copy() for name, shown in found[1]}


def _consent_of(currents: Mapping[Purpose, Current]) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "granted": c.granted,
            "at": None if (at := c.at) is None else format_time(at),
            "source": c.source,
        }
        for p, name in _SORTED_PURPOSES
        if (c := currents[p])
    }


#: ``_consent``'s fields per shared ``currents`` mapping (by id, the mapping kept with them):
#: one per policy and region, emptied when full.
_CONSENT_SHOWN: Final[
    dict[int, tuple[Mapping[Purpose, Current], tuple[tuple[str, dict[str, Any]], ...]]]
] = {}
_CONSENT_SHOWN_SIZE: Final = 256


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


@functools.cache  # one per set of granted purposes: 16 at most
def _untotalled_doc(
    granted: frozenset[Purpose],
) -> tuple[dict[str, Any], tuple[tuple[str, Callable[[], Any]], ...], frozenset[str]]:
    """``_untotalled``'s fields after the fields before them (``_HEAD``, None but
    ``schema``): the whole snapshot of a render that asks no totals, in order, for
    :func:`render` to copy and set the head's values in place; with each of its containers
    (lists and dicts: the hidden fields' empty values) and what makes a fresh one.

    A render copies the template with ``dict.copy`` (its key table at once) and puts a fresh
    container in each container's place: the snapshot shares only immutable values (None,
    numbers, strings, booleans) with the template and with other snapshots. Cachegrind: a
    copy ~2.5k instructions against ~21k for ``orjson.loads`` of the template's JSON (~30
    keys, each inserted, the fresh copy before the nineteenth pass)."""
    template, shown = _untotalled(granted)
    doc: dict[str, Any] = dict.fromkeys(_HEAD)
    doc["schema"] = SNAPSHOT_SCHEMA
    doc.update(orjson.loads(template))
    containers = tuple(
        (name, _empty_maker(value)) for name, value in doc.items() if isinstance(value, list | dict)
    )
    return doc, containers, shown


def _empty_maker(value: list[Any] | dict[str, Any]) -> Callable[[], Any]:
    """What makes a fresh ``value`` (an empty value of a hidden field): ``list`` or ``dict``
    for an empty one, else its JSON loaded (``returns``' and ``reachable``'s dicts)."""
    if not value:
        return list if type(value) is list else dict
    return functools.partial(orjson.loads, orjson.dumps(value))


def _totals_fields(totals: _Totals, doc: dict[str, Any] | None = None) -> dict[str, Any]:
    """The snapshot's fields in their order: those the totals fill, and the person's
    ``reachable``, ``audiences`` and ``ad_identifiers`` (None here: :func:`render` sets them),
    set in ``doc`` (render's copy of its template, whose keys are in order already) or in a
    new dict (inserted in order). An empty part of the totals gives its field's empty value
    without a sort or a call."""
    if doc is None:
        doc = {}
    revenue, returned = totals.revenue, totals.returns_value
    first, last, lo = totals.first, totals.last, totals.last_order
    purchases, activities = totals.purchases, totals.activities
    shown_revenue = {cur: _money(v, cur) for cur, v in sorted(revenue.items())} if revenue else {}
    doc["first_seen"] = None if first is None else format_time(first)
    doc["last_seen"] = None if last is None else format_time(last)
    doc["channels"] = sorted(totals.channels)
    doc["shopping_mode"] = _shopping_mode(totals.online, totals.in_store)
    doc["orders_online"] = totals.online
    doc["orders_in_store"] = totals.in_store
    doc["revenue"] = shown_revenue
    doc["average_order_value"] = (
        _average_order_values(revenue, totals.orders_by_currency) if revenue else {}
    )
    doc["last_order"] = (
        None
        if lo is None
        else {
            "order_id": lo.key.partition(":")[2],
            "at": format_time(lo.at),
            "total": _money(lo.amount, lo.currency),
            "currency": lo.currency,
            "location_id": lo.location_id,
        }
    )
    doc["preferred_payment_method"] = _argmax(totals.payments) if totals.payments else None
    doc["preferred_store"] = _argmax(totals.stores) if totals.stores else None
    doc["returns"] = {
        "count": totals.returns,
        "value": {cur: _money(v, cur) for cur, v in sorted(returned.items())} if returned else {},
    }
    doc["category_affinities"] = (
        dict(_ranked(totals.categories)[:TOP_AFFINITIES]) if totals.categories else {}
    )
    doc["recent_activity"] = (
        [_activity_public(a) for a in _top_activities(purchases, activities)]
        if purchases or activities
        else []
    )
    doc["preferences"] = (
        {k: json.loads(s.value) for k, s in sorted(totals.preferences.items())}
        if totals.preferences
        else {}
    )
    doc["reachable"] = None
    doc["audiences"] = None
    doc["ad_identifiers"] = None
    doc["lifetime_value"] = (
        _lifetime_value(shown_revenue, revenue, returned) if returned else dict(shown_revenue)
    )
    doc.update(totals.traits.fields(_money))
    return doc


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


def _lifetime_value(
    shown_revenue: Mapping[str, str],
    revenue: Mapping[str, Decimal],
    returned: Mapping[str, Decimal],
) -> dict[str, str]:
    """Per currency (sorted), purchases minus returns as money text: the revenue's own text
    (``shown_revenue``) where a currency has no returns (``v - 0`` is ``v``: the same number,
    only its exponent may differ, which ``_money`` never shows). Most people have no returns:
    then :func:`_totals_fields` copies the revenue field instead."""
    zero = _ZERO
    return {
        cur: shown_revenue[cur]
        if cur not in returned
        else _money(_CTX.subtract(revenue.get(cur, zero), returned[cur]), cur)
        for cur in sorted(revenue.keys() | returned.keys())
    }


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


#: A person's traits when no group has any.
_NO_TRAITS: Final[Mapping[str, Stamped]] = MappingProxyType({})
#: The snapshot's fields after ``traits``, in order (a render that asks no totals fills them).
_FIELD_ORDER: Final = tuple(_totals_fields(_Totals()))
#: The snapshot's fields before them, in order.
_HEAD: Final = (
    "schema",
    "profile_id",
    "version",
    "created_at",
    "region",
    "merged_from",
    "identifiers",
    "consent",
    "traits",
)
#: The snapshot of a render that asks totals before its values are set: every key in order
#: (None but ``schema``), copied by :func:`render`.
_TOTALLED: Final[dict[str, Any]] = {
    **dict.fromkeys(_HEAD),
    "schema": SNAPSHOT_SCHEMA,
    **dict.fromkeys(_FIELD_ORDER),
}
#: Those of them :func:`render` fills from the person, not from the totals.
_PERSON_FIELDS: Final = ("reachable", "audiences", "ad_identifiers")
#: (purpose, its name) in the snapshot's ``consent`` order.
_SORTED_PURPOSES: Final = tuple((p, p.value) for p in sorted(CONSENT_PURPOSES))
