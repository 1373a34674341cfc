"""The audience pass (``streams.audience_refresh``) against the lane's writes, on real Redis:
neither undoes a newer decision at an older clock (a review of 2026-12-04; each test failed
before: enter, then exit, for one due moment).

Invariants: a profile is in an audience exactly when its current snapshot and the clock say
so; a timed audience fires once per due moment (not never, not twice); the last record per
profile and audience on ``audiences.changes`` matches the member set in Redis.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
import redis
from builders import NOW, make_context

from resolvers.audiences import Audiences, audience
from resolvers.context import Context
from resolvers.pipeline import LANES, run_batch
from resolvers.steps import RawRecord
from resolvers.timefmt import format_time
from schemas.normalize import DEFAULT
from streams import outbox
from streams.audience_refresh import AudienceRefresh
from streams.redis_store import RedisStore

#: Due 150 days after the last order, for 50 days.
AUDIENCES = Audiences(
    {"reminder": audience("reminder", "days_since_last_order between 150 and 200")}
)
DUE = NOW + timedelta(days=150)  # the buyer's due moment (their order is at NOW)


def context(at: datetime) -> Context:
    return replace(make_context(at), audiences=AUDIENCES)


def event(event_id: str, at: datetime, **extra: Any) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "type": "page_view",
            "channel": "web",
            "occurred_at": format_time(at),
            "region": "NO",
            "identifiers": {"customer_id": "c1"},
            "consent": {"analytics": True, "personalization": True},
            **extra,
        }
    )


def lane(store: RedisStore, value: bytes, offset: int, at: datetime) -> None:
    """One batch of the profiles lane, its clock at ``at``."""
    run_batch(
        [RawRecord(value, "touchpoints.raw", 0, offset)],
        store,
        lambda: context(at),
        max_bytes=65536,
        config=DEFAULT,
        lane=LANES["profiles"],
    )


@pytest.fixture
def store(redis_client: redis.Redis, redis_prefix: str) -> RedisStore:
    store = RedisStore(redis_client, prefix=redis_prefix)
    order = event(
        "o1",
        NOW,
        type="order_completed",
        order={
            "order_id": "o1",
            "total": "100.00",
            "currency": "NOK",
            "lines": [{"sku": "S-1", "quantity": 1, "unit_price": "100.00"}],
        },
    )
    lane(store, order, 0, NOW)
    return store


def the_profile(client: redis.Redis, store: RedisStore) -> str:
    [raw] = client.smembers(store.keys.profile_index)  # type: ignore[misc]
    return str(raw.decode())


def members(client: redis.Redis, store: RedisStore) -> set[str]:
    return {m.decode() for m in client.smembers(store.keys.audience("reminder"))}  # type: ignore[union-attr]


def changes(client: redis.Redis, store: RedisStore) -> list[str]:
    """The ``audiences.changes`` records in the outbox, in commit order."""
    out = []
    for _, fields in client.xrange(store.keys.outbox):  # type: ignore[union-attr]
        for rec in outbox.records(fields):
            if rec.topic == "audiences.changes" and rec.value is not None:
                change = orjson.loads(rec.value)
                out.append(f"{change['audience']}:{change['change']}")
    return out


def test_a_pass_whose_clock_was_read_before_a_lane_write_does_not_undo_it(
    store: RedisStore, redis_client: redis.Redis
) -> None:
    """The pass reads its clock once, when it starts (a minute before the buyer is due);
    the lane writes the buyer a moment after they became due (entered); then the pass
    reaches them. It evaluated the lane's fresh snapshot at its own older clock and took the
    buyer out again: out of an audience the clock says they are in, and the next pass puts
    them back (the one due moment fired twice: enter, exit, enter)."""
    pid = the_profile(redis_client, store)
    wall = {"now": DUE - timedelta(minutes=1)}  # the pass starts here

    def pass_context() -> Context:
        ctx = context(wall["now"])
        if wall["now"] < DUE:  # right after the pass read its clock, the lane wrote
            wall["now"] = DUE + timedelta(minutes=1)
            lane(store, event("v1", wall["now"] - timedelta(seconds=5)), 1, wall["now"])
            assert members(redis_client, store) == {pid}  # the lane entered the buyer
        return ctx

    AudienceRefresh(store, redis_client, pass_context).run()
    assert members(redis_client, store) == {pid}, changes(redis_client, store)
    wall["now"] += timedelta(hours=1)  # the next pass, an interval later
    AudienceRefresh(store, redis_client, lambda: context(wall["now"])).run()
    assert changes(redis_client, store) == ["reminder:enter"]


def test_a_lane_batch_whose_clock_was_read_before_a_pass_commit_does_not_undo_it(
    store: RedisStore, redis_client: redis.Redis
) -> None:
    """The mirror image: a lane batch reads its clock (a minute before the buyer is due),
    the audience pass enters the buyer a moment after they became due, then the batch loads
    the buyer (the pass's snapshot) and decides at its older clock: exit. The clock says
    member, the set says not, and the next pass enters them again."""
    pid = the_profile(redis_client, store)
    wall = {"now": DUE - timedelta(minutes=1)}  # the lane's batch starts here

    def lane_context() -> Context:
        ctx = context(wall["now"])
        if wall["now"] < DUE:  # right after the batch read its clock, the pass ran
            wall["now"] = DUE + timedelta(minutes=1)
            AudienceRefresh(store, redis_client, lambda: context(wall["now"])).run()
            assert members(redis_client, store) == {pid}  # the pass entered the buyer
        return ctx

    run_batch(
        [RawRecord(event("v1", DUE - timedelta(minutes=2)), "touchpoints.raw", 0, 1)],
        store,
        lane_context,
        max_bytes=65536,
        config=DEFAULT,
        lane=LANES["profiles"],
    )
    assert members(redis_client, store) == {pid}, changes(redis_client, store)
    wall["now"] += timedelta(hours=1)  # the next pass, an interval later
    AudienceRefresh(store, redis_client, lambda: context(wall["now"])).run()
    assert changes(redis_client, store) == ["reminder:enter"]
