"""What a lane's stages decide, as values: the commit codec (``resolvers.commit_codec``) turns
them into one atomic store commit, and the worker turns :class:`Count` values into metrics.

Stages never write, publish or count anywhere themselves; they return these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from resolvers.frozen import fast_init
from resolvers.identity.evidence import IdentifierRecord
from resolvers.inventory import SkuStock
from resolvers.lanes.stored_profile import StoredProfile
from schemas.identifiers import Identifier


class Measure(StrEnum):
    """What a :class:`Count` counts. The stats hash and the metrics are named after these."""

    PROFILES_CREATED = "profiles_created"
    MERGES = "merges"
    MERGES_BLOCKED = "merges_blocked"  # label: rule
    QUARANTINED = "quarantined"
    ERASURES = "erasures"
    SUPPRESSED_EVENTS = "suppressed_events"  # carried an erased person's identifier
    UNATTRIBUTED = "unattributed_events"  # carried only shared identifiers: nobody's
    CONSENT_DENIED = "consent_denied"  # labels: purpose, reason
    CONSENT_PURGED = "consent_purged"  # label: purpose
    OVERSOLD = "oversold"
    DLQ = "dlq"


class Count(NamedTuple):
    """One counter and its labels (enums and rule names, never identifiers)."""

    measure: Measure
    purpose: str | None = None
    reason: str | None = None
    rule: str | None = None

    def stat_name(self) -> str:
        """The field of the Redis stats hash (``merges_blocked:unique:customer_id``)."""
        parts = [self.measure.value, *(p for p in (self.purpose, self.reason, self.rule) if p)]
        return ":".join(parts)


@fast_init
@dataclass(frozen=True, slots=True)
class ProfileWritten:
    """A live profile's new state and snapshot (``version`` is the one it will have)."""

    profile: StoredProfile
    version: int
    snapshot: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ProfileRedirected:
    """``profile_id`` now lives on as ``into`` (merged, or its earliest events moved); the
    ids that redirected to it (``merged_from``) are re-pointed too."""

    profile_id: str
    into: str
    merged_from: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ProfileErased:
    """A profile that is gone: ``erased`` (an erasure) or ``dissolved`` (every identifier it
    had turned out to be shared, so none of its events is anybody's)."""

    profile_id: str
    merged_from: tuple[str, ...] = ()
    reason: str = "erased"


@fast_init
@dataclass(frozen=True, slots=True)
class IdentifierWritten:
    """An identifier record's new content; ``record`` None deletes it (erased)."""

    identifier: Identifier
    record: IdentifierRecord | None


@dataclass(frozen=True, slots=True)
class Suppressed:
    """An erased identifier's salted hash and what is kept of it (tombstone JSON)."""

    digest: str
    tombstone: bytes


@dataclass(frozen=True, slots=True)
class AudiencesChanged:
    """A profile entered and left audiences (``resolvers.audiences``), decided at ``at``: the
    member sets change and one record per change goes to ``topic`` (keyed by profile id)."""

    profile_id: str
    entered: tuple[str, ...]
    exited: tuple[str, ...]
    at: datetime
    topic: str
    version: int | None = None  # the snapshot version it was decided on (None: it is gone)


@dataclass(frozen=True, slots=True)
class StockWritten:
    sku: str
    stock: SkuStock


@fast_init
@dataclass(frozen=True, slots=True)
class Published:
    """A record for a Kafka topic (through the outbox); ``value`` None is a tombstone."""

    topic: str
    key: str | None
    value: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class Streamed:
    """An entry of a Redis change stream (``profiles`` or ``inventory``)."""

    stream: str
    fields: Mapping[str, str]


Effect = (
    ProfileWritten
    | ProfileRedirected
    | ProfileErased
    | IdentifierWritten
    | Suppressed
    | StockWritten
    | Published
    | Streamed
    | AudiencesChanged
)
