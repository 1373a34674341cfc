"""The watch commit checked against the batch's wave load (ADR 0027) on a real Redis.

* With the lane's commit sequence unchanged since the load, the commit reads nothing again
  (three round trips: ``TIME``; ``WATCH`` and two ``GET``; the transaction) and answers as the
  commit that reads everything (``snapshot=None``, the path every call took before): OK, a
  stale or wrong version, a processed event, a suppressed hash.
* A commit of the lane between the load and the commit (any writer ``INCR``s the sequence) is
  seen: the call reads again and reports the conflict; so is a bare ``INCR``.
* A check on something the load did not read: the call reads as before.
* Property: for random stores, loads, commits built from them (right, stale and absent
  versions, processed and new ids, suppressed hashes; writes of a field, or whole as a
  profile's and a record's are, ADR 0029) and an optional commit of another writer in
  between, the results and every key equal those of the same steps on a twin prefix whose
  commit does not use the snapshot.
* Property (ADR 0029): entities rewritten whole over the hashes the load read (a profile's
  ``d s i``, a record's ``p s``; some values as stored; a race or not) leave every key as on
  the twin prefix, whose commit sends each ``DEL`` and every field.
* The "versions" ids' ``EXISTS``: a commit between the first wave and the ``HMGET`` that
  follows when one exists is inside the seqlock (the load is read again).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolvers.store import (
    Commit,
    CommitResult,
    CommitStatus,
    Kind,
    Loaded,
    LoadRequest,
    Ref,
    Write,
    identifier_ref,
    profile_ref,
)
from streams.redis_keys import Keys, marker_groups
from streams.redis_store import RedisStore
from streams.wave_load import WaveLoad

pytestmark = pytest.mark.integration

TTL = 3600
P1, P_NEW = profile_ref("p1"), profile_ref("p_new")
TOMB = orjson.dumps({"h": ["p9"]})
REQUEST = LoadRequest(
    profiles=("p1",),
    versions=("p_new",),
    event_ids=("e0", "e1", "e2"),
    suppression_hashes=("h1", "h2"),
)


def _store(client: redis.Redis, prefix: str, *, snapshot: bool = True) -> RedisStore:
    """A worker's store (``watch`` + ``waves``); ``snapshot`` False: its commit reads
    everything again (the snapshot dropped before each commit)."""
    store = RedisStore(client, prefix=prefix, seen_ttl_s=TTL, commit="watch", load="waves")
    if not snapshot:
        waves, watch = store.waves, store.watch
        assert waves is not None
        assert watch is not None
        commit = watch.commit

        def without(*args: Any, **kwargs: Any) -> Any:
            kwargs["snapshot"] = None
            return commit(*args, **kwargs)

        watch.commit = without  # type: ignore[method-assign]
    return store


def _filled(client: redis.Redis, prefix: str, *, snapshot: bool = True) -> RedisStore:
    """p1 at version 1, e0 processed, h1 suppressed."""
    store = _store(client, prefix, snapshot=snapshot)
    assert store.commit(
        Commit({}, ("e0",), blind_writes=[Write(P1, 1, {"s": b"one"})], suppress={"h1": TOMB})
    ).ok
    return store


CASES: dict[str, tuple[Commit, CommitResult]] = {
    "ok": (Commit({P1: 1}, ("e1",), [Write(P1, 2, {"s": b"two"})]), CommitResult(CommitStatus.OK)),
    "new profile": (
        Commit({P_NEW: 0}, ("e1", "e2"), [Write(P_NEW, 1, {"s": b"n"})], unsuppressed=("h2",)),
        CommitResult(CommitStatus.OK),
    ),
    "stale version": (
        Commit({P1: 2}, ("e1",), [Write(P1, 3, {"s": b"x"})]),
        CommitResult(CommitStatus.CONFLICT, str(P1)),
    ),
    "expected absent, exists": (
        Commit({P1: 0}, ("e1",), [Write(P1, 1, {"s": b"x"})]),
        CommitResult(CommitStatus.CONFLICT, str(P1)),
    ),
    "processed": (
        Commit({P1: 1}, ("e0",), [Write(P1, 2, {"s": b"x"})]),
        CommitResult(CommitStatus.DUPLICATE, "e0"),
    ),
    "suppressed": (
        Commit({P1: 1}, ("e1",), [Write(P1, 2, {"s": b"x"})], unsuppressed=("h1",)),
        CommitResult(CommitStatus.CONFLICT, "suppressed:h1"),
    ),
}


def _dump(client: redis.Redis, prefix: str) -> dict[str, Any]:
    """Every key under ``prefix`` (its name without it) and its contents (streams without
    their entry ids; a markers layout's ``since``, the second its first commit ran, only as
    being there: two prefixes' first commits may fall in different seconds)."""
    out: dict[str, Any] = {}
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        kind = client.type(key)
        name = key.decode()[len(prefix) :]
        if kind == b"hash":
            fields = client.hgetall(key)
            if ":markers-layout:" in name:
                fields[b"since"] = fields.get(b"since", b"").isdigit()
            out[name] = fields
        elif kind == b"set":
            out[name] = sorted(client.smembers(key))  # type: ignore[type-var]
        elif kind == b"stream":
            out[name] = [fields for _id, fields in client.xrange(key)]
        else:
            out[name] = client.get(key)
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_an_unchanged_sequence_checks_against_the_load_and_answers_as_the_reads(
    redis_client: redis.Redis, redis_prefix: str, case: str
) -> None:
    part, expected = CASES[case]
    store = _filled(redis_client, f"{redis_prefix}a")
    twin = _filled(redis_client, f"{redis_prefix}b", snapshot=False)
    assert store.load(REQUEST) == twin.load(REQUEST)
    assert store.watch is not None
    assert twin.watch is not None
    before = store.watch.round_trips
    assert store.commit_parts([part]) == [expected] == twin.commit_parts([part])
    assert store.watch.from_snapshot == 1
    # TIME; WATCH, GET, GET; the transaction or UNWATCH
    assert store.watch.round_trips - before == 3
    assert twin.watch.from_snapshot == 0
    assert _dump(redis_client, f"{redis_prefix}a") == _dump(redis_client, f"{redis_prefix}b")


@pytest.mark.parametrize("other_commit", ["script", "watch", "incr"])
def test_a_commit_between_the_load_and_the_commit_is_seen(
    redis_client: redis.Redis, redis_prefix: str, other_commit: str
) -> None:
    """Another writer of the lane commits p1 after the load: the sequence moved, the call reads
    again and reports the conflict (a bare ``INCR``: it reads again and passes)."""
    store = _filled(redis_client, redis_prefix)
    store.load(REQUEST)
    if other_commit == "incr":
        redis_client.incr(store.keys.commit_seq("profiles"))
    else:
        other = RedisStore(redis_client, prefix=redis_prefix, seen_ttl_s=TTL, commit=other_commit)
        assert other.commit(Commit({P1: 1}, ("o1",), [Write(P1, 2, {"s": b"other"})])).ok
    part, _ = CASES["ok"]
    got = store.commit_parts([part])
    assert store.watch is not None
    assert store.watch.from_snapshot == 0
    if other_commit == "incr":
        assert got == [CommitResult(CommitStatus.OK)]
    else:
        assert got == [CommitResult(CommitStatus.CONFLICT, str(P1))]
        assert redis_client.hget(store.keys.entity(P1), "s") == b"other"


def test_a_check_the_load_did_not_read_reads_again(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    store = _filled(redis_client, redis_prefix)
    store.load(REQUEST)
    unread = profile_ref("p_unread")
    assert store.commit(Commit({unread: 0}, ("e1",), [Write(unread, 1, {"s": b"u"})])).ok
    assert store.commit(Commit({P1: 1}, ("e3",), [Write(P1, 2, {"s": b"x"})])).ok  # e3: unread
    assert store.watch is not None
    assert store.watch.from_snapshot == 0


PIDS = [f"p{i}" for i in range(5)]
KEYS = [f"email:u{i}@x" for i in range(4)]
EVENTS = [f"e{i}" for i in range(6)]
HASHES = ["h0", "h1", "h2"]


@st.composite
def steps(draw: Callable[..., Any]) -> tuple[Commit, LoadRequest, Any, Any]:
    """A store's contents (as one commit), a load request, how to build the commit from what
    was loaded, and another writer's commit between the load and it (or None)."""
    writes = [
        Write(profile_ref(p), draw(st.integers(1, 5)), {"s": b"s", "i": orjson.dumps([])})
        for p in draw(st.lists(st.sampled_from(PIDS), unique=True, max_size=4))
    ]
    writes += [
        Write(
            identifier_ref(k), draw(st.integers(1, 5)), {"p": draw(st.sampled_from(PIDS)).encode()}
        )
        for k in draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=3))
    ]
    processed = draw(st.lists(st.sampled_from(EVENTS), unique=True, max_size=3))
    tombs = {h: TOMB for h in draw(st.lists(st.sampled_from(HASHES), unique=True, max_size=2))}
    world = Commit({}, tuple(processed), blind_writes=writes, suppress=tombs)
    request = LoadRequest(
        identifiers=tuple(draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=3))),
        profiles=tuple(draw(st.lists(st.sampled_from(PIDS), unique=True, max_size=3))),
        versions=tuple(draw(st.lists(st.sampled_from([*PIDS, "p_new"]), unique=True, max_size=3))),
        event_ids=tuple(draw(st.lists(st.sampled_from(EVENTS), unique=True, max_size=4))),
        suppression_hashes=tuple(draw(st.lists(st.sampled_from(HASHES), unique=True, max_size=3))),
    )
    shifts = draw(st.lists(st.sampled_from([0, 0, 0, 1, -1]), min_size=8, max_size=8))
    extra_ref = draw(st.sampled_from([None, profile_ref("p_unread"), profile_ref("p0")]))
    ids_from = draw(st.sampled_from(["new", "all", "unread"]))
    race = draw(st.sampled_from([None, "p0", "p1", "p_new", "incr"]))
    # the writes replace the hashes as a profile's and a record's are written (ADR 0029: over
    # the hash the load read, without DEL and unchanged fields), or with one field
    whole = draw(st.booleans())
    fields = {
        Kind.PROFILE: {"d": b"d", "s": b"w", "i": orjson.dumps([])},
        Kind.IDENTIFIER: {"p": b"p1", "s": b"w"},
    }

    def build(loaded: Loaded) -> Commit:
        expect: dict[Ref, int] = {}
        for n, (ref, entity) in enumerate(list(loaded.entities.items())[:8]):
            expect[ref] = max(0, entity.version + shifts[n])
        if extra_ref is not None:
            expect.setdefault(extra_ref, 0)
        ids = {
            "new": [e for e in request.event_ids if e not in loaded.seen],
            "all": list(request.event_ids),
            "unread": [*request.event_ids, "e9"],
        }[ids_from]
        return Commit(
            expect,
            tuple(ids),
            [
                Write(ref, v + 1, fields.get(ref.kind, {"s": b"w"}) if whole else {"s": b"w"})
                for ref, v in expect.items()
            ],
            unsuppressed=tuple(request.suppression_hashes),
        )

    return world, request, build, race


def _race(client: redis.Redis, prefix: str, race: str | None) -> None:
    if race == "incr":
        client.incr(Keys(prefix).commit_seq("profiles"))
    elif race is not None:
        other = RedisStore(client, prefix=prefix, seen_ttl_s=TTL, commit="watch")
        ref = profile_ref(race)
        other.commit(Commit({}, (f"o-{race}",), blind_writes=[Write(ref, 7, {"s": b"o"})]))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(step=steps())
def test_the_snapshot_commit_answers_and_writes_as_the_commit_that_reads(
    redis_client: redis.Redis, step: tuple[Commit, LoadRequest, Any, str | None]
) -> None:
    world, request, build, race = step
    base = f"loomtest-snap-{uuid.uuid4().hex[:12]}"
    prefixes = (f"{base}a", f"{base}b")
    stores = (_store(redis_client, prefixes[0]), _store(redis_client, prefixes[1], snapshot=False))
    try:
        answers = []
        for prefix, store in zip(prefixes, stores, strict=True):
            assert store.commit(world).ok
            loaded = store.load(request)
            _race(redis_client, prefix, race)
            answers.append((loaded, store.commit_parts([build(loaded)])))
        assert answers[0] == answers[1]
        assert _dump(redis_client, prefixes[0]) == _dump(redis_client, prefixes[1])
    finally:
        for prefix in prefixes:
            keys = list(redis_client.scan_iter(match=f"{prefix}:*", count=1000))
            if keys:
                redis_client.delete(*keys)


class _CommitsAfterTheFirstWave(WaveLoad):
    def __init__(self, client: redis.Redis, keys: Keys, commit: Callable[[], None]) -> None:
        super().__init__(client, keys, TTL)
        self.commit, self.moves = commit, 1

    def between_waves(self) -> None:
        if self.moves:
            self.moves -= 1
            self.commit()


@st.composite
def rewrites(draw: Callable[..., Any]) -> tuple[Commit, LoadRequest, Any, str | None]:
    """ADR 0029: a store of profiles (``s i``, ``d s`` or a redirect ``r``) and records (``p``,
    ``p s``), a load of them, a commit rewriting each whole as a profile's and a record's are
    written (some values as stored) at the loaded versions, and maybe a race."""
    profiles = {
        p: draw(st.sampled_from([{"s": b"s", "i": b"[]"}, {"d": b"d", "s": b"s"}, {"r": b"p0"}]))
        for p in draw(st.lists(st.sampled_from(PIDS), unique=True, min_size=1, max_size=4))
    }
    records = {
        k: draw(st.sampled_from([{"p": b"p0"}, {"p": b"p1", "s": b"s"}]))
        for k in draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=3))
    }
    world = Commit(
        {},
        ("e0",),
        blind_writes=[Write(profile_ref(p), 2, f) for p, f in profiles.items()]
        + [Write(identifier_ref(k), 3, f) for k, f in records.items()],
    )
    request = LoadRequest(
        identifiers=tuple(records),
        profiles=tuple(profiles),
        versions=tuple(draw(st.lists(st.sampled_from(PIDS), unique=True, max_size=2))),
        event_ids=("e1", "e2"),
    )
    values = draw(st.lists(st.sampled_from([b"s", b"w", b"[]", b"p0", b"p1"]), min_size=9))

    def build(loaded: Loaded) -> Commit:
        expect = {ref: entity.version for ref, entity in loaded.entities.items()}
        writes = []
        for n, ref in enumerate(expect):
            pick = values[n % 9 :] + values
            if ref.kind == Kind.PROFILE:
                fields = {"d": b"d2", "s": pick[0], "i": pick[1]}
            else:
                fields = {"p": pick[0], "s": pick[1]}
            writes.append(Write(ref, expect[ref] + 1, fields))
        return Commit(expect, ("e1", "e2"), writes)

    return world, request, build, draw(st.sampled_from([None, None, "p0", "incr"]))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(step=rewrites())
def test_rewrites_over_the_loaded_hashes_store_what_the_commit_that_reads_stores(
    redis_client: redis.Redis, step: tuple[Commit, LoadRequest, Any, str | None]
) -> None:
    world, request, build, race = step
    base = f"loomtest-over-{uuid.uuid4().hex[:12]}"
    prefixes = (f"{base}a", f"{base}b")
    stores = (_store(redis_client, prefixes[0]), _store(redis_client, prefixes[1], snapshot=False))
    try:
        answers = []
        for prefix, store in zip(prefixes, stores, strict=True):
            assert store.commit(world).ok
            loaded = store.load(request)
            _race(redis_client, prefix, race)
            answers.append((loaded, store.commit_parts([build(loaded)])))
        assert answers[0] == answers[1]
        assert stores[0].watch is not None
        if race is None:
            assert answers[0][1] == [CommitResult(CommitStatus.OK)]
            assert stores[0].watch.from_snapshot == 1
        assert _dump(redis_client, prefixes[0]) == _dump(redis_client, prefixes[1])
    finally:
        for prefix in prefixes:
            keys = list(redis_client.scan_iter(match=f"{prefix}:*", count=1000))
            if keys:
                redis_client.delete(*keys)


def test_a_commit_before_the_versions_hmget_is_inside_the_seqlock(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """p1, a "versions" id, exists: its ``HMGET`` follows the first wave; a commit landing
    between them (p1 redirected) makes the load read again and see it whole."""
    store = _filled(redis_client, redis_prefix)
    keys = store.keys

    def redirect() -> None:
        assert store.commit(Commit({P1: 1}, ("o1",), [Write(P1, 2, {"r": b"p2"})])).ok

    waves = _CommitsAfterTheFirstWave(redis_client, keys, redirect)
    request = LoadRequest(versions=("p1",))  # no event ids: no marker waves after the first
    loaded = waves.load(request, marker_groups(request.event_ids))
    assert waves.loads == 2
    assert loaded is not None
    assert loaded.get(P1).version == 2
    assert loaded.get(P1).fields == {"r": b"p2"}
    assert waves.snapshot is not None
    assert waves.snapshot.sequence == redis_client.get(keys.commit_seq("profiles"))
