"""Concurrent writers on one Redis prefix end where one serial writer ends.

With either commit of ``RedisStore`` (``commit.lua``, or the commit without Lua of ADR 0021),
and with both mixed on one lane (``mixed``: writers alternate), which ADR 0021's migration
relies on (both ``INCR`` the lane's commit sequence).

Several threads, each with its own Redis connection and :class:`RedisStore`, run
``run_batch`` of both lanes (profiles, inventory) over interleaved slices of one simulated
event set (the same customers'
events land in different writers' batches, and every writer starts each batch at the same
moment, so commits really conflict and are retried). The final identity partition and the
inventory snapshots must equal those of one writer applying the same events serially.

Erasure requests are left out of the event set: "erase, then a late event" and "a late event,
then erase" legitimately end differently (suppression), so they have no order-free answer.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Iterator
from typing import Any, Literal

import orjson
import pytest
import redis
from builders import make_context

from resolvers.pipeline import LANES, run_batch
from resolvers.steps import RawRecord
from resolvers.store import DEFAULT_SCOPE
from schemas.normalize import DEFAULT
from schemas.touchpoint import EventType, dump_touchpoint
from streams.redis_store import RedisStore, processed_ids
from streams.simulate import Simulator

pytestmark = pytest.mark.integration

BATCH = 40
#: the commits of the writers: every writer the same one, or (``mixed``) alternating
COMMITS = ["script", "watch", "mixed"]
WRITERS = 3
ROUNDS = 10


def batch(values: list[bytes], offset: int = 0) -> list[RawRecord]:
    return [
        RawRecord(value=v, topic="touchpoints.raw", partition=0, offset=offset + i)
        for i, v in enumerate(values)
    ]


def apply(store: RedisStore, values: list[bytes], offset: int = 0) -> int:
    """One batch through both lanes; returns how many commits were retried on a conflict."""
    retried = 0
    for lane in LANES.values():
        result = run_batch(
            batch(values, offset),
            store,
            make_context,
            max_bytes=65536,
            config=DEFAULT,
            lane=lane,
            max_parts=16,  # as contended workers commit (ADR 0013)
        )
        retried += max(result.attempts - 1, 0)
    return retried


def simulated(n: int, seed: int = 11) -> list[bytes]:
    sim = Simulator(seed=seed, customers=30, stores=2, skus=12)
    events = (tp for tp in sim.events() if tp.type is not EventType.ERASURE_REQUESTED)
    return [dump_touchpoint(tp) for tp in itertools.islice(events, n)]


# --------------------------------------------------------------------------- reading results


def _keys(client: Any, pattern: str) -> Iterator[str]:
    for key in client.scan_iter(match=pattern, count=1000):
        yield key.decode()


def partition(client: Any, prefix: str) -> frozenset[frozenset[str]]:
    """Identifier keys grouped by the live profile they resolve to (redirects followed)."""
    head = f"{prefix}:v1:id:"
    groups: dict[str, set[str]] = {}
    for key in _keys(client, f"{head}*"):
        pid = client.hget(key, "p")
        if pid is None:
            continue  # quarantined or unlinked
        pid = pid.decode()
        for _ in range(8):
            target = client.hget(f"{prefix}:v1:profile:{pid}", "r")
            if target is None:
                break
            pid = target.decode()
        assert client.hexists(f"{prefix}:v1:profile:{pid}", "d"), "identifier on a dead profile"
        groups.setdefault(pid, set()).add(key[len(head) :])
    return frozenset(frozenset(g) for g in groups.values())


def profile_partition(client: Any, prefix: str) -> frozenset[frozenset[str]]:
    """The same partition as the live snapshots tell it (identifiers per profile)."""
    out = set()
    for pid in client.smembers(f"{prefix}:v1:profile-index"):
        snap = orjson.loads(client.hget(f"{prefix}:v1:profile:{pid.decode()}", "d"))
        out.add(frozenset(f"{t}:{v}" for t, vs in snap["identifiers"].items() for v in vs))
    return frozenset(g for g in out if g)


def inventory(client: Any, prefix: str) -> dict[str, Any]:
    out = {}
    for key in _keys(client, f"{prefix}:v1:stock:*"):
        snap = orjson.loads(client.hget(key, "d"))
        snap.pop("version", None)  # how many commits touched it differs; the stock does not
        out[key.rsplit(":", 1)[1]] = snap
    return out


def entities(client: Any, prefix: str) -> dict[str, dict[bytes, bytes]]:
    """Every entity hash under the prefix, byte for byte (versions included)."""
    out = {}
    for kind in ("id", "profile", "stock"):
        for key in _keys(client, f"{prefix}:v1:{kind}:*"):
            out[key] = client.hgetall(key)
    return out


def _clean(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])


@pytest.fixture
def prefixes(redis_client: redis.Redis) -> Iterator[tuple[str, str]]:
    tag = uuid.uuid4().hex[:12]
    pair = (f"loomtest-serial-{tag}", f"loomtest-conc-{tag}")
    yield pair
    for p in pair:
        _clean(redis_client, p)


# --------------------------------------------------------------------------- the tests


def _commit(commits: str, writer: int) -> Literal["script", "watch"]:
    if commits == "mixed":
        return "watch" if writer % 2 else "script"
    return "watch" if commits == "watch" else "script"


def run_concurrently(
    redis_url: str, prefix: str, slices: list[list[list[bytes]]], commits: str = "script"
) -> int:
    """Writer ``w`` applies ``slices[w]`` batch by batch; all start each round together."""
    barrier = threading.Barrier(len(slices), timeout=60)
    errors: list[BaseException] = []
    retried: list[int] = []

    def writer(w: int, batches: list[list[bytes]]) -> None:
        client = redis.Redis.from_url(redis_url)
        store = RedisStore(client, prefix=prefix, commit=_commit(commits, w))
        try:
            for values in batches:
                barrier.wait()
                retried.append(apply(store, values))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            barrier.abort()
        finally:
            client.close()

    threads = [threading.Thread(target=writer, args=(w, s)) for w, s in enumerate(slices)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert all(not t.is_alive() for t in threads)
    return sum(retried)


@pytest.mark.parametrize("commits", COMMITS)
def test_concurrent_writers_end_like_one_serial_writer(
    redis_url: str, redis_client: redis.Redis, prefixes: tuple[str, str], commits: str
) -> None:
    serial_prefix, conc_prefix = prefixes
    events = simulated(WRITERS * ROUNDS * BATCH)

    serial = RedisStore(redis_client, prefix=serial_prefix)
    for start in range(0, len(events), BATCH):
        apply(serial, events[start : start + BATCH], start)

    # event i goes to writer i % WRITERS: one customer's journey is spread over all writers
    slices = [
        [events[w::WRITERS][r * BATCH : (r + 1) * BATCH] for r in range(ROUNDS)]
        for w in range(WRITERS)
    ]
    retries = run_concurrently(redis_url, conc_prefix, slices, commits)
    assert retries > 0, "the writers never conflicted: the test proves nothing"

    expected = partition(redis_client, serial_prefix)
    assert len(expected) > 20
    assert any(len(group) > 2 for group in expected)
    assert partition(redis_client, conc_prefix) == expected
    assert profile_partition(redis_client, conc_prefix) == profile_partition(
        redis_client, serial_prefix
    )
    assert profile_partition(redis_client, conc_prefix) == expected
    stock = inventory(redis_client, serial_prefix)
    assert stock
    assert inventory(redis_client, conc_prefix) == stock
    for scope in (DEFAULT_SCOPE, "inventory"):  # both lanes' processed markers
        seen = processed_ids(redis_client, conc_prefix, scope)
        assert seen
        assert seen == processed_ids(redis_client, serial_prefix, scope)


@pytest.mark.parametrize("commits", ["script", "mixed"])
def test_replaying_every_event_changes_nothing(
    redis_url: str, redis_client: redis.Redis, prefixes: tuple[str, str], commits: str
) -> None:
    _, prefix = prefixes
    events = simulated(WRITERS * 4 * BATCH, seed=5)
    slices = [
        [events[w::WRITERS][r * BATCH : (r + 1) * BATCH] for r in range(4)] for w in range(WRITERS)
    ]
    run_concurrently(redis_url, prefix, slices, commits)
    before = entities(redis_client, prefix)
    outbox = redis_client.xlen(f"{prefix}:v1:outbox")
    stats = redis_client.hgetall(f"{prefix}:v1:stats")

    # again, concurrently, in a different split, and once more serially in reverse order
    resplit = [
        [events[::-1][w::2][r * 2 * BATCH : (r + 1) * 2 * BATCH] for r in range(3)]
        for w in range(2)
    ]
    run_concurrently(redis_url, prefix, resplit, commits)
    store = RedisStore(redis_client, prefix=prefix, commit=_commit(commits, 1))
    for start in range(0, len(events), BATCH):
        for lane in LANES.values():
            result = run_batch(
                batch(events[start : start + BATCH]),
                store,
                make_context,
                max_bytes=65536,
                config=DEFAULT,
                lane=lane,
            )
            assert result.processed == 0
            assert result.attempts <= 1  # 0: nothing of the lane's in the batch
            assert result.outcomes[("pos_sale", "ok")] == 0

    assert entities(redis_client, prefix) == before
    assert redis_client.xlen(f"{prefix}:v1:outbox") == outbox
    assert redis_client.hgetall(f"{prefix}:v1:stats") == stats


def _signup(event_id: str, email: str, at: str) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "type": "signup",
            "channel": "web",
            "occurred_at": at,
            "region": "NO",
            "identifiers": {"email": email},
        }
    )


@pytest.mark.parametrize("commits", ["script", "watch"])
def test_batch_loaded_before_create_and_erase_cannot_rebuild_the_person(
    redis_client: redis.Redis, prefixes: tuple[str, str], commits: str
) -> None:
    from resolvers import commit_codec
    from resolvers.lanes.profiles import ProfilesBatch
    from resolvers.pipeline import load_request, prepare

    _, prefix = prefixes
    store = RedisStore(redis_client, prefix=prefix, commit=_commit(commits, 0))
    ctx = make_context()
    late = batch([_signup("late", "x@example.com", "2026-11-20T12:00:00+00:00")])
    events, _ = prepare(late, max_bytes=65536, config=DEFAULT, salt=ctx.salt)
    loaded = store.load(load_request(events))  # writer A loads

    apply(store, [_signup("first", "x@example.com", "2026-11-20T10:00:00+00:00")])  # B
    erase = orjson.loads(_signup("erase", "x@example.com", "2026-11-20T11:00:00+00:00"))
    erase["type"] = "erasure_requested"
    apply(store, [orjson.dumps(erase)])  # C
    assert redis_client.exists(f"{prefix}:v1:id:email:x@example.com") == 0

    computed = ProfilesBatch.from_loaded(loaded, ctx).run(events)  # ... computes ...
    commit = commit_codec.encode(
        versions={ref: e.version for ref, e in loaded.entities.items()},
        effects=computed.effects,
        event_ids=computed.processed,
        counts=computed.counts,
        profile_topic=ctx.topics.profile_changes,
        unsuppressed=[h for e in events for h in e.suppression_hashes],
    )
    outcome = store.commit(commit)  # ... and commits what it computed before B and C
    assert not outcome.ok
    assert redis_client.exists(f"{prefix}:v1:id:email:x@example.com") == 0
