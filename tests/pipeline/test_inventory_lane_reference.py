"""The inventory lane computes what it computed before issue 17's nineteenth pass.

The old code is kept verbatim in ``inventory_lane_reference`` (main 887a301): the batch's
``run``, ``_fresh`` and ``_announce``, ``inventory.apply`` and the direct lane's
``with_movements``. Properties: ``inventory.apply`` gives the old state and effects (and the
same no-op identity) over any movements and ledger policy; over simulated traffic with
redeliveries, any batching and any ledger policy, the direct and the routed lane store the
same entities, outbox, change streams and counters, and return the same batch results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import inventory_lane_reference as reference
from builders import NOW, make_context, stock_movements
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipeline_helpers import record
from test_commit_parts import simulated

from resolvers import inventory
from resolvers.inventory import LedgerPolicy, Movement, SkuStock
from resolvers.pipeline import INVENTORY, ROUTED_INVENTORY, BatchResult, Lane, run_batch
from resolvers.steps import RawRecord
from resolvers.store import InMemoryStore, Kind
from schemas.bounds import DEFAULT_BOUNDS
from schemas.normalize import DEFAULT
from streams.stock_router import route_batch

SKU = "SKU-1"
T0 = datetime(2026, 11, 22, 8, tzinfo=UTC)


def movements() -> st.SearchStrategy[Movement]:
    return stock_movements(
        st.integers(0, 12).map(lambda n: f"e{n}"),  # ids repeat: redeliveries and clashes
        ["oslo", "online"],
        st.integers(0, 6).map(lambda n: T0 + timedelta(hours=12 * n)),  # ties, old entries
        sku=SKU,
    )


policies = st.builds(
    LedgerPolicy,
    max_entries=st.integers(1, 6),
    max_age=st.sampled_from([timedelta(hours=30), timedelta(days=2), timedelta(days=30)]),
)


@settings(max_examples=300, deadline=None)
@given(moves=st.lists(movements(), max_size=30), policy=policies)
def test_apply_gives_the_old_state_and_effects(moves: list[Movement], policy: LedgerPolicy) -> None:
    stock = SkuStock.empty(SKU)
    for movement in moves:
        new, effects = inventory.apply(stock, movement, policy)
        old, old_effects = reference.apply(stock, movement, policy)
        assert (new, effects) == (old, old_effects)
        assert (new is stock) == (old is stock)
        stock = new


def _run(
    batches: Sequence[Sequence[RawRecord]], lane: Lane, policy: LedgerPolicy
) -> tuple[list[BatchResult], InMemoryStore]:
    store = InMemoryStore()
    ctx = replace(make_context(), ledger=policy)
    results = [
        run_batch(batch, store, lambda: ctx, max_bytes=64 * 1024, config=DEFAULT, lane=lane)
        for batch in batches
    ]
    return results, store


Run = tuple[list[BatchResult], InMemoryStore]


def _same(a: Run, b: Run) -> None:
    (results, store), (old_results, old_store) = a, b
    assert results == old_results
    assert (store.entities, store.outbox, store.streams, store.counters) == (
        old_store.entities,
        old_store.outbox,
        old_store.streams,
        old_store.counters,
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    size=st.integers(1, 60),
    again=st.lists(st.integers(0, 199), max_size=40),
    policy=policies,
)
def test_the_lane_stores_and_reports_what_it_did_before(
    seed: int, size: int, again: list[int], policy: LedgerPolicy
) -> None:
    values = simulated(seed, 200)
    values += [values[i] for i in again]  # redelivered records, in a later batch or the same
    raw = [record(v, i) for i, v in enumerate(values)]
    batches = [raw[i : i + size] for i in range(0, len(raw), size)]
    new = _run(batches, INVENTORY, policy)
    with reference.install():
        old = _run(batches, reference.REFERENCE_INVENTORY, policy)
    _same(new, old)
    assert any(ref.kind is Kind.STOCK for ref in new[1].entities)  # the run moved stock

    # the routed lane (ADR 0014) over the same events' movement records, redelivered alike
    routed = route_batch(raw, max_bytes=64 * 1024, now=NOW, bounds=DEFAULT_BOUNDS)
    moves = [
        RawRecord(value=value, key=key, topic="inventory.movements", partition=0, offset=i)
        for i, (key, value, _headers) in enumerate(routed.records)
    ]
    moves += [moves[i] for i in again if i < len(moves)]
    batches = [moves[i : i + size] for i in range(0, len(moves), size)]
    new = _run(batches, ROUTED_INVENTORY, policy)
    with reference.install():
        old = _run(batches, ROUTED_INVENTORY, policy)
    _same(new, old)


def test_the_reference_is_the_old_code() -> None:
    """``install`` replaces today's code (else the properties would compare it with itself)."""
    from resolvers.lanes.inventory import InventoryBatch

    with reference.install():
        assert InventoryBatch.run is reference.run
        assert inventory.apply is reference.apply
    assert InventoryBatch.run is not reference.run
    assert INVENTORY.takes is not reference.REFERENCE_INVENTORY.takes
