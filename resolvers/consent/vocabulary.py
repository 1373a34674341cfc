"""The words of consent: purposes, sources, decisions, reasons, and what each purpose gates."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final


class Purpose(StrEnum):
    """What a piece of profile data may be used for. ``necessary`` is always granted."""

    NECESSARY = "necessary"
    ANALYTICS = "analytics"
    PERSONALIZATION = "personalization"
    MARKETING = "marketing"
    ADS = "ads"


#: Purposes that carry state (``necessary`` never does: it is always granted).
CONSENT_PURPOSES: Final[tuple[Purpose, ...]] = (
    Purpose.ANALYTICS,
    Purpose.PERSONALIZATION,
    Purpose.MARKETING,
    Purpose.ADS,
)


class Source(StrEnum):
    """Where a consent statement came from."""

    EVENT = "event"  # the ``consent`` map of an ordinary event (CMP state at event time)
    CONSENT_UPDATED = "consent_updated"  # the ``consent`` map of an explicit consent event
    GPC = "gpc"  # Global Privacy Control flag: denies ``ads``
    DEFAULT = "default"  # jurisdiction default (never stored)
    SEGMENT = "segment"
    GCM = "gcm"
    TCF = "tcf"
    INVALID = "invalid"  # the event carried an unreadable signal


class Decision(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    PURGE = "purge"  # the person revoked a purpose they had granted: its data goes


class Reason(StrEnum):
    """Why a purpose is allowed or denied for an event (audit records, metrics)."""

    ALWAYS = "always"  # necessary
    GRANTED = "granted"  # granted at the event's time and still granted
    REGION_DEFAULT = "region_default"  # allowed or denied by the jurisdiction default
    NO_CONSENT = "no_consent"  # a denial was in force at the event's time
    LATE_GRANT = "late_grant"  # denied at the event's time, granted only later
    REVOKED = "revoked"  # denied after the event (revocation wins for good)
    GPC = "gpc"  # Global Privacy Control
    HISTORY_TRUNCATED = "history_truncated"  # older than the kept consent history
    INVALID_SIGNAL = "invalid_signal"  # the event carried an unreadable consent signal


#: Countries of the European Economic Area (EU 27 + Iceland, Liechtenstein, Norway).
EEA_REGIONS: Final[frozenset[str]] = frozenset(
    {
        *("AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU"),
        *("IE", "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES"),
        *("SE", "IS", "LI", "NO"),
    }
)

#: Snapshot fields each purpose gates. A field not listed here (identifiers, traits needed to
#: serve the customer, the consent state itself, merged-from ids, version) is kept regardless.
PURPOSE_GATES: Final[Mapping[Purpose, frozenset[str]]] = MappingProxyType(
    {
        Purpose.ANALYTICS: frozenset(
            {
                "first_seen",
                "last_seen",
                "channels",
                "shopping_mode",
                "orders_online",
                "orders_in_store",
                "revenue",
                "average_order_value",
                "last_order",
                "preferred_payment_method",
                "preferred_store",
                "returns",
                "lifetime_value",
                "category_purchases",
                "preferred_channel",
            }
        ),
        Purpose.PERSONALIZATION: frozenset(
            {"category_affinities", "recent_activity", "preferences"}
        ),
        # ``audiences`` is not gated as a whole: membership of a ``marketing`` audience needs
        # marketing (``resolvers.audiences``), others see only the fields their purposes allow
        Purpose.MARKETING: frozenset({"reachable"}),
        Purpose.ADS: frozenset({"ad_identifiers"}),
    }
)


def gated_fields(purposes: Iterable[Purpose]) -> frozenset[str]:
    """The snapshot fields gated by any of ``purposes`` (e.g. the denied ones)."""
    out: set[str] = set()
    for purpose in purposes:
        out |= PURPOSE_GATES.get(purpose, frozenset())
    return frozenset(out)
