"""Processed-marker buckets (ADR 0016): part of the Redis layout, so they must never move."""

from __future__ import annotations

import zlib

from hypothesis import given
from hypothesis import strategies as st

from streams.redis_store import MARKER_BUCKETS, marker_bucket, marker_groups


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
