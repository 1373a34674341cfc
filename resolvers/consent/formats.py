"""Vendor consent formats translated into Loom purposes.

Three formats arrive in ``event.signals`` beside Loom's own ``consent`` map:

* Segment / OneTrust-style ``categoryPreferences`` (``{"Analytics": true, ...}``),
* Google Consent Mode v2 (``{"analytics_storage": "granted", ...}``),
* IAB TCF v2.2 TC strings (``"CP..."``; only the core segment is read).

Every translator returns ``dict[Purpose, bool]`` holding only the purposes the format speaks
about; a purpose that is absent means "this signal says nothing", never "granted". The mappings
are tables below and in ``docs/consent.md``. All of them fail closed: a malformed value for a
known category denies the purposes it maps to, and an undecodable TC string raises
:class:`TcfDecodeError` (the policy then records no grant from that event).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from resolvers.consent.vocabulary import Purpose

__all__ = [
    "GCM_ADS_KEYS",
    "GCM_MAPPING",
    "SEGMENT_CATEGORIES",
    "TCF_CORE_BITS",
    "TCF_PURPOSES_REQUIRED",
    "Purpose",
    "TcfConsent",
    "TcfDecodeError",
    "decode_tcf",
    "from_gcm",
    "from_segment",
    "from_tcf",
]


def _norm_category(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


# --------------------------------------------------------------------------------------------
# Segment / OneTrust categoryPreferences
# --------------------------------------------------------------------------------------------

#: Category name (lower-cased, non-alphanumerics removed) -> Loom purposes it grants or denies.
#: OneTrust group ids are the defaults of its cookie categories (C0001 strictly necessary is
#: ignored: ``necessary`` is always on). Unknown categories are ignored.
SEGMENT_CATEGORIES: Final[Mapping[str, frozenset[Purpose]]] = {
    # analytics
    "analytics": frozenset({Purpose.ANALYTICS}),
    "performance": frozenset({Purpose.ANALYTICS}),
    "statistics": frozenset({Purpose.ANALYTICS}),
    "measurement": frozenset({Purpose.ANALYTICS}),
    "c0002": frozenset({Purpose.ANALYTICS}),
    # personalization
    "functional": frozenset({Purpose.PERSONALIZATION}),
    "functionality": frozenset({Purpose.PERSONALIZATION}),
    "personalization": frozenset({Purpose.PERSONALIZATION}),
    "personalisation": frozenset({Purpose.PERSONALIZATION}),
    "preferences": frozenset({Purpose.PERSONALIZATION}),
    "c0003": frozenset({Purpose.PERSONALIZATION}),
    # marketing (first-party outreach: email/SMS campaigns, audiences)
    "marketing": frozenset({Purpose.MARKETING}),
    "emailmarketing": frozenset({Purpose.MARKETING}),
    # ads (third-party advertising, sale/sharing of data)
    "advertising": frozenset({Purpose.ADS}),
    "targeting": frozenset({Purpose.ADS}),
    "ads": frozenset({Purpose.ADS}),
    "datasharing": frozenset({Purpose.ADS}),
    "socialmedia": frozenset({Purpose.ADS}),
    "c0004": frozenset({Purpose.ADS}),
    "c0005": frozenset({Purpose.ADS}),
}


def _combine(into: dict[Purpose, bool], purpose: Purpose, granted: bool) -> None:
    """Several inputs for one purpose: all must grant (any denial wins)."""
    into[purpose] = into.get(purpose, True) and granted


def from_segment(category_preferences: Mapping[str, object]) -> dict[Purpose, bool]:
    """Translate Segment ``context.consent.categoryPreferences`` (or OneTrust groups).

    A purpose fed by several categories is granted only if every one of them is ``true``.
    A value that is not a JSON boolean denies (fail closed). Unknown categories are ignored.
    """
    out: dict[Purpose, bool] = {}
    for name, value in category_preferences.items():
        purposes = SEGMENT_CATEGORIES.get(_norm_category(str(name)))
        if purposes is None:
            continue
        granted = value is True
        for purpose in purposes:
            _combine(out, purpose, granted)
    return out


# --------------------------------------------------------------------------------------------
# Google Consent Mode v2
# --------------------------------------------------------------------------------------------

#: Single-key mappings of Consent Mode v2 types. ``functionality_storage`` and
#: ``security_storage`` are strictly necessary / functional storage and map to nothing.
GCM_MAPPING: Final[Mapping[str, Purpose]] = {
    "analytics_storage": Purpose.ANALYTICS,
    "personalization_storage": Purpose.PERSONALIZATION,
}

#: ``ads`` needs all three advertising types granted.
GCM_ADS_KEYS: Final[tuple[str, ...]] = ("ad_storage", "ad_user_data", "ad_personalization")


def _gcm_granted(value: object) -> bool:
    return isinstance(value, str) and value.strip().lower() == "granted"


def from_gcm(signals: Mapping[str, object]) -> dict[Purpose, bool]:
    """Translate Google Consent Mode v2 state (``"granted"`` / ``"denied"`` per type).

    ``ads`` is granted only when ``ad_storage``, ``ad_user_data`` and ``ad_personalization``
    are all present and ``"granted"``; if any of them is present and the set is not fully
    granted, ``ads`` is denied. Any value other than ``"granted"`` (case-insensitive) denies.
    Consent Mode has no signal for first-party ``marketing``.
    """
    out: dict[Purpose, bool] = {}
    for key, purpose in GCM_MAPPING.items():
        if key in signals:
            out[purpose] = _gcm_granted(signals[key])
    present = [key for key in GCM_ADS_KEYS if key in signals]
    if present:
        out[Purpose.ADS] = len(present) == len(GCM_ADS_KEYS) and all(
            _gcm_granted(signals[key]) for key in GCM_ADS_KEYS
        )
    return out


# --------------------------------------------------------------------------------------------
# IAB TCF v2.2 core segment
# --------------------------------------------------------------------------------------------


class TcfDecodeError(ValueError):
    """The TC string is not a decodable TCF v2 core segment."""


#: Field layout of the TCF v2 core segment, in order: (name, width in bits).
TCF_CORE_BITS: Final[tuple[tuple[str, int], ...]] = (
    ("version", 6),
    ("created", 36),
    ("last_updated", 36),
    ("cmp_id", 12),
    ("cmp_version", 12),
    ("consent_screen", 6),
    ("consent_language", 12),
    ("vendor_list_version", 12),
    ("tcf_policy_version", 6),
    ("is_service_specific", 1),
    ("use_non_standard_texts", 1),
    ("special_feature_opt_ins", 12),
    ("purposes_consent", 24),
    ("purposes_li_transparency", 24),
    ("purpose_one_treatment", 1),
    ("publisher_cc", 12),
)
_CORE_FIXED_BITS: Final = sum(width for _, width in TCF_CORE_BITS)  # 213
_B64URL: Final = re.compile(r"^[A-Za-z0-9_-]+$")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class TcfConsent:
    """The fixed fields of a TCF v2 core segment (vendor sections are not read)."""

    version: int
    created: datetime
    last_updated: datetime
    cmp_id: int
    cmp_version: int
    consent_screen: int
    consent_language: str
    vendor_list_version: int
    tcf_policy_version: int
    is_service_specific: bool
    use_non_standard_texts: bool
    special_feature_opt_ins: frozenset[int]
    purposes_consent: frozenset[int]
    purposes_li_transparency: frozenset[int]
    purpose_one_treatment: bool
    publisher_cc: str


def _bitset(value: int, width: int) -> frozenset[int]:
    """Bit i (1-based, most significant first) set -> i in the result."""
    return frozenset(i for i in range(1, width + 1) if value >> (width - i) & 1)


def _letters(value: int) -> str:
    first, second = value >> 6, value & 0x3F
    if first > 25 or second > 25:
        raise TcfDecodeError("language or country code is not two letters A-Z")
    return chr(ord("A") + first) + chr(ord("A") + second)


def decode_tcf(tc_string: str) -> TcfConsent:
    """Decode the core segment of an IAB TCF v2 TC string (the part before the first ``.``).

    Raises :class:`TcfDecodeError` for anything that is not a version-2 core segment of at
    least 213 bits in base64url.
    """
    if not isinstance(tc_string, str) or not tc_string.strip():
        raise TcfDecodeError("empty TC string")
    core = tc_string.strip().split(".", 1)[0]
    if not _B64URL.match(core):
        raise TcfDecodeError("TC string core segment is not base64url")
    try:
        raw = base64.urlsafe_b64decode(core + "=" * (-len(core) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TcfDecodeError("TC string core segment is not base64url") from exc
    total_bits = len(raw) * 8
    if total_bits < _CORE_FIXED_BITS:
        raise TcfDecodeError(
            f"TC string core segment too short: {total_bits} bits < {_CORE_FIXED_BITS}"
        )
    bits = int.from_bytes(raw, "big")
    fields: dict[str, int] = {}
    offset = 0
    for name, width in TCF_CORE_BITS:
        fields[name] = bits >> (total_bits - offset - width) & ((1 << width) - 1)
        offset += width
    if fields["version"] != 2:
        raise TcfDecodeError(f"unsupported TCF version {fields['version']} (need 2)")
    return TcfConsent(
        version=fields["version"],
        created=_EPOCH + timedelta(milliseconds=fields["created"] * 100),
        last_updated=_EPOCH + timedelta(milliseconds=fields["last_updated"] * 100),
        cmp_id=fields["cmp_id"],
        cmp_version=fields["cmp_version"],
        consent_screen=fields["consent_screen"],
        consent_language=_letters(fields["consent_language"]),
        vendor_list_version=fields["vendor_list_version"],
        tcf_policy_version=fields["tcf_policy_version"],
        is_service_specific=bool(fields["is_service_specific"]),
        use_non_standard_texts=bool(fields["use_non_standard_texts"]),
        special_feature_opt_ins=_bitset(fields["special_feature_opt_ins"], 12),
        purposes_consent=_bitset(fields["purposes_consent"], 24),
        purposes_li_transparency=_bitset(fields["purposes_li_transparency"], 24),
        purpose_one_treatment=bool(fields["purpose_one_treatment"]),
        publisher_cc=_letters(fields["publisher_cc"]),
    )


#: TCF v2.2 purposes whose CONSENT bits must all be set for a Loom purpose to be granted.
#: Purpose 1 (store/access information on a device) is required for everything. Legitimate
#: interest bits never grant anything. TCF does not cover first-party ``marketing``.
TCF_PURPOSES_REQUIRED: Final[Mapping[Purpose, frozenset[int]]] = {
    # 8 measure content performance, 9 understand audiences (statistics, combined sources),
    # 10 develop and improve services
    Purpose.ANALYTICS: frozenset({1, 8, 9, 10}),
    # 5 create profiles to personalise content, 6 use profiles to select personalised content
    Purpose.PERSONALIZATION: frozenset({1, 5, 6}),
    # 2 limited data to select ads, 3 create ad profiles, 4 use ad profiles,
    # 7 measure advertising performance
    Purpose.ADS: frozenset({1, 2, 3, 4, 7}),
}


def from_tcf(tc: TcfConsent | str) -> dict[Purpose, bool]:
    """Translate a TC string (or a decoded one) into analytics, personalization and ads.

    Raises :class:`TcfDecodeError` for an undecodable string.
    """
    decoded = decode_tcf(tc) if isinstance(tc, str) else tc
    return {
        purpose: required <= decoded.purposes_consent
        for purpose, required in TCF_PURPOSES_REQUIRED.items()
    }
