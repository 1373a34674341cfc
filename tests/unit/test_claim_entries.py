"""The pure side of claims (``resolvers.claims``, ADR 0040): entries, hashes, the rule."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolvers.claims import (
    FIRST_WAIT_S,
    LAST_WAIT_S,
    MAX_ROUNDS,
    TTL_MS,
    Entry,
    backoff_s,
    held,
    ref_hash,
)
from resolvers.store import identifier_ref, profile_ref, stock_ref

hashes = st.frozensets(st.integers(0, 2**64 - 1), max_size=50)


@given(at=st.integers(0, 2**63), active=hashes, previous=hashes)
def test_an_entry_reads_back_as_written(
    at: int, active: frozenset[int], previous: frozenset[int]
) -> None:
    entry = Entry(at, active, previous)
    assert Entry.decode(entry.encode()) == entry


@pytest.mark.parametrize(
    "data",
    [b"", b"short", Entry(1, frozenset({1, 2})).encode()[:-3], b"\x01" * 12 + b"\x00" * 8],
    ids=["empty", "shorter-than-its-head", "cut-in-a-hash", "more-active-than-hashes"],
)
def test_what_is_not_an_entry_reads_as_none(data: bytes) -> None:
    assert Entry.decode(data) is None


def test_a_hash_is_the_same_in_every_process() -> None:
    """Python's ``hash`` of a string differs per process; a claim's must not."""
    refs = [identifier_ref("email:a@example.com"), profile_ref("p_1"), stock_ref("SKU-1")]
    code = (
        "from resolvers.claims import ref_hash;"
        "from resolvers.store import identifier_ref, profile_ref, stock_ref;"
        "print([ref_hash(r) for r in (identifier_ref('email:a@example.com'),"
        " profile_ref('p_1'), stock_ref('SKU-1'))])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == str([ref_hash(r) for r in refs])
    assert len({ref_hash(r) for r in refs}) == 3
    assert all(0 <= ref_hash(r) < 2**64 for r in refs)


def test_names_that_differ_hash_apart() -> None:
    names = [f"email:person{i}@example.com" for i in range(2000)]
    assert len({ref_hash(identifier_ref(n)) for n in names}) == len(names)


def test_an_active_claim_is_held_and_a_previous_one_once_a_commit_came_after_the_load() -> None:
    other = Entry(1_000, active=frozenset({1, 2}), previous=frozenset({3}))
    assert held([other], now_ms=1_000, moved=False) == {1, 2}
    # a commit came after the load: what the other worker last wrote is held too
    assert held([other], now_ms=1_000, moved=True) == {1, 2, 3}


def test_a_stale_entry_holds_nothing() -> None:
    other = Entry(1_000, active=frozenset({1}))
    assert held([other], now_ms=1_000 + TTL_MS, moved=True) == {1}
    assert held([other], now_ms=1_001 + TTL_MS, moved=True) == frozenset()


@given(entries=st.lists(st.tuples(hashes, hashes, st.booleans()), max_size=4), moved=st.booleans())
def test_what_is_held_is_the_fresh_entries_active_and_if_moved_previous_hashes(
    entries: list[tuple[frozenset[int], frozenset[int], bool]], moved: bool
) -> None:
    now = 50_000
    made = [Entry(now - (TTL_MS + 1 if stale else 0), a, p) for a, p, stale in entries]
    want: set[int] = set()
    for a, p, stale in entries:
        if not stale:
            want |= a | (p if moved else frozenset())
    assert held(made, now_ms=now, moved=moved) == want


def test_released_keeps_the_time_and_names_what_was_written() -> None:
    entry = Entry(5, frozenset({1}), frozenset({2})).released(frozenset({1, 4}))
    assert entry == Entry(5, frozenset(), frozenset({1, 4}))


def test_waits_double_from_the_first_to_the_last() -> None:
    waits = [backoff_s(n) for n in range(1, MAX_ROUNDS + 1)]
    assert waits[0] == FIRST_WAIT_S
    assert waits[1] == 2 * FIRST_WAIT_S
    assert max(waits) == waits[-1] == LAST_WAIT_S
    assert waits == sorted(waits)
    assert sum(waits) < 2.5  # a batch held by a hung worker goes on within seconds
