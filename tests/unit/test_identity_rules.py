"""Identity rules: defaults, TOML loading and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from resolvers.identity.rules import (
    DEFAULT_LIMITS,
    MAX_BLOCKED_MEMO,
    IdentityRules,
    RulesError,
    load_rules,
    rules_from_mapping,
)
from schemas.identifiers import BUILTIN_TYPES

DOC = Path(__file__).resolve().parents[2] / "docs" / "identity-rules.toml"


def test_documented_file_equals_the_defaults() -> None:
    assert load_rules(DOC) == IdentityRules()


def test_retail_defaults() -> None:
    rules = IdentityRules()
    assert rules.priority == BUILTIN_TYPES
    assert [rules.limit(t) for t in BUILTIN_TYPES] == [1, 1, 5, 5, 10, 5, 50]
    assert rules.unique_types == {"customer_id", "loyalty_id"}
    assert rules.limit("store_member") == 5
    assert rules.quarantine_threshold == 3
    assert rules.cooccurrence_cap("email") == 4
    assert rules.threshold("anonymous_id") == 1  # a device two account ids used is shared
    assert rules.cooccurrence_cap("anonymous_id") == 2
    assert rules.is_device("anonymous_id")
    assert not rules.is_device("card_token")
    assert not rules.is_blocked("phone", "1234567890")


def test_custom_types_rank_after_listed_ones_and_by_name() -> None:
    rules = IdentityRules(priority=("email", "member_no", "customer_id"))
    ordered = sorted(["zeta", "customer_id", "alpha", "email", "member_no"], key=rules.rank)
    assert ordered == ["email", "member_no", "customer_id", "alpha", "zeta"]


def test_load_partial_file_overlays_defaults(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        "[identity]\n"
        'priority = ["customer_id", "member_no", "email"]\n'
        "quarantine_threshold = 5\n"
        "[identity.limits]\n"
        "email = 2\n"
        "member_no = 1\n"
    )
    rules = load_rules(path, is_blocked=lambda t, v: v == "x")
    assert rules.priority == ("customer_id", "member_no", "email")
    assert rules.limit("email") == 2
    assert rules.limit("member_no") == 1
    assert rules.limit("anonymous_id") == DEFAULT_LIMITS["anonymous_id"]
    assert rules.quarantine_threshold == 5
    assert rules.is_blocked("email", "x")


def test_file_making_a_type_unique_needs_no_limit_for_it(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[identity]\nunique_types = ["customer_id", "email"]\n')
    rules = load_rules(path)
    assert rules.unique_types == {"customer_id", "email"}
    assert rules.is_unique("email")
    assert rules.limit("email") == 1
    assert rules.limits["email"] == 1
    assert rules.limit("loyalty_id") == 1  # no longer unique: keeps its default limit
    assert not rules.is_unique("loyalty_id")
    assert rules.limit("phone") == DEFAULT_LIMITS["phone"]
    # an explicit limit other than 1 for a unique type is still refused
    path.write_text('[identity]\nunique_types = ["email"]\n[identity.limits]\nemail = 2\n')
    with pytest.raises(RulesError, match="unique type"):
        load_rules(path)


def test_file_without_identity_table_is_all_defaults(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("[other]\nx = 1\n")
    assert load_rules(path) == IdentityRules()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"prority": []}, "unknown identity rule keys"),
        ({"priority": ["email", "email"]}, "twice"),
        ({"priority": "email"}, "list of non-empty strings"),
        ({"limits": {"email": 0}}, "integer >= 1"),
        ({"limits": {"email": "5"}}, "integer >= 1"),
        ({"limits": {"customer_id": 2}}, "unique type"),
        ({"unique_types": ["email"], "limits": {"email": 5}}, "unique type"),
        ({"quarantine_threshold": 0}, "quarantine_threshold"),
        ({"default_limit": True}, "integer"),
    ],
)
def test_invalid_rules_are_refused(table: dict[str, object], message: str) -> None:
    with pytest.raises(RulesError, match=message):
        rules_from_mapping(table)


def test_malformed_toml_is_a_rules_error(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("[identity\n")
    with pytest.raises(RulesError):
        load_rules(path)


def test_device_types_and_thresholds_come_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        '[identity]\ndevice_types = ["anonymous_id", "kiosk_id"]\n'
        "[identity.quarantine_thresholds]\nkiosk_id = 2\ncard_token = 1\n"
    )
    rules = load_rules(path)
    assert rules.is_device("kiosk_id")
    assert rules.threshold("kiosk_id") == 2
    assert rules.threshold("card_token") == 1
    assert rules.threshold("anonymous_id") == 1  # laid over the defaults, like limits
    assert rules.threshold("email") == rules.quarantine_threshold


def test_a_unique_type_can_not_be_quarantined() -> None:
    with pytest.raises(RulesError, match="never quarantined"):
        IdentityRules(quarantine_thresholds={"customer_id": 2})


def test_rules_are_frozen() -> None:
    rules = IdentityRules()
    with pytest.raises(AttributeError):
        rules.quarantine_threshold = 9  # type: ignore[misc]
    with pytest.raises(TypeError):
        rules.limits["email"] = 9  # type: ignore[index]


def test_blocked_values_are_asked_once_and_remembered_within_a_bound() -> None:
    asked: list[tuple[str, str]] = []

    def is_blocked(id_type: str, value: str) -> bool:
        asked.append((id_type, value))
        return value == "0000"

    rules = IdentityRules(is_blocked=is_blocked)
    for _ in range(2):
        assert rules.blocks(("phone", "0000"))
        assert not rules.blocks(("phone", "+4791"))
    assert asked == [("phone", "0000"), ("phone", "+4791")]
    assert rules.blocked_memo == {("phone", "0000"): True, ("phone", "+4791"): False}
    for n in range(MAX_BLOCKED_MEMO + 10):
        rules.blocks(("email", f"{n}@x"))
    assert len(rules.blocked_memo) <= MAX_BLOCKED_MEMO
    assert rules == IdentityRules(is_blocked=is_blocked)  # the memo is no part of the rules


def test_vouched_keys_are_answered_without_asking_and_the_memo_stays_bounded() -> None:
    asked: list[tuple[str, str]] = []

    def is_blocked(id_type: str, value: str) -> bool:
        asked.append((id_type, value))
        return True

    rules = IdentityRules(is_blocked=is_blocked)
    rules.vouch_unblocked([("email", "a@x.no"), ("phone", "+4791")])
    assert not rules.blocks(("email", "a@x.no"))
    assert asked == []
    assert rules.blocks(("email", "b@x.no"))  # not vouched for: asked
    assert asked == [("email", "b@x.no")]
    for start in range(0, MAX_BLOCKED_MEMO + 600, 500):
        rules.vouch_unblocked([("email", f"{n}@x") for n in range(start, start + 500)])
        assert len(rules.blocked_memo) < MAX_BLOCKED_MEMO  # the next ask empties nothing
    assert not rules.blocks(("email", f"{MAX_BLOCKED_MEMO + 599}@x"))
    assert asked == [("email", "b@x.no")]
