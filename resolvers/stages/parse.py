"""Stage 1: bytes to a validated touchpoint, or a dead letter naming what is wrong."""

from __future__ import annotations

from resolvers.steps import DeadLetter, Event, Ok, RawRecord
from schemas.errors import InvalidEvent
from schemas.touchpoint import parse_touchpoint

NAME = "parse"


def run(record: RawRecord, *, max_bytes: int) -> Ok | DeadLetter:
    if record.value is None:
        return DeadLetter(record, NAME, "malformed_json", "InvalidEvent", "record has no value")
    try:
        tp = parse_touchpoint(record.value, max_bytes=max_bytes)
    except InvalidEvent as exc:
        return DeadLetter(record, NAME, exc.reason, type(exc).__name__, str(exc))
    return Ok(Event(record=record, touchpoint=tp))
