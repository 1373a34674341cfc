"""The decode cache is bounded in bytes (an entry bound let RSS grow with the shop)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from resolvers.decode_cache import DecodeCache, charge


def decode(raw: bytes) -> list[bytes]:
    return [raw]


def test_identical_bytes_reuse_the_decoded_value_and_changed_bytes_do_not() -> None:
    cache = DecodeCache(max_bytes=100_000)
    first = cache.get("a", b"v1", decode)
    assert cache.get("a", b"v1", decode) is first
    assert cache.get("a", b"v2", decode) == [b"v2"]  # the entity changed: decoded again
    assert (cache.hits, cache.misses, cache.entries) == (1, 2, 1)
    assert cache.bytes == charge(b"v2")  # the stale entry's charge is gone


def test_the_least_recently_used_go_first() -> None:
    raw = b"x" * 100
    cache = DecodeCache(max_bytes=8 * charge(raw) + 100)  # room for eight entries
    for key in range(8):
        cache.get(key, raw, decode)
    cache.get(0, raw, decode)  # 0 is used again: 1 is now the oldest
    cache.get(8, raw, decode)  # evicts 1
    assert (cache.hits, cache.misses, cache.entries) == (1, 9, 8)
    cache.get(0, raw, decode)
    cache.get(1, raw, decode)  # evicted: decoded again
    assert (cache.hits, cache.misses) == (2, 10)


def test_an_empty_cache_is_still_a_cache() -> None:
    assert DecodeCache()  # `ctx.cache or DecodeCache(0)` must not replace an empty one


def test_a_value_too_large_for_the_budget_is_not_cached() -> None:
    cache = DecodeCache(max_bytes=10_000)
    cache.get("big", b"x" * 5_000, decode)
    assert (cache.entries, cache.bytes) == (0, 0)


@given(st.lists(st.tuples(st.integers(0, 50), st.binary(max_size=3000)), max_size=200))
def test_the_budget_holds_whatever_is_loaded(loads: list[tuple[int, bytes]]) -> None:
    cache = DecodeCache(max_bytes=20_000)
    for key, raw in loads:
        assert cache.get(key, raw, decode) == [raw]
        assert cache.bytes <= cache.max_bytes
    assert cache.bytes == sum(charge(raw) for raw, _value, _cost in cache._entries.values())
