"""One batch through a lane, whatever fails: applied and dead-lettered, or stopped.

:meth:`BatchRunner.run` is steps 2 and 3 of the lane's commit protocol
(:mod:`streams.lane_runner`): ``run_batch`` (the pure pipeline and one atomic Redis commit),
then the batch's dead letters to the DLQ. It returns only when both are done; what a failure
means comes from :func:`streams.errors.classify`:

* retryable (Redis or Kafka unavailable, CAS contention): the step is retried with capped
  exponential backoff (``LOOM_RETRY_BACKOFF_MAX_S``), the lane reports ``retrying``; a stop
  request during the backoff abandons the batch (:class:`BatchAbandoned`: nothing of it is
  committed to Kafka, so it is redelivered);
* anything else: :class:`LaneStopped`. The batch's offsets are never committed, so nothing
  is skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

from resolvers.pipeline import BatchResult, run_batch
from resolvers.steps import RawRecord
from schemas.normalize import DEFAULT as NORMALIZE_DEFAULT
from streams.dlq import DlqDelivery
from streams.errors import LaneError, RetryableError, StateLostError, classify
from streams.lane_status import LaneStatus, StopReason
from streams.observe import observe_batch
from streams.runtime import Runtime

log = logging.getLogger(__name__)

T = TypeVar("T")

#: First retry delay; doubled per failure up to ``LOOM_RETRY_BACKOFF_MAX_S``.
FIRST_BACKOFF_S = 0.1


class LaneStopped(Exception):  # noqa: N818 - a control-flow signal, not an error class
    """The lane must stop without committing the batch in flight."""

    def __init__(self, reason: StopReason, error: LaneError) -> None:
        self.reason, self.error = reason, error
        super().__init__(f"{reason}: {error.describe()}")


class BatchAbandoned(Exception):  # noqa: N818 - a control-flow signal, not an error class
    """A stop was requested while the batch was retrying: it was not completed."""


def span(records: Sequence[RawRecord]) -> str:
    """``topic[partition]@offset..offset`` of a batch, for logs."""
    return f"{records[0].where}..{records[-1].offset}" if records else "-"


class BatchRunner:
    """Runs batches of one lane (see the module docstring)."""

    def __init__(self, rt: Runtime, status: LaneStatus, stopping: asyncio.Event) -> None:
        self.rt, self.status, self.stopping = rt, status, stopping

    async def run(self, records: Sequence[RawRecord]) -> BatchResult:
        """Apply ``records`` and deliver their dead letters; raises LaneStopped/Abandoned."""
        rt = self.rt
        result = await self._until_done("batch", records, lambda: self._apply(records))
        if result.dead_letters:
            delivery = DlqDelivery(
                rt.producer,
                rt.settings.topics.dlq,
                result.dead_letters,
                rt.clock(),
                lane=rt.lane.name,
                max_bytes=rt.settings.dlq_max_bytes,
            )
            await self._until_done("dlq", records, delivery.attempt)
            for dead in result.dead_letters:
                log.warning(
                    "dead letter stage=%s reason=%s at %s: %s",
                    dead.stage,
                    dead.reason,
                    dead.record.where,
                    dead.message,
                )
        observe_batch(rt.metrics, records, result)
        self.status.running()
        return result

    def _apply(self, records: Sequence[RawRecord]) -> BatchResult:
        rt = self.rt
        return run_batch(
            records,
            rt.store,
            rt.context,
            max_bytes=rt.settings.max_event_bytes,
            config=NORMALIZE_DEFAULT,
            lane=rt.lane,
        )

    async def _until_done(
        self, step: str, records: Sequence[RawRecord], attempt: Callable[[], T]
    ) -> T:
        """``attempt()`` in a thread until it succeeds; retryable errors back off."""
        delay = FIRST_BACKOFF_S
        while True:
            try:
                return await asyncio.to_thread(attempt)
            except Exception as exc:
                error = classify(exc)
            if not isinstance(error, RetryableError):
                reason = (
                    StopReason.STATE_LOST if isinstance(error, StateLostError) else StopReason.FATAL
                )
                raise LaneStopped(reason, error) from error
            log.warning(
                "%s %s failed (%s); retrying in %.1f s",
                step,
                span(records),
                error.describe(),
                delay,
            )
            self.status.retrying(error.describe())
            try:
                await asyncio.wait_for(self.stopping.wait(), timeout=delay)
            except TimeoutError:
                delay = min(delay * 2, self.rt.settings.retry_backoff_max_s)
                continue
            raise BatchAbandoned(f"{step} {span(records)} abandoned: stopping")
