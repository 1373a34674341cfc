"""On real workers, Kafka and Redis: a sale stamped just past ``LOOM_MAX_CLOCK_SKEW_S`` gets
one verdict from both lanes. It was judged by each lane at the moment it read it: the
inventory lane read it at once and skipped it (leaving the dead letter to the profiles lane),
the profiles lane, behind by a few seconds, accepted it, and the sale was neither applied to
the stock nor dead-lettered (a review of 2026-12-04; the pipeline-tier twin:
``tests/pipeline/test_lane_clocks.py``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from e2e_harness import Loom

pytestmark = pytest.mark.e2e

SKEW_S = 2
AHEAD_S = 20  # the till's clock: this far ahead of the workers' (room for a worker to start)


def event(event_id: str, at: datetime, type_: str, **body: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": type_,
        "channel": "pos" if type_ == "pos_sale" else "backoffice",
        "occurred_at": at.isoformat(),
        **body,
    }


def test_a_sale_skipped_by_the_inventory_lane_and_accepted_by_the_profiles_lane_is_not_lost(
    loom: Loom,
) -> None:
    env = {"LOOM_MAX_CLOCK_SKEW_S": str(SKEW_S)}
    start = datetime.now(UTC)
    count = event(
        "k-count",
        start - timedelta(hours=1),
        "inventory_counted",
        inventory={"sku": "SKU-CLK", "location_id": "oslo-1", "on_hand": 10},
    )
    sale_at = datetime.now(UTC) + timedelta(seconds=AHEAD_S)
    sale = event(
        "k-sale",
        sale_at,
        "pos_sale",
        order={
            "order_id": "o-k-sale",
            "total": "10.00",
            "currency": "NOK",
            "location_id": "oslo-1",
            "lines": [{"sku": "SKU-CLK", "quantity": 1, "unit_price": "10.00"}],
        },
    )
    loom.start_worker("inventory", env=env)
    loom.produce([count, sale])
    loom.wait_idle("inventory")  # the inventory lane read both and committed past them
    assert datetime.now(UTC) < sale_at - timedelta(seconds=SKEW_S), "too slow to show it"
    # the profiles lane reads the records once the till's stamp is within the skew of its clock
    while datetime.now(UTC) < sale_at - timedelta(seconds=SKEW_S - 0.5):
        time.sleep(0.05)
    loom.start_worker("profiles", env=env)
    loom.wait_idle()
    doc = loom.stock("SKU-CLK")
    assert doc is not None
    on_hand = doc["locations"]["oslo-1"]["on_hand"]
    dead = [m for m in loom.topic_records(loom.settings.topics.dlq) if b"k-sale" in m.value()]
    reasons = [dict(m.headers() or []).get("loom.reason") for m in dead]
    assert on_hand == 9 or dead, (
        f"the sale was neither applied (on_hand {on_hand}, the count said 10) nor "
        f"dead-lettered ({reasons})"
    )
