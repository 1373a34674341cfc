"""What a batch needs besides its records: rules, policy, topic names, salt, clock."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from resolvers import inventory
from resolvers.audiences import NO_AUDIENCES, Audiences
from resolvers.consent import ConsentPolicy
from resolvers.decode_cache import DecodeCache
from resolvers.identity.rules import IdentityRules
from schemas.identifiers import Identifier


@dataclass(frozen=True, slots=True)
class TopicNames:
    merges: str = "identity.merges"
    profile_changes: str = "profiles.changes"
    erasures: str = "privacy.erasures"
    consent_audit: str = "consent.audit"
    inventory_changes: str = "inventory.changes"
    inventory_alerts: str = "inventory.alerts"
    audience_changes: str = "audiences.changes"


@dataclass(frozen=True, slots=True)
class Context:
    """Everything a batch needs besides its records; built once by the worker."""

    rules: IdentityRules
    policy: ConsentPolicy
    topics: TopicNames
    salt: bytes
    now: datetime  # stamps audit records; the clock time-dependent audiences are decided at
    ledger: inventory.LedgerPolicy = inventory.DEFAULT_POLICY
    default_region: str | None = None  # for phone numbers of events without a region
    cache: DecodeCache | None = None  # decoded entities shared across a worker's batches
    audiences: Audiences = NO_AUDIENCES  # membership is evaluated on every profile write
    #: category -> median repurchase interval (days) across customers (the scheduled pass)
    medians: Mapping[str, float] = field(default_factory=dict)


def suppression_hash(identifier: Identifier, salt: bytes) -> str:
    """Salted SHA-256 of ``type:value``: what erasure keeps instead of the identifier."""
    id_type, value = identifier  # ``identifier.key``, inline
    return hashlib.sha256(salt + f"{id_type}:{value}".encode()).hexdigest()


def hashed(identifiers: Iterable[Identifier], salt: bytes) -> list[str]:
    """Short salted hashes, for audit records that must not carry raw identifiers."""
    return [suppression_hash(i, salt)[:16] for i in identifiers]
