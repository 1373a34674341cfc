"""A batch whose commit raised leaves no claim release armed (ADR 0040, real Redis).

A batch claims, its commit arms the release that rides in the commit's transaction, and the
commit raises (the connection dropped). Left armed, that release rode the worker's next commit,
even one of a batch without claims, and named that commit with the failed batch's entities: the
other worker, whose load predated the commit, took it as named, computed on its stale load and
conflicted (a review of the twenty-ninth pass).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import redis
from builders import make_context

from resolvers.claims import Entry, ref_hash
from resolvers.pipeline import PROFILES, BatchResult, load_request, prepare, run_batch
from resolvers.steps import RawRecord
from resolvers.store import Commit, CommitResult, Loaded, LoadRequest
from schemas.normalize import DEFAULT
from streams.redis_claims import RedisClaims
from streams.redis_keys import Keys
from streams.redis_store import RedisStore
from streams.testing import Racing

pytestmark = pytest.mark.integration
TTL = 3600


def shopper(n: int, minute: int) -> RawRecord:
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


def run(records: Sequence[RawRecord], store: Any, claims: RedisClaims | None) -> BatchResult:
    return run_batch(records, store, make_context, max_bytes=64 * 1024, config=DEFAULT,
                     lane=PROFILES, max_parts=16, claims=claims)  # fmt: skip


@dataclass
class _Worker:
    store: RedisStore
    claims: RedisClaims


@pytest.fixture
def workers(redis_url: str, redis_prefix: str) -> Iterator[tuple[_Worker, _Worker]]:
    made, clients = [], []
    for name in ("a", "b"):
        client = redis.Redis.from_url(redis_url, decode_responses=False)
        clients.append(client)
        store = RedisStore(
            client, prefix=redis_prefix, seen_ttl_s=TTL, commit="watch", load="waves"
        )
        made.append(_Worker(store, RedisClaims(store, "profiles", f"{name}:1:profiles")))
    yield made[0], made[1]
    for client in clients:
        client.close()


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
    workers: tuple[_Worker, _Worker],
    redis_client: redis.Redis,
    redis_prefix: str,
    failed_before: bool,
) -> None:
    a, b = workers
    if failed_before:  # A's batch (shopper 9) claims, then its commit raises
        with pytest.raises(redis.ConnectionError):
            run([shopper(9, 40)], _CommitLost(a.store), a.claims)
        left = redis_client.hget(Keys(redis_prefix).claims("profiles"), b"a:1:profiles")
        assert left is not None
        entry = Entry.decode(left)
        assert entry is not None
        assert entry.active == frozenset()  # released at once, not after the time to live
    # A's next batch runs without claims (LOOM_COMMIT_CLAIMS=auto while its assignment says it
    # is alone, e.g. around a rebalance), between B's load and B's claim
    view = Racing(b.store, lambda: run([shopper(3, 30)], a.store, None))
    shoppers = [shopper(n, m) for n, m in itertools.product(range(1, 9), (1, 2))]
    result = run(shoppers, view, b.claims)
    raw = redis_client.hget(Keys(redis_prefix).claims("profiles"), b"a:1:profiles")
    entry = Entry.decode(raw) if raw is not None else None
    if entry is not None and entry.commits:  # an entry naming A's commit names what it wrote
        assert entry.previous & _hashes([shopper(3, 30)], a.store)
    # B waits for A's commit or loads again: no part computed on a stale load
    assert result.conflicted_parts == 0
