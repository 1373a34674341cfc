"""``run_batch(prepared=...)`` (ADR 0038): a batch whose first records were prepared ahead, in
chunks of any size, commits exactly what it commits when it prepares them all itself: the
same results, dead letters and stored state, in both lanes."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipeline_helpers import make_context, record
from test_order_independence import events

from resolvers.pipeline import INVENTORY, PROFILES, BatchResult, Lane, Prepared, prepare, run_batch
from resolvers.steps import RawRecord
from resolvers.store import InMemoryStore
from schemas.normalize import DEFAULT

#: Records no stage accepts, mixed into the worlds: each must be the same dead letter either way.
BAD = (b"{", b"[]", b'{"schema": "touchpoint/v1"}', b"\xff\xfe", orjson.dumps({"type": 1}))


def _prepare(records: Sequence[RawRecord], lane: Lane) -> Any:
    ctx = make_context()
    return prepare(
        records,
        max_bytes=64 * 1024,
        config=DEFAULT,
        salt=ctx.salt,
        default_region=ctx.default_region,
        lane=lane,
        now=ctx.now,
    )


def _run(
    batches: Sequence[Sequence[RawRecord]], lane: Lane, ahead: Sequence[tuple[int, int]] | None
) -> tuple[list[Any], dict[str, Any]]:
    """Each batch through ``lane``; with ``ahead``, batch ``i``'s first ``count`` records
    prepared beforehand in chunks of ``chunk`` (``ahead[i] = (count, chunk)``)."""
    store = InMemoryStore()
    results = []
    for i, batch in enumerate(batches):
        prepared = None
        if ahead is not None:
            count, chunk = ahead[i]
            chunks = [
                _prepare(batch[j : min(j + chunk, count)], lane) for j in range(0, count, chunk)
            ]
            prepared = Prepared.of(batch, count, chunks)
        result = run_batch(
            batch,
            store,
            make_context,
            max_bytes=64 * 1024,
            config=DEFAULT,
            lane=lane,
            prepared=prepared,
        )
        results.append(_result(result))
    state = {
        "entities": store.entities,
        "seen": store.seen,
        "suppressed": store.suppressed,
        "outbox": store.outbox,
        "streams": store.streams,
        "counters": store.counters,
    }
    return results, state


def _result(result: BatchResult) -> tuple[Any, ...]:
    dead = [(d.record.offset, d.stage, d.reason, d.error_class) for d in result.dead_letters]
    return (dict(result.outcomes), dict(result.counts), result.processed, dead)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), world=events())
def test_a_batch_prepared_ahead_in_chunks_commits_what_it_commits_unprepared(
    data: st.DataObject, world: list[dict[str, Any]]
) -> None:
    values = [orjson.dumps(e) for e in world]
    bad_records = st.lists(st.sampled_from(BAD), min_size=1, max_size=6)
    for bad in data.draw(bad_records, label="bad records"):
        values.insert(data.draw(st.integers(0, len(values)), label="at"), bad)
    records = [record(v, i) for i, v in enumerate(values)]
    cuts = sorted(data.draw(st.sets(st.integers(1, len(records) - 1), max_size=3), label="cuts"))
    bounds = [0, *cuts, len(records)]
    batches = [records[a:b] for a, b in pairwise(bounds)]
    ahead = [
        (
            data.draw(st.integers(0, len(batch)), label="prepared ahead"),
            data.draw(st.integers(1, 8), label="chunk"),
        )
        for batch in batches
    ]
    lane = data.draw(st.sampled_from([PROFILES, INVENTORY]), label="lane")
    assert _run(batches, lane, ahead) == _run(batches, lane, None)


def test_prepared_of_other_records_is_refused() -> None:
    records = [record(orjson.dumps({"x": 1}), 0)]
    other = list(records)
    with pytest.raises(ValueError, match="other records"):
        run_batch(
            records,
            InMemoryStore(),
            make_context,
            max_bytes=64 * 1024,
            config=DEFAULT,
            prepared=Prepared(other, 1, [], []),
        )
