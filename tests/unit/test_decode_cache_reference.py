"""The decode cache's ``put`` with its helpers inline (issue 17.2, seventeenth pass) keeps
main's hits, misses, charges, entries and their order, for any sequence of loads and puts
under any budget (``decode_cache_reference``: main's class verbatim)."""

from __future__ import annotations

from typing import Any

from decode_cache_reference import DecodeCache as OldCache
from hypothesis import given, settings
from hypothesis import strategies as st

from resolvers.decode_cache import DecodeCache, charge

RAW_BYTES = [b"", b"a", b"ab" * 40, b"x" * 700, b"y" * 5000, b"z" * 20_000]
RAWS = st.one_of(st.sampled_from(RAW_BYTES[:3]), st.sampled_from(RAW_BYTES))
#: budgets that are sums of charges, so that a cache can be exactly full
BUDGETS = st.one_of(
    st.sampled_from([0, 10**7]),
    st.lists(st.sampled_from([charge(r) for r in RAW_BYTES]), min_size=1, max_size=40).map(sum),
    st.lists(st.sampled_from([charge(r) for r in RAW_BYTES[:3]]), min_size=8, max_size=12).map(sum),
)
OPS = st.lists(st.tuples(st.sampled_from(["get", "put"]), st.integers(0, 15), RAWS), max_size=80)


def _state(cache: Any) -> tuple[Any, ...]:
    entries = [(k, raw, value, cost) for k, (raw, value, cost) in cache._entries.items()]
    return cache.hits, cache.misses, cache.bytes, entries


@settings(max_examples=500, deadline=None)
@given(ops=OPS, max_bytes=BUDGETS)
def test_the_cache_keeps_what_mains_kept(ops: list[tuple[str, int, bytes]], max_bytes: int) -> None:
    new, old = DecodeCache(max_bytes), OldCache(max_bytes)
    for n, (op, key, raw) in enumerate(ops):
        if op == "get":
            got = [c.get(key, raw, lambda r, n=n: (r, n)) for c in (new, old)]
            assert got[0] == got[1]
        else:
            for c in (new, old):
                c.put(key, raw, ("put", n))
        assert _state(new) == _state(old)
        # a kept copy holds only its length: never the caller's object (orjson's buffer)
        assert all(e[0] is not raw for e in new._entries.values() if len(raw) > 1)


def test_a_cache_exactly_full_keeps_what_mains_kept() -> None:
    raw = b"ab"
    new, old = DecodeCache(8 * charge(raw)), OldCache(8 * charge(raw))
    for key in range(9):
        for c in (new, old):
            c.put(key, raw, key)
        assert _state(new) == _state(old)
    assert new.entries == 8
