"""Claims on a real Redis (``streams.redis_claims``, ADR 0040).

Two workers (each its own client, ``RedisStore`` and :class:`RedisClaims`) on one prefix: a
part the other worker holds waits for its commit instead of conflicting; the claim is
released inside the commit's transaction; a claim's ``EXEC`` aborted by another worker's
claim is tried again; a stopping worker removes its entry; the hash names no identifier.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import orjson
import pytest
import redis
from builders import make_context

from resolvers.claims import Entry, ref_hash
from resolvers.pipeline import PROFILES, BatchResult, load_request, prepare, run_batch
from resolvers.steps import RawRecord
from resolvers.store import Commit, CommitResult, Loaded, LoadRequest
from schemas.normalize import DEFAULT
from streams.redis_claims import RedisClaims, owner_name
from streams.redis_keys import Keys
from streams.redis_store import RedisStore

pytestmark = pytest.mark.integration

TTL = 3600


def shopper(n: int, minute: int) -> RawRecord:
    """A web visit of shopper ``n`` (a person of its own: their email and loyalty id)."""
    event = {
        "event_id": f"e-{n}-{minute}",
        "type": "signup",
        "channel": "web",
        "occurred_at": f"2026-11-20T10:{minute:02d}:00+01:00",
        "region": "NO",
        "identifiers": {"email": f"shopper{n}@example.com", "loyalty_id": f"L-{n}"},
        "consent": {"analytics": True, "personalization": True},
    }
    return RawRecord(
        orjson.dumps(event), topic="touchpoints.raw", partition=0, offset=n * 100 + minute
    )


def shoppers() -> list[RawRecord]:
    return [shopper(n, m) for n, m in itertools.product(range(1, 9), (1, 2))]


@dataclass
class Worker:
    store: RedisStore
    claims: RedisClaims

    def run(self, records: Sequence[RawRecord], store: object = None) -> BatchResult:
        return run_batch(
            records,
            store or self.store,  # type: ignore[arg-type]
            make_context,
            max_bytes=64 * 1024,
            config=DEFAULT,
            lane=PROFILES,
            max_parts=16,
            claims=self.claims,
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


@dataclass
class Racing:
    """Worker B's store: after its first load, ``other`` runs (worker A's whole batch)."""

    inner: RedisStore
    other: Callable[[], object]
    loads: int = 0

    def load(self, request: LoadRequest) -> Loaded:
        loaded = self.inner.load(request)
        self.loads += 1
        if self.loads == 1:
            self.other()
        return loaded

    def commit(self, commit: Commit) -> CommitResult:
        return self.inner.commit(commit)

    def commit_parts(self, parts: Sequence[Commit]) -> list[CommitResult]:
        return self.inner.commit_parts(parts)


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
    assert a.claims.claim([hashes]) == [False]
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


def test_a_claim_aborted_by_another_workers_claim_is_tried_again(
    workers: tuple[Worker, Worker], redis_client: redis.Redis, redis_prefix: str
) -> None:
    a, _ = workers
    key = Keys(redis_prefix).claims("profiles")
    original = a.claims._call
    calls = 0

    def meddling(conn: object, resp: object, *, watching: bool = True) -> list[object]:
        nonlocal calls
        calls += 1
        if calls == 2:  # between A's look and its write, B writes its entry
            redis_client.hset(key, b"b:1:profiles", Entry(1).encode())
        return original(conn, resp, watching=watching)  # type: ignore[arg-type]

    a.claims._call = meddling  # type: ignore[method-assign]
    a.claims.begin()
    assert a.claims.claim([frozenset({1, 2})]) == [False]
    assert calls == 4
    assert a.claims.unclaimed == 0
    found = entries(redis_client, redis_prefix)
    assert found[b"a:1:profiles"] is not None
    assert found[b"a:1:profiles"].active == {1, 2}


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
        RedisClaims(store, "profiles", owner_name("profiles"))
