"""Stage 1: bytes to a validated touchpoint within bounds, or a dead letter naming what is wrong.

Bounds that need the clock or configuration (``schemas.bounds``: ``occurred_at`` too far in the
future, stock movements too large) are checked here against the batch's ``now``; ``now=None``
checks everything else.
"""

from __future__ import annotations

from collections.abc import Container
from datetime import datetime

import orjson

from resolvers.steps import DeadLetter, Event, Ok, RawRecord
from schemas.bounds import DEFAULT_BOUNDS, InputBounds, check_bounds
from schemas.errors import InvalidEvent
from schemas.touchpoint import Touchpoint, parse_touchpoint, validate_touchpoint

NAME = "parse"


def _dead(record: RawRecord, exc: InvalidEvent) -> DeadLetter:
    return DeadLetter(record, NAME, exc.reason, type(exc).__name__, str(exc))


def decode(
    record: RawRecord,
    *,
    max_bytes: int,
    now: datetime | None = None,
    bounds: InputBounds = DEFAULT_BOUNDS,
) -> Touchpoint | DeadLetter:
    """:func:`run`'s touchpoint, without the event around it (``prepare`` builds that once)."""
    value = record.value
    if value is None:
        return DeadLetter(record, NAME, "malformed_json", "InvalidEvent", "record has no value")
    try:
        tp = parse_touchpoint(value, max_bytes=max_bytes)
        # ``check_bounds`` when it has something to find (most events: no call); the fields
        # from the model's instance dict (``resolvers.stages.observe.observation`` says why)
        fields = tp.__dict__
        if now is not None and (
            fields["inventory"] is not None or fields["occurred_at"] - now > bounds.max_future_skew
        ):
            check_bounds(tp, now, bounds)
    except InvalidEvent as exc:
        return _dead(record, exc)
    return tp


def run(
    record: RawRecord,
    *,
    max_bytes: int,
    now: datetime | None = None,
    bounds: InputBounds = DEFAULT_BOUNDS,
) -> Ok | DeadLetter:
    parsed = decode(record, max_bytes=max_bytes, now=now, bounds=bounds)
    if isinstance(parsed, DeadLetter):
        return parsed
    return Ok(Event(record=record, touchpoint=parsed))


def decode_if_type(
    record: RawRecord,
    types: Container[str],
    *,
    max_bytes: int,
    now: datetime | None = None,
    bounds: InputBounds = DEFAULT_BOUNDS,
) -> Touchpoint | DeadLetter | None:
    """Like :func:`decode`, for a lane that takes only some event types; None = not one of them.

    The type is read from the decoded JSON before validation, so the other events cost one
    ``orjson.loads``. Records that are not a JSON object of at most ``max_bytes``, or whose
    ``type`` is not a string, are None too: they are not this lane's to report (the profiles
    lane sends them to the DLQ).
    """
    value = record.value
    if value is None or len(value) > max_bytes:
        return None
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    event_type = data.get("type")
    if not isinstance(event_type, str) or event_type not in types:
        return None
    try:
        tp = validate_touchpoint(data)
        if now is not None:
            check_bounds(tp, now, bounds)
    except InvalidEvent as exc:
        return _dead(record, exc)
    return tp
