"""The working state of one batch: decoded from a store load, folded over, turned into a commit.

:meth:`BatchState.from_loaded` decodes the entities a :class:`~resolvers.store.Loaded` holds;
the stages mutate only this batch-local copy (never shared across batches); and
:meth:`BatchState.to_commit` turns what changed into one :class:`~resolvers.store.Commit` that
expects every loaded version to be unchanged. If the commit conflicts, the batch is recomputed
from a fresh load, so nothing here needs undoing.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from resolvers import consent as consent_policy
from resolvers import identity, inventory, profile
from resolvers.decode_cache import DecodeCache
from resolvers.identity import ProfileIdentity
from resolvers.identity_rules import IdentityRules
from resolvers.store import (
    DEFAULT_SCOPE,
    HELD_FIELD,
    Commit,
    Kind,
    Loaded,
    OutboxRecord,
    Ref,
    StreamEntry,
    Write,
    identifier_ref,
    profile_ref,
    stock_ref,
)
from schemas.identifiers import Identifier

STATE_FORMAT = 1


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


@dataclass(frozen=True, slots=True)
class TopicNames:
    merges: str = "identity.merges"
    profile_changes: str = "profiles.changes"
    erasures: str = "privacy.erasures"
    consent_audit: str = "consent.audit"
    inventory_changes: str = "inventory.changes"
    inventory_alerts: str = "inventory.alerts"


@dataclass(frozen=True, slots=True)
class Context:
    """Everything a batch needs besides its records; built once by the worker."""

    rules: IdentityRules
    policy: consent_policy.ConsentPolicy
    topics: TopicNames
    salt: bytes
    now: datetime
    ledger: inventory.LedgerPolicy = inventory.DEFAULT_POLICY
    default_region: str | None = None  # for phone numbers of events without a region
    cache: DecodeCache | None = None  # decoded entities shared across a worker's batches


def _decode_identifier(raw: bytes) -> identity.IdentifierRecord:
    return identity.IdentifierRecord.from_dict(orjson.loads(raw))


def _decode_profile(
    raw: bytes,
) -> tuple[
    ProfileIdentity,
    profile.ProfileAggregate,
    consent_policy.ConsentState,
    str | None,
    datetime | None,
]:
    state = orjson.loads(raw)
    region_at = state.get("region_at")
    return (
        ProfileIdentity.from_dict(state["identity"]),
        profile.ProfileAggregate.from_dict(state["aggregate"]),
        consent_policy.ConsentState.from_dict(state["consent"]),
        state.get("region"),
        datetime.fromisoformat(region_at) if region_at else None,
    )


def _decode_stock(raw: bytes) -> inventory.SkuStock:
    return inventory.SkuStock.from_dict(orjson.loads(raw))


def profile_id_for(event_id: str, n: int) -> str:
    """Deterministic id of the ``n``-th profile an event creates: replays rebuild the same ids."""
    digest = hashlib.blake2b(f"{event_id}\x00{n}".encode(), digest_size=12).hexdigest()
    return f"p_{digest}"


@dataclass
class ProfileData:
    """The non-identity parts of a stored profile.

    ``region`` is the latest region its events carried (by event time): the jurisdiction whose
    defaults apply to purposes the person never chose explicitly.
    """

    aggregate: profile.ProfileAggregate
    consent: consent_policy.ConsentState
    region: str | None = None
    region_at: datetime | None = None

    def observe_region(self, region: str | None, at: datetime) -> None:
        if region and (self.region_at is None or at >= self.region_at):
            self.region, self.region_at = region, at

    def merged_with(self, other: ProfileData) -> ProfileData:
        merged = ProfileData(
            profile.merge(self.aggregate, other.aggregate),
            consent_policy.merge_states(self.consent, other.consent),
            self.region,
            self.region_at,
        )
        if other.region_at is not None:
            merged.observe_region(other.region, other.region_at)
        return merged

    def effective_consent(
        self, policy: consent_policy.ConsentPolicy
    ) -> dict[str, dict[str, object]]:
        """Recorded choices, plus the region's defaults for purposes never chosen."""
        out = self.consent.summary()
        granted = policy.default_for(self.region)
        for purpose in consent_policy.CONSENT_PURPOSES:
            out.setdefault(
                purpose.value,
                {"granted": purpose in granted, "at": None, "source": "default"},
            )
        return out


@dataclass
class BatchState:
    ctx: Context
    versions: dict[Ref, int]
    identity: identity.InMemoryIdentityState
    profiles: dict[str, ProfileData]
    stocks: dict[str, inventory.SkuStock]
    seen: set[str]
    suppressed: set[str]
    processed: list[str] = field(default_factory=list)
    dirty_profiles: set[str] = field(default_factory=set)
    dirty_stocks: set[str] = field(default_factory=set)
    erased: dict[str, ProfileIdentity] = field(default_factory=dict)
    new_suppressions: list[str] = field(default_factory=list)
    relied_unsuppressed: set[str] = field(default_factory=set)
    outbox: list[OutboxRecord] = field(default_factory=list)
    streams: list[StreamEntry] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)

    # ------------------------------------------------------------------ load
    @classmethod
    def from_loaded(cls, loaded: Loaded, ctx: Context) -> BatchState:
        versions: dict[Ref, int] = {}
        id_records: dict[Identifier, identity.IdentifierRecord] = {}
        identities: dict[str, ProfileIdentity] = {}
        profiles: dict[str, ProfileData] = {}
        stocks: dict[str, inventory.SkuStock] = {}
        cache = ctx.cache or DecodeCache(max_bytes=0)

        for ref, entity in loaded.entities.items():
            versions[ref] = entity.version
            if not entity.exists:
                continue
            if ref.kind is Kind.IDENTIFIER:
                id_type, _, value = ref.name.partition(":")
                id_records[Identifier(id_type, value)] = cache.get(
                    ref, entity.fields["s"], _decode_identifier
                )
            elif ref.kind is Kind.PROFILE and "s" in entity.fields:
                ident, aggregate, consent, region, region_at = cache.get(
                    ref, entity.fields["s"], _decode_profile
                )
                identities[ref.name] = ident
                profiles[ref.name] = ProfileData(aggregate, consent, region, region_at)
            elif ref.kind is Kind.STOCK:
                stocks[ref.name] = cache.get(ref, entity.fields["s"], _decode_stock)
        return cls(
            ctx=ctx,
            versions=versions,
            identity=identity.InMemoryIdentityState.from_records(id_records, identities),
            profiles=profiles,
            stocks=stocks,
            seen=set(loaded.seen),
            suppressed=set(loaded.suppressed),
        )

    # ------------------------------------------------------------------ helpers for stages
    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def publish(self, topic: str, key: str | None, value: Mapping[str, Any] | None) -> None:
        self.publish_bytes(topic, key, _dumps(value) if value is not None else None)

    def publish_bytes(self, topic: str, key: str | None, value: bytes | None) -> None:
        """:meth:`publish` for a value already serialized (JSON bytes; None = tombstone)."""
        self.outbox.append(OutboxRecord(topic, key.encode() if key is not None else None, value))

    def profile_data(self, profile_id: str) -> ProfileData:
        data = self.profiles.get(profile_id)
        if data is None:
            data = ProfileData(profile.ProfileAggregate(), consent_policy.ConsentState())
            self.profiles[profile_id] = data
        return data

    def touch_profile(self, profile_id: str) -> None:
        self.dirty_profiles.add(profile_id)

    def apply_movement(self, movement: inventory.Movement) -> None:
        stock = self.stocks.get(movement.sku) or inventory.SkuStock.empty(movement.sku)
        new_stock, effects = inventory.apply(stock, movement, self.ctx.ledger)
        if new_stock is stock:
            return
        self.stocks[movement.sku] = new_stock
        self.dirty_stocks.add(movement.sku)
        for effect in effects:
            if isinstance(effect, inventory.StockChanged):
                self.publish(
                    self.ctx.topics.inventory_changes,
                    f"{effect.sku}@{effect.location_id}",
                    {
                        "sku": effect.sku,
                        "location_id": effect.location_id,
                        "on_hand": effect.on_hand,
                        "committed": effect.committed,
                        "available": effect.available,
                        "available_to_sell": effect.available_to_sell,
                        "event_id": effect.event_id,
                        "kind": effect.kind.value,
                        "occurred_at": effect.occurred_at.isoformat(),
                    },
                )
                self.streams.append(
                    StreamEntry(
                        "inventory",
                        {
                            "sku": effect.sku.encode(),
                            "location": effect.location_id.encode(),
                            "available": str(effect.available_to_sell).encode(),
                        },
                    )
                )
            else:
                self.count("oversold")
                self.publish(
                    self.ctx.topics.inventory_alerts,
                    f"{effect.sku}@{effect.location_id}",
                    {
                        "alert": "oversold",
                        "sku": effect.sku,
                        "location_id": effect.location_id,
                        "available": effect.available,
                        "event_id": effect.event_id,
                        "occurred_at": effect.occurred_at.isoformat(),
                    },
                )

    def erase_profile(self, profile_id: str) -> ProfileIdentity | None:
        """Forget a profile: its identifiers are unlinked and their hashes suppressed."""
        try:
            ident = self.identity.profile(profile_id)
        except KeyError:
            return None
        self.erased[profile_id] = ident
        for identifier in ident.all_identifiers():
            self.identity.put_identifier(identifier, identity.EMPTY_RECORD)
            self.suppress(identifier)
        self.profiles.pop(profile_id, None)
        self.dirty_profiles.discard(profile_id)
        return ident

    def suppress(self, identifier: Identifier) -> None:
        digest = suppression_hash(identifier, self.ctx.salt)
        if digest not in self.suppressed:
            self.suppressed.add(digest)
            self.new_suppressions.append(digest)

    # ------------------------------------------------------------------ commit
    def _next(self, ref: Ref) -> int:
        return self.versions.get(ref, 0) + 1

    def to_commit(self, *, scope: str = DEFAULT_SCOPE) -> Commit:
        writes: list[Write] = []
        blind: list[Write] = []
        idstate = self.identity
        for ident in sorted(idstate.dirty_identifiers):
            ref = identifier_ref(ident.key)
            record = idstate.identifier(ident)
            if record.is_empty:
                writes.append(Write(ref, self._next(ref), {}))
                continue
            fields = {"s": _dumps(record.to_dict())}
            if record.profile_id is not None:
                fields["p"] = record.profile_id.encode()
            writes.append(Write(ref, self._next(ref), fields))

        live = (idstate.dirty_profiles | self.dirty_profiles) - set(self.erased)
        live -= idstate.removed_profiles
        for pid in sorted(live):
            writes.append(self._profile_write(pid))

        for absorbed in sorted(idstate.removed_profiles - set(self.erased)):
            survivor = idstate.redirects[absorbed]
            ref = profile_ref(absorbed)
            writes.append(Write(ref, self._next(ref), {"r": survivor.encode()}))
            self.publish(
                self.ctx.topics.profile_changes,
                absorbed,
                {"profile_id": absorbed, "merged_into": survivor},
            )
            self.streams.append(
                StreamEntry(
                    "profiles",
                    {"id": absorbed.encode(), "op": b"merged", "into": survivor.encode()},
                )
            )
        for old, survivor in sorted(idstate.redirects.items()):
            if old not in idstate.removed_profiles:  # compaction of older redirects
                blind.append(Write(profile_ref(old), 1, {"r": survivor.encode()}))

        for pid, gone in sorted(self.erased.items()):
            ref = profile_ref(pid)
            writes.append(Write(ref, self._next(ref), {}))
            blind.extend(Write(profile_ref(old), 1, {}) for old in gone.merged_from)
            self.publish(self.ctx.topics.profile_changes, pid, None)
            self.streams.append(StreamEntry("profiles", {"id": pid.encode(), "op": b"erased"}))

        for sku in sorted(self.dirty_stocks):
            stock = self.stocks[sku]
            ref = stock_ref(sku)
            version = self._next(ref)
            snap = inventory.snapshot(stock)
            snap["version"] = version
            writes.append(Write(ref, version, {"d": _dumps(snap), "s": _dumps(stock.to_dict())}))

        return Commit(
            expect=dict(self.versions),
            event_ids=tuple(self.processed),
            writes=writes,
            blind_writes=blind,
            suppress=tuple(self.new_suppressions),
            unsuppressed=tuple(sorted(self.relied_unsuppressed - set(self.new_suppressions))),
            outbox=tuple(self.outbox),
            streams=tuple(self.streams),
            counters=dict(self.counters),
            scope=scope,
        )

    def _profile_write(self, pid: str) -> Write:
        ref = profile_ref(pid)
        version = self._next(ref)
        ident = self.identity.profile(pid)
        data = self.profile_data(pid)
        consent = data.effective_consent(self.ctx.policy)
        # Never keep what is not allowed now: a purpose can become denied without a revocation
        # (the profile's region moved to an opt-in jurisdiction, or it merged with one).
        for purpose, entry in consent.items():
            if entry.get("granted") is not True:
                data.aggregate = profile.purge(data.aggregate, purpose)
        snap = profile.snapshot(
            data.aggregate,
            profile_id=pid,
            identifiers={t: list(vs) for t, vs in ident.identifiers.items()},
            consent=consent,
            merged_from=list(ident.merged_from),
            version=version,
        )
        snap["created_at"] = inventory.format_time(ident.created_at)
        snap["region"] = data.region
        state = {
            "format": STATE_FORMAT,
            "identity": ident.to_dict(),
            "aggregate": data.aggregate.to_dict(),
            "consent": data.consent.to_dict(),
            "region": data.region,
            "region_at": data.region_at.isoformat() if data.region_at else None,
        }
        doc = _dumps(snap)  # one encoding for both the outbox and the stored snapshot
        self.publish_bytes(self.ctx.topics.profile_changes, pid, doc)
        self.streams.append(
            StreamEntry(
                "profiles", {"id": pid.encode(), "op": b"upsert", "version": str(version).encode()}
            )
        )
        held = _dumps([i.key for i in ident.all_identifiers()])
        return Write(ref, version, {"d": doc, "s": _dumps(state), HELD_FIELD: held})


def suppression_hash(identifier: Identifier, salt: bytes) -> str:
    """Salted SHA-256 of ``type:value``: what erasure keeps instead of the identifier."""
    return hashlib.sha256(salt + identifier.key.encode()).hexdigest()


def hashed(identifiers: Iterable[Identifier], salt: bytes) -> list[str]:
    """Short salted hashes, for audit records that must not carry raw identifiers."""
    return [suppression_hash(i, salt)[:16] for i in identifiers]
