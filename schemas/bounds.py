"""Input bounds that depend on configuration and the clock, checked after validation.

The touchpoint model (:mod:`schemas.touchpoint`) checks what is true of an event on its own.
These bounds need the deployment's settings and the processing time, so the workers check them
when they parse (``resolvers.stages.parse``, with the batch's injected clock):

* ``occurred_at`` at most ``max_future_skew`` after now (``future_timestamp``): an event
  stamped in the future would outrank every real one ordered by event time (a count stamped
  2099 freezes a stock position, a consent grant stamped 2099 outranks every revocation);
* a stock movement (``inventory.delta``, a counted ``inventory.on_hand``) of at most
  ``max_stock_movement`` units (``out_of_bounds``).

Records outside go to the DLQ with their own reason, like any other invalid record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from schemas.errors import FUTURE_TIMESTAMP, OUT_OF_BOUNDS, InvalidEvent
from schemas.touchpoint import Touchpoint


@dataclass(frozen=True, slots=True)
class InputBounds:
    max_future_skew: timedelta = timedelta(minutes=5)
    max_stock_movement: int = 1_000_000


DEFAULT_BOUNDS: Final = InputBounds()


def check_bounds(tp: Touchpoint, now: datetime, bounds: InputBounds = DEFAULT_BOUNDS) -> None:
    """Raise :class:`InvalidEvent` if ``tp`` is outside ``bounds`` at ``now``."""
    if tp.occurred_at - now > bounds.max_future_skew:
        raise InvalidEvent(
            FUTURE_TIMESTAMP,
            f"more than {bounds.max_future_skew.total_seconds():.0f} s in the future",
            field="occurred_at",
        )
    inv = tp.inventory
    if inv is None:
        return
    limit = bounds.max_stock_movement
    if inv.delta is not None and abs(inv.delta) > limit:
        raise InvalidEvent(OUT_OF_BOUNDS, f"must be within ±{limit}", field="inventory.delta")
    if inv.on_hand is not None and inv.on_hand > limit:
        raise InvalidEvent(OUT_OF_BOUNDS, f"must be at most {limit}", field="inventory.on_hand")
