"""Consent policy: jurisdiction defaults, TOML loading, fail-closed validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from resolvers.consent import (
    EEA_REGIONS,
    ConsentPolicy,
    PolicyError,
    Purpose,
    load_policy,
    policy_from_mapping,
)

A, P, M, D = Purpose.ANALYTICS, Purpose.PERSONALIZATION, Purpose.MARKETING, Purpose.ADS
DEFAULTS_FILE = Path(__file__).resolve().parents[2] / "docs" / "consent-defaults.toml"


def test_documented_defaults_file_is_the_builtin_policy() -> None:
    assert load_policy(DEFAULTS_FILE) == ConsentPolicy()


def test_eea_has_30_countries() -> None:
    assert len(EEA_REGIONS) == 30
    assert {"NO", "IS", "LI", "DE", "FR"} <= EEA_REGIONS
    assert "GB" not in EEA_REGIONS
    assert "CH" not in EEA_REGIONS


@pytest.mark.parametrize(
    ("region", "kind", "granted"),
    [
        ("NO", "opt_in", frozenset()),
        ("de", "opt_in", frozenset()),
        (" FR ", "opt_in", frozenset()),
        ("GB", "opt_in", frozenset()),
        ("UK", "opt_in", frozenset()),  # alias
        ("EL", "opt_in", frozenset()),  # EU code for Greece
        ("CH", "opt_in", frozenset()),
        ("US", "opt_out", frozenset({A, P})),
        ("us", "opt_out", frozenset({A, P})),
        ("BR", "unknown", frozenset()),
        ("JP", "unknown", frozenset()),
        (None, "unknown", frozenset()),
        ("", "unknown", frozenset()),
        ("USA", "unknown", frozenset()),
        ("1A", "unknown", frozenset()),
    ],
)
def test_default_for_region(region: str | None, kind: str, granted: frozenset[Purpose]) -> None:
    policy = ConsentPolicy()
    assert policy.jurisdiction(region) == kind
    assert policy.default_for(region) == granted
    assert M not in policy.default_for(region)
    assert D not in policy.default_for(region)


def test_overrides_apply_to_unlisted_regions() -> None:
    policy = policy_from_mapping({"overrides": {"ca": ["analytics"]}})
    assert policy.jurisdiction("CA") == "override"
    assert policy.default_for("CA") == {A}


def test_partial_file_keeps_builtin_defaults() -> None:
    policy = policy_from_mapping({"version": "v9", "jurisdictions": {"opt_out": {"regions": []}}})
    assert policy.version == "v9"
    assert policy.default_for("US") == frozenset()  # US now unknown -> nothing
    assert policy.opt_in_regions == ConsentPolicy().opt_in_regions


def test_necessary_in_a_default_list_is_implicit() -> None:
    policy = policy_from_mapping({"jurisdictions": {"unknown": {"default": ["necessary"]}}})
    assert policy.unknown_default == frozenset()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"jurisdictions": {"unknown": {"default": ["ads"]}}}, "marketing or ads"),
        ({"jurisdictions": {"unknown": {"default": ["marketing"]}}}, "marketing or ads"),
        ({"jurisdictions": {"opt_out": {"regions": ["DE"]}}}, "both opt-in and opt-out"),
        ({"overrides": {"DE": ["analytics"]}}, "cannot be overridden"),
        ({"jurisdictions": {"opt_out": {"default": ["analytic"]}}}, "unknown purpose"),
        ({"jurisdictions": {"opt_in": {"default": ["analytics"]}}}, "unknown keys"),
        ({"jurisdictions": {"elsewhere": {}}}, "unknown jurisdictions"),
        ({"verison": "x"}, "unknown policy keys"),
        ({"jurisdictions": {"opt_in": {"regions": ["Germany"]}}}, "ISO 3166"),
        ({"max_explicit_grants": 0}, "max_explicit_grants"),
        ({"max_explicit_grants": "32"}, "integer"),
        ({"version": " "}, "version"),
        ({"aliases": {"UK": "Britain"}}, "ISO 3166"),
        ({"jurisdictions": {"opt_out": {"regions": "US"}}}, "must be a list"),
    ],
)
def test_invalid_policies_fail_loudly(data: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        policy_from_mapping(data)


def test_invalid_toml_is_a_policy_error(tmp_path: Path) -> None:
    bad = tmp_path / "p.toml"
    bad.write_text("version = \n")
    with pytest.raises(PolicyError, match="invalid TOML"):
        load_policy(bad)


def test_load_policy_reads_a_custom_file(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        'version = "acme-7"\nmax_explicit_grants = 4\n'
        '[jurisdictions.opt_out]\nregions = ["US", "CA"]\ndefault = ["analytics", "marketing"]\n'
    )
    policy = load_policy(path)
    assert policy.version == "acme-7"
    assert policy.max_explicit_grants == 4
    assert policy.default_for("CA") == {A, M}
    assert policy.default_for("DE") == frozenset()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # an alias is a spelling: it may not move an opt-in region to another jurisdiction,
        # which the file refuses when said directly (opt_out.regions = ["DE"], above)
        ({"aliases": {"DE": "US"}}, "opt-in regions cannot be aliased"),
        ({"aliases": {"FR": "CA"}, "overrides": {"CA": ["analytics"]}}, "cannot be aliased"),
        # an override under an alias of an opt-in region (UK is GB) is refused, not ignored
        ({"overrides": {"UK": ["analytics"]}}, "cannot be overridden"),
    ],
)
def test_aliases_do_not_take_an_opt_in_region_out_of_it(
    data: dict[str, object], message: str
) -> None:
    with pytest.raises(PolicyError, match=message):
        policy_from_mapping(data)
