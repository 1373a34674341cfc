"""``schemas.touchpoint.parse_touchpoint`` as it was before issue 17's eighteenth pass (main
7360a18): ``orjson.loads`` and then ``validate_python``, kept verbatim as the reference the
``validate_json`` path is compared with (``test_parse_json_path``). Not used by Loom."""

from __future__ import annotations

import orjson
from pydantic import ValidationError

from schemas.errors import INVALID_UTF8, MALFORMED_JSON, OVERSIZE, SCHEMA_VIOLATION, InvalidEvent
from schemas.touchpoint import _VALIDATE, MAX_EVENT_BYTES, Touchpoint, invalid_event_from


def parse_touchpoint(raw: bytes, *, max_bytes: int = MAX_EVENT_BYTES) -> Touchpoint:
    """Decode and validate one raw record. Raises :class:`InvalidEvent` (never anything else)."""
    if len(raw) > max_bytes:
        raise InvalidEvent(OVERSIZE, f"record is {len(raw)} bytes, limit {max_bytes}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        text = str(exc)
        if "UTF-8" in text or "surrogate" in text:
            raise InvalidEvent(INVALID_UTF8, "not valid UTF-8 (or a lone surrogate)") from None
        try:
            bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEvent(INVALID_UTF8, "not valid UTF-8") from None
        pos = getattr(exc, "pos", None)
        where = f" at byte {pos}" if isinstance(pos, int) else ""
        raise InvalidEvent(MALFORMED_JSON, f"not valid JSON{where}") from None
    if not isinstance(data, dict):
        raise InvalidEvent(SCHEMA_VIOLATION, "event must be a JSON object")
    try:  # ``_validated(data)``, inline (once per record)
        tp: Touchpoint = _VALIDATE(data)
    except ValidationError as exc:
        raise invalid_event_from(exc) from None
    return tp
