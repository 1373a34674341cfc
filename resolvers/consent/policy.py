"""Jurisdiction defaults: which purposes a region grants when the person chose nothing.

Opt-in regions (the EEA, GB, CH) grant nothing but ``necessary``; opt-out regions (US) grant
analytics and personalization; an unknown region grants nothing, and may never be configured
to grant marketing or ads. :func:`load_policy` reads the TOML format documented in
``docs/consent-defaults.toml``; unknown keys are errors (typos fail loudly).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final

from resolvers.consent.errors import PolicyError
from resolvers.consent.vocabulary import EEA_REGIONS, Purpose

MAX_EXPLICIT_GRANTS: Final = 32


_REGION = re.compile(r"^[A-Z]{2}$")
_NEVER_BY_DEFAULT_UNKNOWN: Final = frozenset({Purpose.MARKETING, Purpose.ADS})


def _purposes(values: Iterable[object], what: str) -> frozenset[Purpose]:
    out: set[Purpose] = set()
    for value in values:
        try:
            purpose = Purpose(str(value))
        except ValueError as exc:
            raise PolicyError(f"{what}: unknown purpose {value!r}") from exc
        if purpose is not Purpose.NECESSARY:
            out.add(purpose)
    return frozenset(out)


def _regions(values: Iterable[object], what: str) -> frozenset[str]:
    out = frozenset(str(v).strip().upper() for v in values)
    bad = sorted(r for r in out if not _REGION.match(r))
    if bad:
        raise PolicyError(f"{what}: not ISO 3166-1 alpha-2 codes: {bad}")
    return out


@dataclass(frozen=True, slots=True)
class ConsentPolicy:
    """Jurisdiction defaults. ``necessary`` is implicit; opt-in regions grant nothing else."""

    version: str = "loom-consent-2025.1"
    opt_in_regions: frozenset[str] = EEA_REGIONS | frozenset({"GB", "CH"})
    opt_out_regions: frozenset[str] = frozenset({"US"})
    opt_out_default: frozenset[Purpose] = frozenset({Purpose.ANALYTICS, Purpose.PERSONALIZATION})
    unknown_default: frozenset[Purpose] = frozenset()
    region_overrides: Mapping[str, frozenset[Purpose]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    region_aliases: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({"UK": "GB", "EL": "GR"})
    )
    max_explicit_grants: int = MAX_EXPLICIT_GRANTS
    #: default_for's answers per region as given (asked per fact and purpose: memoized)
    _defaults: dict[str | None, frozenset[Purpose]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not self.version.strip():
            raise PolicyError("version must not be empty")
        opt_in = _regions(self.opt_in_regions, "opt_in regions")
        opt_out = _regions(self.opt_out_regions, "opt_out regions")
        both = sorted(opt_in & opt_out)
        if both:
            raise PolicyError(f"regions both opt-in and opt-out: {both}")
        unknown_default = _purposes(self.unknown_default, "unknown default")
        if unknown_default & _NEVER_BY_DEFAULT_UNKNOWN:
            raise PolicyError("the unknown-region default may not grant marketing or ads")
        overrides = {
            str(r).strip().upper(): _purposes(ps, f"override {r}")
            for r, ps in self.region_overrides.items()
        }
        _regions(overrides, "overrides")
        aliases = {
            str(a).strip().upper(): str(t).strip().upper() for a, t in self.region_aliases.items()
        }
        _regions(list(aliases) + list(aliases.values()), "aliases")
        # an alias is a spelling: it may not move an opt-in region out of its jurisdiction,
        # nor hide one under an override (``jurisdiction`` reads the code after aliases)
        moved = sorted(a for a, t in aliases.items() if a in opt_in and t not in opt_in)
        if moved:
            raise PolicyError(f"opt-in regions cannot be aliased to another region: {moved}")
        in_opt_in = sorted(r for r, ps in overrides.items() if aliases.get(r, r) in opt_in and ps)
        if in_opt_in:
            raise PolicyError(
                f"opt-in regions cannot be overridden to grant by default: {in_opt_in}"
            )
        if self.max_explicit_grants < 1:
            raise PolicyError("max_explicit_grants must be >= 1")
        object.__setattr__(self, "opt_in_regions", opt_in)
        object.__setattr__(self, "opt_out_regions", opt_out)
        object.__setattr__(self, "opt_out_default", _purposes(self.opt_out_default, "opt-out"))
        object.__setattr__(self, "unknown_default", unknown_default)
        object.__setattr__(self, "region_overrides", MappingProxyType(overrides))
        object.__setattr__(self, "region_aliases", MappingProxyType(aliases))

    def canonical_region(self, region: str | None) -> str | None:
        """Upper-cased ISO code after aliases (``UK`` -> ``GB``); ``None`` if not a code."""
        if region is None:
            return None
        code = region.strip().upper()
        code = self.region_aliases.get(code, code)
        return code if _REGION.match(code) else None

    def jurisdiction(self, region: str | None) -> str:
        """``opt_in``, ``opt_out``, ``override`` or ``unknown``."""
        code = self.canonical_region(region)
        if code is None:
            return "unknown"
        if code in self.opt_in_regions:
            return "opt_in"
        if code in self.region_overrides:
            return "override"
        if code in self.opt_out_regions:
            return "opt_out"
        return "unknown"

    def default_for(self, region: str | None) -> frozenset[Purpose]:
        """Purposes (besides ``necessary``) granted by default in ``region``."""
        found = self._defaults.get(region)
        if found is None:
            found = self._default_for(region)
            if len(self._defaults) < 4096:  # regions come from events: bounded
                self._defaults[region] = found
        return found

    def _default_for(self, region: str | None) -> frozenset[Purpose]:
        kind = self.jurisdiction(region)
        if kind == "opt_in":
            return frozenset()
        if kind == "override":
            code = self.canonical_region(region)
            assert code is not None
            return self.region_overrides[code]
        if kind == "opt_out":
            return self.opt_out_default
        return self.unknown_default


_POLICY_KEYS: Final = frozenset(
    {"version", "max_explicit_grants", "jurisdictions", "overrides", "aliases"}
)


def policy_from_mapping(data: Mapping[str, object]) -> ConsentPolicy:
    """Build a policy from the TOML structure documented in ``docs/consent-defaults.toml``.

    Keys left out keep the built-in defaults; unknown keys are an error (typos fail loudly).
    """
    unknown = sorted(set(data) - _POLICY_KEYS)
    if unknown:
        raise PolicyError(f"unknown policy keys: {unknown}")
    kwargs: dict[str, object] = {}
    if "version" in data:
        kwargs["version"] = str(data["version"])
    if "max_explicit_grants" in data:
        value = data["max_explicit_grants"]
        if not isinstance(value, int) or isinstance(value, bool):
            raise PolicyError("max_explicit_grants must be an integer")
        kwargs["max_explicit_grants"] = value
    jurisdictions = _table(data.get("jurisdictions", {}), "jurisdictions")
    extra = sorted(set(jurisdictions) - {"opt_in", "opt_out", "unknown"})
    if extra:
        raise PolicyError(f"unknown jurisdictions: {extra}")
    opt_in = _table(jurisdictions.get("opt_in", {}), "jurisdictions.opt_in")
    _only(opt_in, {"regions"}, "jurisdictions.opt_in")
    if "regions" in opt_in:
        kwargs["opt_in_regions"] = _regions(_list(opt_in["regions"], "opt_in.regions"), "opt_in")
    opt_out = _table(jurisdictions.get("opt_out", {}), "jurisdictions.opt_out")
    _only(opt_out, {"regions", "default"}, "jurisdictions.opt_out")
    if "regions" in opt_out:
        kwargs["opt_out_regions"] = _regions(
            _list(opt_out["regions"], "opt_out.regions"), "opt_out"
        )
    if "default" in opt_out:
        kwargs["opt_out_default"] = _purposes(
            _list(opt_out["default"], "opt_out.default"), "opt_out"
        )
    unknown_j = _table(jurisdictions.get("unknown", {}), "jurisdictions.unknown")
    _only(unknown_j, {"default"}, "jurisdictions.unknown")
    if "default" in unknown_j:
        kwargs["unknown_default"] = _purposes(
            _list(unknown_j["default"], "unknown.default"), "unknown"
        )
    if "overrides" in data:
        overrides = _table(data["overrides"], "overrides")
        kwargs["region_overrides"] = {
            str(r): _purposes(_list(ps, f"overrides.{r}"), f"overrides.{r}")
            for r, ps in overrides.items()
        }
    if "aliases" in data:
        kwargs["region_aliases"] = {
            str(a): str(t) for a, t in _table(data["aliases"], "aliases").items()
        }
    return ConsentPolicy(**kwargs)  # type: ignore[arg-type]


def _table(value: object, what: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise PolicyError(f"{what} must be a table")
    return value


def _list(value: object, what: str) -> list[object]:
    if not isinstance(value, list):
        raise PolicyError(f"{what} must be a list")
    return value


def _only(table: Mapping[str, object], allowed: set[str], what: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise PolicyError(f"unknown keys in {what}: {extra}")


def load_policy(path: str | Path) -> ConsentPolicy:
    """Read a policy TOML file (format: ``docs/consent-defaults.toml``)."""
    try:
        with Path(path).open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: invalid TOML: {exc}") from exc
    return policy_from_mapping(data)
