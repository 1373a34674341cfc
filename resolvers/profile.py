"""Merge-friendly customer profile aggregate (pure: no IO, no clock, no globals mutated).

The stream worker feeds :func:`observe` one :class:`Observation` per touchpoint, stores
:meth:`ProfileAggregate.to_dict` as one JSON document per profile, calls :func:`merge` when two
identities merge, :func:`purge` when a consent purpose is revoked, and publishes :func:`snapshot`
(the document downstream services read).

State layout
------------
The aggregate is split by consent purpose, so a purpose's data only ever comes from events that
served that purpose, and revoking it is "replace that part by its empty value":

* ``traits`` (ungated, see below): latest value per trait by ``(occurred_at, event_id, value)``.
* ``analytics``: first/last seen (min/max), channels (set union), last order (latest by
  ``(occurred_at, event_id)``), and an *analytics ledger* holding the order and return counters.
* ``personalization``: preferences (latest per key), recent activity (top 20 by
  ``(occurred_at, event_id)``), and an *affinity ledger* holding category scores.
* ``audiences`` (marketing) and ``ad_identifiers`` (ads): slots the integrator fills.

Traits are not gated by a purpose: they are the profile data the customer gave us (name, city,
postal code) and are kept like identifiers; erasure deletes them with the profile.

Ledgers and where exactness holds
---------------------------------
Everything except the ledgers is a join-semilattice (min, max, set union, latest-by-key, top-K of a
union), so merge is exact, commutative, associative and idempotent with no conditions.

Additive counters (order counts, revenue, returns, payment-method / store counters, category
scores) live in a :class:`Ledger`: ``totals`` over every item ever counted plus a bounded
``window`` of the most recent items (by ``(occurred_at, event_id)``) with what each contributed.
Items are keyed so a duplicate is recognisable: orders by ``order:<order_id>`` (so a redelivery,
a second event for the same order, or two merged profiles that both saw the order count it once;
the latest version of an order wins), returns by ``return:<event_id>`` (several partial returns
of one order all count), category scores of non-order events by ``event:<event_id>``.

Exactness guarantee: observe is idempotent, merge equals "observe all events of both sides", and
neither depends on arrival order, **as long as every duplicated item (redelivered event, newer
version of an order, order seen by both merged profiles) is still inside the window of each
aggregate holding it** -- i.e. among its :data:`LEDGER_WINDOW` most recent ledger items -- and a
profile has at most :data:`MAX_AFFINITY_CATEGORIES` distinct categories. Outside the window a
duplicate is counted again (we never silently drop a real order); the pipeline's own
``event_id`` dedupe in Redis is the first line of defence, this window is the second.

Money is :class:`~decimal.Decimal` with an explicit 60-digit context (sums are exact); the only
rounding is the average order value, half-even to the currency's minor unit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)
from types import MappingProxyType
from typing import Any, Final

from resolvers.consent import PURPOSE_GATES as _CONSENT_GATES

__all__ = [
    "EMPTY_PROFILE",
    "PURPOSE_GATES",
    "AnalyticsPart",
    "Ledger",
    "LedgerEntry",
    "Observation",
    "OrderFacts",
    "PersonalizationPart",
    "ProfileAggregate",
    "is_granted",
    "merge",
    "observe",
    "observe_all",
    "purge",
    "reachability",
    "snapshot",
    "with_ad_identifiers",
    "with_audiences",
]

#: Which snapshot fields each consent purpose gates, keyed by purpose name. The one definition
#: is ``resolvers.consent.PURPOSE_GATES``; this is its string-keyed view.
PURPOSE_GATES: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {purpose.value: fields for purpose, fields in _CONSENT_GATES.items()}
)

#: Event types that count as a purchase (order facts with ``is_return`` false).
ORDER_TYPES: Final = frozenset({"order_completed", "pos_sale"})
#: Event type that counts as a return (as does any order facts with ``is_return`` true).
RETURN_TYPE: Final = "order_returned"
#: Event types that are not customer activity (never in ``recent_activity``).
NON_ACTIVITY_TYPES: Final = frozenset(
    {"consent_updated", "erasure_requested", "inventory_adjusted", "inventory_counted"}
)
#: Category score added per event type carrying ``properties["category"]`` (default 1).
AFFINITY_WEIGHTS: Final[Mapping[str, int]] = MappingProxyType(
    {"product_viewed": 1, "page_view": 1, "cart_updated": 2}
)
DEFAULT_AFFINITY_WEIGHT: Final = 1
#: Category score added per distinct category of a purchase.
PURCHASE_AFFINITY_WEIGHT: Final = 3

RECENT_ACTIVITY_LIMIT: Final = 20
TOP_AFFINITIES: Final = 10
#: Items kept per ledger for duplicate detection (see module docstring).
LEDGER_WINDOW: Final = 50
MAX_AFFINITY_CATEGORIES: Final = 100

#: ISO 4217 minor units that are not 2 (used for AOV rounding and money display).
CURRENCY_MINOR_UNITS: Final[Mapping[str, int]] = MappingProxyType(
    dict.fromkeys(
        ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND"),
        0,
    )
    | dict.fromkeys(("VUV", "XAF", "XOF", "XPF"), 0)
    | dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3)
)

SNAPSHOT_SCHEMA: Final = "loom.profile.v1"
_STATE_VERSION: Final = 1
_CTX: Final = Context(
    prec=60, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
_ONLINE_LOCATIONS: Final = frozenset({None, "", "online"})


# --------------------------------------------------------------------------- input


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """What a purchase or return contributes. ``in_store`` decides online vs store; the store
    counted for ``preferred_store`` is ``location_id`` (``None``/``"online"`` = no store)."""

    order_id: str
    total: Decimal
    currency: str
    payment_method: str | None = None
    location_id: str | None = None
    categories: tuple[str, ...] = ()
    skus: tuple[str, ...] = ()
    is_return: bool = False
    in_store: bool = False

    def __post_init__(self) -> None:
        if not self.order_id:
            raise ValueError("order_id must not be empty")
        if not isinstance(self.total, Decimal) or not self.total.is_finite():
            raise ValueError("total must be a finite Decimal")
        if not self.currency.strip():
            raise ValueError("currency must not be empty")


@dataclass(frozen=True, slots=True)
class Observation:
    """One touchpoint as the profile sees it. ``purposes`` = consent purposes it may serve."""

    event_id: str
    type: str
    channel: str
    occurred_at: datetime
    traits: Mapping[str, str] = field(default_factory=dict)
    preferences: Mapping[str, object] = field(default_factory=dict)
    properties: Mapping[str, object] = field(default_factory=dict)
    order: OrderFacts | None = None
    purposes: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.event_id:
            raise ValueError("event_id must not be empty")
        if self.occurred_at.tzinfo is None or self.occurred_at.utcoffset() is None:
            raise ValueError("occurred_at must be timezone-aware")


# --------------------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class Stamped:
    """A value with the event time and id that set it (latest-wins register)."""

    value: str  # traits: the string; preferences: canonical JSON text
    at: datetime
    event_id: str

    def rank(self) -> tuple[datetime, str, str]:
        return (self.at, self.event_id, self.value)


@dataclass(frozen=True, slots=True)
class LastOrder:
    order_id: str
    at: datetime
    event_id: str
    total: Decimal
    currency: str
    location_id: str | None

    def rank(self) -> tuple[datetime, str, str, Decimal, str, str]:
        return (
            self.at,
            self.event_id,
            self.order_id,
            self.total,
            self.currency,
            self.location_id or "",
        )


@dataclass(frozen=True, slots=True)
class Activity:
    at: datetime
    event_id: str
    type: str
    channel: str
    sku: str | None = None
    category: str | None = None

    def rank(self) -> tuple[datetime, str, str, str, str, str]:
        return (
            self.at,
            self.event_id,
            self.type,
            self.channel,
            self.sku or "",
            self.category or "",
        )


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One counted item: its version (event time, event id) and what it added to the totals."""

    at: datetime
    event_id: str
    contribution: Mapping[str, Decimal]

    def rank(self) -> tuple[datetime, str, tuple[tuple[str, Decimal], ...]]:
        return (self.at, self.event_id, tuple(sorted(self.contribution.items())))


@dataclass(frozen=True, slots=True)
class Ledger:
    """Additive counters with a bounded window of recent items for duplicate detection.

    Mappings are never mutated after construction (treat them as read-only)."""

    window: Mapping[str, LedgerEntry] = field(default_factory=dict)
    totals: Mapping[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AnalyticsPart:
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    channels: frozenset[str] = frozenset()
    last_order: LastOrder | None = None
    ledger: Ledger = field(default_factory=Ledger)


@dataclass(frozen=True, slots=True)
class PersonalizationPart:
    preferences: Mapping[str, Stamped] = field(default_factory=dict)
    recent_activity: tuple[Activity, ...] = ()
    ledger: Ledger = field(default_factory=Ledger)


@dataclass(frozen=True, slots=True)
class ProfileAggregate:
    """The whole per-profile state. Equality is by value (Decimals compare numerically)."""

    traits: Mapping[str, Stamped] = field(default_factory=dict)
    analytics: AnalyticsPart = field(default_factory=AnalyticsPart)
    personalization: PersonalizationPart = field(default_factory=PersonalizationPart)
    audiences: frozenset[str] = frozenset()
    ad_identifiers: frozenset[str] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state (Decimals as strings, datetimes RFC 3339 UTC)."""
        a, p = self.analytics, self.personalization
        return {
            "v": _STATE_VERSION,
            "traits": _stamped_map_to_json(self.traits),
            "analytics": {
                "first_seen": _dt_out(a.first_seen),
                "last_seen": _dt_out(a.last_seen),
                "channels": sorted(a.channels),
                "last_order": None
                if a.last_order is None
                else {
                    "order_id": a.last_order.order_id,
                    "at": _dt_out(a.last_order.at),
                    "event_id": a.last_order.event_id,
                    "total": str(a.last_order.total),
                    "currency": a.last_order.currency,
                    "location_id": a.last_order.location_id,
                },
                "ledger": _ledger_to_json(a.ledger),
            },
            "personalization": {
                "preferences": _stamped_map_to_json(p.preferences),
                "recent_activity": [_activity_to_json(x) for x in p.recent_activity],
                "ledger": _ledger_to_json(p.ledger),
            },
            "audiences": sorted(self.audiences),
            "ad_identifiers": sorted(self.ad_identifiers),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProfileAggregate:
        """Inverse of :meth:`to_dict`. Raises ``ValueError`` on an unknown state version."""
        if data.get("v") != _STATE_VERSION:
            raise ValueError(f"unsupported profile state version: {data.get('v')!r}")
        a, p = data["analytics"], data["personalization"]
        lo = a["last_order"]
        return cls(
            traits=_stamped_map_from_json(data["traits"]),
            analytics=AnalyticsPart(
                first_seen=_dt_in_opt(a["first_seen"]),
                last_seen=_dt_in_opt(a["last_seen"]),
                channels=frozenset(a["channels"]),
                last_order=None
                if lo is None
                else LastOrder(
                    order_id=lo["order_id"],
                    at=_dt_in(lo["at"]),
                    event_id=lo["event_id"],
                    total=Decimal(lo["total"]),
                    currency=lo["currency"],
                    location_id=lo["location_id"],
                ),
                ledger=_ledger_from_json(a["ledger"]),
            ),
            personalization=PersonalizationPart(
                preferences=_stamped_map_from_json(p["preferences"]),
                recent_activity=tuple(_activity_from_json(x) for x in p["recent_activity"]),
                ledger=_ledger_from_json(p["ledger"]),
            ),
            audiences=frozenset(data["audiences"]),
            ad_identifiers=frozenset(data["ad_identifiers"]),
        )


EMPTY_PROFILE: Final = ProfileAggregate()


# --------------------------------------------------------------------------- observe


def observe(agg: ProfileAggregate, obs: Observation) -> ProfileAggregate:
    """Fold one observation into the aggregate. Pure; re-observing the same event is a no-op."""
    at = obs.occurred_at.astimezone(UTC)
    traits = _lww_merge(
        agg.traits,
        {k: Stamped(v, at, obs.event_id) for k, v in obs.traits.items() if k and v},
    )
    analytics = agg.analytics
    if "analytics" in obs.purposes:
        analytics = _observe_analytics(analytics, obs, at)
    personalization = agg.personalization
    if "personalization" in obs.purposes:
        personalization = _observe_personalization(personalization, obs, at)
    return replace(agg, traits=traits, analytics=analytics, personalization=personalization)


def observe_all(
    observations: Iterable[Observation], agg: ProfileAggregate = EMPTY_PROFILE
) -> ProfileAggregate:
    """Fold many observations (convenience for replays and tests)."""
    for obs in observations:
        agg = observe(agg, obs)
    return agg


def _kind(obs: Observation) -> str | None:
    if obs.order is None:
        return None
    if obs.order.is_return or obs.type == RETURN_TYPE:
        return "return"
    if obs.type in ORDER_TYPES:
        return "order"
    return None


def _observe_analytics(part: AnalyticsPart, obs: Observation, at: datetime) -> AnalyticsPart:
    first_seen = _min_dt(part.first_seen, at)
    last_seen = _max_dt(part.last_seen, at)
    channels = part.channels | {obs.channel} if obs.channel else part.channels
    last_order, ledger = part.last_order, part.ledger
    kind, o = _kind(obs), obs.order
    if o is not None and kind is not None:
        cur = o.currency.strip().upper()
        amount = abs(o.total)
        if kind == "order":
            contribution: dict[str, Decimal] = {
                "orders:in_store" if o.in_store else "orders:online": Decimal(1),
                f"orders_cur:{cur}": Decimal(1),
                f"revenue:{cur}": amount,
            }
            if o.payment_method:
                contribution[f"payment:{o.payment_method}"] = Decimal(1)
            if o.in_store and o.location_id not in _ONLINE_LOCATIONS:
                contribution[f"store:{o.location_id}"] = Decimal(1)
            ledger = _ledger_add(
                ledger,
                f"order:{o.order_id}",
                LedgerEntry(at, obs.event_id, _clean(contribution)),
                LEDGER_WINDOW,
            )
            candidate = LastOrder(o.order_id, at, obs.event_id, amount, cur, o.location_id)
            if last_order is None or candidate.rank() > last_order.rank():
                last_order = candidate
        else:
            contribution = {"returns:count": Decimal(1), f"returns_value:{cur}": amount}
            ledger = _ledger_add(
                ledger,
                f"return:{obs.event_id}",
                LedgerEntry(at, obs.event_id, _clean(contribution)),
                LEDGER_WINDOW,
            )
    return AnalyticsPart(first_seen, last_seen, channels, last_order, ledger)


def _str_prop(props: Mapping[str, object], name: str) -> str | None:
    value = props.get(name)
    return value if isinstance(value, str) and value else None


def _observe_personalization(
    part: PersonalizationPart, obs: Observation, at: datetime
) -> PersonalizationPart:
    preferences = _lww_merge(
        part.preferences,
        {k: Stamped(_canonical_json(v), at, obs.event_id) for k, v in obs.preferences.items() if k},
    )
    activity = part.recent_activity
    sku, category = _str_prop(obs.properties, "sku"), _str_prop(obs.properties, "category")
    if obs.type not in NON_ACTIVITY_TYPES:
        o = obs.order
        act = Activity(
            at,
            obs.event_id,
            obs.type,
            obs.channel,
            sku or (o.skus[0] if o is not None and o.skus else None),
            category or (o.categories[0] if o is not None and o.categories else None),
        )
        activity = _top_activities((*activity, act))
    ledger = part.ledger
    kind = _kind(obs)
    if kind == "order" and obs.order is not None:
        contribution = {
            f"cat:{c}": Decimal(PURCHASE_AFFINITY_WEIGHT) for c in set(obs.order.categories) if c
        }
        if contribution:
            ledger = _ledger_add(
                ledger,
                f"order:{obs.order.order_id}",
                LedgerEntry(at, obs.event_id, contribution),
                LEDGER_WINDOW,
            )
    elif kind is None and category is not None:
        weight = AFFINITY_WEIGHTS.get(obs.type, DEFAULT_AFFINITY_WEIGHT)
        ledger = _ledger_add(
            ledger,
            f"event:{obs.event_id}",
            LedgerEntry(at, obs.event_id, {f"cat:{category}": Decimal(weight)}),
            LEDGER_WINDOW,
        )
    ledger = Ledger(ledger.window, _cap_totals(ledger.totals, MAX_AFFINITY_CATEGORIES))
    return PersonalizationPart(preferences, activity, ledger)


# --------------------------------------------------------------------------- merge / purge


def merge(a: ProfileAggregate, b: ProfileAggregate) -> ProfileAggregate:
    """The aggregate of all events of ``a`` and ``b``. Pure, commutative, associative,
    idempotent (``merge(a, a) == a``); exact for the ledgers within the window (module doc)."""
    aa, ba = a.analytics, b.analytics
    ap, bp = a.personalization, b.personalization
    last_order = aa.last_order
    if ba.last_order is not None and (
        last_order is None or ba.last_order.rank() > last_order.rank()
    ):
        last_order = ba.last_order
    analytics = AnalyticsPart(
        first_seen=_min_dt(aa.first_seen, ba.first_seen),
        last_seen=_max_dt(aa.last_seen, ba.last_seen),
        channels=aa.channels | ba.channels,
        last_order=last_order,
        ledger=_ledger_merge(aa.ledger, ba.ledger, LEDGER_WINDOW),
    )
    pledger = _ledger_merge(ap.ledger, bp.ledger, LEDGER_WINDOW)
    personalization = PersonalizationPart(
        preferences=_lww_merge(ap.preferences, bp.preferences),
        recent_activity=_top_activities((*ap.recent_activity, *bp.recent_activity)),
        ledger=Ledger(pledger.window, _cap_totals(pledger.totals, MAX_AFFINITY_CATEGORIES)),
    )
    return ProfileAggregate(
        traits=_lww_merge(a.traits, b.traits),
        analytics=analytics,
        personalization=personalization,
        audiences=a.audiences | b.audiences,
        ad_identifiers=a.ad_identifiers | b.ad_identifiers,
    )


def purge(agg: ProfileAggregate, purpose: str) -> ProfileAggregate:
    """Drop every piece of data ``purpose`` gates (see :data:`PURPOSE_GATES`).

    ``"necessary"`` gates nothing and returns ``agg`` unchanged; an unknown purpose raises
    ``ValueError`` (never guess which data to keep)."""
    if purpose == "analytics":
        return replace(agg, analytics=AnalyticsPart())
    if purpose == "personalization":
        return replace(agg, personalization=PersonalizationPart())
    if purpose == "marketing":
        return replace(agg, audiences=frozenset())
    if purpose == "ads":
        return replace(agg, ad_identifiers=frozenset())
    if purpose == "necessary":
        return agg
    raise ValueError(f"unknown consent purpose: {purpose!r}")


def with_audiences(agg: ProfileAggregate, audiences: Iterable[str]) -> ProfileAggregate:
    """Replace the audience memberships (marketing). Call only when marketing is granted."""
    return replace(agg, audiences=frozenset(a for a in audiences if a))


def with_ad_identifiers(agg: ProfileAggregate, hashes: Iterable[str]) -> ProfileAggregate:
    """Add salted-hash ad identifiers (ads). Call only when ads is granted."""
    return replace(agg, ad_identifiers=agg.ad_identifiers | {h for h in hashes if h})


# --------------------------------------------------------------------------- snapshot


def is_granted(consent: Mapping[str, object], purpose: str) -> bool:
    """Whether the consent map grants ``purpose``. Accepts ``{purpose: bool}`` or
    ``{purpose: {"granted": bool, ...}}`` / ``{purpose: {"status": "granted", ...}}``.
    ``necessary`` is always granted; anything missing or unrecognised is denied (fail closed)."""
    if purpose == "necessary":
        return True
    value = consent.get(purpose)
    if value is True:
        return True
    if isinstance(value, Mapping):
        return value.get("granted") is True or value.get("status") == "granted"
    return False


def reachability(
    identifiers: Mapping[str, Sequence[str]], consent: Mapping[str, object]
) -> dict[str, bool]:
    """``{"email": ..., "phone": ...}``: has such an identifier AND marketing is granted."""
    ok = is_granted(consent, "marketing")
    return {
        "email": ok and any(identifiers.get("email", ())),
        "phone": ok and any(identifiers.get("phone", ())),
    }


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
        "audiences": [],
        "ad_identifiers": [],
    }


#: The value each gated field has when its purpose is not granted (or there is no data).
EMPTY_GATED_FIELDS: Final[Mapping[str, object]] = MappingProxyType(_empty_fields())


def snapshot(
    agg: ProfileAggregate,
    *,
    profile_id: str,
    identifiers: Mapping[str, Sequence[str]],
    consent: Mapping[str, object],
    merged_from: Sequence[str],
    version: int,
) -> dict[str, Any]:
    """The public profile document. Every gated field is emitted with its empty value
    (:data:`EMPTY_GATED_FIELDS`) unless ``consent`` grants its purpose (see :func:`is_granted`),
    so the document never shows data its purpose does not allow, even before a purge ran."""
    a, p = agg.analytics, agg.personalization
    totals = a.ledger.totals
    online = int(totals.get("orders:online", 0))
    in_store = int(totals.get("orders:in_store", 0))
    revenue = _by_prefix(totals, "revenue:")
    order_counts = _by_prefix(totals, "orders_cur:")
    aov = {
        cur: _money(_aov(rev, order_counts[cur], cur), cur)
        for cur, rev in revenue.items()
        if order_counts.get(cur)
    }
    lo = a.last_order
    fields: dict[str, Any] = {
        "first_seen": _dt_out(a.first_seen),
        "last_seen": _dt_out(a.last_seen),
        "channels": sorted(a.channels),
        "shopping_mode": _shopping_mode(online, in_store),
        "orders_online": online,
        "orders_in_store": in_store,
        "revenue": {cur: _money(v, cur) for cur, v in sorted(revenue.items())},
        "average_order_value": dict(sorted(aov.items())),
        "last_order": None
        if lo is None
        else {
            "order_id": lo.order_id,
            "at": _dt_out(lo.at),
            "total": _money(lo.total, lo.currency),
            "currency": lo.currency,
            "location_id": lo.location_id,
        },
        "preferred_payment_method": _argmax(_by_prefix(totals, "payment:")),
        "preferred_store": _argmax(_by_prefix(totals, "store:")),
        "returns": {
            "count": int(totals.get("returns:count", 0)),
            "value": {
                cur: _money(v, cur)
                for cur, v in sorted(_by_prefix(totals, "returns_value:").items())
            },
        },
        "category_affinities": {
            cat: int(score)
            for cat, score in _ranked(_by_prefix(p.ledger.totals, "cat:"))[:TOP_AFFINITIES]
        },
        "recent_activity": [_activity_public(x) for x in p.recent_activity],
        "preferences": {k: json.loads(s.value) for k, s in sorted(p.preferences.items())},
        "reachable": reachability(identifiers, consent),
        "audiences": sorted(agg.audiences),
        "ad_identifiers": sorted(agg.ad_identifiers),
    }
    empty = _empty_fields()
    for purpose, gated in PURPOSE_GATES.items():
        if not is_granted(consent, purpose):
            for name in gated:
                fields[name] = empty[name]
    return {
        "schema": SNAPSHOT_SCHEMA,
        "profile_id": profile_id,
        "version": version,
        "merged_from": sorted(set(merged_from)),
        "identifiers": {t: sorted(set(v)) for t, v in sorted(identifiers.items()) if v},
        "consent": dict(sorted(consent.items())),
        "traits": {k: s.value for k, s in sorted(agg.traits.items())},
        **fields,
    }


def _shopping_mode(online: int, in_store: int) -> str:
    if online and in_store:
        return "omnichannel"
    if online:
        return "online"
    if in_store:
        return "in_store"
    return "none"


def _ranked(counter: Mapping[str, Decimal]) -> list[tuple[str, Decimal]]:
    """Highest value first; ties broken by name ascending (deterministic)."""
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))


def _argmax(counter: Mapping[str, Decimal]) -> str | None:
    ranked = _ranked(counter)
    return ranked[0][0] if ranked else None


def _by_prefix(totals: Mapping[str, Decimal], prefix: str) -> dict[str, Decimal]:
    return {k[len(prefix) :]: v for k, v in totals.items() if k.startswith(prefix)}


def _minor_quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-CURRENCY_MINOR_UNITS.get(currency, 2))


def _aov(revenue: Decimal, count: Decimal, currency: str) -> Decimal:
    return _CTX.divide(revenue, count).quantize(_minor_quantum(currency), context=_CTX)


def _money(value: Decimal, currency: str) -> str:
    """Canonical text: the currency's minor unit, or more digits only if the value has them."""
    quantized = value.quantize(_minor_quantum(currency), context=_CTX)
    if quantized == value:
        return format(quantized, "f")
    return format(value.normalize(_CTX), "f")


# --------------------------------------------------------------------------- semilattice helpers


def _min_dt(x: datetime | None, y: datetime | None) -> datetime | None:
    if x is None or y is None:
        return y if x is None else x
    return min(x, y)


def _max_dt(x: datetime | None, y: datetime | None) -> datetime | None:
    if x is None or y is None:
        return y if x is None else x
    return max(x, y)


def _lww_merge(a: Mapping[str, Stamped], b: Mapping[str, Stamped]) -> dict[str, Stamped]:
    out = dict(a)
    for key, new in b.items():
        old = out.get(key)
        if old is None or new.rank() > old.rank():
            out[key] = new
    return out


def _top_activities(items: Iterable[Activity]) -> tuple[Activity, ...]:
    best: dict[str, Activity] = {}
    for act in items:
        old = best.get(act.event_id)
        if old is None or act.rank() > old.rank():
            best[act.event_id] = act
    ordered = sorted(best.values(), key=Activity.rank, reverse=True)
    return tuple(ordered[:RECENT_ACTIVITY_LIMIT])


def _canonical_json(value: object) -> str:
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_json_default,
    )


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return _dt_out(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    raise TypeError(f"preference value of type {type(value).__name__} is not JSON-serializable")


# --------------------------------------------------------------------------- ledger


def _clean(totals: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """Drop non-positive entries (all contributions are non-negative counts or amounts)."""
    return {k: v for k, v in totals.items() if v > 0}


def _add_into(totals: dict[str, Decimal], contribution: Mapping[str, Decimal], sign: int) -> None:
    for key, value in contribution.items():
        current = totals.get(key, Decimal(0))
        totals[key] = _CTX.add(current, value) if sign > 0 else _CTX.subtract(current, value)


def _trim(window: dict[str, LedgerEntry], limit: int) -> dict[str, LedgerEntry]:
    if len(window) <= limit:
        return window
    ordered = sorted(window.items(), key=lambda kv: (kv[1].rank(), kv[0]), reverse=True)
    return dict(ordered[:limit])


def _ledger_add(ledger: Ledger, key: str, entry: LedgerEntry, limit: int) -> Ledger:
    old = ledger.window.get(key)
    if old is not None and old.rank() >= entry.rank():
        return ledger  # duplicate or an older version of an item we hold: no-op
    totals = dict(ledger.totals)
    if old is not None:
        _add_into(totals, old.contribution, -1)
    _add_into(totals, entry.contribution, +1)
    window = dict(ledger.window)
    window[key] = entry
    return Ledger(_trim(window, limit), _clean(totals))


def _ledger_merge(a: Ledger, b: Ledger, limit: int) -> Ledger:
    totals = dict(a.totals)
    _add_into(totals, b.totals, +1)
    window = dict(a.window)
    for key, eb in b.window.items():
        ea = window.get(key)
        if ea is None:
            window[key] = eb
            continue
        winner = eb if eb.rank() > ea.rank() else ea
        # both sides counted this item: keep the winning version once
        _add_into(totals, ea.contribution, -1)
        _add_into(totals, eb.contribution, -1)
        _add_into(totals, winner.contribution, +1)
        window[key] = winner
    return Ledger(_trim(window, limit), _clean(totals))


def _cap_totals(totals: Mapping[str, Decimal], cap: int) -> Mapping[str, Decimal]:
    if len(totals) <= cap:
        return totals
    return dict(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:cap])


# --------------------------------------------------------------------------- JSON codecs


def _dt_out(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _dt_in(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without offset: {value!r}")
    return parsed.astimezone(UTC)


def _dt_in_opt(value: str | None) -> datetime | None:
    return None if value is None else _dt_in(value)


def _stamped_map_to_json(items: Mapping[str, Stamped]) -> dict[str, Any]:
    return {
        k: {"value": s.value, "at": _dt_out(s.at), "event_id": s.event_id}
        for k, s in sorted(items.items())
    }


def _stamped_map_from_json(data: Mapping[str, Any]) -> dict[str, Stamped]:
    return {k: Stamped(v["value"], _dt_in(v["at"]), v["event_id"]) for k, v in data.items()}


def _ledger_to_json(ledger: Ledger) -> dict[str, Any]:
    return {
        "window": {
            k: {
                "at": _dt_out(e.at),
                "event_id": e.event_id,
                "c": {ck: str(cv) for ck, cv in sorted(e.contribution.items())},
            }
            for k, e in sorted(ledger.window.items())
        },
        "totals": {k: str(v) for k, v in sorted(ledger.totals.items())},
    }


def _ledger_from_json(data: Mapping[str, Any]) -> Ledger:
    return Ledger(
        window={
            k: LedgerEntry(
                _dt_in(e["at"]), e["event_id"], {ck: Decimal(cv) for ck, cv in e["c"].items()}
            )
            for k, e in data["window"].items()
        },
        totals={k: Decimal(v) for k, v in data["totals"].items()},
    )


def _activity_to_json(act: Activity) -> dict[str, Any]:
    return {
        "at": _dt_out(act.at),
        "event_id": act.event_id,
        "type": act.type,
        "channel": act.channel,
        "sku": act.sku,
        "category": act.category,
    }


def _activity_public(act: Activity) -> dict[str, Any]:
    out = _activity_to_json(act)
    return {k: v for k, v in out.items() if v is not None}


def _activity_from_json(data: Mapping[str, Any]) -> Activity:
    return Activity(
        _dt_in(data["at"]),
        data["event_id"],
        data["type"],
        data["channel"],
        data.get("sku"),
        data.get("category"),
    )
