"""Vendor consent formats: Segment/OneTrust categories, Google Consent Mode v2, IAB TCF v2.2."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolvers.consent import Purpose
from resolvers.consent.formats import (
    TCF_CORE_BITS,
    TcfDecodeError,
    decode_tcf,
    from_gcm,
    from_segment,
    from_tcf,
)

A, P, M, D = Purpose.ANALYTICS, Purpose.PERSONALIZATION, Purpose.MARKETING, Purpose.ADS


# ---------------------------------------------------------------------------------------------
# A TC string encoder written independently of the decoder: fields as '0'/'1' text, in spec order
# ---------------------------------------------------------------------------------------------


def _bits(value: int, width: int) -> str:
    assert 0 <= value < 1 << width
    return format(value, f"0{width}b")


def _letters(code: str) -> str:
    return _bits(ord(code[0]) - 65, 6) + _bits(ord(code[1]) - 65, 6)


def _bitfield(ids: set[int], width: int) -> str:
    return "".join("1" if i in ids else "0" for i in range(1, width + 1))


def encode_core(
    *,
    version: int = 2,
    created_ds: int = 16_000_000_000,
    updated_ds: int = 16_000_000_010,
    cmp_id: int = 300,
    cmp_version: int = 4,
    screen: int = 1,
    language: str = "NO",
    vlv: int = 150,
    policy: int = 4,
    service_specific: bool = True,
    non_standard: bool = False,
    special: set[int] | None = None,
    purposes: set[int] | None = None,
    li: set[int] | None = None,
    p1_treatment: bool = False,
    publisher_cc: str = "NO",
    vendor_section: str = "0000000000000011" + "0" + "11",  # MaxVendorId=3, bitfield 0,1,1
) -> str:
    text = (
        _bits(version, 6)
        + _bits(created_ds, 36)
        + _bits(updated_ds, 36)
        + _bits(cmp_id, 12)
        + _bits(cmp_version, 12)
        + _bits(screen, 6)
        + _letters(language)
        + _bits(vlv, 12)
        + _bits(policy, 6)
        + ("1" if service_specific else "0")
        + ("1" if non_standard else "0")
        + _bitfield(special or set(), 12)
        + _bitfield(purposes or set(), 24)
        + _bitfield(li or set(), 24)
        + ("1" if p1_treatment else "0")
        + _letters(publisher_cc)
        + vendor_section
    )
    text += "0" * (-len(text) % 8)
    raw = int(text, 2).to_bytes(len(text) // 8, "big")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_core_layout_is_213_fixed_bits() -> None:
    assert sum(width for _, width in TCF_CORE_BITS) == 213


def test_decode_matches_bit_by_bit_encoding() -> None:
    tc = encode_core(
        created_ds=16_500_000_007,
        updated_ds=17_000_000_003,
        cmp_id=4095,
        cmp_version=17,
        screen=63,
        language="DE",
        vlv=321,
        policy=4,
        special={1, 12},
        purposes={1, 2, 7, 24},
        li={2, 11},
        p1_treatment=True,
        publisher_cc="ZZ",
    )
    got = decode_tcf(tc)
    assert got.version == 2
    assert got.created == datetime(2022, 4, 15, 5, 20, 0, 700000, tzinfo=UTC)
    assert got.last_updated == datetime(2023, 11, 14, 22, 13, 20, 300000, tzinfo=UTC)
    assert (got.cmp_id, got.cmp_version, got.consent_screen) == (4095, 17, 63)
    assert got.consent_language == "DE"
    assert (got.vendor_list_version, got.tcf_policy_version) == (321, 4)
    assert got.is_service_specific is True
    assert got.use_non_standard_texts is False
    assert got.special_feature_opt_ins == {1, 12}
    assert got.purposes_consent == {1, 2, 7, 24}
    assert got.purposes_li_transparency == {2, 11}
    assert got.purpose_one_treatment is True
    assert got.publisher_cc == "ZZ"


@settings(max_examples=100, deadline=None)
@given(
    purposes=st.sets(st.integers(1, 24)),
    li=st.sets(st.integers(1, 24)),
    special=st.sets(st.integers(1, 12)),
    cmp_id=st.integers(0, 4095),
    created=st.integers(0, 2**36 - 1),
)
def test_decode_roundtrips_any_encoded_core(
    purposes: set[int], li: set[int], special: set[int], cmp_id: int, created: int
) -> None:
    got = decode_tcf(
        encode_core(purposes=purposes, li=li, special=special, cmp_id=cmp_id, created_ds=created)
    )
    assert got.purposes_consent == purposes
    assert got.purposes_li_transparency == li
    assert got.special_feature_opt_ins == special
    assert got.cmp_id == cmp_id
    assert int((got.created - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 10) == created


def test_decode_ignores_segments_after_the_core() -> None:
    tc = encode_core(purposes={1, 9})
    assert decode_tcf(tc + ".YAAAAAAAAXA").purposes_consent == {1, 9}


# Public examples with independently published decodings (GDPR::IAB::TCFv2 test-suite, CPAN,
# t/01-parse.t): created 1228644257.7 s, last updated 1326215413.4 s, CMP 21 v7, screen 2, EN,
# vendor list 23, policy 2, service-specific, special feature 2, purposes consent {1,3,9,10},
# LI {3,4,5,8,9,10}, publisher country KM.
PUBLIC_BITFIELD = (
    "CLcVDxRMWfGmWAVAHCENAXCkAKDAADnAABRgA5mdfCKZuYJez-NQm0TBMYA4oCAAGQYIAAAAAAEAIAEgAA"
)
PUBLIC_RANGE = (
    "COyfVVoOyfVVoADACHENAwCAAAAAAAAAAAAAE5QBgALgAqgD8AQACSwEygJyAnSAMABgAFkAgQCDASeAmYBOgAA"
)


def test_decode_public_example_bitfield() -> None:
    got = decode_tcf(PUBLIC_BITFIELD)
    assert got.version == 2
    assert got.created == datetime.fromtimestamp(1228644257.7, tz=UTC)
    assert got.last_updated == datetime.fromtimestamp(1326215413.4, tz=UTC)
    assert (got.cmp_id, got.cmp_version, got.consent_screen) == (21, 7, 2)
    assert got.consent_language == "EN"
    assert (got.vendor_list_version, got.tcf_policy_version) == (23, 2)
    assert got.is_service_specific is True
    assert got.use_non_standard_texts is False
    assert got.special_feature_opt_ins == {2}
    assert got.purposes_consent == {1, 3, 9, 10}
    assert got.purposes_li_transparency == {3, 4, 5, 8, 9, 10}
    assert got.purpose_one_treatment is False
    assert got.publisher_cc == "KM"
    # consent {1,3,9,10} lacks 8 (analytics), 5/6 (personalization), 2/4/7 (ads);
    # legitimate interest never grants.
    assert from_tcf(got) == {A: False, P: False, D: False}


def test_decode_public_example_range_no_purposes() -> None:
    got = decode_tcf(PUBLIC_RANGE)
    assert got.created == datetime.fromtimestamp(1587946020, tz=UTC)
    assert (got.cmp_id, got.cmp_version, got.consent_screen) == (3, 2, 7)
    assert got.vendor_list_version == 48
    assert got.purposes_consent == frozenset()
    assert got.publisher_cc == "AA"
    assert from_tcf(PUBLIC_RANGE) == {A: False, P: False, D: False}


@pytest.mark.parametrize(
    ("purposes", "expected"),
    [
        (set(range(1, 12)), {A: True, P: True, D: True}),
        (set(), {A: False, P: False, D: False}),
        ({1, 8, 9, 10}, {A: True, P: False, D: False}),
        ({8, 9, 10}, {A: False, P: False, D: False}),  # purpose 1 (storage) required
        ({1, 8, 9}, {A: False, P: False, D: False}),  # 10 missing
        ({1, 5, 6}, {A: False, P: True, D: False}),
        ({1, 5}, {A: False, P: False, D: False}),
        ({1, 2, 3, 4, 7}, {A: False, P: False, D: True}),
        ({1, 2, 3, 4}, {A: False, P: False, D: False}),  # 7 missing
        (set(range(2, 25)), {A: False, P: False, D: False}),
    ],
)
def test_from_tcf_mapping(purposes: set[int], expected: dict[Purpose, bool]) -> None:
    got = from_tcf(encode_core(purposes=purposes))
    assert got == expected
    assert M not in got  # TCF says nothing about first-party marketing


def test_from_tcf_legitimate_interest_never_grants() -> None:
    assert from_tcf(encode_core(purposes=set(), li=set(range(1, 25)))) == {
        A: False,
        P: False,
        D: False,
    }


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "not base64 !!",
        "CO+/",  # standard base64 alphabet, not base64url
        "COyfVVoOyfVVo",  # too short for the core segment
        "A",  # one char: not even a byte
        ".CLcVDxRMWfGmWAVAHCENAXCkAKDAADnAABRgA5mdfCKZuYJez",  # empty core segment
    ],
)
def test_decode_rejects_garbage(bad: str) -> None:
    with pytest.raises(TcfDecodeError):
        decode_tcf(bad)


def test_decode_rejects_other_versions() -> None:
    with pytest.raises(TcfDecodeError, match="version 1"):
        decode_tcf(encode_core(version=1))
    # A real TCF v1.1 consent string (Consent-String-SDK test-suite) is refused, not misread.
    with pytest.raises(TcfDecodeError):
        decode_tcf("BOVeoB_OVeoFxC-AHAFRBtAAAAAhGAEAD4AXAA2YCEQ")


def test_decode_rejects_non_letter_language() -> None:
    tc = encode_core()
    bits = bin(int.from_bytes(base64.urlsafe_b64decode(tc + "=" * (-len(tc) % 4)), "big"))[2:]
    bits = bits.zfill((len(bits) + 7) // 8 * 8)
    # language starts at bit 108: set the first letter to 63 (not A-Z)
    bad = bits[:108] + "111111" + bits[114:]
    raw = int(bad, 2).to_bytes(len(bad) // 8, "big")
    with pytest.raises(TcfDecodeError, match="two letters"):
        decode_tcf(base64.urlsafe_b64encode(raw).decode().rstrip("="))


def test_tcf_decode_error_is_a_value_error() -> None:
    assert issubclass(TcfDecodeError, ValueError)


# ---------------------------------------------------------------------------------------------
# Segment / OneTrust
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefs", "expected"),
    [
        ({"Analytics": True}, {A: True}),
        ({"Performance": False}, {A: False}),
        ({"Functional": True, "Advertising": True}, {P: True, D: True}),
        ({"Personalization": True}, {P: True}),
        ({"Marketing": True}, {M: True}),
        ({"Targeting": True}, {D: True}),
        ({"DataSharing": False, "Advertising": True}, {D: False}),  # any denial wins
        ({"Advertising": True, "C0004": True}, {D: True}),
        ({"C0002": True, "C0003": False, "C0004": False}, {A: True, P: False, D: False}),
        ({"C0001": True, "Strictly Necessary": True}, {}),  # necessary is implicit
        ({"Unknown Category": True, "Analytics": True}, {A: True}),
        ({"analytics": "true"}, {A: False}),  # not a JSON boolean: fail closed
        ({"Analytics": 1}, {A: False}),
        ({"Analytics": None}, {A: False}),
        ({"social-media": True}, {D: True}),  # names are case and punctuation insensitive
        ({}, {}),
    ],
)
def test_from_segment(prefs: dict[str, object], expected: dict[Purpose, bool]) -> None:
    assert from_segment(prefs) == expected


# ---------------------------------------------------------------------------------------------
# Google Consent Mode v2
# ---------------------------------------------------------------------------------------------

ALL_ADS = {"ad_storage": "granted", "ad_user_data": "granted", "ad_personalization": "granted"}


@pytest.mark.parametrize(
    ("signals", "expected"),
    [
        ({"analytics_storage": "granted"}, {A: True}),
        ({"analytics_storage": "denied"}, {A: False}),
        ({"analytics_storage": "GRANTED"}, {A: True}),
        ({"analytics_storage": "yes"}, {A: False}),  # unknown value: fail closed
        ({"analytics_storage": True}, {A: False}),
        ({"personalization_storage": "granted"}, {P: True}),
        (ALL_ADS, {D: True}),
        ({**ALL_ADS, "ad_user_data": "denied"}, {D: False}),
        ({**ALL_ADS, "ad_personalization": "denied"}, {D: False}),
        ({"ad_storage": "granted"}, {D: False}),  # partial ad state is not enough
        ({"ad_storage": "granted", "ad_user_data": "granted"}, {D: False}),
        ({"functionality_storage": "granted", "security_storage": "granted"}, {}),
        ({}, {}),
    ],
)
def test_from_gcm(signals: dict[str, object], expected: dict[Purpose, bool]) -> None:
    got = from_gcm(signals)
    assert got == expected
    assert M not in got
