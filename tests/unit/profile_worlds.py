"""Builders and hypothesis strategies shared by the profile unit tests (facts, codec, render).

Observations are built the way ``resolvers.stages.observe`` builds them: consent folded by
``resolvers.consent.statements`` (explicit for the explicit event types), preferences as
canonical JSON. Worlds of events span more days than the behaviour windows of
``resolvers.profile.facts`` so that roll-ups into day digests, husks and the horizon happen;
:func:`small_windows` shrinks those windows (module constants read at call time) so that a
few dozen events exercise them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from unittest import mock

from hypothesis import strategies as st

from resolvers.consent import (
    CONSENT_PURPOSES,
    EXPLICIT_TYPES,
    ConsentHistory,
    ConsentPolicy,
    EventConsent,
    Gate,
    Purpose,
    Source,
    Statement,
    from_event,
    statements,
)
from resolvers.profile import facts as facts_module
from resolvers.profile.facts import EMPTY_FACTS, Facts, Observation, OrderFacts, Stamped
from resolvers.profile.render import Person, render

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
POLICY = ConsentPolicy()
EVERYTHING = {p.value: True for p in CONSENT_PURPOSES}


def at(minutes: float = 0, days: int = 0) -> datetime:
    return T0 + timedelta(days=days, minutes=minutes)


def canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def obs(
    event_id: str,
    minutes: float = 0,
    *,
    days: int = 0,
    type: str = "page_view",
    channel: str = "web",
    consent: Mapping[str, object] | None = None,
    gpc: bool = False,
    region: str | None = None,
    traits: Mapping[str, str] | None = None,
    preferences: Mapping[str, object] | None = None,
    sku: str | None = None,
    category: str | None = None,
    order: OrderFacts | None = None,
    when: datetime | None = None,
) -> Observation:
    explicit = type in EXPLICIT_TYPES
    return Observation(
        event_id=event_id,
        type=type,
        channel=channel,
        at=when or at(minutes, days),
        consent=statements(consent, gpc, None, explicit=explicit),
        explicit=explicit,
        region=region,
        traits=dict(traits or {}),
        preferences={k: canonical(v) for k, v in (preferences or {}).items()},
        sku=sku,
        category=category,
        order=order,
    )


#: What an ordinary event states when the person's CMP allows tracking: behaviour that may
#: serve analytics and personalization on its own statement, whatever its region.
TRACKED: Mapping[str, object] = {"analytics": True, "personalization": True}
TRACKED_CODE = "analytics+event;personalization+event"


def tracked(event_id: str, minutes: float = 0, **kwargs: Any) -> Observation:
    """A behavioural event the person allowed tracking on (see :data:`TRACKED`)."""
    return obs(event_id, minutes, consent=TRACKED, **kwargs)


def order(
    event_id: str,
    minutes: float,
    order_id: str,
    total: str,
    currency: str = "NOK",
    *,
    store: str | None = None,
    payment: str | None = "card",
    categories: Sequence[str] = (),
    skus: Sequence[str] = (),
    consent: Mapping[str, object] | None = None,
    region: str | None = None,
    days: int = 0,
) -> Observation:
    """A purchase: a store sale (``pos_sale``) when ``store`` is given, else an online order."""
    in_store = store is not None
    return obs(
        event_id,
        minutes,
        days=days,
        type="pos_sale" if in_store else "order_completed",
        channel="pos" if in_store else "web",
        consent=consent,
        region=region,
        order=OrderFacts(
            order_id=order_id,
            total=Decimal(total),
            currency=currency,
            payment_method=payment,
            location_id=store or "online",
            categories=tuple(categories),
            skus=tuple(skus),
            in_store=in_store,
        ),
    )


def returned(
    event_id: str,
    minutes: float,
    order_id: str,
    total: str,
    currency: str = "NOK",
    *,
    consent: Mapping[str, object] | None = None,
) -> Observation:
    return obs(
        event_id,
        minutes,
        type="order_returned",
        channel="pos",
        consent=consent,
        order=OrderFacts(order_id, Decimal(total), currency, in_store=True),
    )


# --------------------------------------------------------------------------- the fold
# The fold under the tests' policy: the tests call these, so that a change of the fold's
# signature is followed in one place.


def observe_all(events: Iterable[Observation], facts: Facts = EMPTY_FACTS) -> Facts:
    return facts_module.observe_all(events, POLICY, facts)


def observe(facts: Facts, event: Observation) -> Facts:
    return facts_module.observe(facts, event, POLICY)


def merge(a: Facts, b: Facts) -> Facts:
    return facts_module.merge(a, b, POLICY)


def prune(facts: Facts, also: ConsentHistory | None = None) -> Facts:
    return facts_module.prune(facts, POLICY, also or ConsentHistory())


# --------------------------------------------------------------------------- rendering

#: An explicit grant of every purpose long before the tests' events.
GRANT_ALL: ConsentHistory = from_event(
    EventConsent({p: Statement(True, Source.CONSENT_UPDATED) for p in CONSENT_PURPOSES}),
    T0 - timedelta(days=1000),
    explicit=True,
)


def statement(purpose: Purpose, granted: bool, minutes: float) -> ConsentHistory:
    """An explicit statement of the person for ``purpose`` at ``minutes``."""
    consent = EventConsent({purpose: Statement(granted, Source.CONSENT_UPDATED)})
    return from_event(consent, at(minutes), explicit=True)


def person_gate(groups: Sequence[Facts], extra: ConsentHistory | None = None) -> Gate:
    """The gate of the person made of ``groups`` (as the profiles lane builds it)."""
    history = extra or ConsentHistory()
    region: Stamped | None = None
    for facts in groups:
        history = history.merged(facts.consent)
        region = facts_module.later(region, facts.region)
    return Gate(POLICY, history, region.value if region is not None else None)


def snapshot(
    groups: Sequence[Facts],
    gate: Gate | None = None,
    *,
    identifiers: Mapping[str, Sequence[str]] | None = None,
    audiences: Sequence[str] = (),
    ad_identifiers: Sequence[str] = (),
) -> dict[str, Any]:
    """The snapshot of one person; by default everything is granted (``GRANT_ALL``)."""
    return render(
        Person(
            profile_id="p-1",
            version=7,
            identifiers=identifiers if identifiers is not None else {"email": ["ann@example.com"]},
            groups=groups,
            created_at=T0,
            merged_from=["p-0", "p-0"],
            audiences=audiences,
            ad_identifiers=ad_identifiers,
        ),
        gate or person_gate(groups, GRANT_ALL),
    )


# --------------------------------------------------------------------------- worlds


@contextlib.contextmanager
def small_windows(
    *, recent_days: int = 3, recent_events: int = 4, behaviour_days: int = 12, transactions: int = 6
) -> Iterator[None]:
    """Shrink the fold's windows so that small worlds roll up, husk and expire."""
    with mock.patch.multiple(
        facts_module,
        RECENT_DAYS=recent_days,
        RECENT_EVENTS=recent_events,
        BEHAVIOUR_DAYS=behaviour_days,
        MAX_TRANSACTIONS=transactions,
    ):
        yield


#: Days a world spans: beyond ``small_windows``' behaviour horizon.
WORLD_DAYS = 16

_BEHAVIOUR = ("page_view", "product_viewed", "cart_updated", "order_fulfilled")
_EXPLICIT = ("consent_updated", "signup", "profile_updated")
_ORDERS = ("order_completed", "pos_sale", "order_returned", "order_cancelled")
KINDS = _BEHAVIOUR * 3 + _EXPLICIT + _ORDERS * 2

#: (category, SKU) of an order's lines that have a category, and (SKU, quantity) of those that
#: have none (a give-back names lines either way)
_LINES = st.lists(
    st.tuples(st.sampled_from(["shoes", "socks", "hats"]), st.sampled_from(["s1", "s2", "s3"])),
    max_size=3,
)
_LOOSE = st.lists(st.tuples(st.sampled_from(["s1", "s2", "s3"]), st.integers(1, 2)), max_size=2)
_ORDER_FACTS = st.builds(
    lambda lines, loose, **kw: OrderFacts(
        categories=tuple([c for c, _ in lines]),
        category_skus=tuple([s for _, s in lines]),
        loose=tuple(loose),
        **kw,
    ),
    _LINES,
    _LOOSE,
    order_id=st.sampled_from(["o1", "o2", "o3", "o4"]),  # repeated: versions of one order
    total=st.sampled_from([Decimal(s) for s in ("10", "10.00", "9.99", "0.1", "1234.567", "-5")]),
    currency=st.sampled_from(["NOK", "eur", "JPY", "KWD"]),
    payment_method=st.sampled_from([None, "card", "cash"]),
    location_id=st.sampled_from([None, "online", "oslo-1", "bergen-2"]),
    skus=st.lists(st.sampled_from(["s1", "s2"]), max_size=2).map(tuple),
    in_store=st.booleans(),
    # a return of the whole order (kept by returns only: ``test_segment_full_refund``)
    whole=st.sampled_from([0, 0, 0, 1, 2]),
)
_TRAITS = st.dictionaries(
    st.sampled_from(["first_name", "city"]), st.sampled_from(["Ann", "Oslo", "Bergen"]), max_size=2
)
_PREFERENCES = st.dictionaries(
    st.sampled_from(["size", "fit"]), st.sampled_from([1, "M", "slim", ["a", "b"]]), max_size=2
)
_CATEGORY = st.sampled_from([None, "shoes", "socks", "hats"])
_SKU = st.sampled_from([None, "s1", "s2"])
_CHANNEL = st.sampled_from(["web", "app", "pos"])
_REGION = st.sampled_from([None, None, "DE", "US"])
_DAY = st.integers(0, WORLD_DAYS)
_MINUTE = st.integers(0, 2)  # equal times happen
_GPC = st.sampled_from([False, False, False, True])


def _consent_maps(deletions: bool) -> st.SearchStrategy[dict[str, object]]:
    """Raw consent maps; without ``deletions`` every event grants personalization itself and
    nothing is unreadable, so no behaviour event is ever useless for both analytics and
    personalization and the fold never deletes one."""
    if deletions:
        purposes = [p.value for p in CONSENT_PURPOSES]
        values: list[object] = [True, True, False, False, "yes"]
        return st.dictionaries(st.sampled_from(purposes), st.sampled_from(values))
    return st.fixed_dictionaries(
        {"personalization": st.just(True)},
        optional={"analytics": st.booleans(), "marketing": st.booleans(), "ads": st.booleans()},
    )


_CONSENT_MAPS = {d: _consent_maps(d) for d in (True, False)}


@st.composite
def _observation(draw: st.DrawFn, index: int, deletions: bool) -> Observation:
    kind = draw(st.sampled_from(KINDS))
    says = not deletions or draw(st.booleans())
    consent = draw(_CONSENT_MAPS[deletions]) if says else None
    return obs(
        f"e{index:03d}",
        draw(_MINUTE),
        days=draw(_DAY),
        type=kind,
        channel=draw(_CHANNEL),
        consent=consent,
        gpc=draw(_GPC),
        region=draw(_REGION),
        traits=draw(_TRAITS) if kind in ("signup", "profile_updated") else None,
        preferences=draw(_PREFERENCES) if kind in ("profile_updated", "page_view") else None,
        sku=draw(_SKU),
        category=draw(_CATEGORY),
        order=draw(_ORDER_FACTS) if kind in _ORDERS else None,
    )


@st.composite
def _worlds(draw: st.DrawFn, max_size: int, deletions: bool) -> list[Observation]:
    n = draw(st.integers(0, max_size))
    return [draw(_observation(i, deletions)) for i in range(n)]


_WORLDS: dict[tuple[int, bool], st.SearchStrategy[list[Observation]]] = {}


def worlds(max_size: int = 30, *, deletions: bool = True) -> st.SearchStrategy[list[Observation]]:
    """A group's events (distinct event ids). ``deletions``: see :func:`_consent_maps`."""
    key = (max_size, deletions)
    if key not in _WORLDS:
        _WORLDS[key] = _worlds(max_size, deletions)
    return _WORLDS[key]
