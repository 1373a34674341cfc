"""The profiles worker's periodic audience pass (``LOOM_AUDIENCES_REFRESH_S``).

Every interval, one profiles worker of the deployment (whichever takes the Redis lock
``P:v1:audience-refresh-lock``, held for the interval) runs :class:`AudienceRefresh` at the
worker's clock, in a thread of its own so the lane's batches never wait behind it. The pass
commits with the lane's compare-and-set, so it never overwrites a batch's write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

import redis

from streams.audience_refresh import AudienceRefresh, RefreshConflictError
from streams.redis_store import RedisStore
from streams.runtime import Runtime

log = logging.getLogger(__name__)


def enabled(rt: Runtime) -> bool:
    return (
        rt.lane.name == "profiles"
        and bool(rt.audiences.by_name)
        and rt.settings.audiences_refresh_s > 0
        and isinstance(rt.store, RedisStore)
    )


def _run_once(rt: Runtime, store: RedisStore) -> None:
    interval = rt.settings.audiences_refresh_s
    lock = f"{store.keys.root}:audience-refresh-lock"
    if not rt.redis.set(lock, rt.consumer_name, nx=True, ex=max(1, int(interval))):
        return  # another worker runs this interval's pass
    report = AudienceRefresh(store, rt.redis, rt.context).run()
    log.info(
        "audience pass: %d profiles in %.1fs, %d rendered, %d moved, %d conflicts retried",
        report.profiles,
        report.seconds,
        report.rendered,
        report.moved,
        report.conflicts,
    )


async def run(rt: Runtime, stopping: asyncio.Event) -> None:
    """Run the pass every interval until ``stopping``; a failed pass is logged and retried
    at the next interval (memberships stay as the lane last wrote them meanwhile)."""
    assert isinstance(rt.store, RedisStore)
    store = rt.store
    thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loom-audiences")
    loop = asyncio.get_running_loop()
    interval = rt.settings.audiences_refresh_s
    try:
        while not stopping.is_set():
            try:
                await loop.run_in_executor(thread, _run_once, rt, store)
            except (redis.RedisError, RefreshConflictError) as exc:
                log.warning("audience pass failed (%s); next try in %.0fs", exc, interval)
            except Exception:  # a bug in the pass must not stop the lane: logged loudly
                log.exception("audience pass crashed; next try in %.0fs", interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval)
    finally:
        thread.shutdown(wait=False, cancel_futures=True)
