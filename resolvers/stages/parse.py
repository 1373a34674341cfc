"""Stage 1: bytes to a validated touchpoint within bounds, or a dead letter naming what is wrong.

Bounds that need the clock or configuration (``schemas.bounds``: ``occurred_at`` too far in the
future, stock movements too large) are checked here against the batch's ``now``, or the record's
Kafka timestamp when earlier (:func:`reference_time`: the same verdict in every lane and run);
``now=None`` checks everything else.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from datetime import UTC, datetime

import orjson

from resolvers.steps import DeadLetter, Event, Ok, RawRecord
from schemas.bounds import DEFAULT_BOUNDS, InputBounds, check_bounds
from schemas.errors import InvalidEvent
from schemas.touchpoint import Touchpoint, parse_touchpoint, validate_touchpoint

NAME = "parse"


def reference_time(record: RawRecord, now: datetime) -> datetime:
    """The time a record's bounds are judged at: ``now``, or the record's own Kafka timestamp
    when that is earlier. Every lane, the stock router and ``loom rebuild`` read a record at
    their own moments; judged at each one's ``now``, a record stamped just past the skew was
    skipped by the inventory lane (reading it at once) and accepted by a profiles lane reading
    it later: neither applied nor dead-lettered, and a rebuild applied it. The record's
    timestamp is the same for every reader; capped by ``now``, so a producer that stamps its
    records in the future gains nothing."""
    ts = record.timestamp_ms
    if ts is None or ts <= 0:
        return now
    written = datetime.fromtimestamp(ts / 1000, UTC)
    return written if written < now else now


def earliest_reference(records: Iterable[RawRecord], now: datetime) -> datetime:
    """The earliest :func:`reference_time` of ``records``: an event within the skew of it is
    within the skew of its own, so :func:`decode` looks at a record's own timestamp only for
    the few that are not (one conversion per batch instead of one per record: +4.4k of ~582k
    instructions per profiles event, thirty-first pass, ``bench/README.md``)."""
    stamps = [ts for r in records if (ts := r.timestamp_ms) is not None and ts > 0]
    if not stamps:
        return now
    earliest = datetime.fromtimestamp(min(stamps) / 1000, UTC)
    return earliest if earliest < now else now


def _dead(record: RawRecord, exc: InvalidEvent) -> DeadLetter:
    return DeadLetter(record, NAME, exc.reason, type(exc).__name__, str(exc))


def decode(
    record: RawRecord,
    *,
    max_bytes: int,
    now: datetime | None = None,
    bounds: InputBounds = DEFAULT_BOUNDS,
    floor: datetime | None = None,
) -> Touchpoint | DeadLetter:
    """:func:`run`'s touchpoint, without the event around it (``prepare`` builds that once).
    ``floor``: at or before the record's :func:`reference_time` (its batch's
    :func:`earliest_reference`), or None to compute that."""
    value = record.value
    if value is None:
        return DeadLetter(record, NAME, "malformed_json", "InvalidEvent", "record has no value")
    try:
        tp = parse_touchpoint(value, max_bytes=max_bytes)
        # ``check_bounds`` when it has something to find (most events: no call); the fields
        # from the model's instance dict (``resolvers.stages.observe.observation`` says why)
        fields = tp.__dict__
        if now is not None:
            at = reference_time(record, now) if floor is None else floor
            if fields["inventory"] is not None or (
                fields["occurred_at"] - at > bounds.max_future_skew
            ):
                check_bounds(tp, at if floor is None else reference_time(record, now), bounds)
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
            check_bounds(tp, reference_time(record, now), bounds)
    except InvalidEvent as exc:
        return _dead(record, exc)
    return tp
