"""Where a lane is: starting, running, retrying or stopped, and whether it makes progress.

One :class:`LaneStatus` per worker, written by the lane's loop and read by ``/readyz`` and the
metrics. A lane is ready only while it runs and its loop went round recently: retrying a batch
(Redis or Kafka unavailable), stopped (a fatal error, lost state, a systemic bug) or stuck (no
turn of the loop for ``stuck_after_s``) is not ready.

    starting ──► running ◄──► retrying
        │           │            │
        └───────────┴────────────┴──► stopped   (fatal error, state lost, circuit open;
                                                 the lane commits nothing more)
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class LaneState(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    RETRYING = "retrying"
    STOPPED = "stopped"


class StopReason(enum.StrEnum):
    """Why a lane stopped (a closed set: it labels a metric)."""

    FATAL = "fatal"  # an error an operator must fix (permissions, configuration)
    STATE_LOST = "state_lost"  # Redis lacks the generation the committed offsets imply
    CIRCUIT_OPEN = "circuit_open"  # too many poison records: a systemic bug, not bad input


class LaneStatus:
    """The lane's state machine (see the module docstring). ``on_change(old, new)`` is told
    every transition (the metrics use it)."""

    def __init__(
        self,
        *,
        stuck_after_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[LaneState, LaneState], None] | None = None,
    ) -> None:
        self.stuck_after_s, self._clock, self._on_change = stuck_after_s, clock, on_change
        self.state = LaneState.STARTING
        self.since = self.last_turn = clock()
        self.reason: StopReason | None = None
        self.detail = ""

    def _set(self, state: LaneState) -> None:
        if state is self.state:
            return
        old, self.state, self.since = self.state, state, self._clock()
        if self._on_change is not None:
            self._on_change(old, state)

    def running(self) -> None:
        if self.state is not LaneState.STOPPED:
            self._set(LaneState.RUNNING)

    def retrying(self, detail: str) -> None:
        if self.state is not LaneState.STOPPED:
            self.detail = detail
            self._set(LaneState.RETRYING)

    def stopped(self, reason: StopReason, detail: str) -> None:
        if self.state is LaneState.STOPPED:
            return
        self.reason, self.detail = reason, detail
        self._set(LaneState.STOPPED)

    def turned(self) -> None:
        """The loop went round (consumed, possibly nothing): it is not stuck."""
        self.last_turn = self._clock()

    def stuck(self) -> bool:
        return self._clock() - self.last_turn > self.stuck_after_s

    def ready(self) -> bool:
        return self.state is LaneState.RUNNING and not self.stuck()
