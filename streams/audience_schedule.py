"""The profiles worker's periodic audience pass (``LOOM_AUDIENCES_REFRESH_S``).

Every interval, one profiles worker of the deployment (whichever takes the Redis lock
``P:v1:audience-refresh-lock:{digest}``, :class:`PassLock`; ``digest`` names the audience
definitions, so a worker started with a changed file runs its pass at once) runs
:class:`AudienceRefresh` at the worker's clock, in a thread of its own so the lane's batches
never wait behind it. The pass commits with the lane's compare-and-set, so it never
overwrites a batch's write.

The lock is one pass per interval and one pass at a time: taken for the interval (at least a
lease), renewed after each batch of the pass to at least :data:`LEASE_S` ahead, so a pass that
outlasts the interval keeps it, and set at the end of the pass to expire when the interval
does. A holder that dies stops renewing: the lock expires at most a lease after its last
batch (or at the interval's end). A holder that finds the lock taken by another (it expired
while the holder stalled for a whole lease) stops its pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import redis

from resolvers.context import Context
from streams.audience_refresh import AudienceRefresh, RefreshConflictError, RefreshReport
from streams.errors import classify
from streams.lease import HOLD_SCRIPT
from streams.redis_store import RedisStore
from streams.runtime import Runtime

log = logging.getLogger(__name__)

#: How far ahead the running pass keeps its lock after each batch (a batch takes ~1 s).
LEASE_S: Final = 60.0


class PassLockLostError(RefreshConflictError):
    """Another worker holds the pass's lock: this pass stops (its commits so far stand)."""


class PassLock:
    """The audience pass's lock (module docstring); ``owner`` names the holder."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        owner: str,
        interval_s: float,
        *,
        lease_s: float = LEASE_S,
    ) -> None:
        self.client, self.key, self.owner = client, key, owner
        self.interval_s, self.lease_s = interval_s, lease_s
        self._hold = client.register_script(HOLD_SCRIPT)
        self._interval_ends = 0.0  # time.monotonic() at the end of the held interval

    def acquire(self) -> bool:
        """Take the lock for this interval (False: another worker's pass has it)."""
        self._interval_ends = time.monotonic() + self.interval_s
        ttl = _ms(max(self.interval_s, self.lease_s))
        return bool(self.client.set(self.key, self.owner, nx=True, px=ttl))

    def renew(self) -> None:
        """The pass goes on: hold the lock at least a lease ahead (and to the interval's end)."""
        ahead = max(self.lease_s, self._interval_ends - time.monotonic())
        if not self._hold(keys=[self.key], args=[self.owner, _ms(ahead)]):
            raise PassLockLostError(f"the audience pass lost its lock {self.key}")

    def release(self) -> None:
        """The pass is over: the lock expires when the interval does (now, if it has)."""
        left = self._interval_ends - time.monotonic()
        self._hold(keys=[self.key], args=[self.owner, _ms(left) if left > 0 else 0])


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def run_pass(
    store: RedisStore,
    client: redis.Redis,
    make_context: Callable[[], Context],
    lock: PassLock,
    *,
    progress: Callable[[int], None] | None = None,
) -> RefreshReport | None:
    """One pass if ``lock`` can be taken (None: another worker's pass holds it), the lock
    renewed after each batch (then ``progress`` called with the profiles done so far)."""
    if not lock.acquire():
        return None

    def batch_done(done: int) -> None:
        lock.renew()
        if progress is not None:
            progress(done)

    try:
        return AudienceRefresh(store, client, make_context, progress=batch_done).run()
    finally:
        lock.release()


def enabled(rt: Runtime) -> bool:
    return (
        rt.lane.name == "profiles"
        and bool(rt.audiences.by_name)
        and rt.settings.audiences_refresh_s > 0
        and isinstance(rt.store, RedisStore)
    )


def _run_once(rt: Runtime, store: RedisStore) -> None:
    # per definitions: workers restarted with a changed file run its pass at once, whatever
    # the older definitions' pass holds (their lock expires with its interval)
    key = f"{store.keys.root}:audience-refresh-lock:{rt.audiences.digest}"
    lock = PassLock(rt.redis, key, rt.consumer_name, rt.settings.audiences_refresh_s)
    report = run_pass(store, rt.redis, rt.context, lock)
    if report is None:
        return  # another worker runs this interval's pass
    log.info(
        "audience pass: %d profiles in %.1fs, %d rendered, %d moved, %d conflicts retried, "
        "%d left to the lane (it kept writing them)",
        report.profiles,
        report.seconds,
        report.rendered,
        report.moved,
        report.conflicts,
        report.left_to_the_lane,
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
            except Exception as exc:  # a bug in the pass must not stop the lane: logged loudly,
                # by its class and where it was raised (its text may quote a profile's traits)
                log.error(
                    "audience pass crashed (%s); next try in %.0fs",
                    classify(exc).describe(),
                    interval,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval)
    finally:
        thread.shutdown(wait=False, cancel_futures=True)
