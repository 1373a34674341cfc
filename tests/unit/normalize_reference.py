"""``schemas.normalize.normalize_one`` and ``is_blocked`` as they were before issue 17's
fourteenth pass (main 0ce3b22), kept verbatim as the reference the default configuration's
inline path and the phone check without a parse are compared with
(``test_normalize_reference``). They call the module's other helpers, which that pass did not
change. Not used by Loom.

Changed since, with the module (a review of 2026-12-04): placeholder e-mails are compared
without the local part's ``+tag`` and separators (``_placeholder_email``), and an address is
lowercased then put in NFC (``_normalize_email``, which this module calls)."""

from __future__ import annotations

from typing import cast

from schemas.identifiers import ANONYMOUS_ID, CARD_TOKEN, EMAIL, PHONE, SOCIAL_HANDLE, Identifier
from schemas.normalize import (
    _NON_DIGITS,
    _ZEROS_DASHES,
    DEFAULT,
    NormalizeConfig,
    Rejected,
    RejectReason,
    _compiled,
    _national_digits,
    _normalize_email,
    _normalize_phone,
    _placeholder_email,
    _same_digit_or_sequence,
)


def is_blocked(id_type: str, value: str, config: NormalizeConfig = DEFAULT) -> bool:
    """Whether a canonical ``value`` of ``id_type`` is a known junk value that must not link."""
    folded = value.casefold()
    if folded in config.blocked_values or _ZEROS_DASHES.fullmatch(value):
        return True
    if id_type == EMAIL:
        if _placeholder_email(folded, config):
            return True
    elif id_type == PHONE and _same_digit_or_sequence(_national_digits(value)):
        return True
    patterns = config.blocked_patterns
    return bool(patterns) and any(
        _compiled(p).fullmatch(value) for key in (id_type, "*") for p in patterns.get(key, ())
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
