"""Builders and hypothesis strategies shared by the consent unit tests.

A *world* is a person's events as consent sees them: per event its time, its own statements
(folded by :func:`resolvers.consent.statements` from a raw consent map, GPC flag and an
optional unreadable signal) and whether it is an explicit consent moment. The person's
history is the merge of the per-event histories; tests compare it with what the raw
statements say directly (the ground truth), never with the code under test.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from resolvers.consent import (
    CONSENT_PURPOSES,
    EMPTY_HISTORY,
    MAX_EXPLICIT_GRANTS,
    ConsentHistory,
    ConsentPolicy,
    ConsentRecord,
    EventConsent,
    Purpose,
    Source,
    Statement,
    from_event,
    statements,
)

A, P, M, D, N = (
    Purpose.ANALYTICS,
    Purpose.PERSONALIZATION,
    Purpose.MARKETING,
    Purpose.ADS,
    Purpose.NECESSARY,
)
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
POLICY = ConsentPolicy()
REGIONS = ("DE", "GB", "NO", "US", "BR", None)


def t(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def said(source: Source = Source.EVENT, *, invalid: bool = False, **purposes: bool) -> EventConsent:
    """An event's own statements, e.g. ``said(analytics=True, ads=False)``."""
    return EventConsent({Purpose(k): Statement(v, source) for k, v in purposes.items()}, invalid)


@dataclass(frozen=True)
class Said:
    """One event of the world: when, what it stated, whether it was an explicit choice."""

    at: datetime
    consent: EventConsent
    explicit: bool = False
    region: str | None = None

    def history(self, bound: int = MAX_EXPLICIT_GRANTS) -> ConsentHistory:
        return from_event(self.consent, self.at, explicit=self.explicit, bound=bound)

    def records(self, purpose: Purpose) -> list[ConsentRecord]:
        stated = self.consent.stated(purpose)
        return [] if stated is None else [ConsentRecord(stated.granted, self.at, stated.source)]


def history_of(events: Iterable[Said], bound: int = MAX_EXPLICIT_GRANTS) -> ConsentHistory:
    out = EMPTY_HISTORY
    for event in events:
        out = out.merged(event.history(bound), bound)
    return out


def tc_string(purposes: set[int]) -> str:
    """A TCF v2 core segment with the given purpose consents (all else fixed, no vendors)."""
    bits = (
        "000010"  # version 2
        + "0" * 72  # created, last updated
        + "0" * 24  # CMP id and version
        + "0" * 6  # consent screen
        + "000100001110"  # language "EO"
        + "0" * 12  # vendor list version
        + "000100"  # TCF policy version 4 (v2.2)
        + "00"  # service specific, non-standard texts
        + "0" * 12  # special features
        + "".join("1" if i in purposes else "0" for i in range(1, 25))
        + "0" * 24  # LI transparency
        + "0"  # purpose one treatment
        + "001101001110"  # publisher country "NO"
        + "0" * 17  # MaxVendorId 0, bitfield
    )
    bits += "0" * (-len(bits) % 8)
    raw = int(bits, 2).to_bytes(len(bits) // 8, "big")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# --------------------------------------------------------------------------- ground truth


def all_records(events: Iterable[Said], purpose: Purpose) -> list[ConsentRecord]:
    return [r for e in events for r in e.records(purpose)]


def denials(events: Iterable[Said], purpose: Purpose) -> list[ConsentRecord]:
    return [r for r in all_records(events, purpose) if not r.granted]


def explicit_grants(events: Iterable[Said], purpose: Purpose) -> list[ConsentRecord]:
    return [r for e in events if e.explicit for r in e.records(purpose) if r.granted]


def latest(records: Sequence[ConsentRecord]) -> ConsentRecord | None:
    return max(records, key=lambda r: r.key, default=None)


# --------------------------------------------------------------------------- strategies

#: Raw values of a consent map: mostly booleans, now and then an unreadable one.
_RAW_MAPS = st.dictionaries(
    st.sampled_from([p.value for p in CONSENT_PURPOSES]),
    st.sampled_from([True, True, True, False, False, False, "yes"]),
)
_GPC = st.sampled_from([False, False, False, True])
_MICROS = st.sampled_from([0, 0, 1, 250_000])
_REGION = st.sampled_from(REGIONS)


@st.composite
def _event_consents(draw: st.DrawFn, explicit: bool) -> EventConsent:
    raw = draw(_RAW_MAPS)
    return statements(raw or None, draw(_GPC), None, explicit=explicit)


#: What one event states, folded the way the pipeline folds it.
EVENT_CONSENTS = {explicit: _event_consents(explicit) for explicit in (False, True)}


@st.composite
def _said(draw: st.DrawFn, minutes: st.SearchStrategy[int], regions: bool) -> Said:
    explicit = draw(st.booleans())
    at = t(draw(minutes)) + timedelta(microseconds=draw(_MICROS))
    region = draw(_REGION) if regions else None
    return Said(at, draw(EVENT_CONSENTS[explicit]), explicit, region)


@functools.cache
def said_events(*, minutes: int = 12, regions: bool = False) -> st.SearchStrategy[Said]:
    """One event; times in a small range so that equal times are common."""
    return _said(st.integers(0, minutes), regions)


@functools.cache
def worlds(
    max_size: int = 14, *, minutes: int = 12, regions: bool = False
) -> st.SearchStrategy[list[Said]]:
    return st.lists(said_events(minutes=minutes, regions=regions), max_size=max_size)
