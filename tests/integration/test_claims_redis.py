"""Claims on a real Redis (``streams.redis_claims``, ADR 0040).

Two workers (each its own client, ``RedisStore`` and :class:`RedisClaims`) on one prefix: a
part the other worker holds waits for its commit instead of conflicting; the claim is
released inside the commit's transaction; a claim's ``EXEC`` aborted by another worker's
claim is tried again; a stopping worker removes its entry; the hash names no identifier.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import orjson
import pytest
import redis
from builders import make_context

from resolvers.claims import TTL_MS, Entry, ref_hash
from resolvers.pipeline import PROFILES, BatchResult, load_request, prepare, run_batch
from resolvers.steps import RawRecord
from resolvers.store import Commit, CommitResult, Kind, Loaded, LoadRequest
from schemas.normalize import DEFAULT
from streams.redis_claims import RedisClaims
from streams.redis_keys import Keys
from streams.redis_store import RedisStore
from streams.testing import Racing

pytestmark = pytest.mark.integration

TTL = 3600


def shopper(n: int, minute: int) -> RawRecord:
    """A web visit of shopper ``n`` (a person of its own: their email and loyalty id)."""
    return signup(
        f"e-{n}-{minute}",
        minute,
        {"email": f"shopper{n}@example.com", "loyalty_id": f"L-{n}"},
        offset=n * 100 + minute,
    )


def signup(eid: str, minute: int, identifiers: dict[str, str], *, offset: int) -> RawRecord:
    event = {
        "event_id": eid,
        "type": "signup",
        "channel": "web",
        "occurred_at": f"2026-11-20T10:{minute:02d}:00+01:00",
        "region": "NO",
        "identifiers": identifiers,
        "consent": {"analytics": True, "personalization": True},
    }
    return RawRecord(orjson.dumps(event), topic="touchpoints.raw", partition=0, offset=offset)


def shoppers() -> list[RawRecord]:
    return [shopper(n, m) for n, m in itertools.product(range(1, 9), (1, 2))]


@dataclass
class Worker:
    store: RedisStore
    claims: RedisClaims

    def run(
        self, records: Sequence[RawRecord], store: object = None, *, claiming: bool = True
    ) -> BatchResult:
        return run_batch(
            records,
            store or self.store,  # type: ignore[arg-type]
            make_context,
            max_bytes=64 * 1024,
            config=DEFAULT,
            lane=PROFILES,
            max_parts=16,
            claims=self.claims if claiming else None,
        )


@pytest.fixture
def workers(redis_url: str, redis_prefix: str) -> Iterator[tuple[Worker, Worker]]:
    made: list[Worker] = []
    clients: list[redis.Redis] = []
    for name in ("a", "b"):
        client = redis.Redis.from_url(redis_url, decode_responses=False)
        clients.append(client)
        store = RedisStore(
            client, prefix=redis_prefix, seen_ttl_s=TTL, commit="watch", load="waves"
        )
        made.append(Worker(store, RedisClaims(store, "profiles", f"{name}:1:profiles")))
    yield made[0], made[1]
    for client in clients:
        client.close()


def entries(client: redis.Redis, prefix: str) -> dict[bytes, Entry | None]:
    found = client.hgetall(Keys(prefix).claims("profiles"))
    return {k: Entry.decode(v) for k, v in found.items()}


def test_a_commit_after_the_load_defers_its_part_instead_of_conflicting(
    workers: tuple[Worker, Worker], redis_client: redis.Redis, redis_prefix: str
) -> None:
    a, b = workers
    view = Racing(b.store, lambda: a.run([shopper(3, 30)]))
    result = b.run(shoppers(), view)
    assert result.conflicted_parts == 0
    assert result.deferred_parts == 1
    assert result.processed == 16
    assert view.loads == 2
    # both released: nothing active, the last commits' entities named as previous
    found = entries(redis_client, redis_prefix)
    assert set(found) == {b"a:1:profiles", b"b:1:profiles"}
    assert all(e is not None and not e.active and e.previous for e in found.values())


def test_two_commits_after_the_load_make_the_batch_load_again_instead_of_conflicting(
    workers: tuple[Worker, Worker], redis_client: redis.Redis, redis_prefix: str
) -> None:
    """The other worker commits two batches between this one's load and its claim: its entry
    names only the second (shopper 5), so what the first wrote (shopper 3) is held by no
    claim. The sequence moved by two and the entries name one commit: the batch loads again
    (ADR 0040, amended) instead of computing shopper 3 on a stale load."""
    a, b = workers
    view = Racing(b.store, lambda: (a.run([shopper(3, 30)]), a.run([shopper(5, 30)])))
    result = b.run(shoppers(), view)
    assert result.conflicted_parts == 0
    assert result.deferred_events == 16  # all of it waited once
    assert result.processed == 16
    assert view.loads == 2
    seq = int(redis_client.get(Keys(redis_prefix).commit_seq("profiles")) or 0)
    found = entries(redis_client, redis_prefix)
    # each entry names the sequence its last batch's commit made
    named = {owner: None if e is None else e.commits for owner, e in found.items()}
    assert named == {b"a:1:profiles": (seq - 1,), b"b:1:profiles": (seq,)}


def test_without_claims_the_same_race_conflicts(
    workers: tuple[Worker, Worker],
) -> None:
    a, b = workers
    view = Racing(b.store, lambda: a.run([shopper(3, 30)]))
    result = run_batch(
        shoppers(), view, make_context, max_bytes=65536, config=DEFAULT, lane=PROFILES,  # type: ignore[arg-type]
        max_parts=16,
    )  # fmt: skip
    assert result.conflicted_parts == 1


def test_an_active_claim_holds_a_part_until_its_worker_commits(
    workers: tuple[Worker, Worker], redis_client: redis.Redis, redis_prefix: str
) -> None:
    a, b = workers
    # A claims shopper 3's part (its batch in flight), B's batch then meets it
    events, _ = prepare([shopper(3, 30)], max_bytes=65536, config=DEFAULT, salt=make_context().salt)
    hashes = frozenset(map(ref_hash, a.store.load(load_request(events)).entities))
    a.claims.begin()
    assert a.claims.look() == frozenset()
    assert a.claims.hold(hashes)
    waits: list[float] = []

    def a_commits(seconds: float) -> None:  # B's wait: A finishes its batch meanwhile
        waits.append(seconds)
        if len(waits) == 1:
            a.run([shopper(3, 30)])

    b.claims.sleep = a_commits
    result = b.run(shoppers())
    assert result.deferred_parts == 1
    assert result.conflicted_parts == 0
    assert len(waits) == 1
    found = entries(redis_client, redis_prefix)[b"a:1:profiles"]
    assert found is not None
    assert not found.active


@dataclass
class Peeking:
    """A worker's store that reads the lane's claims just before each commit."""

    inner: RedisStore
    client: redis.Redis
    prefix: str
    seen: list[dict[bytes, Entry | None]]

    def load(self, request: LoadRequest) -> Loaded:
        return self.inner.load(request)

    def commit(self, commit: Commit) -> CommitResult:
        return self.commit_parts([commit])[0]

    def commit_parts(self, parts: Sequence[Commit]) -> list[CommitResult]:
        self.seen.append(entries(self.client, self.prefix))
        return self.inner.commit_parts(parts)


def test_a_batch_holds_what_it_computes_until_its_commit(
    workers: tuple[Worker, Worker], redis_client: redis.Redis, redis_prefix: str
) -> None:
    a, _ = workers
    events, _ = prepare(shoppers(), max_bytes=65536, config=DEFAULT, salt=make_context().salt)
    loads = frozenset(map(ref_hash, a.store.load(load_request(events)).entities))
    seen: list[dict[bytes, Entry | None]] = []
    a.run(shoppers(), Peeking(a.store, redis_client, redis_prefix, seen))
    [before] = seen
    entry = before[b"a:1:profiles"]
    assert entry is not None
    assert entry.active == loads  # every entity the batch's compare-and-set checks
    after = entries(redis_client, redis_prefix)[b"a:1:profiles"]
    assert after is not None
    assert after.active == frozenset()
    assert after.previous == loads


def test_the_release_rides_in_the_commits_transaction(
    workers: tuple[Worker, Worker], redis_client: redis.Redis, redis_prefix: str
) -> None:
    a, _ = workers
    round_trips = a.claims.round_trips
    a.run(shoppers())
    assert a.claims.round_trips - round_trips == 2  # the claim; the release was in the commit
    entry = entries(redis_client, redis_prefix)[b"a:1:profiles"]
    assert entry is not None
    assert not entry.active
    assert len(entry.previous) > 16


def test_a_hold_fails_if_another_worker_claimed_since_the_look(
    workers: tuple[Worker, Worker], redis_client: redis.Redis, redis_prefix: str
) -> None:
    a, b = workers
    a.claims.begin()
    assert a.claims.look() == frozenset()
    b.claims.begin()  # B claims between A's look and its hold
    assert b.claims.look() == frozenset()
    assert b.claims.hold(frozenset({1, 2}))
    assert not a.claims.hold(frozenset({2, 3}))
    assert a.claims.aborted == 1
    assert a.claims.look() == {1, 2}  # looked again: B's claim
    assert a.claims.hold(frozenset({3}))
    found = entries(redis_client, redis_prefix)
    mine = found[b"a:1:profiles"]
    assert mine == Entry(mine.at_ms, frozenset({3}), commits=())  # type: ignore[union-attr]


def test_a_batch_racing_claims_goes_on_and_ends_as_one_worker(
    workers: tuple[Worker, Worker], redis_client: redis.Redis, redis_prefix: str
) -> None:
    """Every hold of A's batch aborted (B claims each time in between): after ATTEMPTS it
    goes on unclaimed, and the compare-and-set keeps the result exact."""
    a, _ = workers
    key = Keys(redis_prefix).claims("profiles")
    look = a.claims.look

    def meddled() -> frozenset[int]:
        found = look()
        redis_client.hset(key, b"b:1:profiles", Entry(1).encode())
        return found

    a.claims.look = meddled  # type: ignore[method-assign]
    result = a.run(shoppers())
    assert a.claims.aborted == 5  # resolvers.claims.ATTEMPTS
    assert result.processed == 16
    assert result.deferred_parts == 0


def test_a_stopping_worker_removes_its_entry(
    workers: tuple[Worker, Worker], redis_client: redis.Redis, redis_prefix: str
) -> None:
    a, b = workers
    a.run(shoppers()[:2])
    b.run(shoppers()[2:4])
    a.claims.close()
    assert set(entries(redis_client, redis_prefix)) == {b"b:1:profiles"}


def test_the_hash_names_no_identifier(
    workers: tuple[Worker, Worker], redis_client: redis.Redis, redis_prefix: str
) -> None:
    a, _ = workers
    a.run(shoppers())
    raw = b"".join(redis_client.hgetall(Keys(redis_prefix).claims("profiles")).values())
    assert b"shopper" not in raw
    assert b"L-3" not in raw


def test_claims_need_the_watch_commit(redis_client: redis.Redis, redis_prefix: str) -> None:
    store = RedisStore(redis_client, prefix=redis_prefix, seen_ttl_s=TTL, commit="script")
    with pytest.raises(ValueError, match="LOOM_REDIS_COMMIT=watch"):
        RedisClaims(store, "profiles", "a:1:profiles")


@dataclass
class _CommitLost:
    """A store whose commit never reaches Redis (the connection dropped)."""

    inner: RedisStore

    def load(self, request: LoadRequest) -> Loaded:
        return self.inner.load(request)

    def commit(self, commit: Commit) -> CommitResult:
        return self.commit_parts([commit])[0]

    def commit_parts(self, parts: Sequence[Commit]) -> list[CommitResult]:
        raise redis.ConnectionError("connection dropped")


def _hashes(records: Sequence[RawRecord], store: RedisStore) -> frozenset[int]:
    events, _ = prepare(records, max_bytes=65536, config=DEFAULT, salt=make_context().salt)
    return frozenset(map(ref_hash, store.load(load_request(events)).entities))


@pytest.mark.parametrize("failed_before", [False, True])
def test_a_batch_whose_commit_raised_leaves_no_release_for_the_next_commit(
    workers: tuple[Worker, Worker],
    redis_client: redis.Redis,
    redis_prefix: str,
    failed_before: bool,
) -> None:
    """A batch claims, its commit arms the release that rides in the commit's transaction,
    and the commit raises (the connection dropped). Left armed, that release rode the worker's
    next commit, even one of a batch without claims, and named that commit with the failed
    batch's entities: the other worker, whose load predated the commit, took it as named,
    computed on its stale load and conflicted (a review of the twenty-ninth pass)."""
    a, b = workers
    if failed_before:  # A's batch (shopper 9) claims, then its commit raises
        with pytest.raises(redis.ConnectionError):
            a.run([shopper(9, 40)], _CommitLost(a.store))
        left = entries(redis_client, redis_prefix)[b"a:1:profiles"]
        assert left is not None
        assert left.active == frozenset()  # released at once, not after the time to live
    # A's next batch runs without claims (LOOM_COMMIT_CLAIMS=auto while its assignment says it
    # is alone, e.g. around a rebalance), between B's load and B's claim
    view = Racing(b.store, lambda: a.run([shopper(3, 30)], claiming=False))
    result = b.run(shoppers(), view)
    entry = entries(redis_client, redis_prefix).get(b"a:1:profiles")
    if entry is not None and entry.commits:  # an entry naming A's commit names what it wrote
        assert entry.previous & _hashes([shopper(3, 30)], a.store)
    # B waits for A's commit or loads again: no part computed on a stale load
    assert result.conflicted_parts == 0


def test_the_fields_of_workers_that_died_go_once_their_claims_expired(
    workers: tuple[Worker, Worker], redis_client: redis.Redis, redis_prefix: str
) -> None:
    """A worker that dies (SIGKILL, OOM, a lost node) never removes its entry, and every
    worker's name is new (host-pid): the hash grew with every crash, and every look reads it
    whole (a review of the twenty-ninth pass measured one look at 0.5 ms with no such field,
    22 ms with 100, 253 ms with 1,000). Now a hold removes, under the look's WATCH, the
    fields whose entry held nothing any more (older than the claims' time to live)."""
    a, b = workers
    key = Keys(redis_prefix).claims("profiles")
    for pid in range(40):  # restarts, each killed after a batch: no close()
        dead = Worker(a.store, RedisClaims(a.store, "profiles", f"host-{1000 + pid}:profiles"))
        dead.run([shopper(100 + pid, 1)])
    assert redis_client.hlen(key) == 40
    for field, value in redis_client.hgetall(key).items():  # 11 s later, by their stamps
        e = Entry.decode(value)
        assert e is not None
        redis_client.hset(key, field, replace(e, at_ms=e.at_ms - TTL_MS - 1_000).encode())
    b.run([shopper(200, 1)])  # alive: its entry is fresh and stays
    a.run([shopper(201, 1)])
    assert set(entries(redis_client, redis_prefix)) == {b"a:1:profiles", b"b:1:profiles"}


@pytest.mark.parametrize("legacy", [False, True], ids=["profile-with-i", "profile-without-i"])
def test_a_record_the_batch_did_not_load_is_loaded_before_it_is_written(
    workers: tuple[Worker, Worker], redis_client: redis.Redis, redis_prefix: str, legacy: bool
) -> None:
    """Worker B teaches an email's record something (its own compare-and-set); worker A then
    reaches the profile through the loyalty id only. With the profile's field ``i`` the load
    walks to the email's record; without it (a hash written before ``i`` existed, ADR 0029's
    note; made here with ``HDEL``) it did not, and A rewrote the record from nothing at
    version 1, with no compare-and-set, undoing B's write (a review of the thirtieth pass).
    Now such a record is loaded and the part computed again, as an unloaded profile is."""
    a, b = workers
    keys = Keys(redis_prefix)
    a.run([signup("e-1", 1, {"email": "ann@example.com", "loyalty_id": "L-1"}, offset=1)])
    b.run([signup("e-2", 2, {"email": "ann@example.com", "customer_id": "C-7"}, offset=2)])
    email = keys.kinds[Kind.IDENTIFIER] + "email:ann@example.com"
    taught = redis_client.hgetall(email)
    if legacy:
        (profile,) = redis_client.keys(keys.kinds[Kind.PROFILE] + "*")
        redis_client.hdel(profile, "i")
    a.run([signup("e-3", 3, {"loyalty_id": "L-1"}, offset=3)])
    after = redis_client.hgetall(email)
    assert int(after[b"v"]) >= int(taught[b"v"]), "the record's version went backwards"
    assert after.get(b"s") == taught.get(b"s"), "what B's commit taught the record was lost"
