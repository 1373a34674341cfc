"""Processed-marker buckets (ADR 0016): part of the Redis layout, so they must never move."""

from __future__ import annotations

import zlib

import redis
from hypothesis import given
from hypothesis import strategies as st

from streams.redis_keys import MARKER_BUCKETS, marker_bucket, marker_groups
from streams.redis_store import RedisStore


def test_the_bucket_of_an_id_is_fixed() -> None:
    # what Redis holds depends on these: a change here is a new marker layout
    assert MARKER_BUCKETS == 4
    assert [marker_bucket(e) for e in ("e1", "evt-0001", "ü-ß 12")] == [
        str(zlib.crc32(e.encode()) % 4) for e in ("e1", "evt-0001", "ü-ß 12")
    ]
    assert marker_bucket("e1") == "3"


@given(st.lists(st.text(min_size=1, max_size=40), max_size=60))
def test_groups_keep_every_id_once_in_its_bucket_and_order(ids: list[str]) -> None:
    groups = marker_groups(ids)
    assert sorted(e for members in groups.values() for e in members) == sorted(ids)
    for bucket, members in groups.items():
        assert all(marker_bucket(e) == bucket for e in members)
        assert members == [e for e in ids if marker_bucket(e) == bucket]


IDS = st.lists(st.sampled_from(["e1", "e2", "evt-0001", "ü-ß 12", "x"]), max_size=6)


@given(st.lists(st.tuples(IDS, st.booleans()), max_size=8))
def test_a_store_reuses_groups_only_for_the_same_ids(calls: list[tuple[list[str], bool]]) -> None:
    # RedisStore remembers the last grouping (a commit marks the ids its load looked up);
    # whatever comes next, tuples or lists changed in place, it groups as marker_groups does
    store = RedisStore(redis.Redis(port=1), prefix="t")  # never connects
    reused: list[str] = []
    for ids, in_place in calls:
        if in_place:
            reused[:] = ids
            given_ids: list[str] | tuple[str, ...] = reused
        else:
            given_ids = tuple(ids)
        assert store._marker_groups(given_ids) == marker_groups(ids)
