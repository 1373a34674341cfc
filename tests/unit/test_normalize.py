"""Identifier normalization: table-driven, real-world variants."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.identifiers import Identifier
from schemas.normalize import (
    DEFAULT,
    NormalizeConfig,
    Rejected,
    _normalize_default,
    is_blocked,
    normalize_identifiers,
    normalize_one,
)

ACCEPTED = [
    # (type, raw, region, canonical)
    ("email", " Jane.Doe@Example.COM ", None, "jane.doe@example.com"),
    ("email", "jane.doe+shop@gmail.com", None, "jane.doe+shop@gmail.com"),
    ("email", "ola@xn--sm-xia.no", "NO", "ola@xn--sm-xia.no"),
    ("email", "JOSE\u0301@Example.no", None, "jos\u00e9@example.no"),  # NFD: NFC
    ("email", "jos\u00e9@example.no", None, "jos\u00e9@example.no"),
    ("email", "noemailplease@shop.no", None, "noemailplease@shop.no"),  # not a placeholder
    ("email", "nora+none@shop.no", None, "nora+none@shop.no"),
    ("phone", "+47 912 34 567", None, "+4791234567"),
    ("phone", "+47 912 34 567", "US", "+4791234567"),
    ("phone", "0047 91234567", "NO", "+4791234567"),
    ("phone", "0047 91234567", None, "+4791234567"),
    ("phone", "912 34 567", "NO", "+4791234567"),
    ("phone", "(415) 555-2671", "US", "+14155552671"),
    ("phone", "415-555-2671", "US", "+14155552671"),
    ("phone", "+1 415 555 2671", "US", "+14155552671"),
    ("phone", "1 415 555 2671", "US", "+14155552671"),
    ("phone", "070-123 45 67", "SE", "+46701234567"),
    ("phone", "07911 123456", "GB", "+447911123456"),
    ("phone", "0151 23456789", "DE", "+4915123456789"),
    ("customer_id", "  C-0042 ", None, "C-0042"),
    ("customer_id", "AbC-9", None, "AbC-9"),  # case preserved
    ("loyalty_id", "LOY123456", None, "LOY123456"),
    ("card_token", "tok_AbC123", None, "tok_AbC123"),
    (
        "anonymous_id",
        "a1b2c3d4-0000-4000-8000-000000000001",
        None,
        "a1b2c3d4-0000-4000-8000-000000000001",
    ),
    ("social_handle", " @Jane_Doe ", None, "jane_doe"),
    ("social_handle", "instagram_user", None, "instagram_user"),
]


@pytest.mark.parametrize(("id_type", "raw", "region", "canonical"), ACCEPTED)
def test_accepted_values_normalize(
    id_type: str, raw: str, region: str | None, canonical: str
) -> None:
    result = normalize_one(id_type, raw, region=region)
    assert result == Identifier(id_type, canonical)
    assert isinstance(result, Identifier)
    assert result.raw == raw


REJECTED = [
    # (type, raw, region, reason)
    ("email", "", None, "empty"),
    ("email", "   ", None, "empty"),
    ("email", "jane.doe", None, "invalid_email"),
    ("email", "jane@localhost", None, "invalid_email"),
    ("email", "jane doe@example.com", None, "invalid_email"),
    ("email", "a@b@c.com", None, "invalid_email"),
    ("email", "test@test.com", None, "blocked_value"),
    ("email", "TEST@TEST.COM", None, "blocked_value"),
    ("email", "noemail@store.com", None, "blocked_value"),
    ("email", "NoEmail@anything.no", None, "blocked_value"),
    ("email", "no@email.com", None, "blocked_value"),
    ("email", "none@shop.se", None, "blocked_value"),
    ("email", "noemail+123@example.com", None, "blocked_value"),  # +tag, . - _ aside
    ("email", "No.Reply@Shop.no", None, "blocked_value"),
    ("email", "do_not.reply+till3@shop.no", None, "blocked_value"),
    ("email", "Test+1@Test.com", None, "blocked_value"),
    ("email", "x" * 250 + "@example.com", None, "too_long"),
    ("phone", "000-000-0000", "US", "blocked_value"),
    ("phone", "0000000000", "US", "blocked_value"),
    ("phone", "9999999999", "US", "blocked_value"),
    ("phone", "+1 999 999 9999", None, "blocked_value"),
    ("phone", "1234567890", "US", "blocked_value"),
    ("phone", "1234567890", None, "blocked_value"),
    ("phone", "123", "NO", "invalid_phone"),
    ("phone", "912 34 567", None, "invalid_phone"),  # national number, no region
    ("phone", "not a phone", "NO", "invalid_phone"),
    ("phone", "+1 123 456 7891", None, "invalid_phone"),  # area code 123 does not exist
    ("phone", "null", "US", "blocked_value"),
    ("customer_id", "null", None, "blocked_value"),
    ("customer_id", "NULL", None, "blocked_value"),
    ("customer_id", "None", None, "blocked_value"),
    ("customer_id", "undefined", None, "blocked_value"),
    ("customer_id", "0", None, "blocked_value"),
    ("customer_id", "-1", None, "blocked_value"),
    ("customer_id", "000-000", None, "blocked_value"),
    ("customer_id", "---", None, "blocked_value"),
    ("customer_id", "x" * 257, None, "too_long"),
    ("loyalty_id", "1234567890", None, "blocked_value"),
    ("loyalty_id", "n/a", None, "blocked_value"),
    ("card_token", "0000", None, "blocked_value"),
    ("anonymous_id", "anonymous", None, "blocked_value"),
    ("anonymous_id", "Guest", None, "blocked_value"),
    ("social_handle", "@", None, "empty"),
    ("favourite_color", "blue", None, "unknown_type"),
]


@pytest.mark.parametrize(("id_type", "raw", "region", "reason"), REJECTED)
def test_rejected_values_with_reason(
    id_type: str, raw: str, region: str | None, reason: str
) -> None:
    assert normalize_one(id_type, raw, region=region) == Rejected(id_type, reason)  # type: ignore[arg-type]


def test_rejected_carries_no_value() -> None:
    result = normalize_identifiers({"email": "noemail@store.com"}, region=None)
    assert result.accepted == ()
    (rej,) = result.rejected
    assert "noemail" not in repr(rej)
    assert not hasattr(rej, "value")
    assert not hasattr(rej, "raw")


def test_none_is_absent_not_rejected() -> None:
    result = normalize_identifiers({"email": None, "phone": None}, region="NO")
    assert result.accepted == ()
    assert result.rejected == ()


def test_accepted_sorted_most_stable_first() -> None:
    ids = {
        "anonymous_id": "anon-1",
        "phone": "+47 912 34 567",
        "email": "A@B.no",
        "customer_id": "C1",
        "loyalty_id": "L1",
        "social_handle": "@x",
        "card_token": "tok",
    }
    result = normalize_identifiers(ids, region="NO")
    assert [i.type for i in result.accepted] == [
        "customer_id",
        "loyalty_id",
        "email",
        "phone",
        "card_token",
        "social_handle",
        "anonymous_id",
    ]
    assert result.get("email") == Identifier("email", "a@b.no")
    assert result.get("missing") is None


def test_mixed_accept_and_reject() -> None:
    result = normalize_identifiers(
        {"email": " Jane@X.com", "phone": "1234567890", "customer_id": "guest"}, region="US"
    )
    assert result.accepted == (Identifier("email", "jane@x.com"),)
    assert set(result.rejected) == {
        Rejected("phone", "blocked_value"),
        Rejected("customer_id", "blocked_value"),
    }


def test_gmail_normalization_is_off_by_default_and_configurable() -> None:
    raw = "Jane.Doe+Shop@GoogleMail.com"
    assert normalize_one("email", raw, region=None) == Identifier(
        "email", "jane.doe+shop@googlemail.com"
    )
    cfg = NormalizeConfig(gmail_normalization=True)
    assert normalize_one("email", raw, region=None, config=cfg) == Identifier(
        "email", "janedoe@gmail.com"
    )
    # other domains untouched even with the flag
    assert normalize_one("email", "a.b+c@example.com", region=None, config=cfg) == Identifier(
        "email", "a.b+c@example.com"
    )


def test_custom_types_are_trimmed_and_blockable() -> None:
    cfg = NormalizeConfig(
        custom_types=("member_no",),
        blocked_patterns={"member_no": (r"TEST-\d+",), "*": (r"dummy.*",)},
    )
    assert normalize_one("member_no", "  M-77 ", region=None, config=cfg) == Identifier(
        "member_no", "M-77"
    )
    assert normalize_one("member_no", "test-12", region=None, config=cfg) == Rejected(
        "member_no", "blocked_value"
    )
    assert normalize_one("customer_id", "DUMMY-1", region=None, config=cfg) == Rejected(
        "customer_id", "blocked_value"
    )
    # the default config knows nothing of member_no
    assert normalize_one("member_no", "M-77", region=None) == Rejected("member_no", "unknown_type")


@pytest.mark.parametrize(
    ("id_type", "value", "blocked"),
    [
        ("email", "test@test.com", True),
        ("email", "noemail@store.com", True),
        ("email", "jane@example.com", False),
        ("phone", "+10000000000", True),
        ("phone", "+4799999999", True),
        ("phone", "+14155552671", False),
        ("customer_id", "guest", True),
        ("customer_id", "1234567890", True),
        ("customer_id", "C-1", False),
        ("anonymous_id", "undefined", True),
        ("loyalty_id", "0000", True),
    ],
)
def test_is_blocked(id_type: str, value: str, blocked: bool) -> None:
    assert is_blocked(id_type, value) is blocked
    assert is_blocked(id_type, value, DEFAULT) is blocked


def test_config_blocked_values_replace_defaults() -> None:
    cfg = NormalizeConfig(blocked_values=frozenset({"house"}))
    assert is_blocked("customer_id", "HOUSE", cfg)
    assert not is_blocked("customer_id", "guest", cfg)


@settings(max_examples=150, deadline=None)
@given(
    id_type=st.sampled_from(
        [
            "email",
            "phone",
            "customer_id",
            "loyalty_id",
            "card_token",
            "anonymous_id",
            "social_handle",
        ]
    ),
    raw=st.text(max_size=80),
    region=st.sampled_from([None, "NO", "SE", "DE", "GB", "US"]),
)
def test_never_crashes_and_is_idempotent(id_type: str, raw: str, region: str | None) -> None:
    result = normalize_one(id_type, raw, region=region)
    if isinstance(result, Identifier):
        assert not is_blocked(id_type, result.value)
        again = normalize_one(id_type, result.value, region=region)
        assert again == result


REGIONS = [None, "NO", "SE", "DE", "US"]


def test_the_memo_keeps_one_entry_per_value_whatever_the_region_except_for_phones() -> None:
    """The workers' memo (the default configuration) is keyed by region only where the
    region changes the answer: a phone number without a country code."""
    _normalize_default.cache_clear()
    ids = {
        "email": "Jane.Doe@Example.com",
        "customer_id": "C-1001",
        "social_handle": "@Jane",
        "anonymous_id": "a-77",
        "phone": "912 34 567",
    }
    results = [normalize_identifiers(ids, region=region) for region in REGIONS]
    assert _normalize_default.cache_info().currsize == 4 + len(REGIONS)  # 4 values, 5 phones
    assert {r.get("email") for r in results} == {Identifier("email", "jane.doe@example.com",
                                                            "Jane.Doe@Example.com")}  # fmt: skip
    # ... and a phone's answer does depend on it: a national number is one only in its country
    assert [str(r.get("phone")) for r in results[:2]] == ["None", "phone:+4791234567"]


@settings(max_examples=300)
@given(
    id_type=st.sampled_from(
        ["email", "customer_id", "loyalty_id", "card_token", "anonymous_id", "social_handle"]
    ),
    raw=st.text(max_size=40),
    first=st.sampled_from(REGIONS),
    then=st.sampled_from(REGIONS),
)
def test_a_memoized_value_of_a_regionless_type_is_the_answer_in_any_region(
    id_type: str, raw: str, first: str | None, then: str | None
) -> None:
    normalize_identifiers({id_type: raw}, region=first)  # memoized under `first`'s call
    memo = normalize_identifiers({id_type: raw}, region=then)
    direct = normalize_one(id_type, raw, region=then)
    assert (memo.accepted or memo.rejected) == (direct,)
