"""The state store contract: versioned entities, one load and one atomic commit per batch.

Loom's concurrency model is optimistic. A batch of events is processed in three steps:

1. ``load``   one round trip reads every entity the batch can touch: identifier records and,
              breadth first, the profiles they link to or that hold atoms carrying them
              (following redirects), the records of every identifier those profiles hold,
              and so on, up to ``max_profiles`` profiles (the evidence of identity); stock per
              SKU; which event ids were already processed; the tombstones of the identifier
              hashes that are suppressed (erased people);
2. compute    pure code in ``resolvers`` decides everything on an in-memory copy;
3. ``commit`` one atomic call checks that every loaded entity still has the version it was
              loaded with, that no event id of the batch was processed and no identifier it
              relied on was erased meanwhile, then writes
              all changed entities, marks the event ids, and appends the outbox records. When a
              check fails nothing is written and the caller reloads and recomputes (a conflict).

So the idempotency check and the effects happen in the same atomic call, a redelivered event
changes nothing, and concurrent workers are serializable per batch.

A batch may commit as several independent *parts* in that one call (``commit_parts``; ADR
0011): parts touch disjoint entities and event ids, each is checked and applied on its own, and
only a part that failed its checks is reloaded and recomputed. ``commit`` is the one-part case.

Event ids are processed once per *scope*: each pipeline lane (``resolvers.pipeline``: the
profiles lane and the inventory lane, two Kafka consumer groups reading the same records) keeps
its own processed set, so one lane having processed an event never hides it from the other.

Entities are addressed by :class:`Ref` (kind + name), never by storage key; the storage layout
belongs to the implementation (``streams.redis_store`` documents the Redis one). This module is
pure: :class:`InMemoryStore` is the reference implementation the contract tests compare with.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, NamedTuple, Protocol

import orjson

from resolvers.frozen import fast_init
from resolvers.tuples import new_tuple


class Kind(enum.StrEnum):
    """What an entity is. The Redis layout gives each kind its own key namespace."""

    # name = "type:value"; fields: p (profile id), h (holder profile ids, JSON), s (record JSON)
    IDENTIFIER = "id"
    # name = profile id; fields: d (snapshot), s (state), i (held identifier keys, JSON)
    # or r (redirect)
    PROFILE = "profile"
    STOCK = "stock"  # name = sku; fields: d (snapshot), s (state)


class Ref(NamedTuple):
    """An entity's address. A named tuple, not a dataclass: refs are dict keys and set
    members on every hot path (loads, parts, commits), and a tuple's hash and equality run in
    C where a dataclass's generated ``__hash__``/``__eq__`` are Python calls (~17 hashes per
    event in the profiles lane). Ordered by (kind, name), as the dataclass was."""

    kind: Kind
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


@fast_init
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


#: Profiles one load visits at most (the evidence of one person is usually 1-3 profiles; the
#: walk follows 32 holders of a shared identifier, ``HOLDERS_WALKED``).
MAX_LOAD_PROFILES = 256

#: Holders of one identifier record the walk follows: the first ones of its ``h`` list (sorted).
#: A record keeps up to 256 (``IdentifierRecord.with_holders``, ``HOLDERS_KEPT``); the
#: profiles lane asks for the others only when an erasure absorbs the identifier
#: (``LaneOutcome.need``). ``load.lua`` and ``streams.wave_load`` follow as many
#: (``MAX_HOLDERS`` there).
HOLDERS_WALKED: Final = 32


@dataclass(frozen=True, slots=True)
class LoadRequest:
    # "type:value": their records load, and breadth first the profiles they lead to (field p,
    # the first ``HOLDERS_WALKED`` holders h; redirects followed) and the records of the
    # identifiers those profiles hold
    identifiers: Sequence[str] = ()
    profiles: Sequence[str] = ()  # profile ids to walk from, like the identifiers' ones
    # profile ids whose version alone is read (redirect target kept, nothing followed, not
    # counted in max_profiles): ids a batch may give a new person
    versions: Sequence[str] = ()
    stocks: Sequence[str] = ()  # skus
    event_ids: Sequence[str] = ()  # which of these were processed already
    suppression_hashes: Sequence[str] = ()  # which of these are suppressed
    scope: str = DEFAULT_SCOPE  # the processed-event-id set ``event_ids`` are checked in
    max_profiles: int = MAX_LOAD_PROFILES


@dataclass(frozen=True, slots=True)
class Loaded:
    entities: Mapping[Ref, Entity]  # every visited ref, ABSENT when missing
    seen: frozenset[str]
    suppressed: Mapping[str, bytes]  # hash -> tombstone (JSON) of the suppressed ones
    truncated: bool = False  # the walk stopped at max_profiles

    def get(self, ref: Ref) -> Entity:
        return self.entities.get(ref, ABSENT)


@fast_init
@dataclass(frozen=True, slots=True)
class Write:
    """Replace an entity whole with ``fields`` at ``version``; empty fields delete it."""

    ref: Ref
    version: int
    fields: Mapping[str, bytes]


@fast_init
@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """A record to publish on Kafka after the commit (relayed from the outbox).

    ``snapshot_version``: set on a profile's snapshot record, whose value is also what the same
    commit stores as the profile's ``d`` at that version. A Redis outbox then holds a reference
    to the stored snapshot instead of a second copy of it (ADR 0033; ``streams.outbox``). It is
    how the record is carried, not part of its value: records compare without it."""

    topic: str
    key: bytes | None
    value: bytes | None  # None = tombstone
    snapshot_version: int | None = field(default=None, compare=False)


@fast_init
@dataclass(frozen=True, slots=True)
class StreamEntry:
    """An entry for a Redis change stream that downstream services follow."""

    stream: str  # "profiles" | "inventory"
    fields: Mapping[str, bytes]


@dataclass(frozen=True, slots=True)
class MembershipChange:
    """A profile entering (``member``) or leaving an audience's member set."""

    audience: str
    profile_id: str
    member: bool


@dataclass(frozen=True, slots=True)
class Commit:
    expect: Mapping[Ref, int]  # ref -> version it was loaded with (0 = was absent)
    event_ids: Sequence[str]  # must all be unprocessed; marked processed by the commit
    writes: Sequence[Write] = ()
    blind_writes: Sequence[Write] = ()  # redirects: written without a version check
    suppress: Mapping[str, bytes] = field(default_factory=dict)  # hash -> tombstone (JSON)
    # hashes the batch loaded as NOT suppressed: if an erasure suppressed one meanwhile, the
    # commit conflicts (else a batch loaded before the erasure could rebuild the person)
    unsuppressed: Sequence[str] = ()
    outbox: Sequence[OutboxRecord] = ()
    streams: Sequence[StreamEntry] = ()
    counters: Mapping[str, int] = field(default_factory=dict)  # stats hash increments
    memberships: Sequence[MembershipChange] = ()  # audience member sets (resolvers.audiences)
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

    def commit_parts(self, parts: Sequence[Commit]) -> list[CommitResult]:
        """One atomic call over independent commits (disjoint entities and event ids): each
        part whose checks pass is applied, in order; a part that fails writes nothing. One
        result per part."""
        ...


# Enum members read per event, bound once (prefix: K_ kind): on CPython
# 3.11 a member read off its class costs ~0.1 µs (its metaclass's attribute hook), a
# constant ~0.01 (ADR 0019).
_K_IDENTIFIER: Final = Kind.IDENTIFIER
_K_PROFILE: Final = Kind.PROFILE
_K_STOCK: Final = Kind.STOCK


# ``Ref(kind, name)`` each, in one C call (``resolvers.tuples``): a named tuple's ``__new__`` is
# a Python function, and refs are built several times per event


def identifier_ref(key: str) -> Ref:
    return new_tuple(Ref, (_K_IDENTIFIER, key))


def profile_ref(profile_id: str) -> Ref:
    return new_tuple(Ref, (_K_PROFILE, profile_id))


def stock_ref(sku: str) -> Ref:
    return new_tuple(Ref, (_K_STOCK, sku))


MAX_REDIRECT_HOPS = 8  # readers follow at most this many redirects

#: Profile field listing (JSON) the identifier keys a profile's atoms carry: ``load`` returns
#: their records along with the profile (and follows them to other profiles).
HELD_FIELD = "i"
#: Identifier field listing (JSON) the profiles holding atoms that carry the identifier.
HOLDERS_FIELD = "h"

#: The fields ``load`` returns per kind: what compute needs. Snapshots (``d``) are for readers
#: and are never loaded, so both implementations return exactly these.
LOADED_FIELDS: Mapping[Kind, frozenset[str]] = {
    Kind.IDENTIFIER: frozenset({"p", HOLDERS_FIELD, "s"}),
    Kind.PROFILE: frozenset({"s", "r", HELD_FIELD}),
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
        self.suppressed: dict[str, bytes] = {}  # hash -> tombstone
        self.outbox: list[OutboxRecord] = []
        self.streams: dict[str, list[Mapping[str, bytes]]] = {}
        self.counters: dict[str, int] = {}
        self.audiences: dict[str, set[str]] = {}  # audience name -> member profile ids
        self.sequence = 0  # calls that wrote (Redis: the lane's commit sequence, one INCR each)

    def load(self, request: LoadRequest) -> Loaded:
        # the JSON fields read here were written by ``orjson.dumps``: read back with orjson
        # (the standard library's ``json.loads`` was ~2 % of a ``run_batch`` in process on
        # this store, a cost a worker on Redis never has: bench/README.md, ninth pass)
        out: dict[Ref, Entity] = {}
        ids: list[str] = list(request.identifiers)
        pids: list[str] = list(request.profiles)
        suppressed = {
            h: self.suppressed[h] for h in request.suppression_hashes if h in self.suppressed
        }
        for tombstone in suppressed.values():  # profiles holding atoms with its ghost
            pids.extend(orjson.loads(tombstone).get("h", ()))
        seen_ids: set[str] = set()
        seen_pids: set[str] = set()
        truncated = False
        while ids or pids:
            while ids:  # breadth first, in the order Lua walks (see lua/load.lua)
                key = ids.pop(0)
                if key in seen_ids:
                    continue
                seen_ids.add(key)
                ref = identifier_ref(key)
                entity = self.entities.get(ref, ABSENT)
                out[ref] = _loaded(ref, entity)
                if "p" in entity.fields:
                    pids.append(entity.fields["p"].decode())
                holders = orjson.loads(entity.fields.get(HOLDERS_FIELD, b"[]"))
                pids.extend(holders[:HOLDERS_WALKED])
            while pids:
                pid = pids.pop(0)
                if pid in seen_pids:
                    continue
                if len(seen_pids) >= request.max_profiles:
                    truncated = True
                    pids.clear()
                    break
                seen_pids.add(pid)
                ref = profile_ref(pid)
                entity = self.entities.get(ref, ABSENT)
                out[ref] = _loaded(ref, entity)
                if "r" in entity.fields:
                    pids.append(entity.fields["r"].decode())
                else:
                    ids.extend(orjson.loads(entity.fields.get(HELD_FIELD, b"[]")))
        for pid in request.versions:
            ref = profile_ref(pid)
            if ref not in out:
                entity = self.entities.get(ref, ABSENT)
                version_only = {k: v for k, v in entity.fields.items() if k == "r"}
                out[ref] = Entity(entity.version, version_only) if entity.exists else ABSENT
        for sku in request.stocks:
            ref = stock_ref(sku)
            out[ref] = _loaded(ref, self.entities.get(ref, ABSENT))
        return Loaded(
            entities=out,
            seen=frozenset(e for e in request.event_ids if e in self.seen.get(request.scope, ())),
            suppressed=suppressed,
            truncated=truncated,
        )

    def commit_parts(self, parts: Sequence[Commit]) -> list[CommitResult]:
        results = [self._apply(part) for part in parts]
        if any(r.status is CommitStatus.OK for r in results):
            self.sequence += 1  # once per call that wrote, as Redis's transaction INCRs it
        return results

    def commit(self, commit: Commit) -> CommitResult:
        return self.commit_parts([commit])[0]

    def _apply(self, commit: Commit) -> CommitResult:
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
        for change in commit.memberships:
            members = self.audiences.setdefault(change.audience, set())
            if change.member:
                members.add(change.profile_id)
            else:
                members.discard(change.profile_id)
        return CommitResult(CommitStatus.OK)


def _all_writes(*groups: Iterable[Write]) -> Iterable[Write]:
    for group in groups:
        yield from group
