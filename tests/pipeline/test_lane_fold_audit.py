"""The profiles lane after issue 17's fifteenth pass (the fold pruned once where it can change
something, pruning by accounts asking only the accounts with a history, a gate's verdicts
later than its history remembered, the audit's denials read once per verdicts and counted per
list) decides exactly as before: the lane with the old functions put back
(``lane_reference``, verbatim) and today's, over the same deliveries of the same world, leave
the same store (every entity's bytes, the outbox's records in order: the consent audit's
among them, markers, tombstones, streams, counters) and the same batch results (outcomes,
counts, dead letters), batch by batch.

Worlds: the order-independence worlds (conflicts, shared devices, late links, erasures,
consent updates, GPC) with more consent: each customer's grants and denials of every purpose
at times spread over the world, delivered in any partitioning, interleaving and batching
(``test_order_independence.deliveries``), redeliveries included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import lane_reference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipeline_helpers import make_context, record
from test_order_independence import CUSTOMERS, DEVICES, PURPOSES, REGIONS, START, deliveries, events

from resolvers.decode_cache import DecodeCache
from resolvers.pipeline import PROFILES, BatchResult, run_batch
from resolvers.store import InMemoryStore
from schemas.normalize import DEFAULT


@st.composite
def consent_heavy(draw: st.DrawFn) -> list[dict[str, Any]]:
    """An order-independence world with consent statements added: updates of any purposes
    (grants and denials), GPC, and browsing that states its own consent."""
    world = draw(events())
    extra = draw(st.integers(2, 14))
    for i in range(extra):
        at = START + timedelta(minutes=draw(st.integers(0, 600)))
        kind = draw(st.sampled_from(("update", "update", "gpc", "browse")))
        region = draw(st.sampled_from(REGIONS))
        chosen = draw(st.lists(st.sampled_from(PURPOSES), unique=True, min_size=1, max_size=4))
        consent = {p: draw(st.booleans()) for p in chosen}
        event: dict[str, Any] = {
            "event_id": f"c{i:03d}",
            "occurred_at": at.isoformat(),
            "channel": "web",
        }
        if region is not None:
            event["region"] = region
        cid = draw(st.sampled_from(CUSTOMERS))
        if kind == "update":
            event |= {"type": "consent_updated", "identifiers": {"customer_id": cid}}
            event["consent"] = consent
        elif kind == "gpc":
            device = draw(st.sampled_from(DEVICES))
            event |= {"type": "page_view", "identifiers": {"anonymous_id": device}, "gpc": True}
        else:
            device = draw(st.sampled_from(DEVICES))
            ids = {"anonymous_id": device, "customer_id": cid}
            event |= {"type": "product_viewed", "identifiers": ids, "consent": consent}
            event["properties"] = {"category": "shoes"}
        world.insert(draw(st.integers(0, len(world))), event)
    return world


def _run(
    values: Sequence[bytes], batches: Sequence[int]
) -> tuple[InMemoryStore, list[BatchResult]]:
    """The store and each batch's result after the profiles lane ran ``values`` in batches
    of ``batches``, as a worker runs them (a decode cache remembers what each batch wrote)."""
    store, cache = InMemoryStore(), DecodeCache()
    records = [record(v, i) for i, v in enumerate(values)]
    results: list[BatchResult] = []
    start = 0
    for size in batches:
        results.append(
            run_batch(
                records[start : start + size],
                store,
                lambda: replace(make_context(), cache=cache),
                max_bytes=64 * 1024,
                config=DEFAULT,
                lane=PROFILES,
            )
        )
        start += size
    return store, results


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), world=consent_heavy())
def test_the_lane_folds_prunes_and_audits_as_before(
    data: st.DataObject, world: list[dict[str, Any]]
) -> None:
    values, batches = data.draw(deliveries(world))
    store, results = _run(values, batches)
    with lane_reference.install():
        old_store, old_results = _run(values, batches)
    assert store.entities == old_store.entities
    assert store.outbox == old_store.outbox
    assert (store.seen, store.suppressed) == (old_store.seen, old_store.suppressed)
    assert (store.streams, store.counters) == (old_store.streams, old_store.counters)
    assert store.audiences == old_store.audiences
    for result, old in zip(results, old_results, strict=True):
        assert result.outcomes == old.outcomes
        assert list(result.outcomes.items()) == list(old.outcomes.items())
        assert list(result.counts.items()) == list(old.counts.items())
        assert result.dead_letters == old.dead_letters
        assert result.processed == old.processed


def test_the_reference_is_the_old_code() -> None:
    """``install`` does put the old functions in place (the property compares two lanes)."""
    from resolvers.consent import Gate
    from resolvers.lanes.profiles import ProfilesBatch
    from resolvers.stages import audit

    today = (ProfilesBatch._fold_facts, ProfilesBatch._prune_by_accounts, Gate.verdicts)
    with lane_reference.install():
        assert audit.audit is lane_reference.audit
        assert ProfilesBatch._fold_facts is lane_reference._fold_facts  # type: ignore[comparison-overlap]
        assert Gate.verdicts is lane_reference.verdicts  # type: ignore[comparison-overlap]
    assert (ProfilesBatch._fold_facts, ProfilesBatch._prune_by_accounts, Gate.verdicts) == today
