"""Claims: a part another worker holds waits for it instead of conflicting (ADR 0040).

Two workers in memory share one store and one :class:`~resolvers.claims.Board`. A part that
shares an entity with the other worker's batch in flight, or with its last commit when that
commit came after this worker's load, is deferred (loaded again, never computed twice); and
claims change no result: the end state is the one of a single worker.
"""

from __future__ import annotations

import itertools

from builders import make_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipeline_helpers import record
from test_commit_parts import run, shopper, simulated, snapshots
from test_order_independence import _observable as observable

from resolvers.claims import Board, BoardClaims, Entry, ref_hash
from resolvers.pipeline import load_request, prepare
from resolvers.steps import RawRecord
from resolvers.store import InMemoryStore
from schemas.normalize import DEFAULT
from streams.testing import Racing


def claims_on(
    board: Board, owner: str, store: InMemoryStore, view: Racing | None = None
) -> BoardClaims:
    loaded_at = (lambda: view.loaded_at) if view is not None else (lambda: store.sequence)
    return BoardClaims(board, owner, lambda: store.sequence, loaded_at)


def hashes_of(records: list[RawRecord], store: InMemoryStore) -> frozenset[int]:
    """What a batch of ``records`` would load from ``store``, as claim hashes."""
    events, _ = prepare(records, max_bytes=65536, config=DEFAULT, salt=make_context().salt)
    return frozenset(map(ref_hash, store.load(load_request(events)).entities))


def batch_of_shoppers() -> list[RawRecord]:
    pairs = itertools.product(range(1, 9), (1, 2))
    return [record(shopper(n, m), i) for i, (n, m) in enumerate(pairs)]


def test_a_part_the_other_worker_is_computing_waits_for_its_commit() -> None:
    store, board = InMemoryStore(), Board()
    other_batch = [record(shopper(3, 30), 99)]
    # the other worker has claimed shopper 3 and is computing: its commit comes while this
    # worker waits
    board.entries["other"] = Entry(0, active=hashes_of(other_batch, store))
    waits: list[int] = []

    def other_commits() -> None:
        waits.append(1)
        run(other_batch, store, claims=claims_on(board, "other", store))

    mine = claims_on(board, "me", store)
    mine.idle = other_commits

    result = run(batch_of_shoppers(), store, claims=mine)

    assert waits == [1]
    assert result.conflicted_parts == 0
    assert result.deferred_parts == 1
    assert 2 <= result.deferred_events <= 4  # shopper 3's part (8 persons in 16 parts)
    assert result.processed == 16
    serial = InMemoryStore()
    run(other_batch, serial)
    run(batch_of_shoppers(), serial, max_parts=1)
    assert snapshots(store) == snapshots(serial)


def test_a_whole_batch_held_in_part_waits_only_with_the_held_persons_events() -> None:
    """A worker that was alone commits whole batches (one part): what another worker holds is
    cut out of it, component by component, and the rest is computed at once."""
    store, board = InMemoryStore(), Board()
    other_batch = [record(shopper(3, 30), 99)]
    board.entries["other"] = Entry(0, active=hashes_of(other_batch, store))
    mine = claims_on(board, "me", store)
    mine.idle = lambda: run(other_batch, store, claims=claims_on(board, "other", store))

    result = run(batch_of_shoppers(), store, max_parts=1, claims=mine)

    assert result.deferred_parts == 1
    assert result.deferred_events == 2  # shopper 3's two visits, nobody else's
    assert result.conflicted_parts == 0
    assert result.processed == 16
    assert result.parts == 2  # the 14 others at once, then shopper 3's


def test_without_claims_the_same_race_conflicts() -> None:
    """The scenario above, unclaimed: the other worker commits during this one's batch."""
    store = InMemoryStore()
    view = Racing(store, lambda: run([record(shopper(3, 30), 99)], store))
    result = run(batch_of_shoppers(), view)
    assert result.conflicted_parts == 1
    assert result.deferred_parts == 0


def test_a_commit_after_this_workers_load_defers_what_it_wrote() -> None:
    """The other worker loads, claims, computes and commits between this one's load and its
    claim: the commit sequence moved, so what it wrote (its previous claim) waits."""
    store, board = InMemoryStore(), Board()
    other = claims_on(board, "other", store)
    view = Racing(store, lambda: run([record(shopper(3, 30), 99)], store, claims=other))
    mine = claims_on(board, "me", store, view)

    result = run(batch_of_shoppers(), view, claims=mine)

    assert result.conflicted_parts == 0
    assert result.deferred_parts == 1
    assert view.loads == 2  # the deferred part loaded again, once


def test_a_previous_claim_is_ignored_when_nothing_moved_since_the_load() -> None:
    store, board = InMemoryStore(), Board()
    board.entries["other"] = Entry(0, previous=hashes_of([record(shopper(3, 30), 99)], store))
    result = run(batch_of_shoppers(), store, claims=claims_on(board, "me", store))
    assert result.deferred_parts == 0


def test_a_stale_claim_holds_nothing() -> None:
    store = InMemoryStore()
    board = Board(now_ms=lambda: 60_000)  # the other worker claimed a minute ago, then died
    board.entries["other"] = Entry(0, active=hashes_of([record(shopper(3, 30), 99)], store))
    result = run(batch_of_shoppers(), store, claims=claims_on(board, "me", store))
    assert result.deferred_parts == 0
    assert result.processed == 16


def test_a_claim_never_released_stops_holding_after_the_last_round() -> None:
    """A worker that never commits (hung, its entry fresh) delays a batch, never stalls it."""
    store, board = InMemoryStore(), Board()
    board.entries["other"] = Entry(0, active=hashes_of([record(shopper(3, 30), 99)], store))
    mine = claims_on(board, "me", store)
    result = run(batch_of_shoppers(), store, claims=mine)
    assert result.deferred_parts == 32  # MAX_ROUNDS, then computed
    assert result.processed == 16
    assert result.conflicted_parts == 0


def test_a_batch_releases_its_claim() -> None:
    store, board = InMemoryStore(), Board()
    run(batch_of_shoppers(), store, claims=claims_on(board, "me", store))
    entry = board.entries["me"]
    assert entry.active == frozenset()
    assert entry.previous == hashes_of(batch_of_shoppers(), InMemoryStore())


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), size=st.integers(4, 40), max_parts=st.integers(1, 16))
def test_two_claiming_workers_never_conflict_and_end_as_one(
    seed: int, size: int, max_parts: int
) -> None:
    """Two workers in lockstep (one loads, the other runs a whole batch, then the first goes
    on): with claims no part conflicts, and the store ends as one worker leaves it (but the
    fields that record processing, ``version`` and ``merged_from``: ADR 0005)."""
    values = simulated(seed, 120)
    batches = [
        [record(v, start + i) for i, v in enumerate(values[start : start + size])]
        for start in range(0, len(values), size)
    ]
    store, board = InMemoryStore(), Board()
    conflicts = 0
    for a, b in itertools.zip_longest(batches[0::2], batches[1::2]):
        if b is None:
            run(a, store, max_parts=max_parts, claims=claims_on(board, "a", store))
            continue
        first = claims_on(board, "a", store)
        view = Racing(
            store, lambda a=a, first=first: run(a, store, max_parts=max_parts, claims=first)
        )
        result = run(b, view, max_parts=max_parts, claims=claims_on(board, "b", store, view))
        conflicts += result.conflicted_parts
    serial = InMemoryStore()
    for a, b in itertools.zip_longest(batches[0::2], batches[1::2]):
        run([*a, *(b or [])], serial, max_parts=1)
    assert conflicts == 0
    assert observable(store) == observable(serial)
    assert store.seen == serial.seen
