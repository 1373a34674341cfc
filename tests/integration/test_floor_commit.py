"""The commits without Lua that ``bench.redis_floor`` measures (ADR 0021), on a real Redis: the
same simulator commits applied by ``commit.lua`` (``RedisStore``), as plain commands in one
``MULTI``/``EXEC`` (``Floor``) and by the ``WATCH`` compare-and-set (``Cas``, per-key and
commit-sequence) leave the same keys and contents, and the compare-and-set answers a conflict
and a duplicate as ``commit.lua`` does. A measurement is only fair if this holds. (The
production commit without Lua, its aborts and retries: ``test_watch_commit.py``.)"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis

from resolvers.decode_cache import DecodeCache
from resolvers.pipeline import PROFILES, run_batch
from resolvers.steps import RawRecord
from resolvers.store import Commit, CommitResult, CommitStatus, InMemoryStore
from schemas.normalize import DEFAULT
from streams.redis_keys import Keys
from streams.redis_store import RedisStore
from streams.settings import DEV_SALT

ROOT = Path(__file__).resolve().parents[2]
TTL = 7 * 24 * 3600


@pytest.fixture(scope="module")
def bench() -> Iterator[dict[str, ModuleType]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT))  # `python -m bench...` runs from the checkout
        yield {
            name: importlib.import_module(f"bench.{name}")
            for name in ("floor_commit", "soak_bench", "store_bench")
        }


class _Recording(InMemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[list[Commit], list[CommitResult]]] = []

    def commit_parts(self, parts: Sequence[Commit]) -> list[CommitResult]:
        results = super().commit_parts(parts)
        self.calls.append((list(parts), results))
        return results


@pytest.fixture(scope="module")
def calls(bench: dict[str, ModuleType]) -> list[tuple[list[Commit], list[CommitResult]]]:
    """The profiles lane's commit calls over 1,200 simulator events (3 batches), on the
    in-memory store."""
    from streams.simulate import Simulator

    stream = Simulator(seed=3, customers=300, stores=4, skus=50).events()
    values = [v for v, _ in bench["soak_bench"].serialized_from(stream, 1200)]
    records = [RawRecord(value=v, topic="raw", partition=0, offset=i) for i, v in enumerate(values)]
    base = replace(bench["store_bench"].make_context(DecodeCache()), salt=DEV_SALT.encode())
    store = _Recording()
    for i in range(0, len(records), 500):
        run_batch(records[i : i + 500], store, lambda: base, max_bytes=64 * 1024,
                  config=DEFAULT, lane=PROFILES)  # fmt: skip
    assert all(r.ok for _, results in store.calls for r in results)
    return store.calls


@pytest.fixture
def conn(bench: dict[str, ModuleType], redis_client: redis.Redis) -> Iterator[Any]:
    """A raw connection to the test server (``floor_commit.Conn``)."""
    with bench["floor_commit"].Conn.like(redis_client) as c:
        yield c


def _settled(client: redis.Redis, prefix: str) -> Keys:
    """A prefix whose marker hand-over is settled, as ``RedisStore`` leaves a fresh one."""
    keys = Keys(prefix)
    client.hset(keys.markers_layout("profiles"), "since", 0)
    return keys


def test_every_variant_leaves_what_commit_lua_leaves(
    bench: dict[str, ModuleType],
    calls: list[tuple[list[Commit], list[CommitResult]]],
    redis_client: redis.Redis,
    redis_prefix: str,
    conn: Any,
) -> None:
    fcm = bench["floor_commit"]
    lua = RedisStore(redis_client, prefix=f"{redis_prefix}-lua", seen_ttl_s=TTL)
    floor = fcm.Floor(conn, _settled(redis_client, f"{redis_prefix}-floor"), TTL)
    cas = fcm.Cas(conn, _settled(redis_client, f"{redis_prefix}-cas"), TTL)
    seq = fcm.Cas(conn, _settled(redis_client, f"{redis_prefix}-seq"), TTL, per_key=False)
    for parts, results in calls:
        assert lua.commit_parts(parts) == results
        floor.commit(parts, results)
        assert cas.commit(parts) == results
        assert seq.commit(parts) == results
    reference = fcm.state_digest(redis_client, f"{redis_prefix}-lua")
    assert reference[1] > 1000  # profiles, identifier records, markers, streams, outbox
    assert fcm.state_digest(redis_client, f"{redis_prefix}-floor") == reference
    assert fcm.state_digest(redis_client, f"{redis_prefix}-cas") == reference
    assert fcm.state_digest(redis_client, f"{redis_prefix}-seq") == reference
    # every variant INCRs the lane's commit sequence once per call that writes, as commit.lua
    assert redis_client.get(seq.sequence) == str(len(calls)).encode()

    # the first call again: its versions moved and its events are processed; commit.lua and
    # the compare-and-set answer alike (a conflict naming the same ref), and write nothing
    again, _ = calls[0]
    failed = lua.commit_parts(again)
    assert {r.status for r in failed} == {CommitStatus.CONFLICT}
    assert cas.commit(again) == failed
    assert seq.commit(again) == failed
    assert fcm.state_digest(redis_client, f"{redis_prefix}-lua") == reference
    assert fcm.state_digest(redis_client, f"{redis_prefix}-cas") == reference


def test_the_same_events_again_are_duplicates_as_in_commit_lua(
    bench: dict[str, ModuleType], redis_client: redis.Redis, redis_prefix: str, conn: Any
) -> None:
    fcm = bench["floor_commit"]
    lua = RedisStore(redis_client, prefix=f"{redis_prefix}-lua", seen_ttl_s=TTL)
    cas = fcm.Cas(conn, _settled(redis_client, f"{redis_prefix}-cas"), TTL)
    parts = [Commit({}, ("e1", "e2")), Commit({}, ("e3",))]
    assert lua.commit_parts(parts) == cas.commit(parts) == [CommitResult(CommitStatus.OK)] * 2
    again = [Commit({}, ("e4", "e2")), Commit({}, ("e5",))]
    expected = [CommitResult(CommitStatus.DUPLICATE, "e2"), CommitResult(CommitStatus.OK)]
    assert lua.commit_parts(again) == expected
    assert cas.commit(again) == expected
