"""The audience pass (``streams.audience_refresh``) against the lane's writes, on real Redis:
neither undoes a newer decision at an older clock (a review of 2026-12-04; each test failed
before: enter, then exit, for one due moment), nor does ``loom audiences refresh``. Clocks of
different machines that disagree are a trade-off (README "Audiences"): the last test shows
its bound, both sides.

Invariants: a profile is in an audience exactly when its current snapshot and the clock say
so; a timed audience fires once per due moment (not never, not twice; with clocks that agree);
the last record per profile and audience on ``audiences.changes`` matches the member set in
Redis.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
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
from streams.cli import audiences as audiences_cli
from streams.cli.main import main
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


@pytest.mark.parametrize("writer", ["lane", "worker's pass"])
def test_a_manual_refresh_whose_clock_was_read_before_a_write_does_not_undo_it(
    writer: str,
    store: RedisStore,
    redis_client: redis.Redis,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``loom audiences refresh`` (no ``--now``) commits with the lane's compare-and-set
    like the worker's pass, but read its clock once, when the command started: the lane (or
    a worker's pass) entered the buyer a moment after they became due, then the command
    reached them and took them out at its older clock (the first test's failure, through
    the CLI: ``['reminder:enter', 'reminder:exit']``)."""
    pid = the_profile(redis_client, store)
    wall = {"now": DUE - timedelta(minutes=1)}  # the command starts here

    class Clock(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Any:
            at = wall["now"]
            if at < DUE:  # right after the command read its clock, the writer wrote
                wall["now"] = later = DUE + timedelta(minutes=1)
                if writer == "lane":
                    lane(store, event("v1", later - timedelta(seconds=5)), 1, later)
                else:
                    AudienceRefresh(store, redis_client, lambda: context(later)).run()
                assert members(redis_client, store) == {pid}  # it entered the buyer
            return at

    monkeypatch.setattr(audiences_cli, "datetime", Clock)
    file = tmp_path / "audiences.toml"
    file.write_text(
        '[audiences.reminder]\nexpression = "days_since_last_order between 150 and 200"\n'
    )
    monkeypatch.setenv("LOOM_AUDIENCES_FILE", str(file))
    argv = ["audiences", "refresh", "--redis-url", redis_url, "--prefix", redis_prefix]
    assert main(argv) == 0
    assert members(redis_client, store) == {pid}, changes(redis_client, store)
    wall["now"] += timedelta(hours=1)  # the next pass, an interval later
    AudienceRefresh(store, redis_client, lambda: context(wall["now"])).run()
    assert changes(redis_client, store) == ["reminder:enter"]


# --- workers whose clocks disagree (a trade-off: README "Audiences", ADR 0009's notes) -------

SKEW = timedelta(seconds=5)  # worker A's clock is this far ahead of worker B's


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        # B writes 1 s after A's pass entered the buyer: B's clock is still before the due
        # moment, so B takes them out, and the next pass enters them again (fired twice)
        (timedelta(seconds=1), ["reminder:enter", "reminder:exit", "reminder:enter"]),
        # B writes the skew or more after: its clock has passed the due moment too
        (SKEW, ["reminder:enter"]),
    ],
)
def test_clocks_that_disagree_flip_a_membership_only_for_a_write_within_their_difference(
    after: timedelta, expected: list[str], store: RedisStore, redis_client: redis.Redis
) -> None:
    """Not fixed: each decision is taken at its own machine's clock and no decision's clock is
    stored, so a write by a worker whose clock is behind can undo, at its boundary, a timed
    entry (or exit) a worker whose clock is ahead made less than their difference earlier.
    The bound the README states: only such a write flips, and the next pass (or write)
    decides again."""
    pid = the_profile(redis_client, store)
    real = DUE - timedelta(seconds=4)  # the true time of worker A's pass
    AudienceRefresh(store, redis_client, lambda: context(real + SKEW)).run()
    assert members(redis_client, store) == {pid}  # A's clock says due: entered
    b_clock = real + after  # worker B's clock is the true time
    lane(store, event("v1", b_clock - timedelta(seconds=1)), 1, b_clock)
    later = DUE + timedelta(hours=1)  # the next pass, an interval later
    AudienceRefresh(store, redis_client, lambda: context(later)).run()
    assert changes(redis_client, store) == expected
    assert members(redis_client, store) == {pid}
