"""The identity resolution engine: pure decisions, effects as values, a reducer to apply them.

Per event, :func:`resolve` reads the persisted identity state through an
:class:`IdentityView` and returns a :class:`Resolution`: the profile the event belongs to and
the :data:`IdentityEffect` values that bring the state up to date. :func:`apply` is the
reducer that applies them to an :class:`InMemoryIdentityState`, which records what changed so
the store writes exactly the changed records. Neither reads a clock nor generates ids: the
event time is the clock and ``new_profile_id`` is injected (derive it from the event id to make
a replay from Kafka rebuild the same ids).

How an event resolves (identifiers already normalized; ``rules`` = :class:`IdentityRules`):

1. duplicates collapse; identifiers are ordered by type priority (then value);
2. blocked values are dropped (``"blocked"``), never looked up, never recorded;
3. co-occurrence: every non-unique identifier remembers the distinct unique values
   (``customer_id``, ``loyalty_id``) it was seen with in the same event, up to
   ``quarantine_threshold + 1`` per type. Once it has seen more than the threshold of one
   unique type it is **quarantined** (a family tablet, a store's shared card token): it is
   dropped from this and every later event (``"quarantined"``), never matches and never merges,
   and it is **detached** from the profile it pointed to (removed from that profile's
   identifiers, record ``profile_id = None``). Rationale: an identifier shared by several
   people belongs to none of them, and a reader looking it up must not get one arbitrary
   sibling's profile. Evidence is recorded even when the identifier is dropped by a conflict,
   otherwise a shared device that keeps conflicting could never reach the threshold;
4. in priority order each remaining identifier joins the event's cluster:
   an unlinked one if the cluster's values of its type stay within the type's limit; a linked
   one if its profile can merge with the cluster without any type exceeding its limit (for
   unique types the limit is 1: two different ``customer_id`` never merge). An identifier that
   does not fit is dropped (``"unique_conflict"`` / ``"limit_exceeded"``). Because the highest
   priority identifiers are placed first, the dropped ones are always the lowest-priority
   conflicting ones, and the event still applies to the profile its best identifier matched;
5. the cluster's profiles merge into the oldest (``created_at``, then profile id); when it has
   none a profile is created (``created_at = occurred_at``); unlinked accepted identifiers link
   to the survivor.

Effects: :class:`ProfileCreated`, :class:`IdentifierLinked`, :class:`ProfilesMerged` (with
:class:`MergeEvidence`), :class:`CooccurrenceRecorded`, :class:`IdentifierQuarantined` change
state; :class:`MergeBlocked` and :class:`LinkRejected` are audit records only.

Without rule conflicts (no quarantine, no drop) the final partition of identifiers into
profiles is the connected components of the "seen in one event" graph, hence independent of
event order and batch boundaries; re-resolving an applied event changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from resolvers.identity_rules import IdentityRules
from schemas.identifiers import Identifier

# Drop reasons (Resolution.dropped, MergeBlocked.reason, LinkRejected.reason).
DROP_BLOCKED: Final = "blocked"
DROP_QUARANTINED: Final = "quarantined"
DROP_UNIQUE_CONFLICT: Final = "unique_conflict"
DROP_LIMIT_EXCEEDED: Final = "limit_exceeded"

# Rule names in evidence: merges happen because one event carried identifiers of both.
RULE_SHARED_EVENT: Final = "shared_event"
# Conflict rules are "unique:<type>" / "limit:<type>"; quarantine is "quarantine:<type>".

RECORD_FORMAT: Final = 1


class MissingRecordError(KeyError):
    """A merge or quarantine needs a record that was not loaded into the working state.

    The loader must load, besides the batch's identifiers, every profile they point to and
    the records of all identifiers those profiles hold (``ProfileIdentity.all_identifiers``).
    """


# --------------------------------------------------------------------------- persisted state


def _values_map(raw: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
    return {t: tuple(sorted(set(vs))) for t, vs in sorted(raw.items()) if vs}


@dataclass(frozen=True, slots=True)
class IdentifierRecord:
    """What the store keeps per identifier.

    ``profile_id`` is the profile the identifier belongs to (``None``: unlinked or
    quarantined). ``seen_with`` maps a unique type to the distinct values this identifier was
    seen with in one event (sorted, capped at ``quarantine_threshold + 1``).
    """

    profile_id: str | None = None
    quarantined: bool = False
    seen_with: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return self.profile_id is None and not self.quarantined and not self.seen_with

    def to_dict(self) -> dict[str, Any]:
        """Stable JSON form: ``{"v": 1, "profile_id", "quarantined", "seen_with"}``."""
        return {
            "v": RECORD_FORMAT,
            "profile_id": self.profile_id,
            "quarantined": self.quarantined,
            "seen_with": {t: list(vs) for t, vs in sorted(self.seen_with.items())},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IdentifierRecord:
        _check_format(data)
        return cls(
            profile_id=data.get("profile_id"),
            quarantined=bool(data.get("quarantined", False)),
            seen_with=_values_map(data.get("seen_with", {})),
        )


EMPTY_RECORD: Final = IdentifierRecord()


@dataclass(frozen=True, slots=True)
class ProfileIdentity:
    """The identity part of a profile: its identifiers by type and the ids it absorbed."""

    profile_id: str
    created_at: datetime
    identifiers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    merged_from: tuple[str, ...] = ()

    def all_identifiers(self) -> tuple[Identifier, ...]:
        return tuple(Identifier(t, v) for t, vs in self.identifiers.items() for v in vs)

    def count(self, id_type: str) -> int:
        return len(self.identifiers.get(id_type, ()))

    def to_dict(self) -> dict[str, Any]:
        """Stable JSON form; ``created_at`` is RFC 3339 in UTC, lists are sorted."""
        return {
            "v": RECORD_FORMAT,
            "profile_id": self.profile_id,
            "created_at": self.created_at.astimezone(UTC).isoformat(),
            "identifiers": {t: list(vs) for t, vs in sorted(self.identifiers.items())},
            "merged_from": list(self.merged_from),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProfileIdentity:
        _check_format(data)
        created = datetime.fromisoformat(data["created_at"])
        if created.tzinfo is None:
            raise ValueError("profile created_at must carry a UTC offset")
        return cls(
            profile_id=str(data["profile_id"]),
            created_at=created,
            identifiers=_values_map(data.get("identifiers", {})),
            merged_from=tuple(sorted(set(data.get("merged_from", ())))),
        )


def _check_format(data: Mapping[str, Any]) -> None:
    version = data.get("v", RECORD_FORMAT)
    if version != RECORD_FORMAT:
        raise ValueError(f"unsupported identity record format {version!r}")


# --------------------------------------------------------------------------- input / output


@dataclass(frozen=True, slots=True)
class ResolveRequest:
    """One event's identity input. ``identifiers`` are already normalized."""

    event_id: str
    occurred_at: datetime
    identifiers: tuple[Identifier, ...]


@dataclass(frozen=True, slots=True)
class MergeEvidence:
    event_id: str
    identifiers: tuple[str, ...]  # type:value keys in the event that pointed into the cluster
    rule: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class ProfileCreated:
    profile_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class IdentifierLinked:
    identifier: Identifier
    profile_id: str


@dataclass(frozen=True, slots=True)
class ProfilesMerged:
    survivor: str
    absorbed: str
    evidence: MergeEvidence


@dataclass(frozen=True, slots=True)
class MergeBlocked:
    """Audit: the event bridged ``profile_ids`` but a rule forbade the merge.

    ``profile_ids[0]`` is the profile the event was applied to, the rest are the profiles
    that would have been merged; ``dropped`` are the event's identifiers that pointed there.
    """

    event_id: str
    profile_ids: tuple[str, ...]
    dropped: tuple[Identifier, ...]
    rule: str
    reason: str


@dataclass(frozen=True, slots=True)
class LinkRejected:
    """Audit: an unlinked identifier was not added to ``profile_id`` (limit or uniqueness)."""

    event_id: str
    identifier: Identifier
    profile_id: str
    rule: str
    reason: str


@dataclass(frozen=True, slots=True)
class CooccurrenceRecorded:
    identifier: Identifier
    unique_type: str
    value: str


@dataclass(frozen=True, slots=True)
class IdentifierQuarantined:
    identifier: Identifier
    reason: str  # "quarantine:<unique type>"
    evidence_count: int  # distinct values of that unique type seen with it
    detached_from: str | None  # the profile it was removed from, if it was linked


IdentityEffect = (
    ProfileCreated
    | IdentifierLinked
    | ProfilesMerged
    | MergeBlocked
    | LinkRejected
    | CooccurrenceRecorded
    | IdentifierQuarantined
)

#: Effects that change persisted state (the others are audit records).
STATE_EFFECTS: Final = (
    ProfileCreated,
    IdentifierLinked,
    ProfilesMerged,
    CooccurrenceRecorded,
    IdentifierQuarantined,
)


@dataclass(frozen=True, slots=True)
class Resolution:
    """``profile_id`` is ``None`` when the event has no linkable identifier.

    ``linked`` are the event's identifiers that belong to ``profile_id`` after the effects;
    ``dropped`` pairs each refused identifier with a ``DROP_*`` reason.
    """

    profile_id: str | None
    linked: tuple[Identifier, ...]
    dropped: tuple[tuple[Identifier, str], ...]
    effects: tuple[IdentityEffect, ...]

    @property
    def changes_state(self) -> bool:
        return any(isinstance(e, STATE_EFFECTS) for e in self.effects)


# --------------------------------------------------------------------------- state protocols


class IdentityView(Protocol):
    def identifier(self, ident: Identifier, /) -> IdentifierRecord:
        """The record of ``ident``; an empty record when unknown."""
        ...

    def profile(self, profile_id: str, /) -> ProfileIdentity:
        """The profile; ``KeyError`` when unknown."""
        ...


class MutableIdentityState(IdentityView, Protocol):
    def has_identifier(self, ident: Identifier, /) -> bool: ...
    def put_identifier(self, ident: Identifier, record: IdentifierRecord, /) -> None: ...
    def put_profile(self, profile: ProfileIdentity, /) -> None: ...
    def remove_profile(self, profile_id: str, survivor: str, /) -> None: ...


class InMemoryIdentityState:
    """Dict-backed working state for one batch; remembers what changed.

    ``dirty_identifiers`` / ``dirty_profiles`` are the records to write, ``removed_profiles``
    the absorbed profiles to replace by a redirect, and ``redirects`` maps every absorbed id
    (including ids those had absorbed earlier) to its current survivor.
    """

    def __init__(self) -> None:
        self._identifiers: dict[Identifier, IdentifierRecord] = {}
        self._profiles: dict[str, ProfileIdentity] = {}
        self.dirty_identifiers: set[Identifier] = set()
        self.dirty_profiles: set[str] = set()
        self.removed_profiles: set[str] = set()
        self.redirects: dict[str, str] = {}

    @classmethod
    def from_records(
        cls,
        identifiers: Mapping[Identifier, IdentifierRecord],
        profiles: Mapping[str, ProfileIdentity],
    ) -> InMemoryIdentityState:
        state = cls()
        state._identifiers.update(identifiers)
        state._profiles.update(profiles)
        return state

    # IdentityView
    def identifier(self, ident: Identifier, /) -> IdentifierRecord:
        return self._identifiers.get(ident, EMPTY_RECORD)

    def profile(self, profile_id: str, /) -> ProfileIdentity:
        return self._profiles[profile_id]

    # MutableIdentityState
    def has_identifier(self, ident: Identifier, /) -> bool:
        return ident in self._identifiers

    def put_identifier(self, ident: Identifier, record: IdentifierRecord, /) -> None:
        self._identifiers[ident] = record
        self.dirty_identifiers.add(ident)

    def put_profile(self, profile: ProfileIdentity, /) -> None:
        self._profiles[profile.profile_id] = profile
        self.dirty_profiles.add(profile.profile_id)
        self.removed_profiles.discard(profile.profile_id)

    def remove_profile(self, profile_id: str, survivor: str, /) -> None:
        absorbed = self._profiles.pop(profile_id)
        self.dirty_profiles.discard(profile_id)
        self.removed_profiles.add(profile_id)
        for old in (profile_id, *absorbed.merged_from):
            self.redirects[old] = survivor
        for old, target in self.redirects.items():
            if target == profile_id:
                self.redirects[old] = survivor

    # inspection
    def identifier_records(self) -> dict[Identifier, IdentifierRecord]:
        return dict(self._identifiers)

    def profiles(self) -> dict[str, ProfileIdentity]:
        return dict(self._profiles)

    def changed_identifiers(self) -> dict[Identifier, IdentifierRecord]:
        return {i: self._identifiers[i] for i in sorted(self.dirty_identifiers)}

    def changed_profiles(self) -> dict[str, ProfileIdentity]:
        return {p: self._profiles[p] for p in sorted(self.dirty_profiles)}

    def clear_changes(self) -> None:
        self.dirty_identifiers.clear()
        self.dirty_profiles.clear()
        self.removed_profiles.clear()
        self.redirects.clear()

    def partition(self) -> frozenset[frozenset[Identifier]]:
        """Identifiers grouped by profile (quarantined and unlinked ones left out)."""
        groups: dict[str, set[Identifier]] = {}
        for ident, rec in self._identifiers.items():
            if rec.profile_id is not None:
                groups.setdefault(rec.profile_id, set()).add(ident)
        return frozenset(frozenset(g) for g in groups.values())


# --------------------------------------------------------------------------- the engine


def _rule(id_type: str, rules: IdentityRules) -> tuple[str, str]:
    if rules.is_unique(id_type):
        return f"unique:{id_type}", DROP_UNIQUE_CONFLICT
    return f"limit:{id_type}", DROP_LIMIT_EXCEEDED


def _detach(profile: ProfileIdentity, ident: Identifier) -> ProfileIdentity:
    return ProfileIdentity(
        profile.profile_id,
        profile.created_at,
        _without_value(profile.identifiers, ident.type, ident.value),
        profile.merged_from,
    )


def _merge_conflict(
    combined: Mapping[str, set[str]], profile: ProfileIdentity, rules: IdentityRules
) -> tuple[str, str] | None:
    """The first rule (in priority order) that merging ``profile`` into the cluster breaks."""
    for id_type in sorted(profile.identifiers, key=rules.rank):
        theirs = profile.identifiers[id_type]
        ours = combined.get(id_type)
        total = len(theirs) if not ours else len(ours.union(theirs))
        if total > rules.limit(id_type):
            return _rule(id_type, rules)
    return None


def resolve(
    req: ResolveRequest,
    view: IdentityView,
    rules: IdentityRules,
    *,
    new_profile_id: Callable[[], str],
) -> Resolution:
    """Decide which profile ``req`` belongs to and what must change. Pure; see module doc."""
    effects: list[IdentityEffect] = []
    dropped: list[tuple[Identifier, str]] = []

    # 1-2. order, dedupe, refuse blocked values
    candidates: list[Identifier] = []
    for ident in sorted(set(req.identifiers), key=lambda i: (rules.rank(i.type), i.value)):
        if rules.is_blocked(ident.type, ident.value):
            dropped.append((ident, DROP_BLOCKED))
        else:
            candidates.append(ident)

    # 3. co-occurrence evidence and quarantine
    uniques: dict[str, list[str]] = {}
    for ident in candidates:
        if rules.is_unique(ident.type):
            uniques.setdefault(ident.type, []).append(ident.value)
    usable: list[tuple[Identifier, IdentifierRecord]] = []
    detached: dict[str, list[Identifier]] = {}  # quarantined by this event, per profile
    cap = rules.cooccurrence_cap
    for ident in candidates:
        record = view.identifier(ident)
        if rules.is_unique(ident.type):
            usable.append((ident, record))
            continue
        if record.quarantined:
            dropped.append((ident, DROP_QUARANTINED))
            continue
        quarantine: tuple[str, int] | None = None
        for utype, values in uniques.items():
            seen = set(record.seen_with.get(utype, ()))
            for value in values:
                if value not in seen and len(seen) < cap:
                    seen.add(value)
                    effects.append(CooccurrenceRecorded(ident, utype, value))
            if quarantine is None and len(seen) > rules.quarantine_threshold:
                quarantine = (utype, len(seen))
        if quarantine is not None:
            effects.append(
                IdentifierQuarantined(
                    ident, f"quarantine:{quarantine[0]}", quarantine[1], record.profile_id
                )
            )
            dropped.append((ident, DROP_QUARANTINED))
            if record.profile_id is not None:
                detached.setdefault(record.profile_id, []).append(ident)
            continue
        usable.append((ident, record))

    # 4. build the cluster in priority order
    cluster: dict[str, ProfileIdentity] = {}
    combined: dict[str, set[str]] = {}
    bridging: list[Identifier] = []  # already linked into the cluster
    to_link: list[Identifier] = []
    refused: list[tuple[Identifier, str, str]] = []  # unlinked: (ident, rule, reason)
    blocked: dict[tuple[str, str, str], list[Identifier]] = {}  # (pid, rule, reason) -> idents
    for ident, record in usable:
        pid = record.profile_id
        if pid is None:
            have = combined.setdefault(ident.type, set())
            if ident.value in have:
                to_link.append(ident)  # a profile lists it but its record does not: repair
            elif len(have) + 1 > rules.limit(ident.type):
                rule, reason = _rule(ident.type, rules)
                refused.append((ident, rule, reason))
                dropped.append((ident, reason))
            else:
                have.add(ident.value)
                to_link.append(ident)
        elif pid in cluster:
            bridging.append(ident)
        else:
            profile = view.profile(pid)
            for gone in detached.get(pid, ()):
                profile = _detach(profile, gone)
            conflict = _merge_conflict(combined, profile, rules)
            if conflict is not None:
                blocked.setdefault((pid, *conflict), []).append(ident)
                dropped.append((ident, conflict[1]))
                continue
            cluster[pid] = profile
            for id_type, vals in profile.identifiers.items():
                combined.setdefault(id_type, set()).update(vals)
            bridging.append(ident)

    # 5. survivor, merges, links
    if not cluster and not to_link:
        target: str | None = None
    elif cluster:
        survivor = min(cluster.values(), key=lambda p: (p.created_at, p.profile_id))
        target = survivor.profile_id
        if len(cluster) > 1:
            evidence = MergeEvidence(
                req.event_id,
                tuple(sorted(i.key for i in bridging)),
                RULE_SHARED_EVENT,
                req.occurred_at,
            )
            for pid in sorted(cluster):
                if pid != target:
                    effects.append(ProfilesMerged(target, pid, evidence))
    else:
        target = new_profile_id()
        effects.append(ProfileCreated(target, req.occurred_at))

    if target is not None:
        effects.extend(IdentifierLinked(ident, target) for ident in to_link)
        for (pid, rule, reason), idents in blocked.items():
            effects.append(MergeBlocked(req.event_id, (target, pid), tuple(idents), rule, reason))
        effects.extend(
            LinkRejected(req.event_id, ident, target, rule, reason)
            for ident, rule, reason in refused
        )

    linked = tuple(sorted(bridging + to_link, key=lambda i: (rules.rank(i.type), i.value)))
    return Resolution(target, linked, tuple(dropped), tuple(effects))


# --------------------------------------------------------------------------- the reducer


def _with_value(
    values: Mapping[str, tuple[str, ...]], id_type: str, value: str
) -> dict[str, tuple[str, ...]]:
    out = dict(values)
    current = out.get(id_type, ())
    if value not in current:
        out[id_type] = tuple(sorted((*current, value)))
    return out


def _without_value(
    values: Mapping[str, tuple[str, ...]], id_type: str, value: str
) -> dict[str, tuple[str, ...]]:
    out = dict(values)
    remaining = tuple(v for v in out.get(id_type, ()) if v != value)
    if remaining:
        out[id_type] = remaining
    else:
        out.pop(id_type, None)
    return out


def _require(state: MutableIdentityState, ident: Identifier) -> IdentifierRecord:
    if not state.has_identifier(ident):
        raise MissingRecordError(f"identifier record not loaded: type={ident.type}")
    return state.identifier(ident)


def apply(state: MutableIdentityState, effects: Iterable[IdentityEffect]) -> None:
    """Apply effects in order. Idempotent per effect; audit effects are ignored."""
    for effect in effects:
        match effect:
            case ProfileCreated(profile_id=pid, created_at=created):
                state.put_profile(ProfileIdentity(pid, created))
            case IdentifierLinked(identifier=ident, profile_id=pid):
                record = state.identifier(ident)
                state.put_identifier(
                    ident, IdentifierRecord(pid, record.quarantined, record.seen_with)
                )
                profile = state.profile(pid)
                state.put_profile(
                    ProfileIdentity(
                        pid,
                        profile.created_at,
                        _with_value(profile.identifiers, ident.type, ident.value),
                        profile.merged_from,
                    )
                )
            case ProfilesMerged(survivor=sid, absorbed=aid):
                survivor = state.profile(sid)
                absorbed = state.profile(aid)
                idents = dict(survivor.identifiers)
                for moved in absorbed.all_identifiers():
                    record = _require(state, moved)
                    state.put_identifier(
                        moved, IdentifierRecord(sid, record.quarantined, record.seen_with)
                    )
                    idents = _with_value(idents, moved.type, moved.value)
                merged_from = set(survivor.merged_from) | {aid, *absorbed.merged_from}
                state.put_profile(
                    ProfileIdentity(sid, survivor.created_at, idents, tuple(sorted(merged_from)))
                )
                state.remove_profile(aid, sid)
            case CooccurrenceRecorded(identifier=ident, unique_type=utype, value=value):
                record = state.identifier(ident)
                state.put_identifier(
                    ident,
                    IdentifierRecord(
                        record.profile_id,
                        record.quarantined,
                        _with_value(record.seen_with, utype, value),
                    ),
                )
            case IdentifierQuarantined(identifier=ident):
                record = state.identifier(ident)
                if record.profile_id is not None:
                    _require(state, ident)
                    state.put_profile(_detach(state.profile(record.profile_id), ident))
                state.put_identifier(ident, IdentifierRecord(None, True, record.seen_with))
            case MergeBlocked() | LinkRejected():
                pass


__all__ = [
    "DROP_BLOCKED",
    "DROP_LIMIT_EXCEEDED",
    "DROP_QUARANTINED",
    "DROP_UNIQUE_CONFLICT",
    "EMPTY_RECORD",
    "RULE_SHARED_EVENT",
    "STATE_EFFECTS",
    "CooccurrenceRecorded",
    "IdentifierLinked",
    "IdentifierQuarantined",
    "IdentifierRecord",
    "IdentityEffect",
    "IdentityView",
    "InMemoryIdentityState",
    "LinkRejected",
    "MergeBlocked",
    "MergeEvidence",
    "MissingRecordError",
    "MutableIdentityState",
    "ProfileCreated",
    "ProfileIdentity",
    "ProfilesMerged",
    "Resolution",
    "ResolveRequest",
    "apply",
    "resolve",
]
