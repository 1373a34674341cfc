"""The one timestamp format of every public output: RFC 3339 in UTC with a ``Z`` suffix.

Snapshots, change and audit records, DLQ headers and stored state all write times with
:func:`format_time` (microseconds only when the time has them) and read them back with
:func:`parse_time`, which accepts any RFC 3339 offset and returns an aware UTC datetime.
Producers may stamp events in their local offset; nothing Loom writes keeps that offset.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

import orjson


class TimeFormatError(ValueError):
    """A timestamp without an offset (Loom never guesses a time zone)."""


def utc(value: datetime) -> datetime:
    """``value`` in UTC; naive datetimes are refused."""
    if value.tzinfo is UTC:  # the common case (every time Loom parsed or built): no call
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise TimeFormatError("timestamp must be timezone-aware")
    return value if value.tzinfo is UTC else value.astimezone(UTC)


class _Formatted(dict[datetime, str]):
    """format_time's recent answers: a worker writes the same times again and again (a
    profile's whole state at each touch); a lookup is ~15 times cheaper than ``isoformat``.
    Equal datetimes are the same instant (whatever their offsets), so they share one text.
    Bounded: emptied when full. A remembered time is answered by the dict's own
    ``__getitem__`` (no Python call: ~6 per event are); a new one by ``__missing__``."""

    __slots__ = ()

    def __missing__(self, value: datetime) -> str:
        # ``utc(value)``, inline for the common case (a time Loom parsed or built is in UTC)
        text = utc_text(value if value.tzinfo is UTC else utc(value))
        if len(self) >= _FORMATTED_MAX:
            self.clear()
        self[value] = text
        return text


_DUMPS: Final = orjson.dumps
_UTC_Z: Final = orjson.OPT_UTC_Z


def utc_text(value: datetime) -> str:
    """``value`` (in UTC) as ``2026-11-22T10:15:00Z``: ``value.isoformat()`` with ``Z`` for
    ``+00:00``, written by orjson (the same text, tested): ~0.46 µs against isoformat's ~2.2
    (CPython 3.11.7 on this machine, timeit), whose ``%02d`` fields each go through the C
    library's ``vsnprintf``. Nearly every event's time is formatted once (~1.1 per event on
    the bench's mix: a new time misses the memo above). A ``datetime`` subclass orjson does
    not take is written by ``isoformat``."""
    try:
        return _DUMPS(value, option=_UTC_Z)[1:-1].decode()  # a JSON string: its quotes cut
    except orjson.JSONEncodeError:
        return value.isoformat()[:-6] + "Z"  # a UTC isoformat ends with "+00:00"


_FORMATTED: Final = _Formatted()
_FORMATTED_MAX = 8192

#: ``2026-11-22T10:15:00Z`` (``.123456`` before the ``Z`` when there are microseconds) of an
#: aware datetime (a naive one raises :class:`TimeFormatError`).
format_time: Final[Callable[[datetime], str]] = _FORMATTED.__getitem__


def format_optional(value: datetime | None) -> str | None:
    return None if value is None else format_time(value)


_FROMISOFORMAT: Final = datetime.fromisoformat


def parse_time(text: str) -> datetime:
    """Inverse of :func:`format_time`; accepts any offset, returns UTC."""
    try:
        parsed = _FROMISOFORMAT(text)
    except ValueError as exc:
        raise TimeFormatError(f"not an RFC 3339 timestamp: {text!r}") from exc
    # ``utc(parsed)``, inline for what format_time writes (``Z``: ``fromisoformat`` gives the
    # ``UTC`` singleton, as it does for ``+00:00``)
    return parsed if parsed.tzinfo is UTC else utc(parsed)


class _Parsed(dict[str, datetime]):
    """parse_time's recent answers, for decoding stored state: a stored profile names each
    event's time several times (its atom's stamp, its recent entry, its activity, its consent
    records, the group's latest: ~69,000 times in the bench's 6,412 final states, ~19,000 of
    them distinct per profile). A remembered text is answered by the dict's own
    ``__getitem__`` (no Python call); a new one by ``__missing__``, which is
    :func:`parse_time` (the same value, the same errors). Bounded: emptied when full."""

    __slots__ = ()

    def __missing__(self, text: str) -> datetime:
        try:  # ``parse_time(text)``, inline: one Python call per new text
            parsed = _FROMISOFORMAT(text)
        except ValueError:
            parsed = parse_time(text)  # raises its TimeFormatError
        if parsed.tzinfo is not UTC:
            parsed = utc(parsed)
        if len(self) >= _PARSED_MAX:
            self.clear()
        self[text] = parsed
        return parsed


_PARSED: Final = _Parsed()
_PARSED_MAX = 8192

#: :func:`parse_time`, remembered (see :class:`_Parsed`): for stored state, whose times recur.
#: Equal texts give the same (immutable) datetime object.
parse_stored: Final[Callable[[str], datetime]] = _PARSED.__getitem__


def parse_optional(text: str | None) -> datetime | None:
    return None if text is None else parse_time(text)
