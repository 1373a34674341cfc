"""The back-off between attempts of a step that failed with a retryable error.

Every retry loop of Loom (a lane's batch steps, the stock router, the relay, the privacy
worker, the wait for Kafka and Redis at start-up) waits by one schedule: a first delay,
doubled after each failure, capped at ``LOOM_RETRY_BACKOFF_MAX_S``, back to the first delay
once the step succeeds. How a loop waits (a thread's stop event, asyncio) is its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: The first delay of a batch step's retries (seconds).
FIRST_BACKOFF_S: Final = 0.1


@dataclass(slots=True)
class Backoff:
    """``next()`` is the delay to wait now; each call doubles the following one, up to
    ``max_s`` (the first too: a cap below ``first_s`` is every delay); ``reset()`` after a
    success."""

    max_s: float
    first_s: float = FIRST_BACKOFF_S
    _delay: float = -1.0

    def __post_init__(self) -> None:
        self.reset()

    def next(self) -> float:
        delay = self._delay
        self._delay = min(delay * 2, self.max_s)
        return delay

    def reset(self) -> None:
        self._delay = min(self.first_s, self.max_s)
