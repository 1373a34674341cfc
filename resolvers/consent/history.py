"""A person's consent history, kept so that it is a function of the SET of their events.

Per purpose, :class:`PurposeHistory` keeps exactly what the gate (``resolvers.consent.gate``)
asks, and nothing that depends on arrival order:

* ``latest``: the latest statement by time (at equal times a denial wins): the person's
  current choice;
* ``last_denial``: the latest denial by time, from any source (an event's own CMP "no", a
  consent update, GPC): everything the person did before it can never be used again for the
  purpose (revocation wins for good);
* ``grants``: explicit grants (``signals.EXPLICIT_TYPES``) later than ``last_denial``, the
  newest ``bound`` of them; ``dropped`` is the newest explicit grant that did not fit.

Each part is a join (max, or the newest ``bound`` of a union, pruned below a max), so
merging two histories equals the history of all their events, whatever the order, batching
or grouping: ``merge`` is commutative, associative and idempotent. Grants made on ordinary
events (a cookie banner) are not kept one by one: they decide only their own event (the gate
reads them from the event) and the current choice (``latest``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final
from weakref import ReferenceType, ref

from resolvers.consent.errors import ConsentStateError
from resolvers.consent.policy import MAX_EXPLICIT_GRANTS
from resolvers.consent.signals import EventConsent
from resolvers.consent.vocabulary import CONSENT_PURPOSES, Purpose, Source
from resolvers.frozen import fast_init, fast_new
from resolvers.timefmt import format_time, parse_stored, utc

_FORMAT: Final = 2
#: The vocabularies' values by member (``.value`` is a Python-level property: a history is
#: written at every touch of its profile).
_PURPOSE_VALUES: Final = {p: p.value for p in Purpose}
_SOURCE_VALUES: Final = {s: s.value for s in Source}
#: The members by value (a dict lookup: ``Source(value)`` is two Python calls).
_SOURCES: Final = {s.value: s for s in Source}
_PURPOSES: Final = {p.value: p for p in Purpose}
#: What ``raw.get`` answers for a part a history's JSON leaves out.
_ABSENT: Final = object()


@fast_init
@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """One statement for one purpose, at the time of the event that made it."""

    granted: bool
    at: datetime
    source: Source

    def __post_init__(self) -> None:
        if self.at.tzinfo is not UTC:  # ``utc(at)``: a time Loom parsed or built is in UTC
            object.__setattr__(self, "at", utc(self.at))

    @property
    def key(self) -> tuple[datetime, int, str]:
        """Total order: by time; at equal times a denial comes after (wins over) a grant."""
        return (self.at, 0 if self.granted else 1, self.source)  # a StrEnum: orders as its value

    def to_json(self) -> list[Any]:
        return [self.granted, format_time(self.at), _SOURCE_VALUES[self.source]]

    @classmethod
    def from_json(cls, raw: Any) -> ConsentRecord:
        granted, at, source = raw
        if not isinstance(granted, bool):
            raise ConsentStateError("consent record: granted must be a boolean")
        at = parse_stored(at)
        # ``Source(source)``: the member by value (or the enum's own error)
        found = _SOURCES.get(source) if type(source) is str else None
        return _new_record(granted, at, Source(source) if found is None else found)


#: ``ConsentRecord(granted, at, source)``, cheaper (``resolvers.frozen.fast_new``).
_new_record: Final = fast_new(ConsentRecord)


def _later(a: ConsentRecord | None, b: ConsentRecord | None) -> ConsentRecord | None:
    if a is None or b is None:
        return b if a is None else a
    return b if b.key > a.key else a


def _newest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return b if a is None else a
    return max(a, b)


@fast_init
@dataclass(frozen=True, slots=True)
class PurposeHistory:
    latest: ConsentRecord | None = None
    last_denial: ConsentRecord | None = None
    grants: tuple[ConsentRecord, ...] = ()  # explicit grants after last_denial, oldest first
    dropped: datetime | None = None  # newest explicit grant that did not fit the bound

    def merged(self, other: PurposeHistory, bound: int) -> PurposeHistory:
        last_denial = _later(self.last_denial, other.last_denial)
        floor = last_denial.key if last_denial is not None else None
        union = sorted({g.key: g for g in (*self.grants, *other.grants)}.items())
        kept = [g for k, g in union if floor is None or k > floor]
        dropped = _newest(self.dropped, other.dropped)
        if len(kept) > bound:
            dropped = _newest(dropped, kept[-bound - 1].at)
            kept = kept[-bound:]
        if dropped is not None and last_denial is not None and dropped <= last_denial.at:
            dropped = None  # below the last denial, like the grants it stood for
        return PurposeHistory(
            latest=_later(self.latest, other.latest),
            last_denial=last_denial,
            grants=tuple(kept),
            dropped=dropped,
        )

    def explicit_grant_between(self, after: datetime | None, until: datetime) -> bool | None:
        """Is there an explicit grant in ``(after, until]``? None: it may lie among the grants
        that did not fit the bound (the caller fails closed)."""
        for grant in self.grants:
            if grant.at <= until and (after is None or grant.at > after):
                return True
        if self.dropped is not None and (after is None or self.dropped > after):
            if self.dropped <= until:
                return True  # the newest dropped grant itself lies in the interval
            return None
        return False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.latest is not None:
            out["l"] = self.latest.to_json()
        if self.last_denial is not None:
            out["d"] = self.last_denial.to_json()
        if self.grants:
            out["g"] = [g.to_json() for g in self.grants]
        if self.dropped is not None:
            out["x"] = format_time(self.dropped)
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> PurposeHistory:
        """Decode :meth:`to_json`; a record in the wrong role (a grant as the last denial, a
        denial among the grants, anything later than ``latest``...) raises
        :class:`ConsentStateError`: a corrupt history must never serve a purpose."""
        latest, denial = raw.get("l"), raw.get("d")
        dropped = raw.get("x")
        grants = raw.get("g", _ABSENT)
        record = ConsentRecord.from_json
        out = _new_purpose_history(  # ``cls(...)``: latest, last_denial, grants, dropped
            record(latest) if latest is not None else None,
            record(denial) if denial is not None else None,
            () if grants is _ABSENT else tuple([record(g) for g in grants]),
            parse_stored(dropped) if dropped is not None else None,
        )
        out._check_roles()
        return out

    def _check_roles(self) -> None:
        """Raise :class:`ConsentStateError` on a record in the wrong role (the checks in a
        fixed order: the first that fails names the error). Plain loops: most histories hold
        one or two records, and a generator per check costs more than the check."""
        latest, denial, grants, dropped = self.latest, self.last_denial, self.grants, self.dropped
        if (grants or dropped is not None) and latest is None:
            raise ConsentStateError("consent history: grants without a latest statement")
        if denial is not None and denial.granted:
            raise ConsentStateError("consent history: the last denial is a grant")
        keys: list[tuple[datetime, int, str]] = []
        for grant in grants:
            if not grant.granted:
                raise ConsentStateError("consent history: a denial among the explicit grants")
            keys.append((grant.at, 0, grant.source))  # ``grant.key`` of a grant
        if len(keys) > 1 and keys != sorted(set(keys)):
            raise ConsentStateError("consent history: grants out of order")
        # ``denial.key`` of a denial
        floor = (denial.at, 1, denial.source) if denial is not None else None
        if floor is not None and (keys and keys[0] <= floor):
            raise ConsentStateError("consent history: a grant kept below the last denial")
        if floor is not None and dropped is not None and dropped <= floor[0]:
            raise ConsentStateError("consent history: a dropped grant below the last denial")
        # of every statement, the grants and the last denial (the grants are in order: the
        # last is the greatest)
        if latest is not None:
            top = latest.key
            if (floor is not None and floor > top) or (keys and keys[-1] > top):
                raise ConsentStateError("consent history: a statement later than the latest")


_EMPTY: Final = PurposeHistory()
#: ``PurposeHistory(*every field)``, cheaper (``resolvers.frozen.fast_new``).
_new_purpose_history: Final = fast_new(PurposeHistory)


@fast_init
@dataclass(frozen=True, slots=True, weakref_slot=True)
class ConsentHistory:
    """Per purpose, a :class:`PurposeHistory`. Immutable; combine with :meth:`merged`."""

    purposes: Mapping[Purpose, PurposeHistory] = field(default_factory=dict)
    #: The last merge with a non-empty history: (the other, weakly, the bound, the merge). A
    #: person's groups' histories are merged at every write (their gate); while the groups'
    #: facts stay the same objects (decoded once and cached, ``resolvers.decode_cache``), so
    #: does the merge. The other is held weakly: a merge never keeps its inputs alive, so no
    #: history can hold itself through a chain of merges (a cycle only a full collection
    #: frees, ``streams.gc_policy``). Not a field of ``__init__``.
    _merged: tuple[ReferenceType[ConsentHistory], int, ConsentHistory] | None = field(
        default=None, init=False, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        # ``h != _EMPTY``, field by field (no records compared)
        kept = {
            p: h
            for p, h in sorted(self.purposes.items())
            if h.latest is not None
            or h.last_denial is not None
            or h.grants
            or h.dropped is not None
        }
        object.__setattr__(self, "purposes", MappingProxyType(kept))

    def of(self, purpose: Purpose) -> PurposeHistory:
        return self.purposes.get(purpose, _EMPTY)

    def merged(self, other: ConsentHistory, bound: int = MAX_EXPLICIT_GRANTS) -> ConsentHistory:
        if not other.purposes:
            return self
        if not self.purposes:
            return other
        memo = self._merged
        if memo is not None and memo[0]() is other and memo[1] == bound:
            return memo[2]
        names = set(self.purposes) | set(other.purposes)
        merged = ConsentHistory({p: self.of(p).merged(other.of(p), bound) for p in names})
        object.__setattr__(self, "_merged", (ref(other), bound, merged))
        return merged

    def to_json(self) -> dict[str, Any]:
        return {"f": _FORMAT, **{_PURPOSE_VALUES[p]: h.to_json() for p, h in self.purposes.items()}}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ConsentHistory:
        """Decode :meth:`to_json`; raises :class:`ConsentStateError` on anything else."""
        try:
            if raw.get("f") != _FORMAT:
                raise ConsentStateError(f"unsupported consent history format {raw.get('f')!r}")
            purpose = PurposeHistory.from_json
            # ``Purpose(name)``: by value (a JSON object's keys are strings), or its error
            return cls(
                {
                    _PURPOSES.get(name) or Purpose(name): purpose(h)
                    for name, h in raw.items()
                    if name != "f"
                }
            )
        except ConsentStateError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConsentStateError(f"cannot decode consent history: {exc}") from exc


EMPTY_HISTORY: Final = ConsentHistory()


def from_event(
    consent: EventConsent, at: datetime, *, explicit: bool, bound: int = MAX_EXPLICIT_GRANTS
) -> ConsentHistory:
    """The history one event contributes (merge it into the person's)."""
    if not consent.own:
        return EMPTY_HISTORY
    out: dict[Purpose, PurposeHistory] = {}
    for purpose in CONSENT_PURPOSES:
        stated = consent.stated(purpose)
        if stated is None:
            continue
        record = ConsentRecord(stated.granted, at, stated.source)
        one = PurposeHistory(
            latest=record,
            last_denial=None if record.granted else record,
            grants=(record,) if record.granted and explicit else (),
        )
        # merged with nothing it is itself unless the bound keeps no grant
        out[purpose] = one if bound >= 1 else one.merged(_EMPTY, bound)
    return ConsentHistory(out)
