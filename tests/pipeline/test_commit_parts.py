"""A batch commits as independent parts: a conflict recomputes its part, never the batch.

ADR 0013. Two workers that touch the same person or SKU at once used to retry each other's
whole batch; now only the part holding the contested entity is loaded and computed again, the
rest of the batch is written by the first commit call. And splitting changes no result: the
same batches with and without parts end in the same store.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from builders import make_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipeline_helpers import record
from test_pipeline import sale

from resolvers import parts
from resolvers.claims import Claims
from resolvers.pipeline import (
    INVENTORY,
    LANES,
    PROFILES,
    BatchResult,
    Lane,
    load_request,
    prepare,
    run_batch,
)
from resolvers.stages import audit as consent_audit
from resolvers.steps import RawRecord
from resolvers.store import (
    Commit,
    CommitResult,
    InMemoryStore,
    Kind,
    Loaded,
    LoadRequest,
)
from schemas.normalize import DEFAULT
from schemas.touchpoint import EventType, dump_touchpoint
from streams.simulate import Simulator


@dataclass
class RacingStore:
    """An in-memory store where another worker commits ``interloper`` (through the same
    pipeline) between this worker's first load and its first commit."""

    inner: InMemoryStore
    interloper: list[RawRecord]
    lane: Lane
    calls: list[int] = field(default_factory=list)  # parts per commit call

    def load(self, request: LoadRequest) -> Loaded:
        return self.inner.load(request)

    def commit(self, commit: Commit) -> CommitResult:
        return self.commit_parts([commit])[0]

    def commit_parts(self, batch_parts: Sequence[Commit]) -> list[CommitResult]:
        if not self.calls:
            run(self.interloper, self.inner, self.lane)
        self.calls.append(len(batch_parts))
        return self.inner.commit_parts(batch_parts)


def run(
    records: Sequence[RawRecord],
    store: object,
    lane: Lane = PROFILES,
    max_parts: int = 16,
    claims: Claims | None = None,
) -> BatchResult:
    return run_batch(
        records,
        store,  # type: ignore[arg-type]
        make_context,
        max_bytes=64 * 1024,
        config=DEFAULT,
        lane=lane,
        max_parts=max_parts,
        claims=claims,
    )


def shopper(n: int, at_minute: int, *, sku: str = "SKU-1") -> dict[str, object]:
    return sale(
        f"e-{n}-{at_minute}",
        f"2026-11-20T10:{at_minute:02d}:00+01:00",
        {"email": f"shopper{n}@example.com", "loyalty_id": f"L-{n}"},
        sku=sku,
    )


def snapshots(store: InMemoryStore) -> dict[tuple[Kind, str], object]:
    """Every snapshot, without its version (how many commits wrote it differs)."""
    out: dict[tuple[Kind, str], object] = {}
    for ref, entity in store.entities.items():
        if "d" in entity.fields:
            snapshot = orjson.loads(entity.fields["d"])
            snapshot.pop("version", None)
            out[(ref.kind, ref.name)] = snapshot
    return out


def test_a_conflict_recomputes_only_the_part_of_the_contested_person() -> None:
    # this worker's batch: shoppers 1-8, two sales each; another worker sells to shopper 3
    batch = [
        record(shopper(n, m), i) for i, (n, m) in enumerate(itertools.product(range(1, 9), (1, 2)))
    ]
    store = RacingStore(InMemoryStore(), [record(shopper(3, 30), 99)], PROFILES)

    result = run(batch, store, PROFILES)

    assert result.conflicted_parts == 1  # type: ignore[attr-defined]
    contested = result.recomputed_events  # type: ignore[attr-defined]
    assert 2 <= contested <= 4  # shopper 3's part (8 persons in up to 16 parts: 1 or 2 each)
    assert store.calls[0] == 8  # every shopper committed apart in the first call...
    assert store.calls[1:] == [1]  # ...and only the contested part again
    assert result.processed == len(batch)  # type: ignore[attr-defined]
    # the end state is the one of a single worker that saw all 17 sales
    serial = InMemoryStore()
    run([record(shopper(3, 30), 99)], serial, PROFILES)
    run(batch, serial, PROFILES, max_parts=1)
    assert snapshots(store.inner) == snapshots(serial)


def test_the_in_memory_sequence_moves_once_per_call_that_writes_as_redis_does() -> None:
    """A Redis commit ``INCR``s its lane's sequence once per transaction, whatever its parts
    (``streams.watch_commit``); claims name commits by it (ADR 0040), so the in-memory store
    counts the same way."""
    batch = [
        record(shopper(n, m), i) for i, (n, m) in enumerate(itertools.product(range(1, 9), (1, 2)))
    ]
    store = RacingStore(InMemoryStore(), [record(shopper(3, 30), 99)], PROFILES)
    run(batch, store, PROFILES)
    # the interloper's call, this batch's first call (8 parts, 7 written) and its retry
    assert store.calls == [8, 1]
    assert store.inner.sequence == 3
    nothing = InMemoryStore()
    assert nothing.commit_parts([]) == []
    assert nothing.sequence == 0


def test_a_conflict_on_a_best_seller_recomputes_only_that_sku() -> None:
    skus = [f"SKU-{n}" for n in range(10)]
    batch = [record(shopper(n, 1, sku=sku), n) for n, sku in enumerate(skus)]
    other = [record(shopper(100, 5, sku="SKU-0"), 50)]  # another till sells the best seller
    store = RacingStore(InMemoryStore(), other, INVENTORY)

    result = run(batch, store, INVENTORY)

    assert result.conflicted_parts == 1  # type: ignore[attr-defined]
    assert result.recomputed_events == 1  # type: ignore[attr-defined]
    assert store.calls == [10, 1]
    serial = InMemoryStore()
    run(other + batch, serial, INVENTORY, max_parts=1)
    assert snapshots(store.inner) == snapshots(serial)


def test_events_that_share_an_identifier_share_a_part() -> None:
    linked = [
        record(sale("a1", "2026-11-20T10:00:00+01:00", {"email": "a@example.com"}), 0),
        record(
            sale(
                "a2",
                "2026-11-20T10:01:00+01:00",
                {"email": "a@example.com", "loyalty_id": "L-42"},
            ),
            1,
        ),
        record(sale("a3", "2026-11-20T10:02:00+01:00", {"loyalty_id": "L-42"}), 2),
        record(sale("b1", "2026-11-20T10:03:00+01:00", {"email": "b@example.com"}), 3),
    ]
    ctx = make_context()
    events, _ = prepare(linked, max_bytes=65536, config=DEFAULT, salt=ctx.salt)
    store = InMemoryStore()
    split = parts.split(events, store.load(load_request(events)), identity=True, max_parts=16)
    assert sorted(sorted(e.tp.event_id for e in p.events) for p in split) == [
        ["a1", "a2", "a3"],
        ["b1"],
    ]


def test_a_stored_profile_joins_events_that_share_no_identifier_in_the_batch() -> None:
    """Evidence from the store (a profile holding both identifiers) links two events."""
    store = InMemoryStore()
    first = sale(
        "s0", "2026-11-20T09:00:00+01:00", {"email": "c@example.com", "loyalty_id": "L-77"}
    )
    run([record(first, 0)], store, PROFILES)
    later = [
        record(sale("s1", "2026-11-20T10:00:00+01:00", {"email": "c@example.com"}), 1),
        record(sale("s2", "2026-11-20T10:01:00+01:00", {"loyalty_id": "L-77"}), 2),
    ]
    ctx = make_context()
    events, _ = prepare(later, max_bytes=65536, config=DEFAULT, salt=ctx.salt)
    split = parts.split(events, store.load(load_request(events)), identity=True, max_parts=16)
    assert [sorted(e.tp.event_id for e in p.events) for p in split] == [["s1", "s2"]]


def simulated(seed: int, n: int) -> list[bytes]:
    sim = Simulator(seed=seed, customers=25, stores=2, skus=8)
    events = (tp for tp in sim.events() if tp.type is not EventType.ERASURE_REQUESTED)
    return [dump_touchpoint(tp) for tp in itertools.islice(events, n)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    size=st.integers(2, 60),
    max_parts=st.integers(2, 32),
)
def test_parts_change_no_result(seed: int, size: int, max_parts: int) -> None:
    """The same batches with and without parts end in the same entities, markers and stats."""
    values = simulated(seed, 120)
    whole, split_up = InMemoryStore(), InMemoryStore()
    for start in range(0, len(values), size):
        records = [record(v, start + i) for i, v in enumerate(values[start : start + size])]
        for lane in LANES.values():
            run(records, whole, lane, max_parts=1)
            run(records, split_up, lane, max_parts=max_parts)
    assert split_up.entities == whole.entities
    assert split_up.seen == whole.seen
    assert split_up.suppressed == whole.suppressed
    assert split_up.counters == whole.counters
    assert split_up.audiences == whole.audiences
    assert published(split_up) == published(whole)


def published(store: InMemoryStore) -> list[Any]:
    """The outbox's records, the consent audit's as its rows: it lists an event's default
    denials in one record per part and list of decisions (ADR 0011), so parts package the
    same rows into other records."""
    audit_topic = make_context().topics.consent_audit
    out: list[Any] = [r for r in store.outbox if r.topic != audit_topic]
    out += [
        sorted(row.items())
        for r in store.outbox
        if r.topic == audit_topic and r.value is not None
        for row in consent_audit.rows(orjson.loads(r.value))
    ]
    return sorted(out, key=repr)


@pytest.mark.parametrize("lane", [PROFILES, INVENTORY], ids=lambda lane: lane.name)
def test_a_batch_without_events_of_the_lane_or_with_one_event_is_one_part(lane: Lane) -> None:
    values = simulated(3, 1)
    ctx = make_context()
    events, _ = prepare(
        [record(values[0])], max_bytes=65536, config=DEFAULT, salt=ctx.salt, lane=lane
    )
    loaded = InMemoryStore().load(load_request(events, lane))
    assert len(parts.split(events, loaded, identity=lane.identity)) == 1
    assert len(parts.split([], loaded, identity=lane.identity)) == 1


def test_what_conflicted_recently_gets_a_part_of_its_own() -> None:
    skus = [f"SKU-{n}" for n in range(40)]
    batch = [record(shopper(n, 1, sku=sku), n) for n, sku in enumerate(skus)]
    ctx = make_context()
    events, _ = prepare(batch, max_bytes=65536, config=DEFAULT, salt=ctx.salt, lane=INVENTORY)
    loaded = InMemoryStore().load(load_request(events, INVENTORY))
    packed = parts.split(events, loaded, identity=False, max_parts=4)
    assert len(packed) == 4  # 40 SKUs, 10 per part
    hot = {"stock:SKU-7", "stock:SKU-30", "stock:NOT-IN-BATCH", "e-unknown"}
    split = parts.split(events, loaded, identity=False, max_parts=4, hot=hot)
    sizes = sorted(len(p.events) for p in split)
    assert sizes[:2] == [1, 1]  # each hot SKU alone...
    assert len(sizes) == 6  # ...the rest packed as before
    assert sum(sizes[2:]) == 38
    alone = {p.events[0].tp.event_id for p in split if len(p.events) == 1}
    assert alone == {batch_id(7), batch_id(30)}


def batch_id(n: int) -> str:
    return f"e-{n}-1"


def test_a_whole_batch_that_conflicts_is_split_for_its_retry() -> None:
    """A worker alone commits whole batches; the one that meets another worker is retried in
    parts, so the contested shopper's part alone is computed a third time if need be."""
    batch = [
        record(shopper(n, m), i) for i, (n, m) in enumerate(itertools.product(range(1, 9), (1, 2)))
    ]
    store = RacingStore(InMemoryStore(), [record(shopper(3, 30), 99)], PROFILES)

    result = run_batch(
        batch, store, make_context, max_bytes=65536, config=DEFAULT, max_parts=1, retry_parts=16
    )

    assert store.calls == [1, 8]  # the whole batch, then every shopper apart
    assert result.conflicted_parts == 1
    assert result.recomputed_events == len(batch)
    (named,) = result.contested  # the key that conflicted: shopper 3's record or profile
    assert named.startswith(("id:", "profile:"))
