"""Processed markers, layout 2 (ADR 0016), on a real Redis: how long an event id is remembered,
the hand-over from layout 1's key per event, a TTL change, the stale generation's unlink."""

from __future__ import annotations

import time

import redis

from resolvers.store import Commit, CommitStatus, LoadRequest
from streams.redis_store import RedisStore, processed_ids

HANDOVER_S = 3600  # streams/lua/markers.lua


def seen(store: RedisStore, *event_ids: str) -> frozenset[str]:
    return store.load(LoadRequest(event_ids=event_ids)).seen


def redis_now(client: redis.Redis) -> float:
    s, us = client.time()
    return float(s) + us / 1e6


def test_layout_1_markers_are_honoured_during_the_hand_over(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    root = f"{redis_prefix}:v1"
    redis_client.set(f"{root}:seen:old-1", "1", ex=3600)  # an older worker's marker
    store = RedisStore(redis_client, prefix=redis_prefix, seen_ttl_s=3600)

    assert seen(store, "old-1", "new-1") == {"old-1"}
    result = store.commit(Commit({}, ("new-1", "old-1")))
    assert (result.status, result.detail) == (CommitStatus.DUPLICATE, "old-1")
    assert store.commit(Commit({}, ("new-1",))).ok
    assert seen(store, "old-1", "new-1") == {"old-1", "new-1"}
    layout = redis_client.hgetall(f"{root}:markers-layout:seen")
    assert int(layout[b"width"]) == 900  # a quarter of the TTL
    assert abs(int(layout[b"since"]) - redis_now(redis_client)) < 60  # the first commit

    # once the hand-over is over (every layout-1 marker has expired), they are not looked up
    over = int(redis_now(redis_client)) - 3600 - HANDOVER_S - 1
    redis_client.hset(f"{root}:markers-layout:seen", "since", over)
    assert seen(store, "old-1", "new-1") == {"new-1"}


def test_a_prefix_without_layout_1_markers_never_looks_them_up(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    root = f"{redis_prefix}:v1"
    store = RedisStore(redis_client, prefix=redis_prefix, seen_ttl_s=3600)
    assert seen(store, "e1") == frozenset()
    assert redis_client.hget(f"{root}:markers-layout:seen", "since") == b"0"
    redis_client.set(f"{root}:seen:e1", "1", ex=3600)  # nothing writes these any more
    assert seen(store, "e1") == frozenset()
    assert store.commit(Commit({}, ("e1",))).ok


def test_a_marker_lasts_at_least_the_ttl_and_at_most_ttl_plus_width(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """With an 8 s TTL (so a 2 s width: a quarter), an id is processed for [8 s, 10 s) after its
    commit, and the next commit unlinks the generation no lookup reads any more (before its
    expiry)."""
    root = f"{redis_prefix}:v1"
    store = RedisStore(redis_client, prefix=redis_prefix, seen_ttl_s=8)
    assert seen(store, "e1") == frozenset()
    before = redis_now(redis_client)
    assert store.commit(Commit({}, ("e1",))).ok
    after = redis_now(redis_client)
    width = int(redis_client.hget(f"{root}:markers-layout:seen", "width") or 0)
    assert width == 2
    (bucket_key,) = redis_client.scan_iter(match=f"{root}:markers:seen:*")
    generation = int(bucket_key.decode().split(":")[-2])
    assert int(before) // width <= generation <= int(after) // width

    while seen(store, "e1"):
        assert redis_now(redis_client) < after + 8 + width, "still processed after ttl + width"
        time.sleep(0.05)
    gone = redis_now(redis_client)
    assert gone >= before + 8, f"forgotten after {gone - before:.2f} s, before the TTL"
    assert redis_client.exists(bucket_key) == 1  # not read any more; it expires later
    assert store.commit(Commit({}, ("e1",))).ok  # processed again, as the TTL allows
    assert redis_client.exists(bucket_key) == 0  # unlinked by that commit
    assert seen(store, "e1") == {"e1"}
    assert processed_ids(redis_client, redis_prefix) == {"e1"}


def test_a_ttl_change_keeps_the_generations(redis_client: redis.Redis, redis_prefix: str) -> None:
    """The width is fixed by the first marking commit: a store with another TTL still finds
    the markers (a shorter TTL keeps them up to the old width longer, never shorter)."""
    first = RedisStore(redis_client, prefix=redis_prefix, seen_ttl_s=3600)
    assert first.commit(Commit({}, ("e1",))).ok
    shorter = RedisStore(redis_client, prefix=redis_prefix, seen_ttl_s=60)
    longer = RedisStore(redis_client, prefix=redis_prefix, seen_ttl_s=86_400)
    assert seen(shorter, "e1", "e2") == {"e1"}
    assert seen(longer, "e1", "e2") == {"e1"}
    assert longer.commit(Commit({}, ("e2",))).ok
    assert seen(first, "e1", "e2") == {"e1", "e2"}
    width = redis_client.hget(f"{redis_prefix}:v1:markers-layout:seen", "width")
    assert width == b"900"  # the first store's: a quarter of its TTL


def test_a_duplicate_is_named_by_the_first_processed_id_in_the_commits_order(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """As the in-memory store names it, whatever the ids' buckets (ids of two buckets here)."""
    store = RedisStore(redis_client, prefix=redis_prefix, seen_ttl_s=3600)
    assert store.commit(Commit({}, ("e1", "e3", "evt-0001"))).ok
    for order, first in ((("e0", "e3", "e1", "e2"), "e3"), (("evt-0001", "e1"), "evt-0001")):
        result = store.commit(Commit({}, order))
        assert (result.status, result.detail) == (CommitStatus.DUPLICATE, first)
    assert processed_ids(redis_client, redis_prefix) == {"e1", "e3", "evt-0001"}


def test_a_generation_is_created_as_a_hashtable_holding_only_event_ids(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """A generation's hash is created in Redis's hashtable encoding (a listpack would be
    scanned by every lookup and insert until it holds 512 fields), and the field that made
    it one is gone: the hash holds the event ids only, in every bucket, with later commits
    adding to it."""
    root = f"{redis_prefix}:v1"
    store = RedisStore(redis_client, prefix=redis_prefix, seen_ttl_s=3600)
    first = tuple(f"e{n}" for n in range(40))
    assert store.commit(Commit({}, first)).ok
    assert store.commit(Commit({}, ("late-1", "late-2"))).ok
    keys = list(redis_client.scan_iter(match=f"{root}:markers:seen:*"))
    assert len(keys) == 4  # every bucket of the generation
    for key in keys:
        assert redis_client.object("encoding", key) == b"hashtable"
        assert not redis_client.hexists(key, "")
    assert processed_ids(redis_client, redis_prefix) == {*first, "late-1", "late-2"}
    assert seen(store, "e0", "late-2", "never") == {"e0", "late-2"}
