"""The scheduled audience pass (``streams.audience_refresh``) on real Redis: it evaluates the
audiences on the stored snapshots and renders again, from their state, only the profiles
whose membership moves at its clock (and any without a snapshot); what it commits is what
the lane would. Its lock (``streams.audience_schedule``) outlives a pass slower than the
interval and expires when its holder dies."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import orjson
import pytest
import redis
from builders import NOW, make_context

from resolvers.audiences import Audiences, audience
from resolvers.context import Context
from resolvers.lanes import profiles as profiles_lane
from resolvers.pipeline import LANES, run_batch
from resolvers.steps import RawRecord
from resolvers.store import profile_ref as profiles_lane_ref
from resolvers.timefmt import format_time
from schemas.normalize import DEFAULT
from streams.audience_refresh import AudienceRefresh, RefreshReport
from streams.audience_schedule import PassLock, PassLockLostError, run_pass
from streams.redis_clients import acl_rules
from streams.redis_store import RedisStore

AUDIENCES = Audiences(
    {
        "lapsed": audience("lapsed", "days_since_last_seen > 60"),  # time-dependent
        "buyers": audience("buyers", "orders >= 1"),
    }
)
#: Customer ``c<i>`` was last seen ``10 * i`` days before NOW; the even ones bought.
PEOPLE = 6


def context(at: Any = NOW) -> Context:
    return replace(make_context(at), audiences=AUDIENCES)


def record(i: int) -> bytes:
    event: dict[str, Any] = {
        "event_id": f"e{i}",
        "type": "order_completed" if i % 2 == 0 else "page_view",
        "channel": "web",
        "occurred_at": format_time(NOW - timedelta(days=10 * i)),
        "region": "NO",
        "identifiers": {"customer_id": f"c{i}"},
        "consent": {"analytics": True, "personalization": True},
    }
    if i % 2 == 0:
        event["order"] = {
            "order_id": f"o{i}",
            "total": "100.00",
            "currency": "NOK",
            "lines": [{"sku": "S-1", "quantity": 1, "unit_price": "100.00"}],
        }
    return orjson.dumps(event)


@pytest.fixture
def store(redis_client: redis.Redis, redis_prefix: str) -> RedisStore:
    store = RedisStore(redis_client, prefix=redis_prefix)
    records = [RawRecord(record(i), "touchpoints.raw", 0, i) for i in range(PEOPLE)]
    run_batch(records, store, context, max_bytes=65536, config=DEFAULT, lane=LANES["profiles"])
    return store


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The profile ids the lane's code renders, in order."""
    seen: list[str] = []
    real: Callable[..., dict[str, Any]] = profiles_lane.render

    def counting(person: Any, gate: Any) -> dict[str, Any]:
        seen.append(person.profile_id)
        return real(person, gate)

    monkeypatch.setattr(profiles_lane, "render", counting)
    return seen


def profile_ids(client: redis.Redis, store: RedisStore) -> dict[str, str]:
    """customer id -> profile id, from the stored snapshots."""
    out = {}
    for raw in client.smembers(store.keys.profile_index):  # type: ignore[union-attr]
        pid = raw.decode()
        doc = orjson.loads(client.hget(store.keys.profile(pid), "d"))  # type: ignore[arg-type]
        [customer] = doc["identifiers"]["customer_id"]
        out[customer] = pid
    return out


def members(client: redis.Redis, store: RedisStore, name: str) -> set[str]:
    return {m.decode() for m in client.smembers(store.keys.audience(name))}  # type: ignore[union-attr]


def test_a_pass_at_the_snapshots_clock_renders_nothing(
    store: RedisStore, redis_client: redis.Redis, renders: list[str]
) -> None:
    before = {pid: redis_client.hget(store.keys.profile(pid), "v") for pid in
              profile_ids(redis_client, store).values()}  # fmt: skip
    report = AudienceRefresh(store, redis_client, context).run()
    assert (report.profiles, report.moved, report.rendered, renders) == (PEOPLE, 0, 0, [])
    assert {pid: redis_client.hget(store.keys.profile(pid), "v") for pid in before} == before


def test_a_later_pass_renders_and_commits_only_the_profiles_whose_membership_moves(
    store: RedisStore, redis_client: redis.Redis, renders: list[str]
) -> None:
    ids = profile_ids(redis_client, store)
    # 55 days on, c1..c5 (last seen 10..50 days before) are past 60 days; c0 is not
    report = AudienceRefresh(store, redis_client, lambda: context(NOW + timedelta(55))).run()
    lapsed = {ids[f"c{i}"] for i in range(1, PEOPLE)}
    assert sorted(renders) == sorted(lapsed)
    assert (report.moved, report.rendered, report.entered) == (5, 5, {"lapsed": 5})
    assert members(redis_client, store, "lapsed") == lapsed
    assert members(redis_client, store, "buyers") == {ids[f"c{i}"] for i in (0, 2, 4)}
    for pid in lapsed:  # the snapshot says so, and the next pass has nothing left to do
        doc = orjson.loads(redis_client.hget(store.keys.profile(pid), "d"))  # type: ignore[arg-type]
        assert "lapsed" in doc["audiences"]
    renders.clear()
    again = AudienceRefresh(store, redis_client, lambda: context(NOW + timedelta(55))).run()
    assert (again.moved, again.rendered, renders) == (0, 0, [])


def test_a_profile_the_lane_keeps_writing_holds_back_no_other_profile_of_the_pass(
    store: RedisStore,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One busy customer's profile is written by the lane between every read of the pass and
    its commit (each commit of the pass then fails its compare-and-set). The pass gave up
    after 5 conflicts of that batch (RefreshConflictError): the profiles after it were never
    refreshed, and at the next interval the same. Now the batch is split until the busy
    profile is alone, the others are committed, and that one is left to the lane (whose every
    write decides its audiences), counted."""
    ids = profile_ids(redis_client, store)
    busy = ids["c3"]
    real_commit = store.commit

    def lane_writes_busy_first(commit: Any) -> Any:
        if profiles_lane_ref(busy) in commit.expect:  # the lane's write lands first
            redis_client.hincrby(store.keys.profile(busy), "v", 1)
        return real_commit(commit)

    monkeypatch.setattr(store, "commit", lane_writes_busy_first)
    later = lambda: context(NOW + timedelta(55))  # noqa: E731  (c1..c5 past 60 days)
    report = AudienceRefresh(store, redis_client, later, batch=PEOPLE).run()
    assert members(redis_client, store, "lapsed") == {ids[f"c{i}"] for i in (1, 2, 4, 5)}
    assert (report.moved, report.left_to_the_lane) == (4, 1)
    assert report.conflicts >= 5


def test_a_profile_without_a_readable_snapshot_is_rendered_from_its_state(
    store: RedisStore, redis_client: redis.Redis, renders: list[str]
) -> None:
    ids = profile_ids(redis_client, store)
    redis_client.hdel(store.keys.profile(ids["c0"]), "d")
    redis_client.hset(store.keys.profile(ids["c2"]), "d", b"{not json")
    report = AudienceRefresh(store, redis_client, context).run()
    assert sorted(renders) == sorted([ids["c0"], ids["c2"]])
    assert (report.moved, report.rendered) == (0, 2)
    assert report.medians == {}  # nothing here has a repurchase interval


# --- the pass's lock (streams.audience_schedule) ---------------------------------------------


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def lock_for(
    client: redis.Redis, store: RedisStore, owner: str, *, lease_s: float = 30.0
) -> PassLock:
    """A pass lock of a 0.2 s interval."""
    key = f"{store.keys.root}:audience-refresh-lock"
    return PassLock(client, key, owner, 0.2, lease_s=lease_s)


def test_a_pass_slower_than_its_interval_keeps_the_lock_and_a_second_worker_waits(
    store: RedisStore, redis_client: redis.Redis
) -> None:
    first = lock_for(redis_client, store, "worker-a")
    second = lock_for(redis_client, store, "worker-b")
    started = time.monotonic()
    tried: list[RefreshReport | None] = []

    def slow(done: int) -> None:  # after each batch of worker A's pass
        if tried:
            return
        # the pass has now outlasted its 0.2 s interval ...
        wait_until(lambda: time.monotonic() > started + 3 * first.interval_s, "the interval")
        # ... and worker B's turn finds it running, and does nothing
        tried.append(run_pass(store, redis_client, context, second))
        assert redis_client.get(second.key) == b"worker-a"
        assert redis_client.pttl(second.key) > 20_000  # about a lease ahead

    report = run_pass(store, redis_client, context, first, progress=slow)
    assert report is not None
    assert report.profiles == PEOPLE
    assert tried == [None]
    # the pass is over and its interval long gone: the next worker's pass may run at once
    assert not redis_client.exists(first.key)
    assert run_pass(store, redis_client, context, second) is not None


def test_the_lock_of_a_worker_that_died_during_its_pass_expires_after_a_lease(
    store: RedisStore, redis_client: redis.Redis
) -> None:
    dead = lock_for(redis_client, store, "worker-a", lease_s=0.5)
    other = lock_for(redis_client, store, "worker-b", lease_s=0.5)
    assert dead.acquire()
    dead.renew()  # a batch done, then the process is gone: nothing renews or releases
    assert not other.acquire()
    wait_until(lambda: not redis_client.exists(dead.key), "the dead holder's lock to expire")
    assert other.acquire()
    with pytest.raises(PassLockLostError):
        dead.renew()  # had it only stalled, it would stop its pass on finding the lock taken
    assert redis_client.get(other.key) == b"worker-b"
    dead.release()  # and its release leaves the new holder's lock alone
    assert redis_client.get(other.key) == b"worker-b"


def test_the_lock_needs_no_more_than_looms_redis_user_is_granted(
    redis_client: redis.Redis, redis_url: str, redis_prefix: str
) -> None:
    # a secured Redis gives Loom a user with exactly acl_rules (README): the lock's script
    # must run as that user (it once renewed with PEXPIRE, which the user is not granted)
    user, password = f"{redis_prefix}-user", secrets.token_hex(16)
    rules = acl_rules(redis_prefix).split()
    redis_client.execute_command("ACL", "SETUSER", user, "reset", "on", f">{password}", *rules)
    loom = redis.Redis.from_url(redis_url, username=user, password=password)
    try:
        key = f"{redis_prefix}:v1:audience-refresh-lock"
        lock = PassLock(loom, key, "worker-a", 0.2, lease_s=30)
        assert lock.acquire()
        lock.renew()
        assert 20_000 < redis_client.pttl(key) <= 30_000
        assert redis_client.get(key) == b"worker-a"
        lock.release()  # the lock now lives to the 0.2 s interval's end (or is gone)
        assert redis_client.pttl(key) <= 200
    finally:
        loom.close()
        redis_client.execute_command("ACL", "DELUSER", user)
