"""Stage: what the profile sees of an event (pure): an observation for the facts fold, the
identifiers it links for identity, the consent it states.

Order events (``order_completed``, ``pos_sale``, ``order_returned``, ``order_cancelled``) become
order facts with a total (the lines' sum when the event gives none) and each line's SKU; store
sales and ``pos`` channel orders are in-store. Preferences are kept as canonical JSON so equal
values compare equal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

from resolvers.consent import EXPLICIT_TYPES, EventConsent, statements
from resolvers.profile.facts import (
    GIVE_BACK_TYPES,
    NO_STRINGS,
    ORDER_TYPES,
    RETURN_TYPE,
    WHOLE_ORDER,
    WHOLE_STATED,
    Observation,
    OrderFacts,
)
from resolvers.timefmt import utc
from resolvers.tuples import new_tuple
from schemas.touchpoint import Channel, Consent, EventType, Touchpoint

# Enum members read per event, bound once (prefix: C_ channel, T_ event type): on CPython
# 3.11 a member read off its class costs ~0.1 µs (its metaclass's attribute hook), a
# constant ~0.01 (ADR 0019).
_C_POS: Final = Channel.POS
_T_CUSTOM: Final = EventType.CUSTOM
_T_POS_SALE: Final = EventType.POS_SALE


NAME = "observe"


#: ``event_consent`` of events without vendor signals, by (consent map, GPC, explicit): at
#: most 3^5 * 2 * 2 keys (a frozen ``Consent`` model hashes by its values).
_WITHOUT_SIGNALS: dict[tuple[Consent | None, bool, bool], EventConsent] = {}


#: The vocabularies' values by member: ``.value`` of an enum member is a Python-level
#: property, asked several times per event; a member is a ``str`` (hashes as its value).
TYPE_VALUES: Final = {t: t.value for t in EventType}
_CHANNELS: Final = {c: c.value for c in Channel}


def event_consent(tp: Touchpoint) -> EventConsent:
    fields = tp.__dict__  # its fields (see ``observation``)
    explicit = fields["type"] in EXPLICIT_TYPES  # a StrEnum member: compares as its value
    if fields["consent_signals"] is None:  # most events: asked per event twice (fold, audit)
        key = (fields["consent"], bool(fields["gpc"]), explicit)
        found = _WITHOUT_SIGNALS.get(key)
        if found is None:
            found = _WITHOUT_SIGNALS[key] = _statements(tp, explicit)
        return found
    return _statements(tp, explicit)


def _statements(tp: Touchpoint, explicit: bool) -> EventConsent:
    own = tp.consent.model_dump(exclude_none=True) if tp.consent is not None else None
    signals = (
        tp.consent_signals.model_dump(exclude_none=True) if tp.consent_signals is not None else None
    )
    return statements(own, bool(tp.gpc), signals or None, explicit=explicit)


def _canonical_json(value: object) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _order(tp: Touchpoint) -> OrderFacts | None:
    # the models' fields from their instance dicts (``observation`` says why)
    fields = tp.__dict__
    t = fields["type"]
    if fields["order"] is None or (t not in ORDER_TYPES and t not in GIVE_BACK_TYPES):
        return None
    o = fields["order"].__dict__
    lines = [ln.__dict__ for ln in o["lines"]]
    total = o["total"]
    whole = 0  # a return without lines gives back the whole order (``facts.WHOLE_ORDER``)
    if not lines and t == RETURN_TYPE:
        whole = WHOLE_ORDER if total is None else WHOLE_STATED
    if total is None:
        total = sum(((ln["unit_price"] or Decimal(0)) * ln["quantity"] for ln in lines), Decimal(0))
    categorized = [ln for ln in lines if ln["category"]]
    return OrderFacts(
        order_id=o["order_id"],
        total=total,
        currency=o["currency"] or "XXX",
        payment_method=o["payment_method"],
        location_id=o["location_id"],
        categories=tuple([ln["category"] for ln in categorized]),
        skus=tuple([ln["sku"] for ln in lines]),
        in_store=t is _T_POS_SALE or fields["channel"] is _C_POS,
        quantities=tuple([ln["quantity"] for ln in categorized]),
        category_skus=tuple([ln["sku"] for ln in categorized]),
        loose=tuple([(ln["sku"], ln["quantity"]) for ln in lines if not ln["category"]])
        if len(categorized) < len(lines)
        else (),
        whole=whole,
    )


def observation(
    tp: Touchpoint, at: datetime | None = None, consent: EventConsent | None = None
) -> Observation:
    """``at`` (the event's time in UTC) and ``consent`` (its ``event_consent``): when the
    caller has them already (else computed)."""
    # Its fields from the model's instance dict, where pydantic keeps them: an attribute of a
    # pydantic model is read through ``BaseModel.__getattr__``'s hook (~0.1 µs more each on
    # CPython 3.11), a key of the dict is one C lookup
    fields = tp.__dict__
    traits: Mapping[str, str] = NO_STRINGS
    preferences: Mapping[str, str] = NO_STRINGS
    given = fields["traits"]
    if given is not None:
        traits = {}
        for name, value in given.model_dump(exclude_none=True).items():
            if name == "preferences":
                preferences = {k: _canonical_json(v) for k, v in dict(value).items() if k}
            elif isinstance(value, str | int | float | bool) and str(value):
                traits[name] = str(value)
    props = fields["properties"]
    t = fields["type"]
    kind = TYPE_VALUES[t]
    if at is None or at.tzinfo is not UTC:
        at = utc(fields["occurred_at"] if at is None else at)
    # a property counts only as a non-empty string
    sku, category = props.get("sku"), props.get("category")
    # ``Observation(...)`` in one C call: the event id is a validated ``Code`` (never empty)
    # and ``at`` is in UTC, what its constructor checks
    return new_tuple(
        Observation,
        (
            fields["event_id"],
            kind,
            _CHANNELS[fields["channel"]],
            at,
            event_consent(tp) if consent is None else consent,
            kind in EXPLICIT_TYPES,
            fields["region"],
            traits,
            preferences,
            sku if isinstance(sku, str) and sku else None,
            category if isinstance(category, str) and category else None,
            fields["name"] if t is _T_CUSTOM else None,
            _order(tp) if fields["order"] is not None else None,
        ),
    )
