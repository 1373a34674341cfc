"""The state store contract: versioned entities, one load and one atomic commit per batch.

Loom's concurrency model is optimistic. A batch of events is processed in three steps:

1. ``load``   one round trip reads every entity the batch can touch (identifier records, the
              profiles they point to, the records of every identifier those profiles hold,
              stock per SKU), which event ids were already processed and which identifier
              hashes are suppressed (erased people);
2. compute    pure code in ``resolvers`` decides everything on an in-memory copy;
3. ``commit`` one atomic call checks that every loaded entity still has the version it was
              loaded with, that no event id of the batch was processed and no identifier it
              relied on was erased meanwhile, then writes
              all changed entities, marks the event ids, and appends the outbox records. When a
              check fails nothing is written and the caller reloads and recomputes (a conflict).

So the idempotency check and the effects happen in the same atomic call, a redelivered event
changes nothing, and concurrent workers are serializable per batch.

Event ids are processed once per *scope*: each pipeline lane (``resolvers.pipeline``: the
profiles lane and the inventory lane, two Kafka consumer groups reading the same records) keeps
its own processed set, so one lane having processed an event never hides it from the other.

Entities are addressed by :class:`Ref` (kind + name), never by storage key; the storage layout
belongs to the implementation (``streams.redis_store`` documents the Redis one). This module is
pure: :class:`InMemoryStore` is the reference implementation the contract tests compare with.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


class Kind(enum.StrEnum):
    """What an entity is. The Redis layout gives each kind its own key namespace."""

    IDENTIFIER = "id"  # name = "type:value"; fields: p (profile id), s (record JSON)
    # name = profile id; fields: d (snapshot), s (state), i (held identifier keys, JSON)
    # or r (redirect)
    PROFILE = "profile"
    STOCK = "stock"  # name = sku; fields: d (snapshot), s (state)


@dataclass(frozen=True, slots=True, order=True)
class Ref:
    kind: Kind
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True, slots=True)
class Entity:
    """A stored entity: a version (0 = absent) and its fields (bytes)."""

    version: int
    fields: Mapping[str, bytes]

    @property
    def exists(self) -> bool:
        return self.version > 0


ABSENT = Entity(0, {})


#: The scope of event-id idempotency unless a request names another (the profiles lane's).
DEFAULT_SCOPE = "profiles"


@dataclass(frozen=True, slots=True)
class LoadRequest:
    # "type:value"; the profiles they point to load too, and the records of every identifier
    # those profiles hold (a merge re-points them)
    identifiers: Sequence[str] = ()
    profiles: Sequence[str] = ()  # profile ids to load directly (redirects followed)
    stocks: Sequence[str] = ()  # skus
    event_ids: Sequence[str] = ()  # which of these were processed already
    suppression_hashes: Sequence[str] = ()  # which of these are suppressed
    scope: str = DEFAULT_SCOPE  # the processed-event-id set ``event_ids`` are checked in


@dataclass(frozen=True, slots=True)
class Loaded:
    entities: Mapping[Ref, Entity]  # every requested ref, ABSENT when missing
    seen: frozenset[str]
    suppressed: frozenset[str]

    def get(self, ref: Ref) -> Entity:
        return self.entities.get(ref, ABSENT)


@dataclass(frozen=True, slots=True)
class Write:
    """Replace an entity whole with ``fields`` at ``version``; empty fields delete it."""

    ref: Ref
    version: int
    fields: Mapping[str, bytes]


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """A record to publish on Kafka after the commit (relayed from the outbox)."""

    topic: str
    key: bytes | None
    value: bytes | None  # None = tombstone


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """An entry for a Redis change stream that downstream services follow."""

    stream: str  # "profiles" | "inventory"
    fields: Mapping[str, bytes]


@dataclass(frozen=True, slots=True)
class Commit:
    expect: Mapping[Ref, int]  # ref -> version it was loaded with (0 = was absent)
    event_ids: Sequence[str]  # must all be unprocessed; marked processed by the commit
    writes: Sequence[Write] = ()
    blind_writes: Sequence[Write] = ()  # redirects: written without a version check
    suppress: Sequence[str] = ()  # hashes added to the suppression set
    # hashes the batch loaded as NOT suppressed: if an erasure suppressed one meanwhile, the
    # commit conflicts (else a batch loaded before the erasure could rebuild the person)
    unsuppressed: Sequence[str] = ()
    outbox: Sequence[OutboxRecord] = ()
    streams: Sequence[StreamEntry] = ()
    counters: Mapping[str, int] = field(default_factory=dict)  # stats hash increments
    scope: str = DEFAULT_SCOPE  # the processed-event-id set ``event_ids`` are checked and added in


class CommitStatus(enum.StrEnum):
    OK = "ok"
    CONFLICT = "conflict"  # an expected version changed: reload and recompute
    DUPLICATE = "duplicate"  # an event id was processed meanwhile: reload and recompute


@dataclass(frozen=True, slots=True)
class CommitResult:
    status: CommitStatus
    detail: str = ""  # the ref or event id that failed (no PII beyond the key)

    @property
    def ok(self) -> bool:
        return self.status is CommitStatus.OK


class StateStore(Protocol):
    """What the pipeline needs from storage. Implementations: memory and Redis."""

    def load(self, request: LoadRequest) -> Loaded: ...

    def commit(self, commit: Commit) -> CommitResult: ...


def identifier_ref(key: str) -> Ref:
    return Ref(Kind.IDENTIFIER, key)


def profile_ref(profile_id: str) -> Ref:
    return Ref(Kind.PROFILE, profile_id)


def stock_ref(sku: str) -> Ref:
    return Ref(Kind.STOCK, sku)


MAX_REDIRECT_HOPS = 8

#: Profile field listing (JSON) the identifier keys a profile holds: ``load`` returns their
#: records along with the profile, so a merge can re-point them without a second round trip.
HELD_FIELD = "i"

#: The fields ``load`` returns per kind: what compute needs. Snapshots (``d``) are for readers
#: and are never loaded, so both implementations return exactly these.
LOADED_FIELDS: Mapping[Kind, frozenset[str]] = {
    Kind.IDENTIFIER: frozenset({"p", "s"}),
    Kind.PROFILE: frozenset({"s", "r"}),
    Kind.STOCK: frozenset({"s"}),
}


def _loaded(ref: Ref, entity: Entity) -> Entity:
    if not entity.exists:
        return ABSENT
    wanted = LOADED_FIELDS[ref.kind]
    return Entity(entity.version, {k: v for k, v in entity.fields.items() if k in wanted})


class InMemoryStore:
    """The reference :class:`StateStore`: dicts, same semantics as the Redis store.

    Used by the pipeline tier of tests and as the oracle of the store contract tests.
    """

    def __init__(self) -> None:
        self.entities: dict[Ref, Entity] = {}
        self.seen: dict[str, set[str]] = {}  # scope -> processed event ids
        self.suppressed: set[str] = set()
        self.outbox: list[OutboxRecord] = []
        self.streams: dict[str, list[Mapping[str, bytes]]] = {}
        self.counters: dict[str, int] = {}

    def _resolve_profile(self, profile_id: str) -> str:
        for _ in range(MAX_REDIRECT_HOPS):
            target = self.entities.get(profile_ref(profile_id), ABSENT).fields.get("r")
            if target is None:
                return profile_id
            profile_id = target.decode()
        return profile_id

    def load(self, request: LoadRequest) -> Loaded:
        out: dict[Ref, Entity] = {}
        pids: list[str] = list(request.profiles)
        for key in request.identifiers:
            ref = identifier_ref(key)
            entity = _loaded(ref, self.entities.get(ref, ABSENT))
            out[ref] = entity
            target = entity.fields.get("p")
            if target is not None:
                pids.append(target.decode())
        for pid in pids:
            resolved = self._resolve_profile(pid)
            ref = profile_ref(resolved)
            stored = self.entities.get(ref, ABSENT)
            out[ref] = _loaded(ref, stored)
            # the identifiers a profile holds load too (a merge re-points them)
            for key in json.loads(stored.fields.get(HELD_FIELD, b"[]")):
                held = identifier_ref(key)
                if held not in out:
                    out[held] = _loaded(held, self.entities.get(held, ABSENT))
        for sku in request.stocks:
            ref = stock_ref(sku)
            out[ref] = _loaded(ref, self.entities.get(ref, ABSENT))
        return Loaded(
            entities=out,
            seen=frozenset(e for e in request.event_ids if e in self.seen.get(request.scope, ())),
            suppressed=frozenset(h for h in request.suppression_hashes if h in self.suppressed),
        )

    def commit(self, commit: Commit) -> CommitResult:
        for ref, version in commit.expect.items():
            if self.entities.get(ref, ABSENT).version != version:
                return CommitResult(CommitStatus.CONFLICT, str(ref))
        for digest in commit.unsuppressed:
            if digest in self.suppressed:
                return CommitResult(CommitStatus.CONFLICT, f"suppressed:{digest}")
        seen = self.seen.setdefault(commit.scope, set())
        for event_id in commit.event_ids:
            if event_id in seen:
                return CommitResult(CommitStatus.DUPLICATE, event_id)
        for write in _all_writes(commit.writes, commit.blind_writes):
            if write.fields:
                self.entities[write.ref] = Entity(write.version, dict(write.fields))
            else:
                self.entities.pop(write.ref, None)
        seen.update(commit.event_ids)
        self.suppressed.update(commit.suppress)
        self.outbox.extend(commit.outbox)
        for entry in commit.streams:
            self.streams.setdefault(entry.stream, []).append(entry.fields)
        for name, n in commit.counters.items():
            self.counters[name] = self.counters.get(name, 0) + n
        return CommitResult(CommitStatus.OK)


def _all_writes(*groups: Iterable[Write]) -> Iterable[Write]:
    for group in groups:
        yield from group
