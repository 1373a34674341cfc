"""Errors of the event contract, classified once.

Hierarchy::

    LoomError                      base of every error Loom raises on purpose
    └── InvalidEvent               a touchpoint that can never be processed (non-retryable:
                                   DLQ it, or reject it at the producer). ``.reason`` is one of
                                   the codes below, ``.field`` the dotted path of the field
                                   (``order.lines[0].quantity``) or ``None``, ``.message`` a
                                   human sentence that never contains the offending value.

Reason codes (stable; metrics and DLQ records use them):

* ``malformed_json``   - the bytes are not one JSON object
* ``invalid_utf8``     - the bytes are not UTF-8, or a string holds a lone surrogate
* ``oversize``         - the raw record is larger than ``max_bytes``
* ``unknown_type``     - ``type`` is not one of the touchpoint v1 event types
* ``schema_violation`` - any other violation of the touchpoint v1 contract
* ``control_characters`` - an identifier value holds a control, format or bidi character
  (NUL, CR/LF, ESC, U+202E ...): it would end up in Redis key names and logs
* ``future_timestamp`` - ``occurred_at`` is further in the future than the allowed clock skew
  (checked by the workers against their clock, ``schemas.bounds``)
* ``out_of_bounds``    - a stock movement beyond the configured bound (``schemas.bounds``)

Messages are built from the field path and the rule, never from the input value, because
touchpoints carry personal data and these messages end up in logs and DLQ headers.
"""

from __future__ import annotations

from typing import Final, Literal

Reason = Literal[
    "malformed_json",
    "invalid_utf8",
    "oversize",
    "schema_violation",
    "unknown_type",
    "control_characters",
    "future_timestamp",
    "out_of_bounds",
]

MALFORMED_JSON: Final = "malformed_json"
INVALID_UTF8: Final = "invalid_utf8"
OVERSIZE: Final = "oversize"
SCHEMA_VIOLATION: Final = "schema_violation"
UNKNOWN_TYPE: Final = "unknown_type"
CONTROL_CHARACTERS: Final = "control_characters"
FUTURE_TIMESTAMP: Final = "future_timestamp"
OUT_OF_BOUNDS: Final = "out_of_bounds"


class LoomError(Exception):
    """Base class of the errors Loom raises on purpose."""


class InvalidEvent(LoomError, ValueError):  # noqa: N818 - the brief's name, used widely
    """A touchpoint that violates the contract. Not retryable.

    ``details`` lists every violation found (``field: rule``), the first of which is also in
    ``field`` and ``message``.
    """

    def __init__(
        self,
        reason: Reason,
        message: str,
        *,
        field: str | None = None,
        details: tuple[str, ...] = (),
    ) -> None:
        self.reason: Reason = reason
        self.field: str | None = field
        self.message: str = message
        self.details: tuple[str, ...] = details or (self._line(field, message),)
        more = len(self.details) - 1
        text = self._line(field, message) + (f" (and {more} more)" if more > 0 else "")
        super().__init__(f"{reason}: {text}")

    @staticmethod
    def _line(field: str | None, message: str) -> str:
        return f"{field}: {message}" if field else message

    def __reduce__(self) -> tuple[object, ...]:  # picklable across processes
        return (_rebuild, (self.reason, self.message, self.field, self.details))


def _rebuild(
    reason: Reason, message: str, field: str | None, details: tuple[str, ...]
) -> InvalidEvent:
    return InvalidEvent(reason, message, field=field, details=details)
