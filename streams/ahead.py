"""The next batch, consumed and prepared while Redis answers this one (ADR 0038).

On a backlog the profiles lane's worker is the bottleneck, and its thread spent ~25 % of each
batch waiting for Redis: the load's waves, the commit's round trips (mostly Redis applying
the batch's writes). The next batch's PREPARE (decode, validate, normalize, hash: ~20 µs
per event, ~20 % of the lane's CPU) needs no state, so it can be done in those waits.

The lane's store calls a :class:`WorkAhead` after it sent a round trip that holds no
``WATCH`` open (:data:`streams.replies.Meanwhile`: each wave of the load, the commit's first
round trip and its ``EXEC``), with a poll of the connection's socket. Until the poll says the
last reply is in (``streams.replies.Replies.arrived``), it works in steps:

1. the consumer's next records, once (``consume(batch size, 0)``: what is queued already,
   never a wait; none queued: tried again at the next round trip);
2. PREPARE of the next :data:`CHUNK` of them (~1 ms of CPU), until all are.

The lane's loop (:class:`streams.lane_runner.LaneRunner`) takes what was done
(:meth:`WorkAhead.take`) once the batch in flight is applied. If the records ahead are fewer
than a batch, it tops them up with a ``consume`` that waits as it would have
(``fill_wait``). ``run_batch`` prepares what is not prepared yet (``Prepared.count``).

**Nothing lost, nothing out of order.** The records ahead are the consumer's next ones, run
right after the batch in flight and before any other ``consume`` of the loop's. The
:class:`WorkAhead` works only while :attr:`~WorkAhead.armed` (set by the loop around a
batch), and only in the lane's thread (:attr:`~WorkAhead.thread`): the audience pass shares
the store from a thread of its own. A rebalance happens inside a ``consume``, so here it can
happen while a batch is in flight:

* the records ahead of a revoked or lost partition are dropped (:meth:`WorkAhead.forget`):
  another member, or this one after a new assignment, reads them again from the committed
  offset;
* the batch in flight still completes, but its offsets of those partitions are not committed
  (``LaneRunner._gone``): its records are read again from there, and their event-id
  markers make them a no-op.

A stop request drops the records ahead uncommitted: they are redelivered.

**Errors.** ``consume``'s error (a fatal Kafka error, a fatal error event) is kept, and
:meth:`WorkAhead.take` raises it where the loop's own ``consume`` would have. If PREPARE
raises (a bug: bad input is a dead letter, not an error), the records are handed over
unprepared, and ``run_batch`` meets the error in its own PREPARE (bisected to the record as
usual). Neither ever reaches the round trip the work was done in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Final

from resolvers.pipeline import Prepared
from resolvers.steps import DeadLetter, Event, RawRecord

#: Records prepared per step: ~1 ms of CPU (PREPARE ~20 µs per event). A step started just
#: before the reply arrives delays reading it by up to one step.
CHUNK: Final = 50

#: The steps ``loom_lane_ahead_records_total{step}`` counts records of.
STEPS: Final = ("consumed", "prepared")

Consume = Callable[[], list[RawRecord]]
Prepare = Callable[[Sequence[RawRecord]], tuple[list[Event], list[DeadLetter]]]


class WorkAhead:
    """The next batch's consumption and PREPARE (see the module docstring): the store's
    ``meanwhile``; the loop's :meth:`take`."""

    def __init__(self, consume: Consume, prepare: Prepare, *, chunk: int = CHUNK) -> None:
        self._consume = consume
        self._prepare = prepare
        self.chunk = chunk
        #: the only thread it works in (the lane's; None: none yet)
        self.thread: int | None = None
        #: set by the loop while a batch is in flight: records ahead are run right after it
        self.armed = False
        self._reset()

    def _reset(self) -> None:
        self.records: list[RawRecord] | None = None
        self._chunks: list[tuple[list[Event], list[DeadLetter]]] = []
        self._count = 0  # of ``records``, prepared (``_chunks``)
        self._unpreparable = False  # PREPARE raised: ``run_batch`` does it again
        self._error: Exception | None = None  # consume's, raised by ``take``

    def __call__(self, ready: Callable[[], bool]) -> None:
        """Work until ``ready()`` or nothing is left to do (:data:`~streams.replies.Meanwhile`)."""
        if not self.armed or threading.get_ident() != self.thread:
            return
        while not ready():
            if not self._step():
                return

    def _step(self) -> bool:
        """One step; False when there is nothing (more) to do now."""
        if self._error is not None or self._unpreparable:
            return False
        records = self.records
        if records is None:
            try:
                records = self._consume()
            except Exception as error:  # raised by take(), where the loop would have met it
                self._error = error
                return False
            if not records:
                return False  # nothing queued: maybe at the next round trip
            self.records = records
            return True
        done = self._count
        if done >= len(records):
            return False
        part = records[done : done + self.chunk]
        try:
            self._chunks.append(self._prepare(part))
        except Exception:  # run_batch prepares them again and meets it there
            self._unpreparable = True
            return False
        self._count = done + len(part)
        return True

    def take(self) -> Ahead | None:
        """What was done ahead, and start afresh (None: nothing was consumed); raises the
        error ``consume`` raised."""
        records, count, chunks, error = self.records, self._count, self._chunks, self._error
        if self._unpreparable:
            count, chunks = 0, []
        self._reset()
        if error is not None:
            raise error
        if records is None:
            return None
        return Ahead(records, count, chunks)

    def forget(self, partitions: Collection[tuple[str, int]]) -> None:
        """A rebalance took ``partitions`` away: their records ahead are dropped (read again
        from the committed offset, by whoever owns them now); what was prepared is dropped
        with them and done again."""
        records = self.records
        if not records or not any((r.topic, r.partition) in partitions for r in records):
            return
        kept = [r for r in records if (r.topic, r.partition) not in partitions]
        self._reset()
        self.records = kept or None


@dataclass(frozen=True, slots=True)
class Ahead:
    """Records consumed ahead, and the PREPARE chunks of the first ``count`` of them."""

    records: list[RawRecord]
    count: int
    chunks: list[tuple[list[Event], list[DeadLetter]]]

    def prepared(self, records: Sequence[RawRecord]) -> Prepared | None:
        """The :class:`~resolvers.pipeline.Prepared` of the batch ``records``, which starts
        with these (None: none of them was prepared)."""
        return Prepared.of(records, self.count, self.chunks) if self.count else None
