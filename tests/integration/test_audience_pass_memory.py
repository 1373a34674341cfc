"""The audience pass's memory does not grow with the number of profiles (real Redis).

The pass runs every ``LOOM_AUDIENCES_REFRESH_S`` inside a profiles worker, sized for its
lane: what it holds between batches must be bounded by the batch and the categories, not by
the deployment's profiles (a retailer has millions). It kept every id it had scanned (to skip
an id ``SSCAN`` returns twice) and every customer's repurchase interval (for the medians).
"""

from __future__ import annotations

import statistics
import tracemalloc
from dataclasses import replace

import orjson
import redis
from builders import NOW, make_context

from resolvers.audiences import Audiences, audience
from resolvers.context import Context
from streams.audience_refresh import AudienceRefresh, RefreshReport
from streams.redis_store import RedisStore

AUDIENCES = Audiences({"loyal": audience("loyal", "orders >= 1000")})  # nobody moves
CATEGORIES = ("running", "yoga", "trail")


def _interval(i: int) -> float:
    return float(i % 97) + (0.5 if i % 3 == 0 else 0.0)


def _seed(client: redis.Redis, store: RedisStore, count: int) -> None:
    """``count`` live profiles whose stored snapshots say nothing moves at NOW."""
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        pid = f"p_{i:012d}_{'x' * 20}"
        doc = {
            "profile_id": pid,
            "audiences": [],
            "category_purchases": {
                CATEGORIES[i % 3]: {"orders": 2, "repurchase_interval_days": _interval(i)}
            },
        }
        pipe.sadd(store.keys.profile_index, pid)
        pipe.hset(store.keys.profile(pid), "d", orjson.dumps(doc))
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()


def _context() -> Context:
    return replace(make_context(NOW), audiences=AUDIENCES)


def _peak_of_a_pass(client: redis.Redis, prefix: str, count: int) -> tuple[int, RefreshReport]:
    store = RedisStore(client, prefix=prefix)
    _seed(client, store, count)
    tracemalloc.start()
    try:
        report = AudienceRefresh(store, client, _context).run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, report


def test_a_pass_over_ten_times_the_profiles_holds_no_more_memory(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    small, small_report = _peak_of_a_pass(redis_client, f"{redis_prefix}s", 2_000)
    large, large_report = _peak_of_a_pass(redis_client, f"{redis_prefix}l", 20_000)
    assert (small_report.profiles, large_report.profiles) == (2_000, 20_000)
    assert large_report.rendered == large_report.moved == 0
    for category in CATEGORIES:  # the medians are exact
        values = [_interval(i) for i in range(20_000) if CATEGORIES[i % 3] == category]
        assert large_report.medians[category] == statistics.median(values)
    # 18,000 more profiles: the ids and intervals kept were ~100 bytes each
    assert large - small < 300_000, (small, large)  # ~4.4 MB more before
