"""Stage 1: bytes to a validated touchpoint, or a dead letter naming what is wrong."""

from __future__ import annotations

from collections.abc import Container

import orjson

from resolvers.steps import DeadLetter, Event, Ok, RawRecord
from schemas.errors import InvalidEvent
from schemas.touchpoint import parse_touchpoint, validate_touchpoint

NAME = "parse"


def run(record: RawRecord, *, max_bytes: int) -> Ok | DeadLetter:
    if record.value is None:
        return DeadLetter(record, NAME, "malformed_json", "InvalidEvent", "record has no value")
    try:
        tp = parse_touchpoint(record.value, max_bytes=max_bytes)
    except InvalidEvent as exc:
        return DeadLetter(record, NAME, exc.reason, type(exc).__name__, str(exc))
    return Ok(Event(record=record, touchpoint=tp))


def run_if_type(
    record: RawRecord, types: Container[str], *, max_bytes: int
) -> Ok | DeadLetter | None:
    """Like :func:`run`, for a lane that takes only some event types; None = not one of them.

    The type is read from the decoded JSON before validation, so the other events cost one
    ``orjson.loads``. Records that are not a JSON object of at most ``max_bytes`` are None too:
    they are not this lane's to report (the profiles lane sends them to the DLQ).
    """
    value = record.value
    if value is None or len(value) > max_bytes:
        return None
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("type") not in types:
        return None
    try:
        tp = validate_touchpoint(data)
    except InvalidEvent as exc:
        return DeadLetter(record, NAME, exc.reason, type(exc).__name__, str(exc))
    return Ok(Event(record=record, touchpoint=tp))
