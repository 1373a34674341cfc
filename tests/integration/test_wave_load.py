"""The load without Lua (``streams.wave_load``, ADR 0022) on a real Redis: it returns what
``load.lua`` and the in-memory store return for random stores, its seqlock re-reads across a
commit, and it leaves the marker hand-over to ``load.lua``. (The store contract suite runs
over it too: ``test_store_contract``'s ``redis-waves``.)"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Literal

import orjson
import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from resolvers.store import (
    Commit,
    InMemoryStore,
    LoadRequest,
    Write,
    identifier_ref,
    profile_ref,
    stock_ref,
)
from streams.redis_keys import Keys, marker_groups
from streams.redis_store import NotReplicatedError, RedisStore
from streams.wave_load import LoadContendedError, WaveLoad

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

KEYS = [f"email:u{i}@x" for i in range(8)]
PIDS = [f"p_{i}" for i in range(8)]
HASHES = [f"h{i}" for i in range(4)]


@st.composite
def worlds(draw: Callable[..., Any]) -> tuple[list[Write], dict[str, bytes], set[str]]:
    """A random store: identifier records (p, h, s), profiles (s, i, or a redirect r),
    stocks, tombstones with holders, processed event ids."""
    some = st.lists(st.sampled_from(PIDS), max_size=3)
    writes: list[Write] = []
    for key in draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=8)):
        fields = {"s": draw(st.binary(max_size=40)), "h": orjson.dumps(draw(some))}
        if draw(st.booleans()):
            fields["p"] = draw(st.sampled_from(PIDS)).encode()
        writes.append(Write(identifier_ref(key), draw(st.integers(1, 9)), fields))
    for pid in draw(st.lists(st.sampled_from(PIDS), unique=True, max_size=8)):
        if draw(st.integers(0, 3)) == 0:
            fields = {"r": draw(st.sampled_from(PIDS)).encode(), "d": b"{}"}
        else:
            held = draw(st.lists(st.sampled_from([*KEYS, "phone:+4790000000"]), max_size=3))
            fields = {"s": draw(st.binary(min_size=1, max_size=60)), "i": orjson.dumps(held),
                      "d": b"{}"}  # fmt: skip
        writes.append(Write(profile_ref(pid), draw(st.integers(1, 9)), fields))
    if draw(st.booleans()):
        writes.append(Write(stock_ref("S1"), 3, {"s": b"stock", "d": b"{}"}))
    tombs = {
        h: orjson.dumps({"h": draw(some)})
        for h in draw(st.lists(st.sampled_from(HASHES), unique=True, max_size=3))
    }
    processed = set(draw(st.lists(st.sampled_from([f"e{i}" for i in range(6)]), max_size=4)))
    return writes, tombs, processed


requests = st.builds(
    LoadRequest,
    identifiers=st.lists(st.sampled_from(KEYS), max_size=4),
    profiles=st.lists(st.sampled_from(PIDS), max_size=3),
    versions=st.lists(st.sampled_from([*PIDS, "p_new"]), max_size=3),
    stocks=st.lists(st.sampled_from(["S1", "S2"]), max_size=2),
    event_ids=st.lists(st.sampled_from([f"e{i}" for i in range(8)]), max_size=6, unique=True),
    suppression_hashes=st.lists(st.sampled_from([*HASHES, "h9"]), max_size=4),
    max_profiles=st.integers(1, 6),
)


def fill(store: InMemoryStore | RedisStore, world: tuple[list[Write], dict[str, bytes], set[str]]):
    writes, tombs, processed = world
    assert store.commit(Commit({}, tuple(processed), blind_writes=writes, suppress=tombs)).ok


#: hypothesis found it (2026-12-03): p_4 asked, h0's tombstone adding p_0, which redirects to
#: p_2 while p_4's email leads to p_1. load.lua visits p_2 before the email's p_1; the wave load
#: stopped in the profiles' loop to read p_0 and resumed with the records, visiting p_1 first
#: (and, at 3 profiles, loading p_1 instead of p_2).
_RESUMED_IN_THE_PROFILES_LOOP: Final = (
    [
        Write(identifier_ref("email:u4@x"), 1, {"s": b"", "h": b"[]", "p": b"p_1"}),
        Write(profile_ref("p_1"), 1, {"r": b"p_0", "d": b"{}"}),
        Write(profile_ref("p_2"), 1, {"r": b"p_0", "d": b"{}"}),
        Write(profile_ref("p_4"), 1, {"s": b"\x00", "i": b'["email:u4@x"]', "d": b"{}"}),
        Write(profile_ref("p_0"), 1, {"r": b"p_2", "d": b"{}"}),
    ],
    {"h0": b'{"h":["p_0"]}'},
    {"e0"},
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(world=worlds(), asked=st.lists(requests, min_size=1, max_size=3))
@example(
    world=_RESUMED_IN_THE_PROFILES_LOOP,
    asked=[
        LoadRequest(profiles=["p_4"], suppression_hashes=["h0"], max_profiles=n) for n in (3, 4)
    ],
)
def test_waves_load_what_load_lua_and_the_memory_store_load(
    redis_client: redis.Redis,
    world: tuple[list[Write], dict[str, bytes], set[str]],
    asked: list[LoadRequest],
) -> None:
    prefix = f"loomtest-waves-{abs(hash((repr(world), repr(asked)))) % 10**12}"
    memory = InMemoryStore()
    script = RedisStore(redis_client, prefix=prefix)
    waves = RedisStore(redis_client, prefix=prefix, load="waves")
    try:
        fill(memory, world)
        fill(script, world)
        for request in asked:
            expected = memory.load(request)
            assert waves.load(request) == expected
            assert script.load(request) == expected
            # and in the same order as load.lua's reply (records, profiles, stocks)
            assert list(waves.load(request).entities) == list(script.load(request).entities)
    finally:
        keys = list(redis_client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            redis_client.delete(*keys)


class _CommitsBetweenWaves(WaveLoad):
    """Runs ``commit`` before the first ``moves`` round trips after a load's first one."""

    def __init__(self, client: redis.Redis, keys: Keys, commit: Callable[[], None], moves: int):
        super().__init__(client, keys, 3600)
        self.commit, self.moves = commit, moves

    def between_waves(self) -> None:
        if self.moves:
            self.moves -= 1
            self.commit()


def test_a_commit_between_waves_forces_a_reload(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """Between wave 1 (the record, pointing at p_1) and wave 2 (p_1) a commit merges p_1 into
    p_2: the torn read (a record pointing at a redirect it never saw written) is dropped and
    the load is read again, seeing the merge whole."""
    store = RedisStore(redis_client, prefix=redis_prefix)
    store.load(LoadRequest())  # a worker's first call: the marker hand-over settled (none)
    email, p1, p2 = identifier_ref("email:a@x"), profile_ref("p_1"), profile_ref("p_2")
    assert store.commit(
        Commit(
            {},
            (),
            writes=(
                Write(email, 1, {"p": b"p_1", "s": b"1"}),
                Write(p1, 1, {"s": b"one", "i": b'["email:a@x"]'}),
            ),
        )
    ).ok
    keys = Keys(redis_prefix)
    sequence = keys.commit_seq("profiles")

    def merge() -> None:  # a commit of the lane: its writes and the sequence's INCR, atomic
        pipe = redis_client.pipeline(transaction=True)
        pipe.hset(keys.entity(email), mapping={"v": 2, "p": "p_2"})
        pipe.hset(keys.entity(p1), mapping={"v": 2, "r": "p_2"})
        pipe.hdel(keys.entity(p1), "s", "i")
        pipe.hset(keys.entity(p2), mapping={"v": 1, "s": b"two", "i": b'["email:a@x"]'})
        pipe.incr(sequence)
        pipe.execute()

    waves = _CommitsBetweenWaves(redis_client, keys, merge, moves=1)
    torn: list[None] = []
    waves.on_torn = lambda: torn.append(None)  # as the worker's loom_loads_torn_total
    request = LoadRequest(identifiers=("email:a@x",), event_ids=("e1",))
    before = store.load(request)
    assert before.get(p1).fields["s"] == b"one"
    loaded = waves.load(request, marker_groups(request.event_ids))
    assert waves.loads == 2
    assert len(torn) == 1
    assert loaded == store.load(request)  # load.lua's snapshot after the merge
    assert loaded is not None
    assert loaded.get(email).fields["p"] == b"p_2"
    assert loaded.get(p2).fields["s"] == b"two"
    assert p1 not in loaded.entities  # no longer reached


def test_a_load_that_keeps_being_torn_gives_up_retryably(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    sequence = keys.commit_seq("profiles")
    waves = _CommitsBetweenWaves(redis_client, keys, lambda: redis_client.incr(sequence), moves=100)
    waves.attempts = 3
    request = LoadRequest(identifiers=("email:a@x",), event_ids=("e1",))
    RedisStore(redis_client, prefix=redis_prefix).load(request)  # settles the hand-over
    with pytest.raises(LoadContendedError):
        waves.load(request, marker_groups(request.event_ids))
    assert waves.loads == 3
    waves.moves = 0  # the connection went back to the pool clean: the next load works
    assert waves.load(request, marker_groups(request.event_ids)) is not None


def test_during_the_marker_hand_over_the_script_loads(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """A layout-1 marker (ADR 0016) exists: waves do not look those up, load.lua does."""
    store = RedisStore(redis_client, prefix=redis_prefix, load="waves")
    redis_client.set(store.keys.seen("e-old"), 1)
    request = LoadRequest(event_ids=("e-old", "e-new"))
    assert store.waves is not None
    assert store.waves.load(request, marker_groups(request.event_ids)) is None
    assert store.load(request).seen == {"e-old"}


@pytest.mark.parametrize(
    ("commit", "load"), [("script", "script"), ("script", "waves"), ("watch", "waves")]
)
def test_the_profiles_lane_commits_the_same_bytes_on_either_load(
    redis_url: str,
    commit: Literal["script", "watch"],
    load: Literal["script", "waves"],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``bench.commit_digest --load``: ``run_batch`` over simulator events on ``RedisStore``
    makes the in-memory store's commits, results and final entities, with either load."""
    monkeypatch.syspath_prepend(str(ROOT))  # `python -m bench...` runs from the checkout
    digest = importlib.import_module("bench.commit_digest")
    on_redis = digest.digests(1300, "profiles", commit, redis_url, load)
    in_memory = digest.digests(1300, "profiles")
    assert {k: on_redis[k] for k in in_memory} == in_memory


@pytest.mark.parametrize("load", ["script", "waves"])
def test_a_load_that_finds_processed_events_confirms_replication_with_either_load(
    redis_client: redis.Redis, redis_prefix: str, load: Literal["script", "waves"]
) -> None:
    """``wait_replicas``: skipping events on the strength of unreplicated state is refused
    (this server has no replica: the confirmation fails), a load finding none needs none."""
    RedisStore(redis_client, prefix=redis_prefix).commit(Commit({}, ("e-done",)))
    store = RedisStore(redis_client, prefix=redis_prefix, wait_replicas=1, load=load)
    assert store.load(LoadRequest(event_ids=("e-new",))).seen == frozenset()
    with pytest.raises(NotReplicatedError):
        store.load(LoadRequest(event_ids=("e-done", "e-new")))
