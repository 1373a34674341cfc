"""A live backfill sent oldest first can announce a moment that was never true at the clock
(ADR 0009, note "a live backfill can announce moments that were never true").

The profiles lane decides each batch's memberships at the batch's clock on what it has, as it
must in real time. A purchase of running shoes 170 days ago that arrives late and alone (a
till that was offline, an order import of one customer) must enter the reminder at once; the
first batch of a backfill of the same customer's year, sent oldest first, is the same input:
the lane cannot tell them apart, so it enters the backfill's customer too, and exits them when
the purchase of 10 days ago arrives. ``loom rebuild`` avoids it by evaluating after its replay
(``tests/integration/test_rebuild_audiences.py``); the live lane cannot wait for a backfill's
end it does not know.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from pipeline_helpers import NOW, REMINDER, record, reminder_context, run_lanes

from resolvers.store import InMemoryStore
from resolvers.timefmt import format_time


def _order(event_id: str, days_ago: float) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "order_completed",
        "channel": "web",
        "occurred_at": format_time(NOW - timedelta(days=days_ago)),
        "region": "NO",
        "identifiers": {"customer_id": "ANN"},
        "consent": {"analytics": True, "personalization": True, "marketing": True},
        "order": {
            "order_id": f"o-{event_id}",
            "total": "600.00",
            "currency": "NOK",
            "lines": [{"sku": "SHOE", "quantity": 1, "category": "running"}],
        },
    }


def _changes(batches: list[list[dict[str, Any]]]) -> list[str]:
    """The reminder's ``audiences.changes`` records, in commit order, of the batches run one
    after another through the live lanes."""
    store = InMemoryStore()
    offset = 0
    for batch in batches:
        run_lanes([record(e, offset + i) for i, e in enumerate(batch)], store, reminder_context)
        offset += len(batch)
    out = []
    for rec in store.outbox:
        if rec.topic == "audiences.changes" and rec.value is not None:
            change = orjson.loads(rec.value)
            if change["audience"] == REMINDER:
                out.append(change["change"])
    return out


OLD, RECENT = _order("e1", 170), _order("e2", 10)


def test_a_late_purchase_arriving_alone_enters_the_reminder_at_once() -> None:
    assert _changes([[OLD]]) == ["enter"]


def test_the_same_history_decided_at_once_never_enters() -> None:
    # one batch (as the rebuild's pass decides it), or the recent purchase known first
    assert _changes([[OLD, RECENT]]) == []
    assert _changes([[RECENT], [OLD]]) == []


@pytest.mark.xfail(
    strict=True,
    reason="the lane decides each batch at its clock: a backfill's first batch is a late "
    "purchase arriving alone (ADR 0009)",
)
def test_a_backfill_sent_oldest_first_announces_no_moment_that_was_never_true() -> None:
    assert _changes([[OLD], [RECENT]]) == []
