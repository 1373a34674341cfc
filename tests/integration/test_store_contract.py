"""The StateStore contract, run against both implementations (memory and real Redis).

Every test takes the ``store`` fixture, parametrized ``memory`` / ``redis`` (the Redis one on a
prefix unique to the test), and checks behaviour through the Protocol (``load`` / ``commit``)
plus an implementation-neutral :class:`Observed` view of everything a commit can touch:
entities, seen markers, the suppression tombstones, the outbox, change streams and counters.
``test_both_implementations_agree_step_by_step`` runs one random operation sequence on both and
compares every result and every observation side by side.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolvers.store import (
    ABSENT,
    DEFAULT_SCOPE,
    HOLDERS_WALKED,
    MAX_REDIRECT_HOPS,
    Commit,
    CommitResult,
    CommitStatus,
    Entity,
    InMemoryStore,
    Kind,
    LoadRequest,
    MembershipChange,
    OutboxRecord,
    Ref,
    StateStore,
    StreamEntry,
    Write,
    identifier_ref,
    profile_ref,
    stock_ref,
)
from streams import outbox as outbox_entry
from streams.redis_keys import marker_bucket
from streams.redis_store import RedisStore, processed_ids

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- observation


@dataclass(frozen=True)
class Observed:
    """Everything a commit can change, in a form both implementations can produce."""

    entities: dict[Ref, tuple[int, dict[str, bytes]]]
    seen: frozenset[tuple[str, str]]  # (scope, event id)
    suppressed: dict[str, bytes]  # hash -> tombstone
    outbox: list[tuple[str, bytes | None, bytes | None]]
    streams: dict[str, list[dict[str, bytes]]]
    counters: dict[str, int]


class Harness(Protocol):
    @property
    def store(self) -> StateStore: ...

    def observe(self) -> Observed: ...

    def members(self, audience: str) -> set[str]: ...


class MemoryHarness:
    def __init__(self) -> None:
        self.memory = InMemoryStore()

    @property
    def store(self) -> StateStore:
        return self.memory

    def observe(self) -> Observed:
        m = self.memory
        return Observed(
            entities={r: (e.version, dict(e.fields)) for r, e in m.entities.items()},
            seen=frozenset((scope, e) for scope, ids in m.seen.items() for e in ids),
            suppressed=dict(m.suppressed),
            outbox=[(r.topic, r.key, r.value) for r in m.outbox],
            streams={k: [dict(f) for f in v] for k, v in m.streams.items() if v},
            counters=dict(m.counters),
        )

    def members(self, audience: str) -> set[str]:
        return set(self.memory.audiences.get(audience, ()))


class RedisHarness:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        commit: Literal["script", "watch"] = "script",
        load: Literal["script", "waves"] = "script",
    ) -> None:
        self.client: Any = client  # redis-py's reply types are too loose to be useful here
        self.redis = RedisStore(client, prefix=prefix, seen_ttl_s=3600, commit=commit, load=load)
        self.root = self.redis.keys.root

    @property
    def store(self) -> StateStore:
        return self.redis

    def _scan(self, middle: str) -> Iterator[tuple[str, bytes]]:
        head = f"{self.root}:{middle}"
        for key in self.client.scan_iter(match=f"{head}*", count=1000):
            yield key.decode()[len(head) :], key

    def observe(self) -> Observed:
        c = self.client
        entities: dict[Ref, tuple[int, dict[str, bytes]]] = {}
        for kind in Kind:
            for name, key in self._scan(f"{kind.value}:"):
                raw = {k.decode(): v for k, v in c.hgetall(key).items()}
                version = int(raw.pop("v"))
                entities[Ref(kind, name)] = (version, raw)
        seen: set[tuple[str, str]] = set()
        # markers:seen:{generation}:{bucket} or markers:seen-{scope}:... (ADR 0016)
        for name, key in self._scan("markers:seen"):
            segment, _, rest = name.partition(":")
            generation = int(rest.partition(":")[0])
            # the backstop: the end of generation + k + 2 (TTL 3600 s: width 900, k = 4), an
            # absolute time (a TTL read after a generation boundary is shorter: not a fault)
            expiry = c.expiretime(key)
            assert expiry == (generation + 4 + 2) * 900, f"marker hash without its expiry: {expiry}"
            scope = segment.removeprefix("-") or DEFAULT_SCOPE
            seen.update((scope, event_id.decode()) for event_id in c.hkeys(key))
        outbox: list[tuple[str, bytes | None, bytes | None]] = []
        for _id, f in c.xrange(self.redis.keys.outbox):
            outbox += [(r.topic, r.key, r.value) for r in outbox_entry.records(f)]
        streams: dict[str, list[dict[str, bytes]]] = {}
        for name, key in self._scan("changes:"):
            streams[name] = [{k.decode(): v for k, v in f.items()} for _i, f in c.xrange(key)]
        return Observed(
            entities=entities,
            seen=frozenset(seen),
            suppressed={k.decode(): v for k, v in c.hgetall(self.redis.keys.suppressed).items()},
            outbox=outbox,
            streams=streams,
            counters={k.decode(): int(v) for k, v in c.hgetall(self.redis.keys.stats).items()},
        )

    def members(self, audience: str) -> set[str]:
        return {m.decode() for m in self.client.smembers(self.redis.keys.audience(audience))}

    def index(self, kind: Kind) -> set[str]:
        key = self.redis.keys.profile_index if kind is Kind.PROFILE else self.redis.keys.stock_index
        return {m.decode() for m in self.client.smembers(key)}


def _clean(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(
    params=["memory", "redis-script", "redis-watch", "redis-waves", "redis-watch-waves"]
)
def store(request: pytest.FixtureRequest) -> Harness:
    """The reference store, and ``RedisStore`` with each commit (``commit.lua``, and the
    commit without Lua of ADR 0021) and each load (``load.lua``; ``-waves``: the load without
    Lua of ADR 0022)."""
    if request.param == "memory":
        return MemoryHarness()
    client: redis.Redis = request.getfixturevalue("redis_client")
    prefix: str = request.getfixturevalue("redis_prefix")
    commit: Literal["script", "watch"] = "watch" if "watch" in request.param else "script"
    load: Literal["script", "waves"] = "waves" if request.param.endswith("waves") else "script"
    return RedisHarness(client, prefix, commit, load)


# --------------------------------------------------------------------------- helpers

EMAIL = identifier_ref("email:jane@example.com")
PHONE = identifier_ref("phone:+4791234567")
P1, P2, P3 = profile_ref("p_1"), profile_ref("p_2"), profile_ref("p_3")
SKU = stock_ref("SKU-1")
TOMB = b'{"r":true}'


def w(ref: Ref, version: int, **fields: bytes | str) -> Write:
    return Write(
        ref, version, {k: v.encode() if isinstance(v, str) else v for k, v in fields.items()}
    )


def everything(ev: str = "e1") -> Commit:
    """A commit that touches every kind of effect, expecting all refs absent."""
    return Commit(
        expect={EMAIL: 0, P1: 0, SKU: 0},
        event_ids=(ev,),
        writes=(
            w(EMAIL, 1, p="p_1", s='{"rec":1}'),
            w(P1, 1, d='{"id":"p_1"}', s='{"state":1}'),
            w(SKU, 1, d='{"sku":"SKU-1"}', s='{"stock":1}'),
        ),
        suppress={"h-erased": TOMB},
        outbox=(OutboxRecord("profiles.changes", b"p_1", b"{}"), OutboxRecord("t", None, None)),
        streams=(StreamEntry("profiles", {"id": b"p_1", "op": b"upsert"}),),
        counters={"events": 1, "merges": 0},
    )


ALL = LoadRequest(
    identifiers=(EMAIL.name, PHONE.name),
    profiles=(P1.name,),
    stocks=(SKU.name,),
    event_ids=("e1", "e2"),
    suppression_hashes=("h-erased", "h-other"),
)


# --------------------------------------------------------------------------- the contract


def test_load_of_absent_entities_returns_version_zero(store: Harness) -> None:
    loaded = store.store.load(ALL)
    assert set(loaded.entities) == {EMAIL, PHONE, P1, SKU}
    assert all(e == ABSENT and e.version == 0 and not e.exists for e in loaded.entities.values())
    assert loaded.get(profile_ref("never-requested")) == ABSENT
    assert loaded.seen == frozenset()
    assert loaded.suppressed == {}
    assert not loaded.truncated


def test_commit_writes_bumps_versions_and_marks_events(store: Harness) -> None:
    assert store.store.commit(everything()).status is CommitStatus.OK
    loaded = store.store.load(ALL)
    assert loaded.get(EMAIL) == Entity(1, {"p": b"p_1", "s": b'{"rec":1}'})
    # load returns what compute needs, never the reader snapshot ``d``
    assert loaded.get(P1) == Entity(1, {"s": b'{"state":1}'})
    assert loaded.get(SKU) == Entity(1, {"s": b'{"stock":1}'})
    assert loaded.get(PHONE) == ABSENT
    assert loaded.seen == {"e1"}
    assert loaded.suppressed == {"h-erased": TOMB}

    second = Commit(
        expect={EMAIL: 1, P1: 1},
        event_ids=("e2",),
        writes=(w(P1, 2, d='{"v":2}', s='{"state":2}'),),
        counters={"events": 1},
    )
    assert store.store.commit(second).ok
    obs = store.observe()
    assert obs.entities[P1] == (2, {"d": b'{"v":2}', "s": b'{"state":2}'})
    assert obs.entities[EMAIL][0] == 1  # untouched entities keep their version
    assert obs.seen == {(DEFAULT_SCOPE, "e1"), (DEFAULT_SCOPE, "e2")}
    assert obs.counters == {"events": 2, "merges": 0}
    assert obs.outbox == [("profiles.changes", b"p_1", b"{}"), ("t", None, None)]
    assert obs.streams == {"profiles": [{"id": b"p_1", "op": b"upsert"}]}


STALE: list[tuple[str, Mapping[Ref, int]]] = [
    ("identifier moved on", {EMAIL: 0}),
    ("profile moved on", {P1: 0}),
    ("stock moved on", {SKU: 0}),
    ("expected a version that never existed", {P2: 3}),
    ("expected present but deleted", {PHONE: 1}),
]


@pytest.mark.parametrize(("why", "expect"), STALE, ids=[why for why, _ in STALE])
def test_stale_version_conflicts_and_writes_nothing(
    store: Harness, why: str, expect: Mapping[Ref, int]
) -> None:
    assert store.store.commit(everything()).ok
    if PHONE in expect:  # create then delete PHONE so it is absent again
        assert store.store.commit(Commit({PHONE: 0}, ("mk",), (w(PHONE, 1, p="x"),))).ok
        assert store.store.commit(Commit({PHONE: 1}, ("rm",), (Write(PHONE, 2, {}),))).ok
    before = store.observe()
    doomed = Commit(
        expect={EMAIL: 1, P1: 1, SKU: 1, **expect},
        event_ids=("e9",),
        writes=(w(P2, 1, d="{}", s="{}"), w(EMAIL, 2, p="p_2", s="{}"), Write(SKU, 2, {})),
        blind_writes=(w(P3, 1, r="p_2"),),
        suppress={"h-new": TOMB},
        outbox=(OutboxRecord("x", b"k", b"v"),),
        streams=(StreamEntry("inventory", {"sku": b"SKU-1"}), StreamEntry("new", {"a": b"1"})),
        counters={"events": 1, "fresh": 5},
    )
    result = store.store.commit(doomed)
    assert result.status is CommitStatus.CONFLICT, why
    stale = next(r for r, v in doomed.expect.items() if (before.entities.get(r, (0,))[0]) != v)
    assert result.detail == str(stale)
    assert store.observe() == before  # entities, seen, suppression, outbox, streams, counters
    assert "e9" not in store.store.load(LoadRequest(event_ids=("e9",))).seen


@pytest.mark.parametrize("existing_first", [True, False])
def test_a_conflict_names_the_first_stale_entity_in_order(
    store: Harness, existing_first: bool
) -> None:
    """Redis checks the entities expected absent together (one EXISTS per 500) and the others
    one by one; whichever finds a stale one, the reply names the first in the commit's order,
    as the in-memory store does, also among more than 500 expected absent."""
    assert store.store.commit(everything()).ok  # EMAIL and P1 at version 1
    absent = {identifier_ref(f"email:none{n}@x"): 0 for n in range(700)}
    stale: dict[Ref, int] = {EMAIL: 0, P1: 5} if existing_first else {P1: 5, EMAIL: 0}
    result = store.store.commit(Commit({**absent, **stale}, ("e9",)))
    assert result.status is CommitStatus.CONFLICT
    assert result.detail == str(next(iter(stale)))
    late = {**dict(itertools.islice(absent.items(), 600)), EMAIL: 0, **absent}
    assert store.store.commit(Commit(late, ("e9",))).detail == str(EMAIL)


def test_already_seen_event_is_duplicate_and_writes_nothing(store: Harness) -> None:
    assert store.store.commit(everything("e1")).ok
    before = store.observe()
    again = Commit(
        expect={EMAIL: 1},
        event_ids=("e5", "e1"),
        writes=(w(EMAIL, 2, p="p_9", s="{}"),),
        suppress={"h-x": TOMB},
        outbox=(OutboxRecord("x", None, b"v"),),
        streams=(StreamEntry("profiles", {"id": b"p_9"}),),
        counters={"events": 2},
    )
    result = store.store.commit(again)
    assert result == CommitResult(CommitStatus.DUPLICATE, "e1")
    assert store.observe() == before
    assert store.store.load(LoadRequest(event_ids=("e5", "e1"))).seen == {"e1"}


def test_event_ids_are_processed_once_per_scope(store: Harness) -> None:
    """Two lanes read the same records: one lane's marker never hides an event from the other."""
    assert store.store.commit(Commit({}, ("e1",), counters={"events": 1})).ok
    inventory = LoadRequest(event_ids=("e1", "e2"), scope="inventory")
    assert store.store.load(inventory).seen == frozenset()
    assert store.store.commit(Commit({}, ("e1",), scope="inventory")).ok
    assert store.store.load(inventory).seen == {"e1"}
    again = store.store.commit(Commit({}, ("e2", "e1"), scope="inventory"))
    assert again == CommitResult(CommitStatus.DUPLICATE, "e1")
    assert store.store.load(LoadRequest(event_ids=("e1", "e2"))).seen == {"e1"}
    assert store.observe().seen == {(DEFAULT_SCOPE, "e1"), ("inventory", "e1")}


def test_replaying_an_applied_commit_is_refused(store: Harness) -> None:
    commit = everything()
    assert store.store.commit(commit).ok
    before = store.observe()
    assert store.store.commit(commit).status is CommitStatus.CONFLICT  # versions moved on
    assert store.observe() == before


def test_empty_fields_write_deletes(store: Harness) -> None:
    assert store.store.commit(everything()).ok
    drop = Commit(
        expect={EMAIL: 1, P1: 1, SKU: 1},
        event_ids=("e2",),
        writes=(Write(EMAIL, 2, {}), Write(P1, 2, {}), Write(SKU, 2, {})),
    )
    assert store.store.commit(drop).ok
    loaded = store.store.load(ALL)
    assert loaded.get(EMAIL) == ABSENT
    assert loaded.get(P1) == ABSENT
    assert loaded.get(SKU) == ABSENT
    assert store.observe().entities == {}
    if isinstance(store, RedisHarness):
        assert store.index(Kind.PROFILE) == set()
        assert store.index(Kind.STOCK) == set()
    # deleted means absent: version 0 is what a writer must expect now
    assert store.store.commit(Commit({P1: 0}, ("e3",), (w(P1, 1, s="{}"),))).ok


def test_blind_writes_ignore_versions(store: Harness) -> None:
    assert store.store.commit(everything()).ok
    # P1 is at version 1; a blind redirect replaces it regardless, and may create P3
    blind = Commit(expect={}, event_ids=(), blind_writes=(w(P1, 1, r="p_3"), w(P3, 7, s="{}")))
    assert store.store.commit(blind).ok
    obs = store.observe()
    assert obs.entities[P1] == (1, {"r": b"p_3"})
    assert obs.entities[P3] == (7, {"s": b"{}"})
    if isinstance(store, RedisHarness):  # a redirect is not a live profile
        assert store.index(Kind.PROFILE) == set()
    # and a blind delete of something absent is fine
    assert store.store.commit(Commit({}, (), blind_writes=(Write(P2, 1, {}),))).ok


def _chain(store: Harness, length: int) -> list[Ref]:
    """p_c0 -> p_c1 -> ... -> p_c{length} (live), and id email:chain@x -> p_c0."""
    refs = [profile_ref(f"p_c{i}") for i in range(length + 1)]
    writes = [w(a, 2, r=b.name) for a, b in itertools.pairwise(refs)]
    writes.append(w(refs[-1], 5, d="{}", s='{"live":1}'))
    writes.append(w(identifier_ref("email:chain@x"), 1, p=refs[0].name, s="{}"))
    assert store.store.commit(Commit({}, ("chain",), writes=writes)).ok
    return refs


@pytest.mark.parametrize("hops", [0, 1, 2, MAX_REDIRECT_HOPS])
def test_load_walks_redirects_to_the_survivor(store: Harness, hops: int) -> None:
    refs = _chain(store, hops)
    by_id = store.store.load(LoadRequest(identifiers=("email:chain@x",)))
    assert by_id.get(identifier_ref("email:chain@x")).fields["p"] == refs[0].name.encode()
    assert by_id.get(refs[-1]) == Entity(5, {"s": b'{"live":1}'})
    # every hop loads too, with its version: a batch may rewrite any of them
    assert {r for r in by_id.entities if r.kind is Kind.PROFILE} == set(refs)
    for a, b in itertools.pairwise(refs):
        assert by_id.get(a) == Entity(2, {"r": b.name.encode()})
    by_pid = store.store.load(LoadRequest(profiles=(refs[0].name,)))
    assert by_pid.get(refs[-1]) == Entity(5, {"s": b'{"live":1}'})
    assert {r for r in by_pid.entities if r.kind is Kind.PROFILE} == set(refs)


def test_the_walk_stops_at_max_profiles(store: Harness) -> None:
    refs = _chain(store, 6)
    loaded = store.store.load(LoadRequest(identifiers=("email:chain@x",), max_profiles=3))
    assert loaded.truncated
    assert {r for r in loaded.entities if r.kind is Kind.PROFILE} == set(refs[:3])
    assert not store.store.load(LoadRequest(identifiers=("email:chain@x",))).truncated


def test_the_walk_follows_holders_held_keys_and_tombstone_holders(store: Harness) -> None:
    """An identifier leads to its profile and to the profiles holding its atoms (h); a profile
    to the records of the keys its atoms carry (i), and so on; a suppressed hash's tombstone
    to the profiles holding atoms with its ghost. Version-only ids are read, not followed."""
    writes = (
        w(identifier_ref("email:a@x"), 1, p="P1", h='["P2"]', s="{}"),
        w(profile_ref("P1"), 1, s="{}", d="{}", i='["email:a@x"]'),
        w(profile_ref("P2"), 1, s="{}", d="{}", i='["email:a@x", "phone:+4790000009"]'),
        w(identifier_ref("phone:+4790000009"), 1, p="P3", s="{}"),
        w(profile_ref("P3"), 1, s="{}", d="{}", i="[]"),
        w(profile_ref("P4"), 1, s="{}", d="{}", i='["email:never@x"]'),
        w(profile_ref("P5"), 3, r="P1"),
        w(profile_ref("P6"), 1, s="{}", d="{}", i="[]"),
    )
    tomb = b'{"r":true,"h":["P4"]}'
    assert store.store.commit(Commit({}, ("e1",), writes=writes, suppress={"gh": tomb})).ok
    loaded = store.store.load(
        LoadRequest(
            identifiers=("email:a@x",), versions=("P5", "P6", "P7"), suppression_hashes=("gh",)
        )
    )
    profiles = {r.name for r in loaded.entities if r.kind is Kind.PROFILE}
    assert profiles == {"P1", "P2", "P3", "P4", "P5", "P6", "P7"}
    assert loaded.get(identifier_ref("phone:+4790000009")).fields["p"] == b"P3"
    assert loaded.get(identifier_ref("email:never@x")) == ABSENT  # held by P4, no record
    assert loaded.get(identifier_ref("email:a@x")).fields["h"] == b'["P2"]'
    # version-only: the version and the redirect, never the state, never followed
    assert loaded.get(profile_ref("P5")) == Entity(3, {"r": b"P1"})
    assert loaded.get(profile_ref("P6")) == Entity(1, {})
    assert loaded.get(profile_ref("P7")) == ABSENT
    assert loaded.suppressed == {"gh": tomb}


def test_the_walk_follows_the_first_holders_walked_of_a_record(store: Harness) -> None:
    """A record keeps every holder; a load follows its first ``HOLDERS_WALKED`` (the profiles
    lane asks for the others when an erasure absorbs the identifier); what a profile id asked
    to walk from leads to is loaded as ever."""
    holders = [f"P{n:03d}" for n in range(HOLDERS_WALKED + 8)]
    writes = [w(identifier_ref("anonymous_id:kiosk"), 1, h=orjson.dumps(holders), s="{}")]
    writes += [w(profile_ref(p), 1, s="{}", d="{}", i='["anonymous_id:kiosk"]') for p in holders]
    assert store.store.commit(Commit({}, ("e1",), writes=writes)).ok
    loaded = store.store.load(LoadRequest(identifiers=("anonymous_id:kiosk",)))
    assert not loaded.truncated
    assert {r.name for r in loaded.entities if r.kind is Kind.PROFILE} == set(
        holders[:HOLDERS_WALKED]
    )
    assert loaded.get(identifier_ref("anonymous_id:kiosk")).fields["h"] == orjson.dumps(holders)
    rest = holders[HOLDERS_WALKED:]
    again = store.store.load(LoadRequest(identifiers=("anonymous_id:kiosk",), profiles=rest))
    assert {r.name for r in again.entities if r.kind is Kind.PROFILE} == set(holders)


def test_load_returns_the_identifiers_a_profile_holds(store: Harness) -> None:
    held = b'["email:a@x.no", "phone:+4791234567", "anonymous_id:d1"]'
    assert store.store.commit(
        Commit(
            {},
            ("e1",),
            writes=(
                w(identifier_ref("email:a@x.no"), 1, p="P1", s="{}"),
                w(identifier_ref("phone:+4791234567"), 1, p="P1", s="{}"),
                w(profile_ref("P1"), 1, s="{}", d="{}", i=held),
            ),
        )
    ).ok
    loaded = store.store.load(LoadRequest(identifiers=("email:a@x.no",)))
    assert loaded.get(identifier_ref("phone:+4791234567")) == Entity(1, {"p": b"P1", "s": b"{}"})
    # a held key without a record loads as absent; the profile comes with what it holds (i),
    # which splits a batch into independent parts (resolvers.parts)
    assert identifier_ref("anonymous_id:d1") in loaded.entities
    assert not loaded.get(identifier_ref("anonymous_id:d1")).exists
    assert loaded.get(profile_ref("P1")) == Entity(1, {"s": b"{}", "i": held})


def test_suppression_tombstones(store: Harness) -> None:
    one, two, two_b, three = (b'{"n":%d}' % i for i in (1, 2, 22, 3))
    assert store.store.commit(Commit({}, ("e1",), suppress={"h1": one, "h2": two})).ok
    assert store.store.commit(Commit({}, ("e2",), suppress={"h2": two_b, "h3": three})).ok
    loaded = store.store.load(LoadRequest(suppression_hashes=("h0", "h1", "h3", "h4")))
    assert loaded.suppressed == {"h1": one, "h3": three}
    assert store.observe().suppressed == {"h1": one, "h2": two_b, "h3": three}
    # a batch that relied on h4 not being suppressed conflicts once it is
    assert store.store.commit(Commit({}, ("e3",), suppress={"h4": b"{}"})).ok
    late = store.store.commit(Commit({}, ("e4",), unsuppressed=("h4",)))
    assert late.status is CommitStatus.CONFLICT


def test_load_finds_tombstones_among_more_than_500_hashes(store: Harness) -> None:
    """The load asks for suppression hashes 500 at a time (one ``HMGET`` each in Redis): a
    tombstone in any chunk, at either edge of one, is found, and its holders join the walk."""
    positions = (0, 499, 500, 1001, 1202)
    tombs = {f"h{n}": b'{"n":%d}' % n for n in positions}
    tombs["h1001"] = orjson.dumps({"h": ["P-late"]})  # a holder to walk to, in the third chunk
    writes = (w(profile_ref("P-late"), 1, s="{}", i=b"[]"),)
    assert store.store.commit(Commit({}, ("e1",), writes=writes, suppress=tombs)).ok
    hashes = tuple(f"h{n}" for n in range(1203))
    loaded = store.store.load(LoadRequest(suppression_hashes=hashes))
    assert loaded.suppressed == tombs
    assert loaded.get(profile_ref("P-late")).version == 1


def test_values_and_members_are_stored_byte_exact(store: Harness) -> None:
    """Change-stream values and set members travel inside the commit's plan (Redis) unless
    they are not UTF-8, field values as arguments; all are stored as given, byte for byte
    (JSON escapes, NUL, non-ASCII and invalid UTF-8 alike)."""
    ref = profile_ref('p-é\\"x')  # non-ASCII, a backslash and a quote: JSON escapes them
    fields = {
        "id": 'p-é\\"x'.encode(),
        "op": b"upsert",
        "raw": b"\xff\xfe\x00not utf-8",
        "empty": b"",
        "nul": b"a\x00b",
    }
    written = {
        "d": b'{"q":"\\"\\\\","e":"\xc3\xa9"}',
        "s": b"\xff" * 65,
        "i": b"\xff",
        "x": b"nul\x00" + b"\xc3\xa9" * 40,
    }
    commit = Commit(
        {ref: 0},
        ("e1",),
        writes=(Write(ref, 1, written),),
        streams=(StreamEntry("profiles", fields), StreamEntry("other", {"v": b"\x80"})),
        memberships=(MembershipChange("vip", 'p-é\\"x', True),),
    )
    assert store.store.commit(commit).ok
    observed = store.observe()
    assert observed.streams == {"profiles": [fields], "other": [{"v": b"\x80"}]}
    assert observed.entities[ref] == (1, written)
    assert store.members("vip") == {'p-é\\"x'}


def test_memberships_move_with_the_commit_and_never_without_it(store: Harness) -> None:
    joins = (MembershipChange("vip", "p_1", True), MembershipChange("vip", "p_2", True))
    first = Commit({P1: 0}, ("e1",), writes=(w(P1, 1, d="{}", s="{}"),), memberships=joins)
    assert store.store.commit(first).ok
    assert store.members("vip") == {"p_1", "p_2"}
    stale = Commit({P1: 0}, ("e2",), memberships=(MembershipChange("vip", "p_1", False),))
    assert store.store.commit(stale).status is CommitStatus.CONFLICT
    assert store.members("vip") == {"p_1", "p_2"}  # a conflict moves nobody
    leaves = (MembershipChange("vip", "p_1", False), MembershipChange("new", "p_1", True))
    assert store.store.commit(Commit({}, ("e3",), memberships=leaves)).ok
    assert (store.members("vip"), store.members("new")) == ({"p_2"}, {"p_1"})


def test_memberships_apply_in_their_order_however_many(store: Harness) -> None:
    """commit.lua sends a run of changes to one set in one SADD/SREM (up to 500 members a
    call): the same result as one change after the other, runs broken where the set or the
    operation changes."""
    many = tuple(MembershipChange("big", f"p_{n}", True) for n in range(1_203))
    flips = (
        MembershipChange("vip", "p_1", True),
        MembershipChange("vip", "p_1", False),  # joins and leaves: out
        MembershipChange("vip", "p_3", False),
        MembershipChange("vip", "p_3", True),  # leaves and joins: in
        MembershipChange("new", "p_1", True),
        MembershipChange("vip", "p_2", True),
        MembershipChange("big", "p_7", False),
        MembershipChange("big", "p_1200", False),
        MembershipChange("big", "p_7", True),
    )
    assert store.store.commit(Commit({}, ("e1",), memberships=many + flips)).ok
    assert store.members("vip") == {"p_2", "p_3"}
    assert store.members("new") == {"p_1"}
    assert store.members("big") == {f"p_{n}" for n in range(1_203)} - {"p_1200"}


def test_counters_accumulate(store: Harness) -> None:
    assert store.store.commit(Commit({}, ("e1",), counters={"events": 3, "dlq": 1})).ok
    assert store.store.commit(Commit({}, ("e2",), counters={"events": 2, "merges": 1})).ok
    assert store.store.commit(Commit({}, ("e3",), counters={"dlq": -1})).ok
    assert store.observe().counters == {"events": 5, "dlq": 0, "merges": 1}


@pytest.mark.parametrize("commit", ["script", "watch"])
def test_redis_keeps_the_documented_layout(
    redis_client: redis.Redis, redis_prefix: str, commit: Literal["script", "watch"]
) -> None:
    harness = RedisHarness(redis_client, redis_prefix, commit)
    assert harness.store.commit(everything()).ok
    root = f"{redis_prefix}:v1"
    assert redis_client.hget(f"{root}:id:email:jane@example.com", "p") == b"p_1"
    assert redis_client.hget(f"{root}:profile:p_1", "d") == b'{"id":"p_1"}'
    assert redis_client.hget(f"{root}:stock:SKU-1", "v") == b"1"
    (markers,) = redis_client.scan_iter(match=f"{root}:markers:seen:*")
    generation, bucket = markers.decode().removeprefix(f"{root}:markers:seen:").split(":")
    assert bucket == marker_bucket("e1")
    width = int(redis_client.hget(f"{root}:markers-layout:seen", "width") or 0)
    assert width == 3600 // 4  # a quarter of the TTL
    assert int(generation) in {(int(redis_client.time()[0]) - d) // width for d in (0, 1)}
    assert redis_client.hgetall(markers) == {b"e1": b"1"}
    assert harness.index(Kind.PROFILE) == {"p_1"}
    assert harness.index(Kind.STOCK) == {"SKU-1"}
    assert redis_client.hget(f"{root}:suppressed", "h-erased") == TOMB
    assert redis_client.xlen(f"{root}:outbox") == 1  # one entry per commit: both records
    ((_id, fields),) = redis_client.xrange(f"{root}:outbox")
    assert set(fields) == {b"records"}
    assert redis_client.xlen(f"{root}:changes:profiles") == 1
    assert redis_client.hget(f"{root}:stats", "events") == b"1"
    assert redis_client.get(f"{root}:commit-seq:seen") == b"1"  # ADR 0021, either commit
    assert not harness.store.commit(everything()).ok  # nothing written: no INCR
    assert redis_client.get(f"{root}:commit-seq:seen") == b"1"


# --------------------------------------------------------------------------- side by side

REFS = [
    identifier_ref("email:a@x"),
    identifier_ref("phone:+4790000001"),
    profile_ref("p_a"),
    profile_ref("p_b"),
    stock_ref("S1"),
]
FIELD = st.sampled_from([b"1", b"2", b"{}", b'{"k":"\\u00e6"}', "blå".encode()])


def json_list(draw: Callable[..., Any], names: list[str], key: str | None = None) -> bytes:
    """A JSON list of some of ``names`` (as ``{key: [...]}`` when ``key`` is given)."""
    chosen = draw(st.lists(st.sampled_from(names), max_size=3, unique=True))
    return orjson.dumps({key: chosen} if key else chosen)


AUDIENCES = ("a1", "a2")


@st.composite
def operations(draw: Callable[..., Any]) -> list[tuple[str, Any]]:
    ops: list[tuple[str, Any]] = []
    for i in range(draw(st.integers(1, 12))):
        if draw(st.integers(0, 3)) == 0:  # several commits in one call (parts, ADR 0013)
            parts = [draw(a_commit(f"{i}.{n}")) for n in range(draw(st.integers(1, 3)))]
            ops.append(("commit_parts", parts))
            continue
        if draw(st.booleans()):
            ops.append(
                (
                    "load",
                    LoadRequest(
                        identifiers=tuple(r.name for r in REFS[:2]),
                        profiles=tuple(draw(st.lists(st.sampled_from(["p_a", "p_b"]), max_size=2))),
                        versions=tuple(draw(st.lists(st.sampled_from(["p_b", "p_c"]), max_size=2))),
                        stocks=("S1",),
                        event_ids=("e0", "e1", "e2", "e3"),
                        suppression_hashes=("h0", "h1"),
                        max_profiles=draw(st.integers(1, 3)),
                    ),
                )
            )
            continue
        ops.append(("commit", draw(a_commit(str(i)))))
    return ops


@st.composite
def a_commit(draw: Callable[..., Any], i: str) -> Commit:
    """A commit over the test's few refs and event ids (versions, writes, blind writes,
    suppression, outbox, stream and counters drawn)."""
    writes = []
    for ref in draw(st.lists(st.sampled_from(REFS), max_size=3, unique=True)):
        kind = draw(st.sampled_from(["set", "delete", "redirect"]))
        if kind == "delete":
            writes.append(Write(ref, draw(st.integers(1, 4)), {}))
        elif kind == "redirect" and ref.kind is Kind.PROFILE:
            writes.append(w(ref, draw(st.integers(1, 4)), r="p_b" if ref.name == "p_a" else "p_a"))
        else:
            fields = {"s": draw(FIELD)}
            if ref.kind is Kind.IDENTIFIER:
                fields["p"] = draw(st.sampled_from([b"p_a", b"p_b"]))
                fields["h"] = json_list(draw, ["p_a", "p_b", "p_c"])
            else:
                fields["d"] = draw(FIELD)
                if ref.kind is Kind.PROFILE:
                    fields["i"] = json_list(draw, [r.name for r in REFS[:2]] + ["email:z@x"])
            writes.append(Write(ref, draw(st.integers(1, 4)), fields))
    expect = {r: draw(st.integers(0, 3)) for r in draw(st.lists(st.sampled_from(REFS), max_size=3))}
    events = tuple(draw(st.lists(st.sampled_from(["e0", "e1", "e2", "e3", f"u{i}"]), max_size=2)))
    blind = draw(st.booleans())
    return Commit(
        expect=expect,
        event_ids=events,
        writes=() if blind else tuple(writes),
        blind_writes=tuple(writes) if blind else (),
        suppress={
            h: json_list(draw, ["p_a", "p_b"], key="h")
            for h in draw(st.lists(st.sampled_from(["h0", "h1"]), max_size=2))
        },
        outbox=(OutboxRecord("t", draw(st.sampled_from([None, b"k"])), b"v"),),
        streams=(
            StreamEntry(
                "profiles",
                {"id": b"x", "n": str(i).encode()}
                | ({"op": b"upsert"} if draw(st.booleans()) else {}),  # 2 or 3 fields
            ),
        ),
        counters={"events": len(events)},
        memberships=tuple(
            MembershipChange(audience, pid, member)
            for audience, pid, member in draw(
                st.lists(
                    st.tuples(
                        st.sampled_from(AUDIENCES), st.sampled_from(["p_a", "p_b"]), st.booleans()
                    ),
                    max_size=4,
                )
            )
        ),
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=operations())
@pytest.mark.parametrize(
    ("commit", "load"),
    [("script", "script"), ("watch", "script"), ("script", "waves"), ("watch", "waves")],
)
def test_both_implementations_agree_step_by_step(
    redis_client: redis.Redis,
    commit: Literal["script", "watch"],
    load: Literal["script", "waves"],
    ops: list[tuple[str, Any]],
) -> None:
    memory = MemoryHarness()
    prefix = f"loomtest-sbs-{uuid.uuid4().hex[:12]}"
    red = RedisHarness(redis_client, prefix, commit, load)
    try:
        for step, (op, arg) in enumerate(ops):
            if op == "load":
                assert memory.store.load(arg) == red.store.load(arg), f"load at step {step}"
            elif op == "commit_parts":
                got = red.store.commit_parts(arg)
                assert memory.store.commit_parts(arg) == got, f"parts at step {step}"
            else:
                assert memory.store.commit(arg) == red.store.commit(arg), f"commit at step {step}"
            assert memory.observe() == red.observe(), f"state after step {step}"
            for audience in AUDIENCES:
                assert memory.members(audience) == red.members(audience), f"{audience}, {step}"
        live = {r.name for r, (_v, f) in memory.observe().entities.items() if "d" in f}
        assert red.index(Kind.PROFILE) | red.index(Kind.STOCK) == live
    finally:
        _clean(redis_client, prefix)


@pytest.mark.parametrize("commit", ["script", "watch"])
def test_redis_store_reports_the_time_of_each_call(
    redis_client: redis.Redis, redis_prefix: str, commit: Literal["script", "watch"]
) -> None:
    calls: list[tuple[str, float]] = []
    store = RedisStore(
        redis_client,
        prefix=redis_prefix,
        on_call=lambda op, s: calls.append((op, s)),
        commit=commit,
    )
    store.load(LoadRequest(identifiers=("email:t@x.no",)))
    assert store.commit(Commit({}, ("e-timed",))).ok
    assert [op for op, _ in calls] == ["load", "commit"]
    assert all(0 <= seconds < 5 for _, seconds in calls)


@pytest.mark.parametrize("commit", ["script", "watch"])
def test_the_written_parts_share_one_outbox_entry(
    redis_client: redis.Redis, redis_prefix: str, commit: Literal["script", "watch"]
) -> None:
    """ADR 0013: a conflicting part writes nothing, the others' records go out in one entry."""
    store = RedisStore(redis_client, prefix=redis_prefix, commit=commit)
    taken = stock_ref("SKU-taken")
    assert store.commit(Commit({taken: 0}, ("e0",), writes=(w(taken, 1, s="{}"),))).ok

    def part(n: int, expect: int) -> Commit:
        ref = taken if n == 1 else stock_ref(f"SKU-{n}")
        return Commit(
            {ref: expect},
            (f"e{n}",),
            writes=(w(ref, expect + 1, s="{}"),),
            outbox=(OutboxRecord("t", f"k{n}".encode(), f"v{n}".encode()),),
        )

    results = store.commit_parts([part(1, 0), part(2, 0), part(3, 0)])  # part 1 is stale

    assert [r.ok for r in results] == [False, True, True]
    assert results[0].detail == str(taken)
    root = f"{redis_prefix}:v1"
    entries = redis_client.xrange(f"{root}:outbox")
    assert len(entries) == 1  # e0's commit wrote no record; the two written parts share one
    ((_id, fields),) = entries
    records = outbox_entry.unpack(fields[outbox_entry.FIELD.encode()])
    assert [(r.key, r.value) for r in records] == [(b"k2", b"v2"), (b"k3", b"v3")]
    assert processed_ids(redis_client, redis_prefix) == {"e0", "e2", "e3"}  # not e1
