"""A worker's cyclic garbage collection: survivors frozen between batches, a full collection
every ``LOOM_GC_FULL_INTERVAL_S`` (issue 17).

Reference counting frees nearly everything a batch allocates. Python's collector exists for
the rest, cyclic garbage, and Loom's pipeline makes none (a batch of valid or of bad records
leaves no cycle; a worker's young collections found 15-26 objects per 20,000 events, from
its clients and event loop). What a young collection does walk is every tracked object
allocated since the last one and still alive: in a worker, the decoded profiles and ledgers
the decode cache keeps. Once the cache is full, each entry it evicts counts as a
deallocation against the young generation's allocations, so the young generation grows far
past its threshold (50,000, :data:`streams.lane_runner.GC_THRESHOLDS`) before a collection
walks it: ~200,000 objects, 110-190 ms of CPU every 10-20 s at saturation, always inside a
batch's apply; 3-5 µs of CPU per event over a run (bench/README.md, "Ninth pass: what
survives a batch is frozen").

So after each batch the worker freezes what is alive (``gc.freeze()``: every tracked object
goes to the permanent generation, which no automatic collection walks; it takes constant
time, and reference counting frees frozen objects as before) and the young generation starts
empty. Cyclic garbage made meanwhile is frozen too and so kept until the next full collection
(``gc.unfreeze()``, ``gc.collect()``, ``gc.freeze()``), which runs between batches once
``LOOM_GC_FULL_INTERVAL_S`` has passed since the last: one pause of a few hundred ms (the
whole heap walked) instead of one every few seconds. ``loom_gc_full_collection_seconds``
counts them and their length. The thresholds stay as they were: a batch that allocates more
than 50,000 surviving objects is still collected young. ``LOOM_GC_FULL_INTERVAL_S=0`` turns
this off (the collector runs as the thresholds say).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class GcPolicy:
    """``after_batch()`` once per applied batch, in the lane's loop (between batches)."""

    def __init__(
        self,
        full_interval_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_full: Callable[[int, float], None] | None = None,
    ) -> None:
        """``on_full(collected, seconds)`` is told of each full collection."""
        self.full_interval_s = full_interval_s
        self._clock = clock
        self._on_full = on_full
        self._last_full = clock()

    def after_batch(self) -> None:
        if self.full_interval_s <= 0:
            return
        now = self._clock()
        if now - self._last_full < self.full_interval_s:
            gc.freeze()
            return
        started = time.perf_counter()
        gc.unfreeze()
        collected = gc.collect()
        gc.freeze()
        seconds = time.perf_counter() - started
        self._last_full = now
        log.debug("full garbage collection: %d objects collected in %.3f s", collected, seconds)
        if self._on_full is not None:
            self._on_full(collected, seconds)
