"""One batch through a lane, whatever fails: applied and dead-lettered, or stopped.

:meth:`BatchRunner.run` is steps 2 and 3 of the lane's commit protocol
(:mod:`streams.lane_runner`): ``run_batch`` (the pure pipeline and one atomic Redis commit),
then the batch's dead letters to the DLQ. It returns only when both are done. What a failure
means comes from :func:`streams.errors.classify`:

* **retryable** (Redis or Kafka unavailable, CAS contention): the step is retried with capped
  exponential backoff (``LOOM_RETRY_BACKOFF_MAX_S``) and the lane reports ``retrying``; a stop
  request during the backoff abandons the batch (:class:`BatchAbandoned`: no offset of it is
  committed, so it is redelivered).
* **deterministic** in ``run_batch`` (a bug in a stage, a record no stage expected): the batch
  is bisected. Each half is one ``run_batch`` call (atomic on its own); a half that fails again
  is split again, in order, until the failing record is alone: that record is *poison*. It is
  dead-lettered (reason ``processing_error``, the stage and the error class and location in
  the headers, never the exception text) and the rest of the batch is applied. A batch is
  therefore never retried forever. **Circuit breaker**: more than ``LOOM_POISON_LIMIT`` poison
  records within ``LOOM_POISON_WINDOW_S`` is a systemic bug, not bad input: the lane stops
  (``circuit_open``) instead of dead-lettering everything, and the batch's offsets are not
  committed.
* **fatal**, or any failure delivering dead letters other than a retryable one:
  :class:`LaneStopped`. The batch's offsets are never committed, so nothing is skipped.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Final, TypeVar

from resolvers.pipeline import ROUTED_INVENTORY, BatchResult, Prepared, prepare, run_batch
from resolvers.steps import DeadLetter, Event, RawRecord
from schemas.normalize import DEFAULT as NORMALIZE_DEFAULT
from streams.backoff import Backoff
from streams.contention import Contention
from streams.dlq import DlqDelivery
from streams.errors import (
    DeterministicError,
    LaneError,
    RetryableError,
    StateLostError,
    classify,
)
from streams.lane_status import LaneStatus, StopReason
from streams.observe import observe_batch
from streams.procinfo import thread_runnable_s
from streams.redis_claims import RedisClaims
from streams.redis_store import RedisStore
from streams.runtime import Runtime

log = logging.getLogger(__name__)

T = TypeVar("T")

#: DLQ reason of a record that made processing fail deterministically.
PROCESSING_ERROR: Final = "processing_error"


class LaneStopped(Exception):  # noqa: N818 - a control-flow signal, not an error class
    """The lane must stop without committing the batch in flight."""

    def __init__(self, reason: StopReason, error: LaneError) -> None:
        self.reason, self.error = reason, error
        super().__init__(f"{reason}: {error.describe()}")


class BatchAbandoned(Exception):  # noqa: N818 - a control-flow signal, not an error class
    """A stop was requested while the batch was retrying or bisecting: not completed."""


def span(records: Sequence[RawRecord]) -> str:
    """``topic[partition]@offset..offset`` of a batch, for logs."""
    return f"{records[0].where}..{records[-1].offset}" if records else "-"


def poison_letter(record: RawRecord, error: DeterministicError) -> DeadLetter:
    """The dead letter of a record that failed processing on its own."""
    return DeadLetter(
        record, error.stage or "pipeline", PROCESSING_ERROR, error.error_class, error.describe()
    )


class CircuitBreaker:
    """Trips when more than ``limit`` poison records fall within ``window_s`` seconds."""

    def __init__(
        self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit, self.window_s, self._clock = limit, window_s, clock
        self._times: collections.deque[float] = collections.deque()

    def record(self) -> bool:
        """Count one poison record; True if that trips the breaker."""
        now = self._clock()
        self._times.append(now)
        while self._times and self._times[0] < now - self.window_s:
            self._times.popleft()
        return len(self._times) > self.limit


@dataclass(frozen=True, slots=True)
class Applied:
    """What :meth:`BatchRunner.run` did: every ``run_batch`` call that committed (one per
    bisected part) and one dead-letter result per poison record, in record order."""

    parts: tuple[tuple[Sequence[RawRecord], BatchResult], ...]

    @property
    def processed(self) -> int:
        return sum(result.processed for _, result in self.parts)

    @property
    def dead_letters(self) -> list[DeadLetter]:
        return [d for _, result in self.parts for d in result.dead_letters]


class BatchRunner:
    """Runs batches of one lane (see the module docstring)."""

    def __init__(self, rt: Runtime, status: LaneStatus, stopping: asyncio.Event) -> None:
        self.rt, self.status, self.stopping = rt, status, stopping
        s = rt.settings
        self.breaker = CircuitBreaker(s.poison_limit, s.poison_window_s)
        self.contention = Contention(s.commit_parts_for(rt.lane.name))
        #: whether other workers share the lane (set by the lane's runner from its group's
        #: assignment): ``LOOM_COMMIT_CLAIMS=auto`` claims only then
        self.shared: Callable[[], bool] = lambda: False
        self.claims: RedisClaims | None = None
        # (the routed inventory lane's workers never share a SKU: ADR 0014)
        if (
            s.commit_claims != "off"
            and isinstance(rt.store, RedisStore)
            and rt.lane is not ROUTED_INVENTORY
        ):
            if rt.store.watch is not None:
                owner = f"{rt.consumer_name}:{rt.lane.name}"  # the process's name (no PII)
                self.claims = RedisClaims(rt.store, rt.lane.name, owner)
            else:
                log.warning("LOOM_COMMIT_CLAIMS needs LOOM_REDIS_COMMIT=watch: no claims")
        self._cpu = rt.metrics.lane_cpu.labels(lane=rt.lane.name)
        self._runnable = rt.metrics.lane_runnable.labels(lane=rt.lane.name)
        self._fixed: tuple[bytes, str | None] | None = None  # ``prepare``'s salt and region

    async def run(self, records: Sequence[RawRecord], prepared: Prepared | None = None) -> Applied:
        """Apply ``records`` and deliver their dead letters; raises LaneStopped/Abandoned.
        ``prepared``: their PREPARE, done ahead (``streams.ahead``); a bisected part prepares
        its own."""
        rt = self.rt
        applied = Applied(tuple(await self._apply(records, prepared)))
        dead = applied.dead_letters
        if dead:
            delivery = DlqDelivery(
                rt.producer,
                rt.settings.topics.dlq,
                dead,
                rt.clock(),
                lane=rt.lane.name,
                max_bytes=rt.settings.dlq_max_bytes,
            )
            await self.until_done("dlq", records, delivery.attempt, bisect=False)
            for d in dead:
                log.warning(
                    "dead letter stage=%s reason=%s at %s: %s",
                    d.stage,
                    d.reason,
                    d.record.where,
                    d.message,
                )
        for part, result in applied.parts:
            observe_batch(rt.metrics, part, result)
        self.status.running()
        return applied

    async def _apply(
        self, records: Sequence[RawRecord], prepared: Prepared | None = None
    ) -> list[tuple[Sequence[RawRecord], BatchResult]]:
        """``run_batch`` over ``records``, bisecting around poison (in order); the results of
        every ``run_batch`` call that committed, and one dead-letter result per poison record."""
        out: list[tuple[Sequence[RawRecord], BatchResult]] = []
        todo: list[Sequence[RawRecord]] = [records]
        while todo:
            part = todo.pop()
            if self.stopping.is_set() and part is not records:
                raise BatchAbandoned(f"bisecting {span(records)} abandoned: stopping")
            try:
                whole = prepared if part is records else None
                result = await self.until_done(
                    "batch", part, partial(self._apply_once, part, whole)
                )
            except DeterministicError as error:
                if len(part) > 1:
                    if part is records:
                        log.warning(
                            "batch %s failed (%s); bisecting to the record",
                            span(part),
                            error.describe(),
                        )
                    mid = len(part) // 2
                    todo += [part[mid:], part[:mid]]  # popped first half first: order kept
                    continue
                out.append((part, self._poison(part[0], error)))
                continue
            out.append((part, result))
        return out

    def _poison(self, record: RawRecord, error: DeterministicError) -> BatchResult:
        """Dead-letter ``record``, unless that trips the circuit breaker (then stop)."""
        lane = self.rt.lane.name
        if self.breaker.record():
            raise LaneStopped(StopReason.CIRCUIT_OPEN, error)
        self.rt.metrics.poison_records.labels(lane=lane, stage=error.stage or "pipeline").inc()
        log.error("poison record at %s: %s; dead-lettered", record.where, error.describe())
        letter = poison_letter(record, error)
        result = BatchResult(dead_letters=[letter])
        result.outcomes[("unknown", "dlq")] = 1
        return result

    def prepare(self, records: Sequence[RawRecord]) -> tuple[list[Event], list[DeadLetter]]:
        """PREPARE of ``records`` as ``run_batch`` does it, at this moment's clock (the work
        ahead: ``streams.ahead``)."""
        rt = self.rt
        if self._fixed is None:  # the context's salt and region: the runtime's constants
            ctx = rt.context()
            self._fixed = (ctx.salt, ctx.default_region)
        salt, region = self._fixed
        return prepare(
            records,
            max_bytes=rt.settings.max_event_bytes,
            config=NORMALIZE_DEFAULT,
            salt=salt,
            default_region=region,
            lane=rt.lane,
            now=rt.clock(),
            bounds=rt.bounds,
        )

    def _apply_once(
        self, records: Sequence[RawRecord], prepared: Prepared | None = None
    ) -> BatchResult:
        started = time.thread_time()  # this thread's CPU: loom_lane_cpu_seconds_total
        queued = thread_runnable_s()  # and its wait for a CPU: loom_lane_runnable_seconds_total
        try:
            return self._run_batch(records, prepared)
        finally:
            self._cpu.inc(time.thread_time() - started)
            if queued is not None and (now := thread_runnable_s()) is not None:
                self._runnable.inc(now - queued)

    def _run_batch(
        self, records: Sequence[RawRecord], prepared: Prepared | None = None
    ) -> BatchResult:
        rt = self.rt
        claims = self.claims
        if claims is not None and rt.settings.commit_claims == "auto" and not self.shared():
            claims = None
        result = run_batch(
            records,
            rt.store,
            rt.context,
            max_bytes=rt.settings.max_event_bytes,
            config=NORMALIZE_DEFAULT,
            lane=rt.lane,
            bounds=rt.bounds,
            max_parts=self.contention.max_parts(),
            retry_parts=self.contention.parts,
            hot=self.contention.hot(),
            prepared=prepared,
            claims=claims,
        )
        self.contention.observe(result)
        return result

    async def until_done(
        self,
        step: str,
        records: Sequence[RawRecord],
        attempt: Callable[[], T],
        *,
        bisect: bool = True,
    ) -> T:
        """``attempt()`` in a thread until it succeeds; retryable errors back off. A
        deterministic error is raised for the caller to bisect (if ``bisect``), anything else
        stops the lane."""
        backoff = Backoff(self.rt.settings.retry_backoff_max_s)
        while True:
            try:
                return await asyncio.to_thread(attempt)
            except Exception as exc:
                error = classify(exc)
            if isinstance(error, DeterministicError) and bisect:
                raise error
            if not isinstance(error, RetryableError):
                reason = (
                    StopReason.STATE_LOST if isinstance(error, StateLostError) else StopReason.FATAL
                )
                raise LaneStopped(reason, error) from error
            delay = backoff.next()
            log.warning(
                "%s %s failed (%s); retrying in %.1f s",
                step,
                span(records),
                error.describe(),
                delay,
            )
            self.rt.metrics.batch_retries.labels(
                lane=self.rt.lane.name, step=step, error=type(error).__name__
            ).inc()
            self.status.retrying(error.describe())
            try:
                await asyncio.wait_for(self.stopping.wait(), timeout=delay)
            except TimeoutError:
                continue
            raise BatchAbandoned(f"{step} {span(records)} abandoned: stopping")
