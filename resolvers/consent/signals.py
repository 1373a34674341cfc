"""What one event says about consent: its own statements per purpose, from every format.

An event can carry Loom's own ``consent`` map (the CMP state when it happened), the ``gpc``
flag, and vendor signals (Segment ``categoryPreferences``, Google Consent Mode, an IAB TCF
string). :func:`statements` folds them into one :class:`EventConsent`: per purpose, granted
or denied and by which source. Several statements for one purpose: any denial wins, and a GPC
denial is reported as GPC. An unreadable signal (a non-boolean value, an undecodable TC
string) makes the event serve nothing (``invalid``) and keeps only its denials.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from resolvers.consent.formats import TcfDecodeError, from_gcm, from_segment, from_tcf
from resolvers.consent.vocabulary import Purpose, Source

#: Event types whose consent statements are explicit choices of the person (a consent dialog,
#: a sign-up or loyalty form, account settings). Only explicit grants establish consent for
#: the person's other events that carry no consent of their own (docs/consent.md).
EXPLICIT_TYPES: Final = frozenset(
    {"consent_updated", "signup", "loyalty_enrolled", "profile_updated"}
)


@dataclass(frozen=True, slots=True)
class Statement:
    granted: bool
    source: Source


@dataclass(frozen=True, slots=True)
class EventConsent:
    """The event's own consent statements (a purpose absent: the event says nothing)."""

    own: Mapping[Purpose, Statement] = field(default_factory=dict)
    invalid: bool = False  # an unreadable signal: the event serves nothing
    errors: tuple[str, ...] = ()  # what was unreadable (no values)
    #: Compact canonical text, e.g. ``analytics+event;ads-gpc`` (``!`` first if invalid):
    #: facts keep it, and events with equal codes fold into one day digest. Computed once
    #: (the fold asks per event; events' consents are memoized).
    code: str = field(init=False, repr=False, compare=False)
    #: Whether it denies any purpose (the audit looks for revocations only then).
    denies: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = [f"{p}{'+' if s.granted else '-'}{s.source}" for p, s in sorted(self.own.items())]
        object.__setattr__(self, "code", ("!" if self.invalid else "") + ";".join(parts))
        object.__setattr__(self, "denies", not all(s.granted for s in self.own.values()))

    def stated(self, purpose: Purpose) -> Statement | None:
        return self.own.get(purpose)


NO_STATEMENTS: Final = EventConsent()

_DECODED: dict[str, EventConsent] = {}


def from_code(code: str) -> EventConsent:
    """Inverse of :attr:`EventConsent.code` (memoized: there are few distinct codes)."""
    found = _DECODED.get(code)
    if found is not None:
        return found
    invalid = code.startswith("!")
    own: dict[Purpose, Statement] = {}
    for part in (code[1:] if invalid else code).split(";"):
        if not part:
            continue
        for sign in "+-":
            name, found_sign, source = part.partition(sign)
            if found_sign and name in Purpose.__members__.values():
                own[Purpose(name)] = Statement(sign == "+", Source(source))
                break
        else:
            raise ValueError(f"bad consent code part {part!r}")
    result = EventConsent(own, invalid)
    if len(_DECODED) < 4096:
        _DECODED[code] = result
    return result


def _short(name: object) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "?", str(name))[:40]


def statements(
    consent: Mapping[str, object] | None,
    gpc: bool,
    signals: Mapping[str, object] | None,
    *,
    explicit: bool = False,
) -> EventConsent:
    """Fold an event's consent map, GPC flag and vendor signals (see the module docstring)."""
    found = _Found()
    if consent is not None:
        found.own_map(consent, Source.CONSENT_UPDATED if explicit else Source.EVENT)
    if gpc:
        found.add({Purpose.ADS: False}, Source.GPC)
    for name, raw in (signals or {}).items():
        found.vendor(name, raw)
    return found.result()


@dataclass
class _Found:
    """The statements collected from one event, per purpose, and what was unreadable."""

    by_purpose: dict[Purpose, list[Statement]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    invalid: bool = False

    def add(self, values: Mapping[Purpose, bool], source: Source) -> None:
        for purpose, granted in values.items():
            if purpose is not Purpose.NECESSARY:
                self.by_purpose.setdefault(purpose, []).append(Statement(granted, source))

    def own_map(self, consent: Mapping[str, object], source: Source) -> None:
        own: dict[Purpose, bool] = {}
        for key, value in consent.items():
            try:
                purpose = Purpose(key)
            except ValueError:
                self.errors.append(f"consent:unknown_purpose:{_short(key)}")
                continue
            if not isinstance(value, bool):
                self.errors.append(f"consent:not_boolean:{purpose.value}")
                self.invalid = True
                continue
            own[purpose] = value
        self.add(own, source)

    def vendor(self, name: str, raw: object) -> None:
        if name == "segment" and isinstance(raw, Mapping):
            self.add(from_segment(raw), Source.SEGMENT)
        elif name == "gcm" and isinstance(raw, Mapping):
            self.add(from_gcm(raw), Source.GCM)
        elif name == "tcf" and isinstance(raw, str):
            try:
                self.add(from_tcf(raw), Source.TCF)
            except TcfDecodeError:
                self.errors.append("tcf:undecodable")
                self.invalid = True
        elif name in ("segment", "gcm", "tcf"):
            self.errors.append(f"{name}:wrong_type")
            self.invalid = True
        else:
            self.errors.append(f"signals:unknown_format:{_short(name)}")

    def result(self) -> EventConsent:
        """Any denial wins (reported as GPC when GPC was one); an unreadable signal keeps only
        the denials."""
        own: dict[Purpose, Statement] = {}
        for purpose, seen in self.by_purpose.items():
            denials = [s for s in seen if not s.granted]
            if denials:
                gpc_denial = next((s for s in denials if s.source is Source.GPC), None)
                own[purpose] = gpc_denial or denials[0]
            elif not self.invalid:
                own[purpose] = seen[0]
        return EventConsent(own, self.invalid, tuple(self.errors))
