"""The decode cache is bounded in bytes (an entry bound let RSS grow with the shop)."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import orjson
from hypothesis import given
from hypothesis import strategies as st

from resolvers.decode_cache import ENTRY_OVERHEAD, DecodeCache, charge
from resolvers.profile.codec import facts_fragment, facts_to_json
from resolvers.profile.facts import Facts


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


def _kept_bytes_each(make: Callable[[int], object], n: int = 2_000) -> float:
    """Memory that ``n`` results of ``make`` keep alive, per result (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        kept = [make(i) for i in range(n)]
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(kept) == n
    return held / n


def test_a_cached_entry_keeps_only_the_bytes_it_compares() -> None:
    # orjson.dumps returns bytes that keep its whole buffer (>= 4 KiB since orjson 3.12): a
    # worker caches its own writes' bytes, so the cache keeps a right-sized copy
    cache = DecodeCache(max_bytes=1 << 30)

    def put(i: int) -> None:
        cache.put(i, orjson.dumps({"profile": i}), None)

    assert _kept_bytes_each(put) < ENTRY_OVERHEAD
    assert all(raw == orjson.dumps({"profile": k}) for k, (raw, _, _) in cache._entries.items())


def test_facts_keep_their_encoding_right_sized() -> None:
    def encoded(i: int) -> orjson.Fragment:
        return facts_fragment(Facts(latest=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(i)))

    assert _kept_bytes_each(encoded) < 512  # a Facts and a ~20-byte fragment, not 4 KiB
    facts = Facts(latest=datetime(2026, 1, 1, tzinfo=UTC))
    assert orjson.dumps(facts_fragment(facts)) == orjson.dumps(facts_to_json(facts))
