"""The commit without Lua (``streams.watch_commit``, ADR 0021) on a real Redis: what only it
does. (That it answers and writes as ``commit.lua`` does: the store contract suite and the
concurrency tests, parametrized over both commits; the same digests over the simulator's
events: ``python -m bench.commit_digest --commit script|watch``.)

* a commit of the lane between its reads and its ``EXEC`` aborts it, and the call, read and
  checked again, reports the conflict; a script-mode writer of the lane is such a commit;
* after ``max_attempts`` aborts the call raises ``CommitConflictError``, nothing written;
* the connection goes back to the pool without ``WATCH`` or ``MULTI`` state, whatever happened;
* a scope whose layout-1 hand-over is not over is committed by ``commit.lua`` (ADR 0016);
* the generation check and ``WAIT`` behave as the script path's.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from resolvers.pipeline import CommitConflictError
from resolvers.store import (
    Commit,
    CommitResult,
    CommitStatus,
    Kind,
    LoadRequest,
    Ref,
    Write,
)
from streams import redis_store as rs
from streams.errors import StateLostError
from streams.redis_store import NotReplicatedError, RedisStore
from streams.watch_commit import MAX_ATTEMPTS, WatchCommit

pytestmark = pytest.mark.integration

TTL = 3600
REF = Ref(Kind.PROFILE, "p1")


def _store(client: redis.Redis, prefix: str, **kwargs: Any) -> RedisStore:
    return RedisStore(client, prefix=prefix, seen_ttl_s=TTL, commit="watch", **kwargs)


def _raced(store: RedisStore, race: Any) -> WatchCommit:
    """``store``'s watch commit, calling ``race(aborts_so_far)`` after each attempt's reads."""
    assert store.watch is not None

    class Raced(WatchCommit):
        def _read(self, conn: Any, parts: Sequence[Commit], *args: Any) -> Any:
            reads = super()._read(conn, parts, *args)
            race(self.aborts)
            return reads

    raced = Raced(store.client, store.keys, TTL, on_abort=store.watch.on_abort)
    store.watch = raced
    return raced


def mine(value: bytes = b"mine") -> Commit:
    return Commit({REF: 0}, ("mine",), [Write(REF, 1, {"s": value})])


@pytest.mark.parametrize("other_commit", ["script", "watch"])
def test_a_commit_between_the_reads_and_exec_aborts_and_the_retry_sees_it(
    redis_client: redis.Redis, redis_prefix: str, other_commit: Any
) -> None:
    """Another writer of the lane (``commit.lua`` or this commit) writes the checked entity
    after this call read it: ``EXEC`` is aborted (nothing written), the call reads and checks
    again and reports the conflict, as ``commit.lua`` would have."""
    store = _store(redis_client, redis_prefix)
    other = RedisStore(redis_client, prefix=redis_prefix, seen_ttl_s=TTL, commit=other_commit)

    def race(aborts: int) -> None:
        if not aborts:
            assert other.commit(Commit({REF: 0}, ("other",), [Write(REF, 1, {"s": b"x"})])).ok

    told: list[None] = []
    assert store.watch is not None
    store.watch.on_abort = lambda: told.append(None)  # as the worker's loom_commit_aborts_total
    raced = _raced(store, race)
    assert store.commit_parts([mine()]) == [CommitResult(CommitStatus.CONFLICT, str(REF))]
    assert raced.aborts == 1
    assert len(told) == 1
    assert redis_client.hget(store.keys.entity(REF), "s") == b"x"
    assert redis_client.get(store.keys.commit_seq("profiles")) == b"1"  # the other's commit


def test_a_commit_of_another_lane_does_not_abort(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """Each lane has its own sequence: an inventory commit in the window changes nothing."""
    store = _store(redis_client, redis_prefix)
    other = RedisStore(redis_client, prefix=redis_prefix, seen_ttl_s=TTL)
    sku = Ref(Kind.STOCK, "S1")

    def race(aborts: int) -> None:
        if not aborts:
            part = Commit({sku: 0}, ("inv",), [Write(sku, 1, {"s": b"{}"})], scope="inventory")
            assert other.commit(part).ok

    raced = _raced(store, race)
    assert store.commit(mine()).ok
    assert raced.aborts == 0
    assert redis_client.get(store.keys.commit_seq("inventory")) == b"1"
    assert redis_client.get(store.keys.commit_seq("profiles")) == b"1"


@pytest.mark.parametrize("races", [MAX_ATTEMPTS - 1, MAX_ATTEMPTS])
def test_the_call_gives_up_after_its_bound(
    redis_client: redis.Redis, redis_prefix: str, races: int
) -> None:
    """Another commit of the lane (an ``INCR`` of the sequence) in every window: after
    ``MAX_ATTEMPTS`` aborts the call raises ``CommitConflictError`` (retryable), nothing
    written; one window fewer and the last attempt writes."""
    store = _store(redis_client, redis_prefix)
    seq = store.keys.commit_seq("profiles")

    def race(aborts: int) -> None:
        if aborts < races:
            redis_client.incr(seq)

    raced = _raced(store, race)
    if races < MAX_ATTEMPTS:
        assert store.commit(mine()).ok
        assert redis_client.hget(store.keys.entity(REF), "s") == b"mine"
    else:
        with pytest.raises(CommitConflictError):
            store.commit(mine())
        assert not redis_client.exists(store.keys.entity(REF))
    assert raced.aborts == races
    assert _clean_connection(redis_client, seq)


def _clean_connection(client: redis.Redis, watched: str) -> bool:
    """The pool's next connection (the one the commit released: the pool hands out the most
    recently released) holds no ``WATCH`` (a transaction ``EXEC``s though ``watched`` moved
    from another connection) and no ``MULTI`` or unread reply (commands answer as they
    should)."""
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        other = redis.Redis(connection_pool=redis.ConnectionPool(**pool.connection_kwargs))
        other.incr(watched)
        other.close()
        conn.send_command("MULTI")
        assert conn.read_response() == b"OK"  # not "MULTI calls can not be nested"
        conn.send_command("PING")
        assert conn.read_response() == b"QUEUED"
        conn.send_command("EXEC")
        exec_reply = conn.read_response()
        conn.send_command("ECHO", "after")
        return exec_reply == [b"PONG"] and conn.read_response() == b"after"
    finally:
        pool.release(conn)


def test_an_error_mid_transaction_leaves_no_state_on_the_pooled_connection(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """An exception after ``WATCH`` (here: in the checks) and one after the ``MULTI`` body was
    sent but before its replies were read: the connection is dropped, not reused as it is."""
    store = _store(redis_client, redis_prefix)
    seq = store.keys.commit_seq("profiles")

    def fail(aborts: int) -> None:
        raise RuntimeError("boom after WATCH")

    _raced(store, fail)
    with pytest.raises(RuntimeError, match="after WATCH"):
        store.commit(mine())
    assert _clean_connection(redis_client, seq)

    class Unread(WatchCommit):
        def _round_trip(self, conn: Any, resp: Any, **kwargs: Any) -> list[Any]:
            if self.round_trips == 2:  # the third: MULTI ... EXEC
                conn.send_packed_command(resp.packed())
                raise RuntimeError("boom before the replies")
            return super()._round_trip(conn, resp, **kwargs)

    store.watch = Unread(redis_client, store.keys, TTL)
    with pytest.raises(RuntimeError, match="before the replies"):
        store.commit(mine())
    assert _clean_connection(redis_client, seq)
    assert redis_client.ping()


def test_an_abort_and_a_conflict_leave_no_state_either(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    store = _store(redis_client, redis_prefix)
    seq = store.keys.commit_seq("profiles")
    _raced(store, lambda aborts: redis_client.incr(seq) if not aborts else None)
    assert store.commit(mine()).ok
    assert _clean_connection(redis_client, seq)
    failed = store.commit(mine(b"again"))  # checks fail: UNWATCH, nothing written
    assert failed.status is CommitStatus.CONFLICT
    assert _clean_connection(redis_client, seq)


def test_a_connection_lost_inside_the_window_raises_and_never_commits_unguarded(
    redis_url: str, redis_client: redis.Redis, redis_prefix: str
) -> None:
    """The connection holding the ``WATCH`` is killed and the entity written by another
    writer: the commit must fail as a connection error (the batch is retried), not reconnect
    and ``EXEC`` without its ``WATCH`` (a health check before a command, with
    ``health_check_interval`` and retries set, reconnects)."""
    client = redis.Redis.from_url(
        redis_url, health_check_interval=1e-6, retry=Retry(NoBackoff(), 2)
    )
    store = _store(client, redis_prefix)
    other = RedisStore(redis_client, prefix=redis_prefix, seen_ttl_s=TTL)

    class Killed(WatchCommit):
        def _read(self, conn: Any, parts: Sequence[Commit], *args: Any) -> Any:
            reads = super()._read(conn, parts, *args)
            conn.send_command("CLIENT", "ID")
            redis_client.client_kill_filter(_id=conn.read_response())
            assert other.commit(Commit({REF: 0}, ("other",), [Write(REF, 1, {"s": b"x"})])).ok
            return reads

    store.watch = Killed(client, store.keys, TTL)
    try:
        with pytest.raises(redis.ConnectionError):
            store.commit(mine())
    finally:
        client.close()
    assert redis_client.hget(store.keys.entity(REF), "s") == b"x"


def test_a_lane_still_handing_over_from_layout_1_commits_through_commit_lua(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """A layout-1 marker (``P:v1:seen:{event_id}``, ADR 0016) exists: the hand-over is not
    settled, so the call goes through ``commit.lua``, which finds the marker: a duplicate."""
    store = _store(redis_client, redis_prefix)
    redis_client.set(store.keys.seen("old"), 1, ex=TTL)
    assert store.watch is not None
    part = Commit({}, ("new", "old"))
    assert store.commit(part) == CommitResult(CommitStatus.DUPLICATE, "old")
    assert store.watch.fallbacks == 1
    assert store.commit(Commit({}, ("new",))).ok
    assert store.watch.fallbacks == 2
    # a call with no event id does not look markers up: this commit takes it
    assert store.commit(Commit({}, (), counters={"n": 1})).ok
    assert store.watch.fallbacks == 2
    assert redis_client.get(store.keys.commit_seq("profiles")) == b"2"


def test_a_moved_generation_is_state_lost_and_writes_nothing(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    store = _store(redis_client, redis_prefix)
    redis_client.set(store.keys.generation, "g1")
    store.generation = "g1"
    assert store.commit(Commit({}, ("e1",))).ok
    redis_client.set(store.keys.generation, "g2")
    with pytest.raises(StateLostError, match="no longer holds generation g1"):
        store.commit(mine())
    assert not redis_client.exists(store.keys.entity(REF))
    assert _clean_connection(redis_client, store.keys.commit_seq("profiles"))


def test_without_the_replicas_the_commit_is_not_replicated(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """``wait_replicas`` 1 on a primary without replicas: ``WAIT`` answers 0 after its timeout
    (here shortened), the commit raises ``NotReplicatedError`` (retried as a connection
    error), as the script path does."""
    store = _store(redis_client, redis_prefix, wait_replicas=1)
    patch = pytest.MonkeyPatch()
    patch.setattr(rs, "WAIT_TIMEOUT_MS", 10)
    try:
        with pytest.raises(NotReplicatedError, match="acknowledged by 0 of 1"):
            store.commit(mine())
    finally:
        patch.undo()
    assert redis_client.hget(store.keys.entity(REF), "s") == b"mine"  # written, unconfirmed


def test_script_and_watch_writers_never_lose_an_update(
    redis_url: str, redis_client: redis.Redis, redis_prefix: str
) -> None:
    """Two threads increment one counter entity by read-modify-write, one through
    ``commit.lua``, one through this commit: every increment that reported OK is in the
    final value (a lost conflict would lose one), and they did conflict."""
    rounds = 150
    results: dict[str, list[bool]] = {"script": [], "watch": []}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2, timeout=30)

    def writer(commit: Any) -> None:
        client = redis.Redis.from_url(redis_url)
        store = RedisStore(client, prefix=redis_prefix, seen_ttl_s=TTL, commit=commit)
        try:
            barrier.wait()
            for n in range(rounds):
                loaded = store.load(LoadRequest(profiles=(REF.name,)))
                current = loaded.entities[REF]
                value = int(current.fields.get("s", b"0"))
                part = Commit(
                    {REF: current.version},
                    (f"{commit}-{n}",),
                    [Write(REF, current.version + 1, {"s": str(value + 1).encode()})],
                )
                results[commit].append(store.commit(part).ok)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=writer, args=(c,)) for c in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    ok = sum(sum(r) for r in results.values())
    assert ok < 2 * rounds, "the writers never conflicted: the test proves nothing"
    assert all(any(r) for r in results.values())
    stored = redis_client.hgetall(RedisStore(redis_client, prefix=redis_prefix).keys.entity(REF))
    assert stored == {b"v": str(ok).encode(), b"s": str(ok).encode()}


@pytest.mark.parametrize("lane", ["profiles", "inventory"])
def test_both_commits_digest_as_the_in_memory_store_over_simulator_batches(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, lane: str
) -> None:
    """``bench.commit_digest`` over 1,000 simulator events: the same commits, results and
    entities as the in-memory store with either commit, and the same keys left by both."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    digest = importlib.import_module("bench.commit_digest")
    memory = digest.digests(1000, lane)
    script = digest.digests(1000, lane, "script", redis_url)
    watch = digest.digests(1000, lane, "watch", redis_url)
    assert {k: script[k] for k in memory} == memory
    assert watch == script
