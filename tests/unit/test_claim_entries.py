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
    deferred,
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


def test_the_same_name_of_another_kind_is_another_hash() -> None:
    assert ref_hash(profile_ref("x")) != ref_hash(stock_ref("x"))


def test_a_part_waits_for_an_active_claim_it_shares_an_entity_with() -> None:
    other = Entry(1_000, active=frozenset({1, 2}), previous=frozenset({3}))
    parts = [frozenset({2, 9}), frozenset({3}), frozenset({7})]
    assert deferred(parts, [other], now_ms=1_000, moved=False) == [True, False, False]
    # a commit came after the load: what the other worker last wrote waits too
    assert deferred(parts, [other], now_ms=1_000, moved=True) == [True, True, False]


def test_a_stale_entry_holds_nothing() -> None:
    other = Entry(1_000, active=frozenset({1}))
    assert deferred([frozenset({1})], [other], now_ms=1_000 + TTL_MS, moved=True) == [True]
    assert deferred([frozenset({1})], [other], now_ms=1_001 + TTL_MS, moved=True) == [False]


@given(parts=st.lists(hashes, max_size=8), active=hashes, previous=hashes, moved=st.booleans())
def test_a_part_waits_exactly_when_it_meets_what_is_held(
    parts: list[frozenset[int]], active: frozenset[int], previous: frozenset[int], moved: bool
) -> None:
    held = active | (previous if moved else frozenset())
    got = deferred(parts, [Entry(0, active, previous)], now_ms=0, moved=moved)
    assert got == [bool(p & held) for p in parts]


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
