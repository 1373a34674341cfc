"""The pure side of claims (``resolvers.claims``, ADR 0040): entries, hashes, the rule."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolvers.claims import (
    AHEAD_MS,
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


commits = st.none() | st.lists(st.integers(0, 2**63), max_size=5).map(tuple)


@given(at=st.integers(0, 2**63), active=hashes, previous=hashes, named=commits)
def test_an_entry_reads_back_as_written(
    at: int, active: frozenset[int], previous: frozenset[int], named: tuple[int, ...] | None
) -> None:
    entry = Entry(at, active, previous, named)
    assert Entry.decode(entry.encode()) == entry


def test_an_entry_of_the_first_layout_reads_as_naming_no_commit() -> None:
    """What a worker before commits were named wrote: at, active count, active, previous."""
    data = struct.pack("<QI", 7, 1) + struct.pack("<QQ", 5, 9)
    assert Entry.decode(data) == Entry(7, frozenset({5}), frozenset({9}), None)
    assert len(Entry(7, commits=()).encode()) % 8 == 0  # the first layout's reader skips it


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"short",
        Entry(1, frozenset({1, 2})).encode()[:-3],
        b"\x01" * 12 + b"\x00" * 8,
        Entry(1, frozenset({1, 2}), commits=(3,)).encode()[:-8],
        struct.pack("<QIII4x", 1, 3, 0, 0),
        struct.pack("<QIII4x", 1, 2, 0, 2) + struct.pack("<Q", 4),
    ],
    ids=[
        "empty",
        "shorter-than-its-head",
        "cut-in-a-hash",
        "more-active-than-hashes",
        "commits-cut-short",
        "a-layout-not-known",
        "more-commits-than-words",
    ],
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


def test_an_active_claim_is_held_and_a_previous_one_once_its_commit_came_after_the_load() -> None:
    other = Entry(1_000, active=frozenset({1, 2}), previous=frozenset({3}), commits=(8,))
    assert held([other], now_ms=1_000, loaded=8, current=8) == {1, 2}
    # its commit came after the load: what the other worker last wrote is held too
    assert held([other], now_ms=1_000, loaded=7, current=8) == {1, 2, 3}


def test_a_commit_the_load_saw_holds_nothing_more() -> None:
    seen = Entry(1_000, previous=frozenset({3}), commits=(7,))
    after = Entry(1_000, previous=frozenset({4}), commits=(8,))
    assert held([seen, after], now_ms=1_000, loaded=7, current=8) == {4}


def test_a_commit_after_the_load_that_no_entry_names_makes_the_batch_load_again() -> None:
    """The other worker committed twice since this load: its entry names its last batch's
    commit only, and what the first wrote is nowhere (ADR 0040's race)."""
    other = Entry(1_000, previous=frozenset({4}), commits=(9,))
    assert held([other], now_ms=1_000, loaded=7, current=9) is None
    assert held([other], now_ms=1_000, loaded=8, current=9) == {4}
    # an entry of a worker that names no commits cannot cover one
    unnamed = Entry(1_000, previous=frozenset({4}))
    assert held([unnamed], now_ms=1_000, loaded=8, current=9) is None
    # a load not known to be consistent: every previous claim held, none can be counted on
    assert held([unnamed, other], now_ms=1_000, loaded=None, current=9) == {4}


def test_a_stale_entry_holds_nothing() -> None:
    other = Entry(1_000, active=frozenset({1}), commits=())
    assert held([other], now_ms=1_000 + TTL_MS, loaded=3, current=3) == {1}
    assert held([other], now_ms=1_001 + TTL_MS, loaded=3, current=3) == frozenset()


def test_an_entry_stamped_ahead_of_the_clock_holds_only_within_the_time_to_live() -> None:
    """A worker claimed, crashed, and Redis failed over to a primary whose clock is 60 s
    behind: its entry is stamped in that clock's future. Counted as fresh it held for ~70 s
    (until the clock caught up, then the time to live), not the time to live (a review of
    the twenty-ninth pass)."""
    stamped = 1_000_000_000
    crashed = Entry(stamped, active=frozenset({42}), commits=())
    # another worker's claim between the reader's TIME and its read of the entries: held
    assert held([crashed], now_ms=stamped - AHEAD_MS, loaded=7, current=7) == {42}
    for since_ms in (
        0,
        TTL_MS + 1,
        30_000,
        60_000 - AHEAD_MS - 1,
    ):  # after the crash, the clock 60 s behind
        now_ms = stamped - 60_000 + since_ms
        assert held([crashed], now_ms=now_ms, loaded=7, current=7) == frozenset()


entries_strategy = st.lists(
    st.tuples(
        hashes, hashes, st.none() | st.frozensets(st.integers(0, 12), max_size=3), st.booleans()
    ),
    max_size=4,
)


@given(
    entries=entries_strategy,
    loaded=st.none() | st.integers(0, 10),
    ahead=st.integers(0, 3),
    signs=st.lists(st.sampled_from([1, -1]), min_size=4, max_size=4),
)
def test_what_is_held_is_the_fresh_entries_active_and_the_previous_of_commits_after_the_load(
    entries: list[tuple[frozenset[int], frozenset[int], frozenset[int] | None, bool]],
    loaded: int | None,
    ahead: int,
    signs: list[int],
) -> None:
    """Stale: stamped more than the time to live before the clock, or after it (-1)."""
    now = 50_000
    current = (loaded or 0) + ahead
    made = [
        Entry(
            now - (TTL_MS + 1 if stale else 0) * sign, a, p, None if c is None else tuple(sorted(c))
        )
        for (a, p, c, stale), sign in zip(entries, signs, strict=False)
    ]
    fresh = [(a, p, c) for a, p, c, stale in entries if not stale]
    found = held(made, now_ms=now, loaded=loaded, current=current)
    named = set().union(*(c for _, _, c in fresh if c is not None))
    unnamed = loaded is not None and any(s not in named for s in range(loaded + 1, current + 1))
    if unnamed:
        assert found is None
        return
    want: set[int] = set().union(*(a for a, _, _ in fresh))
    if loaded != current:
        for _, p, c in fresh:
            if c is None or loaded is None or max(c, default=-1) > loaded:
                want |= p
    assert found == want


def test_released_keeps_the_time_and_names_what_was_written() -> None:
    entry = Entry(5, frozenset({1}), frozenset({2}), (3,)).released(frozenset({1, 4}), (6, 7))
    assert entry == Entry(5, frozenset(), frozenset({1, 4}), (6, 7))


def test_waits_double_from_the_first_to_the_last() -> None:
    waits = [backoff_s(n) for n in range(1, MAX_ROUNDS + 1)]
    assert waits[0] == FIRST_WAIT_S
    assert waits[1] == 2 * FIRST_WAIT_S
    assert max(waits) == waits[-1] == LAST_WAIT_S
    assert waits == sorted(waits)
    assert sum(waits) < 2.5  # a batch held by a hung worker goes on within seconds
