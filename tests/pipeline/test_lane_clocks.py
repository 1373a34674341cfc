"""The input bound ``future_timestamp`` gives every lane, redelivery and rebuild the same
verdict: it is judged at the record's Kafka timestamp, or the lane's clock when that is earlier
(``resolvers.stages.parse.reference_time``). It was judged at each lane's clock when it read
the record, and the two lanes (and a rebuild) read it at different moments (a review of
2026-12-04; both tests failed before).

The inventory lane skips a record it cannot decode and leaves the dead letter to the profiles
lane (``resolvers.pipeline``: "each bad record reaches the DLQ once"). That hand-off is only
sound if both lanes reach the same verdict; for ``future_timestamp`` they do not when one lane
lags the other. A till whose clock runs 6 minutes fast (LOOM_MAX_CLOCK_SKEW_S is 5 minutes):
the inventory lane reads its sale at once and skips it, the profiles lane reads it 2 minutes
later and accepts it. Nothing is dead-lettered, and the sale never reaches the stock.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from builders import NOW, make_context
from pipeline_helpers import record as untimed
from test_input_bounds import counted
from test_pipeline import sale as pos_sale
from test_pipeline import stock

from resolvers.pipeline import INVENTORY, PROFILES, run_batch
from resolvers.steps import RawRecord
from resolvers.store import InMemoryStore
from schemas.normalize import DEFAULT

BEFORE = (NOW - timedelta(hours=1)).isoformat()
FAST_TILL = (NOW + timedelta(minutes=6)).isoformat()  # the till's clock: 6 minutes ahead


def record(event: dict[str, Any], offset: int) -> RawRecord:
    """The record as Kafka hands it to a lane: with its timestamp (written at NOW, by a
    producer or broker whose clock is right; only the till's is fast)."""
    return untimed(event, offset)._replace(timestamp_ms=int(NOW.timestamp() * 1000))


def lane_at(lane: Any, records: list[Any], store: InMemoryStore, minutes: float) -> Any:
    """One batch of ``lane`` with its clock ``minutes`` after NOW."""
    at = NOW + timedelta(minutes=minutes)
    return run_batch(
        records, store, lambda: make_context(at), max_bytes=64 * 1024, config=DEFAULT, lane=lane
    )


def test_a_sale_one_lane_skips_and_the_other_reads_later_is_applied_or_dead_lettered() -> None:
    store = InMemoryStore()
    first = [record(counted("c1", BEFORE, 10), 0)]
    lane_at(PROFILES, first, store, 0)
    lane_at(INVENTORY, first, store, 0)
    sale = [record(pos_sale("s-fast-till", FAST_TILL, {}), 1)]
    inventory = lane_at(INVENTORY, sale, store, 0)  # reads it at once
    profiles = lane_at(PROFILES, sale, store, 2)  # lags by 2 minutes
    on_hand = stock(store, "SKU-1")["locations"]["oslo-1"]["on_hand"]
    dead = [d.reason for d in inventory.dead_letters + profiles.dead_letters]
    assert on_hand == 9 or dead, (
        f"the sale was neither applied (on_hand {on_hand}, 10 before it) nor dead-lettered "
        f"(dead letters {dead}; inventory lane outcomes {dict(inventory.outcomes)}, profiles "
        f"lane outcomes {dict(profiles.outcomes)})"
    )


def test_a_rebuild_from_the_raw_topic_gives_the_stock_the_live_lane_gave() -> None:
    records = [
        record(counted("c1", BEFORE, 10), 0),
        record(pos_sale("s-fast-till", FAST_TILL, {}), 1),
    ]
    live = InMemoryStore()
    lane_at(INVENTORY, records, live, 0)
    rebuilt = InMemoryStore()  # ``loom rebuild --lane inventory`` the next day
    lane_at(INVENTORY, records, rebuilt, 24 * 60)
    got = (
        stock(live, "SKU-1")["locations"]["oslo-1"]["on_hand"],
        stock(rebuilt, "SKU-1")["locations"]["oslo-1"]["on_hand"],
    )
    assert got[0] == got[1], f"live on_hand {got[0]}, rebuilt from the same records {got[1]}"
