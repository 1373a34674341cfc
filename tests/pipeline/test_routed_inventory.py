"""Stock routed by SKU ends exactly where the direct inventory lane ends (ADR 0014).

The router's pure part (``streams.stock_router.route_batch``) turns raw records into movement
records keyed by SKU; the routed lane folds them with the direct lane's code. Properties: for
simulator traffic, any partitioning of the movement records over workers, any batching, any
redelivery, and any switch from direct to routed part-way, the stock documents equal the
direct lane's over the same events, and each (event, SKU) is marked processed once.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from datetime import timedelta

import orjson
from builders import NOW, make_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipeline_helpers import record
from test_commit_parts import simulated

from resolvers import stock_routing
from resolvers.inventory import Movement, MovementKind
from resolvers.pipeline import INVENTORY, ROUTED_INVENTORY, Lane, run_batch
from resolvers.steps import RawRecord
from resolvers.store import InMemoryStore, Kind
from schemas.bounds import DEFAULT_BOUNDS
from schemas.normalize import DEFAULT
from streams.stock_router import route_batch

TOPIC = "inventory.movements"


def run(records: Sequence[RawRecord], store: InMemoryStore, lane: Lane) -> None:
    run_batch(records, store, make_context, max_bytes=64 * 1024, config=DEFAULT, lane=lane)


def routed(raw: Sequence[RawRecord], partitions: int) -> dict[int, list[RawRecord]]:
    """The router's movement records of ``raw``, per partition of the SKU (key) hash."""
    batch = route_batch(raw, max_bytes=64 * 1024, now=NOW, bounds=DEFAULT_BOUNDS)
    out: dict[int, list[RawRecord]] = {p: [] for p in range(partitions)}
    for key, value, _headers in batch.records:
        assert key is not None
        p = sum(key) % partitions  # any stable function of the key will do
        out[p].append(RawRecord(value=value, key=key, topic=TOPIC, partition=p, offset=len(out[p])))
    return out


def stock(store: InMemoryStore) -> dict[str, object]:
    """Every stock document, without its version (how many commits wrote it differs)."""
    return {
        ref.name: {k: v for k, v in orjson.loads(e.fields["d"]).items() if k != "version"}
        for ref, e in store.entities.items()
        if ref.kind is Kind.STOCK
    }


def direct(values: Sequence[bytes]) -> InMemoryStore:
    store = InMemoryStore()
    run([record(v, i) for i, v in enumerate(values)], store, INVENTORY)
    return store


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    partitions=st.integers(1, 6),
    size=st.integers(1, 40),
    redeliver=st.floats(0, 0.5),
)
def test_routed_stock_equals_direct_stock_whatever_the_partitions_batches_and_redelivery(
    seed: int, partitions: int, size: int, redeliver: float
) -> None:
    values = simulated(seed, 160)
    expected = direct(values)
    rng = random.Random(seed)
    raw = [record(v, i) for i, v in enumerate(values)]
    by_partition = routed(raw, partitions)
    # each partition's records in order, some delivered twice (a router or applier that
    # crashed before committing), partitions interleaved batch by batch as workers would
    queues = {
        p: [r for r in records for _ in range(2 if rng.random() < redeliver else 1)]
        for p, records in by_partition.items()
    }
    store = InMemoryStore()
    while any(queues.values()):
        p = rng.choice([p for p, q in queues.items() if q])
        batch, queues[p] = queues[p][:size], queues[p][size:]
        run(batch, store, ROUTED_INVENTORY)
    assert stock(store) == stock(expected)
    markers = {stock_routing.decode(r.value).marker for rs in by_partition.values() for r in rs}
    assert store.seen["inventory"] == markers


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), switch=st.integers(0, 160), overlap=st.integers(0, 40))
def test_switching_from_direct_to_routed_never_applies_a_movement_twice(
    seed: int, switch: int, overlap: int
) -> None:
    """A direct lane applies events up to ``switch``; the router then starts ``overlap``
    events earlier (offsets the direct lane had not committed): the end is the direct one."""
    values = simulated(seed, 160)
    store = InMemoryStore()
    run([record(v, i) for i, v in enumerate(values[:switch])], store, INVENTORY)
    start = max(0, switch - overlap)
    raw = [record(v, start + i) for i, v in enumerate(values[start:])]
    for records in routed(raw, 3).values():
        run(records, store, ROUTED_INVENTORY)
    assert stock(store) == stock(direct(values))


def test_routed_back_to_direct_skips_what_the_routed_lane_applied() -> None:
    """And back: a direct lane re-reading events the routed lane applied changes nothing."""
    values = simulated(3, 120)
    store = InMemoryStore()
    raw = [record(v, i) for i, v in enumerate(values)]
    for records in routed(raw, 2).values():
        run(records, store, ROUTED_INVENTORY)
    before = {ref: e.version for ref, e in store.entities.items()}
    run(raw, store, INVENTORY)
    assert {ref: e.version for ref, e in store.entities.items()} == before
    assert stock(store) == stock(direct(values))


def test_a_multi_sku_event_is_split_into_one_record_per_sku() -> None:
    values = simulated(5, 400)
    raw = [record(v, i) for i, v in enumerate(values)]
    batch = route_batch(raw, max_bytes=64 * 1024, now=NOW, bounds=DEFAULT_BOUNDS)
    decoded = [stock_routing.decode(value) for _, value, _ in batch.records]
    per_event = {
        eid: [r.sku for r in group]
        for eid, group in itertools.groupby(decoded, key=lambda r: r.event_id)
    }
    assert any(len(skus) > 1 for skus in per_event.values()), "no multi-SKU order simulated"
    for skus in per_event.values():
        assert skus == sorted(set(skus))  # one record per SKU, never two
    for (key, _, _), r in zip(batch.records, decoded, strict=True):
        assert key == r.sku.encode()
        assert all(m.sku == r.sku and m.event_id == r.event_id for m in r.movements)


def test_a_movement_record_outside_the_contracts_quantities_is_dead_lettered_not_a_crash() -> None:
    """A review of 2026-12-04: the router produces no quantity beyond ``MAX_STOCK`` (the
    contract's bound on a count or an adjustment; an order's lines sum to less), and the
    applier took any int JSON reads as one: a sale of 2**64 - 1 units (on hand below -2**63)
    made the commit's ``orjson`` raise ``TypeError: Integer exceeds 64-bit range``, a batch
    failing as a bug (bisected, then dead-lettered as poison). ``decode`` refuses it now, like
    any record it cannot apply."""
    at = NOW - timedelta(hours=1)

    def sale(event_id: str, quantity: int, offset: int) -> RawRecord:
        move = Movement(event_id, "SKU-1", "oslo-1", MovementKind.POS_SALE, quantity, at)
        value = stock_routing.encode(stock_routing.Routed(event_id, "pos_sale", "SKU-1", (move,)))
        return RawRecord(value=value, key=b"SKU-1", topic=TOPIC, partition=0, offset=offset)

    store = InMemoryStore()
    result = run_batch(
        [sale("huge", 2**64 - 1, 0), sale("s-1", 2, 1)],
        store,
        make_context,
        max_bytes=64 * 1024,
        config=DEFAULT,
        lane=ROUTED_INVENTORY,
    )
    assert [(d.record.offset, d.reason) for d in result.dead_letters] == [
        (0, "invalid_movement_record")
    ]
    assert stock(store)["SKU-1"]["locations"]["oslo-1"]["on_hand"] == -2  # type: ignore[index]
