"""What every inbound format shares: the request's configured source, values, ids, times.

Pure. Errors are :class:`~schemas.errors.InvalidEvent` naming the sender's field, never its
value.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, Final

import orjson

from schemas.errors import SCHEMA_VIOLATION, InvalidEvent
from schemas.touchpoint import Channel

#: Money keeps at most this many decimals in touchpoint v1; more are rounded half-even.
MONEY_PLACES: Final = Decimal("0.0001")
_EVENT_ID: Final = re.compile(r"^[\x21-\x7e]{1,128}$")  # touchpoint v1's event_id rule
_CURRENCY: Final = re.compile(r"^[A-Za-z]{3}$")
#: Money is at most 18 digits with 4 decimals in touchpoint v1: below 10**14. Larger amounts
#: are refused here, before any arithmetic (rounding them to 4 places, or a line's price times
#: its quantity, can exceed the decimal context and raise instead of reporting the field).
MONEY_LIMIT: Final = Decimal(10) ** 14
#: Prefixes of the event ids a front door derives from its payloads (``shopify:<shop>:order:<id>``,
#: ADR 0007): predictable, so a sender's own id in one of them (a Segment ``messageId`` sent
#: with a public write key) is hashed like an id that breaks the contract, never taken as is;
#: the workers mark events processed by id alone, and would drop the door's event as a copy.
DERIVED_ID_NAMESPACES: Final = ("shopify:",)


@dataclass(frozen=True, slots=True)
class Source:
    """What a request's credentials map to (the gateway's configuration of a write key).

    ``name`` becomes the touchpoint's ``source`` (and a metric label); ``channel`` and
    ``region`` are the channel and default region of every event it sends; ``currency`` is
    used when an order names none.
    """

    name: str
    channel: Channel
    region: str | None = None
    currency: str = "USD"


def invalid(field: str | None, message: str) -> InvalidEvent:
    """A schema violation of the sender's ``field`` (a dotted path of ITS format)."""
    return InvalidEvent(SCHEMA_VIOLATION, message, field=field)


def text(value: object, field: str, *, max_length: int = 1024) -> str | None:
    """A string or integer id as text; ``None`` for absent or blank. Raises for other types."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise invalid(field, "must be a string")
    out = str(value).strip()
    if len(out) > max_length:
        raise invalid(field, f"must be at most {max_length} characters")
    return out or None


def money(value: object, field: str) -> Decimal:
    """A JSON number or numeric string as an exact decimal (``49.9`` stays ``49.9``).

    Floats are read through their shortest repr, so the decimal is what the sender wrote;
    more than four decimals are rounded half-even (``0.30000000000000004`` -> ``0.3000``).
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise invalid(field, "must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise invalid(field, "must be finite")
    try:
        amount = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation:
        raise invalid(field, "must be a number") from None
    if not amount.is_finite():
        raise invalid(field, "must be finite")
    if abs(amount) >= MONEY_LIMIT:
        raise invalid(field, "must be less than 10^14")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -4:
        amount = amount.quantize(MONEY_PLACES, rounding=ROUND_HALF_EVEN)
    return amount


def currency(value: object, field: str, default: str) -> str:
    """An ISO 4217 code, upper-cased; ``default`` when absent."""
    if value is None or value == "":
        return default
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value.strip()):
        raise invalid(field, "must be a 3-letter currency code")
    return value.strip().upper()


def quantity(value: object, field: str) -> int:
    """A positive whole number (``2`` or ``2.0``); absent means 1."""
    if value is None:
        return 1
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid(field, "must be a whole number >= 1")
    return value


def timestamp(value: object, field: str) -> datetime | None:
    """An ISO 8601 timestamp as an aware datetime (no offset = UTC); ``None`` when absent."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise invalid(field, "must be an ISO 8601 timestamp")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise invalid(field, "must be an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:  # 0001-01-01T00:00+01:00 parses, but is before year 1 in UTC: nothing can use it
        parsed.astimezone(UTC)
    except OverflowError:
        raise invalid(field, "must be a time between the years 1 and 9999 in UTC") from None
    return parsed


def rfc3339(moment: datetime) -> str:
    """``moment`` in UTC, RFC 3339 with ``Z`` (the form Loom writes)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def event_id(prefix: str, given: object, fallback: Callable[[], Mapping[str, Any]]) -> str:
    """The touchpoint ``event_id``: the sender's own id when it fits the contract, else a
    stable hash of it, else a hash of ``fallback()`` (the message without its transport
    fields), so that a client retrying the same message gets the same id either way and the
    workers drop the copy."""
    if isinstance(given, str | int) and not isinstance(given, bool):
        given_text = str(given)
        if _EVENT_ID.fullmatch(given_text) and not given_text.startswith(DERIVED_ID_NAMESPACES):
            return given_text
        digest = hashlib.sha256(given_text.encode("utf-8", "surrogatepass")).hexdigest()
    else:
        canonical = orjson.dumps(fallback(), option=orjson.OPT_SORT_KEYS, default=str)
        digest = hashlib.sha256(canonical).hexdigest()
    return f"{prefix}-{digest[:40]}"


def mapping(value: object, field: str) -> Mapping[str, Any]:
    """A JSON object, or an empty one when absent."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise invalid(field, "must be a JSON object")
    return value
