"""Consent policy: which purposes an event may serve, and the consent state it leaves behind.

Pure: no I/O, no clock (``now`` is passed in and only stamps audit records), no faust, Kafka or
Redis. The integrator stores :class:`ConsentState` with the profile, calls :func:`evaluate` once
per event, writes ``new_state``, purges the fields of every purpose in ``revoked`` (see
:data:`PURPOSE_GATES`) in the same atomic write, and publishes ``audit``.

The rules (``docs/consent.md`` is the long form):

* ``necessary`` is always granted; every other purpose must be granted explicitly or by the
  jurisdiction default, and defaults never fail open (unknown region: nothing).
* An event serves a purpose only if the purpose was granted **at the event's time** (its own
  signals, else the stored history as of ``occurred_at``, else the region default) **and** is
  still granted in the latest state. Revocation wins; a later grant does not legitimise an
  earlier event.
* History is ordered by the time of the consent decision, not by arrival: the latest by time
  decides the current state, so an older update arriving late changes nothing current. At equal
  times a denial sorts after a grant (denial wins).
* GPC denies ``ads`` and is recorded, even over a stored grant.
* Each purpose keeps at most ``policy.max_history`` changes; once older ones are dropped, any
  question about a time before the oldest kept change is answered "denied"
  (``history_truncated``).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Final

from resolvers.consent_formats import (
    Purpose,
    TcfDecodeError,
    from_gcm,
    from_segment,
    from_tcf,
)

__all__ = [
    "CONSENT_PURPOSES",
    "EEA_REGIONS",
    "MAX_HISTORY",
    "PURPOSE_GATES",
    "ConsentAuditRecord",
    "ConsentChange",
    "ConsentDecision",
    "ConsentError",
    "ConsentInput",
    "ConsentInputError",
    "ConsentPolicy",
    "ConsentState",
    "ConsentStateError",
    "Decision",
    "PolicyError",
    "Purpose",
    "PurposeHistory",
    "Reason",
    "Source",
    "evaluate",
    "gated_fields",
    "load_policy",
    "merge_states",
    "policy_from_mapping",
]

# --------------------------------------------------------------------------------------------
# Errors
#
#   ValueError
#    └── ConsentError
#         ├── PolicyError          bad policy file / values
#         ├── ConsentStateError    stored state that cannot be read (treat as: deny everything)
#         └── ConsentInputError    programming error in the caller (naive datetime, ...)
# --------------------------------------------------------------------------------------------


class ConsentError(ValueError):
    """Base class of consent errors."""


class PolicyError(ConsentError):
    """The consent policy is invalid."""


class ConsentStateError(ConsentError):
    """A stored consent state cannot be decoded."""


class ConsentInputError(ConsentError):
    """The caller passed an input the policy cannot evaluate."""


# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------

#: Purposes that carry state (``necessary`` never does: it is always granted).
CONSENT_PURPOSES: Final[tuple[Purpose, ...]] = (
    Purpose.ANALYTICS,
    Purpose.PERSONALIZATION,
    Purpose.MARKETING,
    Purpose.ADS,
)

MAX_HISTORY: Final = 32


class Source(StrEnum):
    """Where a recorded consent change came from."""

    EVENT = "event"  # the ``consent`` map of an ordinary event (CMP state at event time)
    CONSENT_UPDATED = "consent_updated"  # the ``consent`` map of a consent_updated event
    GPC = "gpc"  # Global Privacy Control flag: denies ``ads``
    DEFAULT = "default"  # jurisdiction default (never stored; reported in audit)
    SEGMENT = "segment"
    GCM = "gcm"
    TCF = "tcf"
    MERGE = "merge"  # two merged profiles disagreed; the more restrictive value was kept


class Decision(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    PURGE = "purge"  # the purpose was revoked: purge its data from the profile


class Reason(StrEnum):
    """Reason codes in :attr:`ConsentDecision.denied` and audit records."""

    ALWAYS = "always"  # necessary
    GRANTED = "granted"  # explicit grant at event time and still granted
    REGION_DEFAULT = "region_default"  # allowed or denied by the jurisdiction default
    NO_CONSENT = "no_consent"  # an explicit denial was in force at event time
    LATE_GRANT = "late_grant"  # denied at event time, granted only later
    REVOKED = "revoked"  # granted at event time, denied now
    GPC = "gpc"  # Global Privacy Control
    HISTORY_TRUNCATED = "history_truncated"  # event older than the kept history
    INVALID_SIGNAL = "invalid_signal"  # the event carried an unreadable consent signal


#: Countries of the European Economic Area (EU 27 + Iceland, Liechtenstein, Norway).
EEA_REGIONS: Final[frozenset[str]] = frozenset(
    {
        "AT",
        "BE",
        "BG",
        "HR",
        "CY",
        "CZ",
        "DK",
        "EE",
        "FI",
        "FR",
        "DE",
        "GR",
        "HU",
        "IE",
        "IT",
        "LV",
        "LT",
        "LU",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SK",
        "SI",
        "ES",
        "SE",
        "IS",
        "LI",
        "NO",
    }
)

#: Snapshot fields each purpose gates. A field not listed here (identifiers, traits needed to
#: serve the customer, the consent state itself, merged-from ids, version) is kept regardless.
#: ``resolvers/profile.py`` uses exactly these names.
PURPOSE_GATES: Final[Mapping[Purpose, frozenset[str]]] = MappingProxyType(
    {
        Purpose.ANALYTICS: frozenset(
            {
                "first_seen",
                "last_seen",
                "channels",
                "shopping_mode",
                "orders_online",
                "orders_in_store",
                "revenue",
                "average_order_value",
                "last_order",
                "preferred_payment_method",
                "preferred_store",
                "returns",
            }
        ),
        Purpose.PERSONALIZATION: frozenset(
            {"category_affinities", "recent_activity", "preferences"}
        ),
        Purpose.MARKETING: frozenset({"reachable", "audiences"}),
        Purpose.ADS: frozenset({"ad_identifiers"}),
    }
)


def gated_fields(purposes: Iterable[Purpose]) -> frozenset[str]:
    """The snapshot fields gated by any of ``purposes`` (e.g. the revoked or denied ones)."""
    out: set[str] = set()
    for purpose in purposes:
        out |= PURPOSE_GATES.get(purpose, frozenset())
    return frozenset(out)


def _utc(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConsentInputError(f"{what} must be timezone-aware")
    return value.astimezone(UTC)


# --------------------------------------------------------------------------------------------
# Stored state
# --------------------------------------------------------------------------------------------

_SOURCES: Final = frozenset(s.value for s in Source)


@dataclass(frozen=True, slots=True)
class ConsentChange:
    """One recorded consent decision for one purpose, at the time it was made."""

    granted: bool
    at: datetime
    source: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", _utc(self.at, "ConsentChange.at"))
        if self.source not in _SOURCES:
            raise ConsentInputError(f"unknown consent source {self.source!r}")

    @property
    def key(self) -> tuple[datetime, int, str]:
        """Total order: by time; at equal times a denial comes after (wins over) a grant."""
        return (self.at, 0 if self.granted else 1, self.source)

    def to_dict(self) -> dict[str, object]:
        return {"granted": self.granted, "at": self.at.isoformat(), "source": self.source}


@dataclass(frozen=True, slots=True)
class PurposeHistory:
    """Time-ordered changes of one purpose; ``truncated`` once older changes were dropped."""

    changes: tuple[ConsentChange, ...] = ()
    truncated: bool = False

    def current(self) -> ConsentChange | None:
        """The latest change by time (``None``: nothing recorded)."""
        return self.changes[-1] if self.changes else None

    def known_at(self, when: datetime) -> bool:
        """False when the answer for ``when`` may lie in changes that were dropped."""
        if not self.truncated:
            return True
        return bool(self.changes) and when >= self.changes[0].at

    def as_of(self, when: datetime) -> ConsentChange | None:
        """The change in force at ``when`` (latest with ``at <= when``), if any is kept."""
        found: ConsentChange | None = None
        for change in self.changes:
            if change.at > when:
                break
            found = change
        return found

    def granted_after(self, when: datetime) -> bool:
        return any(c.granted and c.at > when for c in self.changes)

    def with_change(
        self, change: ConsentChange, *, bound: int, skip_redundant_grant: bool
    ) -> PurposeHistory:
        """Insert ``change`` in time order, dropping the oldest changes beyond ``bound``.

        With ``skip_redundant_grant`` a grant that changes nothing (the change in force just
        before it is already a grant) is not stored. Only grants are ever skipped: skipping a
        redundant denial could let a later-arriving older grant extend a grant past it.
        """
        if change in self.changes:
            return self
        if skip_redundant_grant and change.granted:
            before = [c for c in self.changes if c.key < change.key]
            if before and before[-1].granted:
                return self
        return _bounded(sorted((*self.changes, change), key=lambda c: c.key), self.truncated, bound)


def _bounded(changes: list[ConsentChange], truncated: bool, bound: int) -> PurposeHistory:
    if len(changes) > bound:
        return PurposeHistory(tuple(changes[-bound:]), True)
    return PurposeHistory(tuple(changes), truncated)


_EMPTY_HISTORY: Final = PurposeHistory()
_STATE_FORMAT: Final = 1


@dataclass(frozen=True, slots=True)
class ConsentState:
    """Per-profile consent: a bounded, time-ordered history per purpose. JSON via to_dict."""

    histories: Mapping[Purpose, PurposeHistory] = field(default_factory=dict)

    def __post_init__(self) -> None:
        kept = {
            Purpose(p): h
            for p, h in sorted(self.histories.items())
            if (h.changes or h.truncated) and Purpose(p) is not Purpose.NECESSARY
        }
        object.__setattr__(self, "histories", MappingProxyType(kept))

    def history(self, purpose: Purpose) -> PurposeHistory:
        return self.histories.get(purpose, _EMPTY_HISTORY)

    def current(self, purpose: Purpose) -> ConsentChange | None:
        return self.history(purpose).current()

    def record(
        self,
        purpose: Purpose,
        change: ConsentChange,
        *,
        bound: int = MAX_HISTORY,
        skip_redundant_grant: bool = False,
    ) -> ConsentState:
        """A new state with ``change`` recorded for ``purpose`` (idempotent)."""
        if purpose is Purpose.NECESSARY:
            return self
        old = self.history(purpose)
        new = old.with_change(change, bound=bound, skip_redundant_grant=skip_redundant_grant)
        if new is old:
            return self
        return ConsentState({**self.histories, purpose: new})

    def summary(self) -> dict[str, dict[str, object]]:
        """Current value per purpose with time and source, for the profile snapshot."""
        out: dict[str, dict[str, object]] = {}
        for purpose, history in self.histories.items():
            current = history.current()
            if current is not None:
                out[purpose.value] = current.to_dict()
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "format": _STATE_FORMAT,
            "purposes": {
                p.value: {
                    "changes": [c.to_dict() for c in h.changes],
                    "truncated": h.truncated,
                }
                for p, h in self.histories.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ConsentState:
        """Decode :meth:`to_dict` output; raises :class:`ConsentStateError` on anything else."""
        try:
            if data.get("format") != _STATE_FORMAT:
                raise ConsentStateError(f"unsupported consent state format {data.get('format')!r}")
            purposes = data["purposes"]
            if not isinstance(purposes, Mapping):
                raise ConsentStateError("purposes must be an object")
            histories: dict[Purpose, PurposeHistory] = {}
            for name, body in purposes.items():
                purpose = Purpose(name)
                if not isinstance(body, Mapping):
                    raise ConsentStateError(f"history of {name} must be an object")
                raw_changes = body["changes"]
                truncated = body["truncated"]
                if not isinstance(raw_changes, list) or not isinstance(truncated, bool):
                    raise ConsentStateError(f"history of {name} is malformed")
                changes = []
                for raw in raw_changes:
                    granted, at, source = raw["granted"], raw["at"], raw["source"]
                    if not isinstance(granted, bool) or not isinstance(at, str):
                        raise ConsentStateError(f"change of {name} is malformed")
                    changes.append(ConsentChange(granted, datetime.fromisoformat(at), source))
                ordered = sorted(changes, key=lambda c: c.key)
                if ordered != changes or len(set(changes)) != len(changes):
                    raise ConsentStateError(f"history of {name} is not strictly time-ordered")
                histories[purpose] = PurposeHistory(tuple(changes), truncated)
            return cls(histories)
        except ConsentStateError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConsentStateError(f"cannot decode consent state: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Policy
# --------------------------------------------------------------------------------------------

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
    max_history: int = MAX_HISTORY

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
        in_opt_in = sorted(r for r, ps in overrides.items() if r in opt_in and ps)
        if in_opt_in:
            raise PolicyError(
                f"opt-in regions cannot be overridden to grant by default: {in_opt_in}"
            )
        aliases = {
            str(a).strip().upper(): str(t).strip().upper() for a, t in self.region_aliases.items()
        }
        _regions(list(aliases) + list(aliases.values()), "aliases")
        if self.max_history < 1:
            raise PolicyError("max_history must be >= 1")
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


_POLICY_KEYS: Final = frozenset({"version", "max_history", "jurisdictions", "overrides", "aliases"})


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
    if "max_history" in data:
        value = data["max_history"]
        if not isinstance(value, int) or isinstance(value, bool):
            raise PolicyError("max_history must be an integer")
        kwargs["max_history"] = value
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


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsentInput:
    """What the policy needs from one event (no identifiers, no traits)."""

    event_id: str
    occurred_at: datetime
    region: str | None = None
    consent: Mapping[str, bool] | None = None
    gpc: bool = False
    signals: Mapping[str, object] | None = None
    is_consent_update: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "occurred_at", _utc(self.occurred_at, "occurred_at"))


@dataclass(frozen=True, slots=True)
class ConsentAuditRecord:
    """One audit line: no identifiers, no traits (the integrator adds the profile id)."""

    event_id: str
    purpose: Purpose
    decision: Decision
    reason: Reason
    source: str
    policy_version: str
    decided_at: datetime

    def to_dict(self) -> dict[str, object]:
        return {
            "event_id": self.event_id,
            "purpose": self.purpose.value,
            "decision": self.decision.value,
            "reason": self.reason.value,
            "source": self.source,
            "policy_version": self.policy_version,
            "decided_at": self.decided_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class ConsentDecision:
    """The outcome of :func:`evaluate` (effects as values)."""

    allowed: frozenset[Purpose]
    denied: Mapping[Purpose, Reason]
    new_state: ConsentState
    revoked: frozenset[Purpose]
    audit: tuple[ConsentAuditRecord, ...]
    signal_errors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Signals:
    values: Mapping[Purpose, tuple[bool, str]]
    errors: tuple[str, ...]
    invalid: bool


def _short(name: object) -> str:
    text = re.sub(r"[^A-Za-z0-9_.-]", "?", str(name))
    return text[:40]


def _collect_signals(inp: ConsentInput) -> _Signals:
    found: dict[Purpose, list[tuple[bool, str]]] = {}
    errors: list[str] = []
    invalid = False

    def add(values: Mapping[Purpose, bool], source: str) -> None:
        for purpose, granted in values.items():
            if purpose is not Purpose.NECESSARY:
                found.setdefault(purpose, []).append((granted, source))

    own_source = Source.CONSENT_UPDATED if inp.is_consent_update else Source.EVENT
    if inp.consent is not None:
        own: dict[Purpose, bool] = {}
        untrusted: Mapping[str, object] = inp.consent  # producers may send non-booleans
        for key, value in untrusted.items():
            try:
                purpose = Purpose(key)
            except ValueError:
                errors.append(f"consent:unknown_purpose:{_short(key)}")
                continue
            if not isinstance(value, bool):
                errors.append(f"consent:not_boolean:{purpose.value}")
                invalid = True
                continue
            own[purpose] = value
        add(own, own_source)
    if inp.gpc:
        add({Purpose.ADS: False}, Source.GPC)
    for name, raw in (inp.signals or {}).items():
        if name == "segment" and isinstance(raw, Mapping):
            add(from_segment(raw), Source.SEGMENT)
        elif name == "gcm" and isinstance(raw, Mapping):
            add(from_gcm(raw), Source.GCM)
        elif name == "tcf" and isinstance(raw, str):
            try:
                add(from_tcf(raw), Source.TCF)
            except TcfDecodeError:
                errors.append("tcf:undecodable")
                invalid = True
        elif name in ("segment", "gcm", "tcf"):
            errors.append(f"{name}:wrong_type")
            invalid = True
        else:
            errors.append(f"signals:unknown_format:{_short(name)}")

    values: dict[Purpose, tuple[bool, str]] = {}
    for purpose, seen in found.items():
        denials = [source for granted, source in seen if not granted]
        if denials:
            values[purpose] = (False, Source.GPC if Source.GPC in denials else denials[0])
        else:
            values[purpose] = (True, seen[0][1])
    return _Signals(values, tuple(errors), invalid)


def _denial_reason(source: str) -> Reason:
    return Reason.GPC if source == Source.GPC else Reason.NO_CONSENT


def evaluate(
    inp: ConsentInput,
    stored: ConsentState | None,
    policy: ConsentPolicy,
    *,
    now: datetime,
) -> ConsentDecision:
    """Decide which purposes ``inp`` may serve and record its consent signals.

    Pure and deterministic: the same inputs give the same decision; ``now`` only stamps the
    audit records, so replaying the topic rebuilds the same state.
    """
    decided_at = _utc(now, "now")
    state = stored if stored is not None else ConsentState()
    signals = _collect_signals(inp)
    default = policy.default_for(inp.region)
    when = inp.occurred_at

    new_state = state
    for purpose, (granted, signal_source) in sorted(signals.values.items()):
        if signals.invalid and granted:
            continue  # an event with an unreadable signal records denials only
        explicit = inp.is_consent_update or signal_source == Source.GPC
        new_state = new_state.record(
            purpose,
            ConsentChange(granted, when, signal_source),
            bound=policy.max_history,
            skip_redundant_grant=not explicit,
        )

    allowed: set[Purpose] = {Purpose.NECESSARY}
    denied: dict[Purpose, Reason] = {}
    revoked: set[Purpose] = set()
    audit: list[ConsentAuditRecord] = [
        ConsentAuditRecord(
            inp.event_id,
            Purpose.NECESSARY,
            Decision.ALLOW,
            Reason.ALWAYS,
            Source.DEFAULT,
            policy.version,
            decided_at,
        )
    ]

    for purpose in CONSENT_PURPOSES:
        history = new_state.history(purpose)

        # (a) granted at the event's time?
        at_event: bool
        reason: Reason
        source: str
        if signals.invalid:
            at_event, reason, source = False, Reason.INVALID_SIGNAL, "invalid"
            if purpose in signals.values and not signals.values[purpose][0]:
                source = signals.values[purpose][1]
        elif purpose in signals.values:
            at_event, source = signals.values[purpose]
            reason = Reason.GRANTED if at_event else _denial_reason(source)
        elif not history.known_at(when):
            at_event, reason, source = False, Reason.HISTORY_TRUNCATED, "history"
        else:
            change = history.as_of(when)
            if change is not None:
                at_event, source = change.granted, change.source
                reason = Reason.GRANTED if at_event else _denial_reason(source)
            else:
                at_event, reason, source = purpose in default, Reason.REGION_DEFAULT, Source.DEFAULT

        # (b) still granted in the latest state?
        current = history.current()
        now_granted = current.granted if current is not None else purpose in default
        now_source = current.source if current is not None else Source.DEFAULT

        if at_event and now_granted:
            allowed.add(purpose)
            decision = Decision.ALLOW
        elif at_event:
            decision = Decision.DENY
            reason = Reason.GPC if now_source == Source.GPC else Reason.REVOKED
            source = now_source
        else:
            decision = Decision.DENY
            if (
                reason in (Reason.NO_CONSENT, Reason.REGION_DEFAULT)
                and now_granted
                and history.granted_after(when)
            ):
                reason = Reason.LATE_GRANT
        if decision is Decision.DENY:
            denied[purpose] = reason
        audit.append(
            ConsentAuditRecord(
                inp.event_id, purpose, decision, reason, source, policy.version, decided_at
            )
        )

        # revocation: granted in the stored state's current value, denied now
        before = state.current(purpose)
        was_granted = before.granted if before is not None else purpose in default
        if was_granted and not now_granted:
            revoked.add(purpose)
            audit.append(
                ConsentAuditRecord(
                    inp.event_id,
                    purpose,
                    Decision.PURGE,
                    Reason.GPC if now_source == Source.GPC else Reason.REVOKED,
                    now_source,
                    policy.version,
                    decided_at,
                )
            )

    return ConsentDecision(
        allowed=frozenset(allowed),
        denied=MappingProxyType(denied),
        new_state=new_state,
        revoked=frozenset(revoked),
        audit=tuple(audit),
        signal_errors=signals.errors,
    )


# --------------------------------------------------------------------------------------------
# Merge
# --------------------------------------------------------------------------------------------


def _merge_history(a: PurposeHistory, b: PurposeHistory, bound: int) -> PurposeHistory:
    if not a.changes and not a.truncated:
        return _bounded(list(b.changes), b.truncated, bound)
    if not b.changes and not b.truncated:
        return _bounded(list(a.changes), a.truncated, bound)
    starts = [h.changes[0].at for h in (a, b) if h.truncated and h.changes]
    start = max(starts) if starts else None
    points = sorted({c.at for c in (*a.changes, *b.changes)})
    merged: list[ConsentChange] = []
    for point in points:
        if start is not None and point < start:
            continue
        candidates = [c for c in (a.as_of(point), b.as_of(point)) if c is not None]
        granted = all(c.granted for c in candidates)
        deciding = [c for c in candidates if c.granted == granted]
        disagree = len({c.granted for c in candidates}) > 1
        source = Source.MERGE if disagree else max(deciding, key=lambda c: c.key).source
        merged.append(ConsentChange(granted, point, source))
    return _bounded(merged, a.truncated or b.truncated, bound)


def merge_states(a: ConsentState, b: ConsentState, *, bound: int = MAX_HISTORY) -> ConsentState:
    """Consent of a merged profile: at every instant the MORE RESTRICTIVE of the two.

    Per purpose the merged history has a change at every time either side changed; its value
    is granted only if every side that had recorded something by then was granted (a side with
    nothing recorded yet imposes nothing; the jurisdiction default still applies at evaluation).
    Where the two sides disagreed the change's source is ``merge``. The current value is thus
    the more restrictive of the two current values. Commutative; if either side was truncated,
    the merged history starts at its oldest kept change and is truncated too.
    """
    purposes = sorted(set(a.histories) | set(b.histories))
    return ConsentState({p: _merge_history(a.history(p), b.history(p), bound) for p in purposes})
