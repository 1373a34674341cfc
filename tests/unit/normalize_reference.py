"""``schemas.normalize.normalize_one`` as it was before issue 17's fourteenth pass (main 0ce3b22),
kept verbatim as the reference the default configuration's inline path is compared with
(``test_normalize_reference``). It calls the module's helpers, which that pass did not change.
Not used by Loom."""

from __future__ import annotations

from typing import cast

from schemas.identifiers import ANONYMOUS_ID, CARD_TOKEN, EMAIL, PHONE, SOCIAL_HANDLE, Identifier
from schemas.normalize import (
    _NON_DIGITS,
    DEFAULT,
    NormalizeConfig,
    Rejected,
    RejectReason,
    _normalize_email,
    _normalize_phone,
    _same_digit_or_sequence,
    is_blocked,
)


def normalize_one(
    id_type: str, raw: str, *, region: str | None, config: NormalizeConfig = DEFAULT
) -> Identifier | Rejected:
    """Normalize one raw identifier; see the module docstring for the rules."""
    if id_type not in config.known_types:
        return Rejected(id_type, "unknown_type")
    stripped = raw.strip()
    if not stripped:
        return Rejected(id_type, "empty")
    if len(stripped) > config.max_length(id_type):
        return Rejected(id_type, "too_long")
    # Placeholders are checked on the trimmed raw value first (a phone's in its branch below,
    # on the raw digits), so "1234567890" is blocked even where it parses as a phone number.
    if id_type != PHONE and is_blocked(id_type, stripped, config):
        return Rejected(id_type, "blocked_value")
    value: str | None
    if id_type == EMAIL:
        value = _normalize_email(raw, config)
        if value is None:
            return Rejected(id_type, "invalid_email")
    elif id_type == PHONE:
        digits = _NON_DIGITS.sub("", stripped)
        if _same_digit_or_sequence(digits) or stripped.casefold() in config.blocked_values:
            return Rejected(id_type, "blocked_value")
        phone = _normalize_phone(raw, region)
        if not phone.startswith("+"):
            return Rejected(id_type, cast(RejectReason, phone))
        value = phone
    elif id_type == SOCIAL_HANDLE:
        value = stripped.lstrip("@").lower()
        if not value:
            return Rejected(id_type, "empty")
    elif id_type in (CARD_TOKEN, ANONYMOUS_ID):
        value = raw
    else:  # customer_id, loyalty_id, custom types
        value = stripped
    # (the value checked above, unchanged, is not asked again: the answer is the same)
    if (value != stripped or id_type == PHONE) and is_blocked(id_type, value, config):
        return Rejected(id_type, "blocked_value")
    return Identifier(id_type, value, raw)
