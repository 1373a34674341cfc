"""Work done while Redis answers (``RedisStore.work_meanwhile``, ADR 0038) on a real Redis:
it runs in each wave of the load and in the watch commit's first and last round trips (never
while its ``WATCH`` is open), its poll sees each reply arrive, and the store's results and
stored state are those of a store that does no work meanwhile."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import redis
from builders import make_context
from redis_dump import stored

from resolvers.decode_cache import DecodeCache
from resolvers.pipeline import PROFILES, run_batch
from resolvers.steps import RawRecord
from schemas.normalize import DEFAULT
from schemas.touchpoint import dump_touchpoint
from streams.redis_store import RedisStore
from streams.settings import DEV_SALT
from streams.simulate import Simulator

pytestmark = pytest.mark.integration


class Recorder:
    """A ``Meanwhile`` that notes where it ran and polls until the reply is there."""

    def __init__(self, where: Callable[[], Any]) -> None:
        self.where = where
        self.calls: list[Any] = []

    def __call__(self, ready: Callable[[], bool]) -> None:
        polls = 0
        while not ready():  # returns once the reply arrived (or the test times out)
            polls += 1
        self.calls.append(self.where())


def test_work_meanwhile_runs_in_the_waits_that_hold_no_watch_and_changes_nothing(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    sim = Simulator(seed=3, customers=40, stores=3, skus=12)
    values = [dump_touchpoint(tp) for tp in itertools.islice(sim.events(), 600)]
    records = [RawRecord(value=v, topic="raw", partition=0, offset=i) for i, v in enumerate(values)]
    batches = [records[:250], records[250:500], records[500:], records[:100]]  # and replayed
    prefixes = {True: redis_prefix, False: f"{redis_prefix}-twin-{uuid.uuid4().hex[:6]}"}
    stores = {
        working: RedisStore(redis_client, prefix=p, commit="watch", load="waves")
        for working, p in prefixes.items()
    }
    store = stores[True]
    assert store.waves is not None
    assert store.watch is not None
    store.work_meanwhile(lambda ready: None)
    assert store.waves.meanwhile is store.watch.meanwhile  # both set by the one call
    waves, watch = store.waves, store.watch
    in_waves = Recorder(lambda: waves.round_trips)
    in_commit = Recorder(lambda: watch.round_trips)
    waves.meanwhile, watch.meanwhile = in_waves, in_commit
    contexts = {
        w: replace(make_context(), salt=DEV_SALT.encode(), cache=DecodeCache()) for w in stores
    }
    results: dict[bool, list[str]] = {True: [], False: []}
    try:
        for batch in batches:
            for working, s in stores.items():
                before = (waves.round_trips, watch.round_trips, len(in_commit.calls))
                context = contexts[working]
                results[working].append(
                    repr(
                        run_batch(
                            batch,
                            s,
                            lambda c=context: c,  # type: ignore[misc]
                            max_bytes=64 * 1024,
                            config=DEFAULT,
                            lane=PROFILES,
                        )
                    )
                )
                if working:
                    first, last = before[1] + 1, watch.round_trips
                    # one call per commit round trip without a WATCH: the first and EXEC's
                    # (a batch of duplicates only commits nothing)
                    expected = [first, last] if last > before[1] else []
                    assert in_commit.calls[before[2] :] == expected
                    assert not expected or last - first >= 1  # the WATCH's round trip between
                    # and one per wave of this batch's load, each after its round trip began
                    assert in_waves.calls[-waves.round_trips :] == list(
                        range(1, waves.round_trips + 1)
                    )
        assert results[True] == results[False]
        assert stored(redis_client, prefixes[True], expiry=False) == stored(
            redis_client, prefixes[False], expiry=False
        )
    finally:
        keys = list(redis_client.scan_iter(match=f"{prefixes[False]}:*", count=1000))
        for j in range(0, len(keys), 500):
            redis_client.unlink(*keys[j : j + 500])
