"""The one place a batch's result becomes metrics: :func:`observe_batch`.

Called once per committed batch (or sub-batch, when bisecting), after its dead letters were
delivered. It never raises: the batch is committed in Redis by then, and failing it would only
stop the lane; a label :class:`~streams.metrics.WorkerMetrics` refuses is logged instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from resolvers.effects import Measure
from resolvers.pipeline import BatchResult
from resolvers.steps import RawRecord
from streams.metrics import WorkerMetrics, observe_each

log = logging.getLogger(__name__)


def observe_batch(m: WorkerMetrics, records: Sequence[RawRecord], result: BatchResult) -> None:
    """Count what ``result`` reports for ``records``: sizes, outcomes, counters, latency."""
    m.batch_size.observe(len(records))
    m.commit_parts.inc(result.parts)
    if result.conflicted_parts:
        m.commit_conflicts.inc(result.conflicted_parts)
        m.conflicted_batches.inc()
        m.recomputed_events.inc(result.recomputed_events)
    if result.deferred_parts:
        m.deferred_parts.inc(result.deferred_parts)
        m.deferred_batches.inc()
        m.deferred_events.inc(result.deferred_events)
    for (event_type, outcome), n in result.outcomes.items():
        _count(m.count_event, event_type, outcome, n)
    for dead in result.dead_letters:
        _count(m.count_dlq, dead.stage, dead.reason)
    for count, n in result.counts.items():
        if count.measure is Measure.MERGES:
            m.merges.inc(n)
        elif count.measure is Measure.QUARANTINED:
            m.quarantined.inc(n)
        elif count.measure is Measure.OVERSOLD:
            m.oversold.inc(n)
        elif count.measure is Measure.MERGES_BLOCKED and count.rule:
            m.merges_blocked.labels(rule=count.rule).inc(n)
        elif count.measure is Measure.CONSENT_DENIED:
            _count(m.count_consent, count.purpose, "denied", count.reason, n)
    now_ms = time.time() * 1000
    observe_each(
        m.event_to_snapshot.labels(lane=m.lane),
        [
            seconds if (seconds := (now_ms - ts) / 1000) > 0.0 else 0.0  # max(0.0, ...)
            for r in records
            if (ts := r.timestamp_ms)
        ],
    )


def _count(count: Callable[..., None], *labels: Any) -> None:
    try:
        count(*labels)
    except ValueError:
        log.error("metric %s: refused label values, not counted", count.__name__, exc_info=True)
