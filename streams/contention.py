"""What a lane's worker remembers of its conflicts with other workers (ADR 0013).

A batch can commit as independent parts so that a conflict with another worker costs its part,
not the batch (``resolvers.parts``). A worker alone never conflicts, and splitting would only
cost it CPU, so a worker splits its batches (into up to ``LOOM_COMMIT_PARTS``) only while it has
seen a conflict within the last ``window_s``; and it remembers what recent conflicts named (a
person's identifier or profile, a SKU), whose parts it then keeps apart, since a person active
on two partitions or a best seller sold at every till conflicts again soon.

The remembered names are keys (they may hold an identifier's value): kept in memory, bounded,
never logged or exported.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import Final

from resolvers.pipeline import BatchResult

#: How long a conflict keeps a worker splitting, and a named key hot.
WINDOW_S: Final = 60.0
#: Hot keys remembered at most (the oldest are forgotten first).
MAX_HOT: Final = 4096


class Contention:
    def __init__(
        self,
        parts: int,
        *,
        window_s: float = WINDOW_S,
        max_hot: int = MAX_HOT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.parts = parts
        self.window_s = window_s
        self.max_hot = max_hot
        self.clock = clock
        self._last: float | None = None  # when the last conflict happened
        self._hot: OrderedDict[str, float] = OrderedDict()  # key -> when it last conflicted

    def max_parts(self) -> int:
        """Parts for the next batch: the configured number while contended, else 1."""
        if self._last is not None and self.clock() - self._last < self.window_s:
            return self.parts
        return 1

    def hot(self) -> Collection[str]:
        """What conflicts named within the window (forgets older ones)."""
        horizon = self.clock() - self.window_s
        while self._hot and next(iter(self._hot.values())) < horizon:
            self._hot.popitem(last=False)
        return self._hot.keys()

    def observe(self, result: BatchResult) -> None:
        if not result.contested:
            return
        now = self.clock()
        self._last = now
        for key in result.contested:
            self._hot[key] = now
            self._hot.move_to_end(key)
        while len(self._hot) > self.max_hot:
            self._hot.popitem(last=False)
