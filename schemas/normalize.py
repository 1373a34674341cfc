"""Identifier normalization: raw identifier strings to canonical :class:`Identifier` values.

Pure (no IO). Rules, per type:

* ``email``: trim, lowercase, Unicode NFC (RFC 6532: ``é`` composed or as ``e`` and a combining
  accent is one address), basic shape check (``local@domain.tld``, <= 254 chars; the
  domain in ASCII, an IDN as ``xn--``). Gmail-style dot and ``+tag`` stripping only when
  ``NormalizeConfig.gmail_normalization``.
* ``phone``: E.164 via ``phonenumbers``; the event's region is the default region (``00``
  international prefixes are understood without one); numbers ``phonenumbers`` does not
  consider valid are rejected.
* ``customer_id``, ``loyalty_id``, custom types: trimmed, case preserved.
* ``card_token``, ``anonymous_id``: kept as sent (a leading/trailing-space token is a
  different token), but an all-blank value is ``empty``.
* ``social_handle``: trim, strip leading ``@``, lowercase.

Blocked junk values (``null``, ``guest``, ``1234567890``, ``noemail@...``, ``0000000000`` ...)
never become identifiers: they are reported in ``rejected`` with reason ``blocked_value``.
Placeholder e-mails are compared without the local part's ``+tag`` and its ``.``, ``-`` and
``_`` (``No.Reply+till3@shop.no`` is ``noreply@``), whatever ``gmail_normalization`` says.
``rejected`` never carries the raw value (it may be personal data), only type and reason.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final, Literal, cast

import phonenumbers

from schemas.identifiers import (
    ANONYMOUS_ID,
    BUILTIN_TYPES,
    CARD_TOKEN,
    CUSTOMER_ID,
    EMAIL,
    LOYALTY_ID,
    PHONE,
    SOCIAL_HANDLE,
    Identifier,
)

RejectReason = Literal[
    "empty", "too_long", "blocked_value", "invalid_email", "invalid_phone", "unknown_type"
]

#: Values that never identify anyone, whatever the type (compared case-insensitively).
BLOCKED_VALUES: Final[frozenset[str]] = frozenset(
    {
        "null",
        "none",
        "nil",
        "nan",
        "undefined",
        "anonymous",
        "anon",
        "guest",
        "unknown",
        "n/a",
        "na",
        "-1",
        "0",
        "[object object]",
        "not provided",
        "notprovided",
        "test",
        # POS / form placeholders
        "1234567890",
        "0123456789",
        "123456789",
        "9876543210",
    }
)

#: Whole e-mail addresses known to be placeholders.
BLOCKED_EMAILS: Final[frozenset[str]] = frozenset(
    {
        "test@test.com",
        "no@email.com",
        "no@no.com",
        "none@none.com",
        "email@email.com",
        "a@a.com",
        "x@x.com",
        "test@example.com",
        "noemail@noemail.com",
    }
)

#: Local parts that mark a placeholder address at any domain (``noemail@store.com``).
BLOCKED_EMAIL_LOCALS: Final[frozenset[str]] = frozenset(
    {
        "noemail",
        "no-email",
        "no.email",
        "no_email",
        "nomail",
        "no-mail",
        "none",
        "null",
        "noreply",
        "no-reply",
        "donotreply",
        "do-not-reply",
        "donotemail",
        "unknown",
        "declined",
        "refused",
        "na",
        "n/a",
        "guest",
        "anonymous",
    }
)

#: What :func:`_placeholder_key` leaves out of a local part besides its ``+tag``.
_LOCAL_SEPARATORS: Final = str.maketrans("", "", ".-_")


def _placeholder_key(address: str) -> str:
    """A casefolded address, or local part, as the placeholder lists are compared: its local
    part without ``+tag`` and separators (``no.reply+till3@shop.no``: ``noreply@shop.no``)."""
    local, at, domain = address.partition("@")
    return local.partition("+")[0].translate(_LOCAL_SEPARATORS) + at + domain


@lru_cache(maxsize=16)
def _placeholder_keys(listed: frozenset[str]) -> frozenset[str]:
    """:func:`_placeholder_key` of each listed address or local part (a configuration's)."""
    return frozenset(_placeholder_key(v.casefold()) for v in listed)


_ZEROS_DASHES: Final = re.compile(r"^[0-]*$")
_EMAIL: Final = re.compile(
    r"[^@\s\"(),:;<>\[\]\\]{1,64}@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+"
    r"(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})"
)
_NON_DIGITS: Final = re.compile(r"\D")
_GMAIL_DOMAINS: Final = frozenset({"gmail.com", "googlemail.com"})

#: Default maximum canonical length per type; other types use ``default_max_length``.
_MAX_LENGTH: Final[Mapping[str, int]] = {EMAIL: 254, PHONE: 64}


@dataclass(frozen=True, slots=True)
class NormalizeConfig:
    """Knobs of normalization (comes from the identity rules file).

    ``blocked_patterns`` maps a type (or ``"*"`` for every type) to regexes matched with
    ``re.fullmatch`` against the canonical value, case-insensitively.
    """

    gmail_normalization: bool = False
    custom_types: tuple[str, ...] = ()
    blocked_values: frozenset[str] = BLOCKED_VALUES
    blocked_emails: frozenset[str] = BLOCKED_EMAILS
    blocked_email_locals: frozenset[str] = BLOCKED_EMAIL_LOCALS
    blocked_patterns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    default_max_length: int = 256

    @property
    def known_types(self) -> tuple[str, ...]:
        if not self.custom_types:  # the workers' default: asked per identifier
            return BUILTIN_TYPES
        return BUILTIN_TYPES + tuple(t for t in self.custom_types if t not in BUILTIN_TYPES)

    def max_length(self, id_type: str) -> int:
        return _MAX_LENGTH.get(id_type, self.default_max_length)


DEFAULT: Final = NormalizeConfig()


@dataclass(frozen=True, slots=True)
class Rejected:
    """An identifier that was not accepted. Deliberately has no value field."""

    type: str
    reason: RejectReason


@dataclass(frozen=True, slots=True)
class NormalizedIdentifiers:
    accepted: tuple[Identifier, ...] = ()
    rejected: tuple[Rejected, ...] = ()

    def get(self, id_type: str) -> Identifier | None:
        """The accepted identifier of ``id_type``, if any."""
        for ident in self.accepted:
            if ident.type == id_type:
                return ident
        return None


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def _same_digit_or_sequence(digits: str) -> bool:
    """All digits equal (``0000000``, ``99999999``), or a run like ``1234567890``."""
    if len(digits) < 5:
        return False
    if len(set(digits)) == 1:
        return True
    return digits in "01234567890" or digits in "98765432109"


@lru_cache(maxsize=4_096)
def _national_digits(value: str) -> str:
    """The national significant number of a phone value (its digits if it does not parse).
    Memoized: parsing is the costly part of :func:`is_blocked`, asked again of the same
    canonical values whenever identity is replayed."""
    try:
        return str(phonenumbers.national_significant_number(phonenumbers.parse(value, None)))
    except phonenumbers.NumberParseException:
        return _NON_DIGITS.sub("", value)


@lru_cache(maxsize=1_024)
def _may_rewrite(country_code: int) -> bool:
    """Whether ``phonenumbers.parse`` of ``+<country_code>...`` may rewrite the national
    number's digits (its region's metadata, the one ``parse`` reads, has a national-prefix
    transform rule: AR, BR, JP ...; or there is none to tell) rather than only cut a national
    prefix or carrier code off its front. False for numbers that are not a country code."""
    if country_code not in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
        return False
    region = phonenumbers.region_code_for_country_code(country_code)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    return metadata is None or bool(metadata.national_prefix_transform_rule)


def _placeholder_phone(value: str) -> bool:
    """``_same_digit_or_sequence(_national_digits(value))``, without the parse when its answer
    is known to be False: ``value`` is ``+`` and ASCII digits ``A`` whose last five are
    neither one digit nor a run, and no country code ``A`` may start with has a transform rule.
    Then the parse's national number is ``A`` (a failed parse) or what follows the country
    code with at most a prefix cut off (``national_significant_number`` gives those digits
    back, leading zeros included): a suffix of ``A``, and a suffix of five or more digits
    that is one digit or a run ends in five that are. Canonical (E.164) phone values take
    this path; a parse costs ~130k instructions."""
    digits = value[1:]
    if (
        value[:1] == "+"
        and digits.isascii()
        and digits.isdigit()
        and not _same_digit_or_sequence(digits[-5:])
        and not _may_rewrite(int(digits[:1]))
        and not _may_rewrite(int(digits[:2]))
        and not _may_rewrite(int(digits[:3]))
    ):
        return False
    return _same_digit_or_sequence(_national_digits(value))


def _placeholder_email(folded: str, config: NormalizeConfig) -> bool:
    """Is a casefolded address a listed placeholder, or at a listed placeholder local part,
    ``+tag`` and separators aside (:func:`_placeholder_key`)?"""
    key = _placeholder_key(folded)
    if key in _placeholder_keys(config.blocked_emails):
        return True
    return key.partition("@")[0] in _placeholder_keys(config.blocked_email_locals)


def is_blocked(id_type: str, value: str, config: NormalizeConfig = DEFAULT) -> bool:
    """Whether a canonical ``value`` of ``id_type`` is a known junk value that must not link."""
    folded = value.casefold()
    if folded in config.blocked_values or _ZEROS_DASHES.fullmatch(value):
        return True
    if id_type == EMAIL:
        if _placeholder_email(folded, config):
            return True
    elif id_type == PHONE and _placeholder_phone(value):
        return True
    patterns = config.blocked_patterns
    return bool(patterns) and any(
        _compiled(p).fullmatch(value) for key in (id_type, "*") for p in patterns.get(key, ())
    )


def blocked_by_default(id_type: str, value: str) -> bool:
    """:func:`is_blocked` under ``DEFAULT``: the identity rules' predicate in the workers
    (``streams.runtime.with_blocklist``). Every identifier :func:`normalize_one` accepts under
    ``DEFAULT`` passed it (its canonical value checked, or the trimmed raw value it equals), so
    the pipeline vouches for those without asking again (``resolvers.pipeline.run_batch``)."""
    return is_blocked(id_type, value, DEFAULT)


def _canonical_email(stripped: str) -> str:
    """Lowercase, then NFC: one value for an address sent composed or decomposed (an ASCII
    address, most, without the NFC call: it leaves one as it is)."""
    value = stripped.lower()
    return value if value.isascii() else unicodedata.normalize("NFC", value)


def _normalize_email(raw: str, config: NormalizeConfig) -> str | None:
    value = _canonical_email(raw.strip())
    if not _EMAIL.fullmatch(value):
        return None
    if config.gmail_normalization:
        local, _, domain = value.partition("@")
        if domain in _GMAIL_DOMAINS:
            local = local.split("+", 1)[0].replace(".", "")
            if not local:
                return None
            value = f"{local}@gmail.com"
    return value


def _normalize_phone(raw: str, region: str | None) -> str | RejectReason:
    text = raw.strip()
    if region is None and text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return "invalid_phone"
    if _same_digit_or_sequence(phonenumbers.national_significant_number(number)):
        return "blocked_value"
    if not phonenumbers.is_valid_number(number):
        return "invalid_phone"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


#: The built-in types :func:`_default_builtin` normalizes (a phone's parse dominates its cost).
_DEFAULT_FAST: Final = frozenset(BUILTIN_TYPES) - {PHONE}
_ZEROS_OR_DASHES: Final = _ZEROS_DASHES.fullmatch
#: ``DEFAULT.max_length`` of each of them, read once.
_DEFAULT_MAX_LENGTH: Final[Mapping[str, int]] = {t: DEFAULT.max_length(t) for t in _DEFAULT_FAST}


def _default_builtin(id_type: str, raw: str) -> Identifier | Rejected:
    """:func:`normalize_one` of a built-in type other than ``phone`` under ``DEFAULT``: the
    same answer, with the default configuration's checks inline (no ``known_types``,
    ``max_length`` or first :func:`is_blocked` call: the workers normalize every new value
    here). ``DEFAULT`` has no blocked patterns and no Gmail normalization."""
    stripped = raw.strip()
    if not stripped:
        return Rejected(id_type, "empty")
    if len(stripped) > _DEFAULT_MAX_LENGTH[id_type]:
        return Rejected(id_type, "too_long")
    folded = stripped.casefold()  # ``is_blocked(id_type, stripped)``, inline
    if folded in BLOCKED_VALUES or _ZEROS_OR_DASHES(stripped):
        return Rejected(id_type, "blocked_value")
    if id_type == EMAIL:
        if _placeholder_email(folded, DEFAULT):
            return Rejected(id_type, "blocked_value")
        value = _canonical_email(stripped)  # ``_normalize_email``
        if not _EMAIL.fullmatch(value):
            return Rejected(id_type, "invalid_email")
    elif id_type == SOCIAL_HANDLE:
        value = stripped.lstrip("@").lower()
        if not value:
            return Rejected(id_type, "empty")
    elif id_type in (CUSTOMER_ID, LOYALTY_ID):
        return Identifier(id_type, stripped, raw)
    else:  # card_token, anonymous_id
        value = raw
    if value != stripped and is_blocked(id_type, value):
        return Rejected(id_type, "blocked_value")
    return Identifier(id_type, value, raw)


def normalize_one(
    id_type: str, raw: str, *, region: str | None, config: NormalizeConfig = DEFAULT
) -> Identifier | Rejected:
    """Normalize one raw identifier; see the module docstring for the rules."""
    if config is DEFAULT and id_type in _DEFAULT_FAST:
        return _default_builtin(id_type, raw)
    return _normalize_general(id_type, raw, region, config)


def _normalize_general(
    id_type: str, raw: str, region: str | None, config: NormalizeConfig
) -> Identifier | Rejected:
    """:func:`normalize_one` of any type under any configuration."""
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


@lru_cache(maxsize=8_192)
def _normalize_default(id_type: str, raw: str, region: str | None) -> Identifier | Rejected:
    """:func:`normalize_one` with the default configuration, memoized (pure; its results are
    immutable): phone numbers in particular cost a parse each. Bounded small (~3 MiB): anonymous
    ids never come back, so a large memo only grows the worker (the soak bench saw it). Keyed
    by region only for phone numbers, the one type whose normalization reads it (call it
    through :func:`_memoized`)."""
    return normalize_one(id_type, raw, region=region, config=DEFAULT)


def _memoized(id_type: str, raw: str, region: str | None) -> Identifier | Rejected:
    """:func:`_normalize_default`, one entry per value whatever the region except for phones."""
    return _normalize_default(id_type, raw, region if id_type == PHONE else None)


def normalize_identifiers(
    ids: Mapping[str, str | None],
    *,
    region: str | None,
    config: NormalizeConfig = DEFAULT,
) -> NormalizedIdentifiers:
    """Normalize every identifier of an event. ``None`` values are absent, not rejected.

    ``accepted`` is ordered by type stability (``BUILTIN_TYPES`` order, then custom types in
    configuration order, then anything else by name), so the first accepted identifier is the
    most stable one.
    """
    order = {t: i for i, t in enumerate(config.known_types)}
    accepted: list[Identifier] = []
    rejected: list[Rejected] = []
    for id_type in sorted(ids, key=lambda t: (order.get(t, len(order)), t)):
        raw = ids[id_type]
        if raw is None:
            continue
        if config is DEFAULT:  # the workers' configuration: a customer's values repeat
            result = _memoized(id_type, raw, region)
        else:
            result = normalize_one(id_type, raw, region=region, config=config)
        if isinstance(result, Rejected):
            rejected.append(result)
        else:
            accepted.append(result)
    return NormalizedIdentifiers(tuple(accepted), tuple(rejected))


__all__ = [
    "BLOCKED_EMAILS",
    "BLOCKED_EMAIL_LOCALS",
    "BLOCKED_VALUES",
    "CUSTOMER_ID",
    "DEFAULT",
    "LOYALTY_ID",
    "NormalizeConfig",
    "NormalizedIdentifiers",
    "Rejected",
    "blocked_by_default",
    "is_blocked",
    "normalize_identifiers",
    "normalize_one",
]
