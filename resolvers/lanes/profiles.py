"""The profiles lane's batch: the evidence a load returned in, effects out.

    dedupe -> identity -> facts -> render (-> audiences, consent audit)

* ``dedupe``   events this lane processed already change nothing;
* ``identity`` who each event belongs to, recomputed from the evidence when it changed
               (``resolvers.stages.identity``): erasures, atoms, shared identifiers, people;
* ``facts``    each event's observation (``resolvers.stages.observe``) folds into its group's
               facts (``resolvers.profile.facts``);
* ``render``   every person the batch touched gets a new snapshot through the consent gate
               (``resolvers.profile.render``), its audience memberships evaluated on it at the
               batch's clock (``resolvers.audiences``: enter/exit as effects; a profile
               merged away or erased leaves all of its audiences); the consent audit
               (``resolvers.stages.audit``) records what each event's consent denied.

Every output is an effect (``resolvers.effects``); ``resolvers.commit_codec`` turns them into
the batch's one atomic store commit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from itertools import chain
from operator import attrgetter, eq
from typing import Any, Final

import orjson

from resolvers.audiences.definitions import changes
from resolvers.consent import EMPTY_HISTORY, ConsentHistory, EventConsent, Gate, Purpose
from resolvers.context import Context, suppression_hash
from resolvers.decode_cache import DecodeCache
from resolvers.effects import (
    AudiencesChanged,
    IdentifierWritten,
    ProfileWritten,
)
from resolvers.frozen import fast_new
from resolvers.identity.erasure import Tombstone
from resolvers.identity.evidence import (
    EMPTY_RECORD,
    MAX_HOLDERS,
    IdentifierRecord,
    Stamp,
    parse_key,
    ranked,
)
from resolvers.identity.rules import IdentityRules
from resolvers.lanes.inventory import LaneOutcome
from resolvers.lanes.stored_profile import Group, StoredProfile, decode
from resolvers.profile import facts as profile_facts
from resolvers.profile.ad_identifiers import ad_identifiers
from resolvers.profile.facts import Facts, Observation, Stamped
from resolvers.profile.render import Person, render
from resolvers.stages import audit, dedupe, identity, observe
from resolvers.steps import DUPLICATE, OK, Event
from resolvers.store import HELD_FIELD, HOLDERS_FIELD, Kind, Loaded, Ref, profile_ref
from resolvers.tuples import new_tuple
from schemas.identifiers import Identifier
from schemas.touchpoint import EventType, Touchpoint

# Enum members read per event, bound once (prefix: K_ kind, P_ purpose, T_ event type): on CPython
# 3.11 a member read off its class costs ~0.1 µs (its metaclass's attribute hook), a
# constant ~0.01 (ADR 0019).
_K_IDENTIFIER: Final = Kind.IDENTIFIER
_K_PROFILE: Final = Kind.PROFILE
_P_ADS: Final = Purpose.ADS
_T_ERASURE_REQUESTED: Final = EventType.ERASURE_REQUESTED


#: ``Cls(*every field)``, cheaper (``resolvers.frozen.fast_new``): one of each per profile
#: written.
_new_person: Final = fast_new(Person)
_new_profile_written: Final = fast_new(ProfileWritten)
#: ``Group(atoms, facts)``, cheaper: one per group a batch folds.
_new_group: Final = fast_new(Group)


def _profile_decoder(ref: Ref, rules: IdentityRules) -> Callable[[bytes], StoredProfile]:
    return lambda raw: decode(ref.name, raw, rules)


_identifiers_of: Final = attrgetter("identifiers")
_hashes_of: Final = attrgetter("suppression_hashes")


class _Digests(dict[Identifier, str]):
    """Suppression hashes by identifier (by ``(type, value)``, hashed in C), computed when
    first asked (``__missing__``).

    ``events``: the batch's, when an erasure is in play: its closure (``Closure.expand``)
    asks the hash of every identifier of every atom, the events' among them, which the events
    carry already (``Event.suppression_hashes``: one per identifier, in order, computed by the
    normalize stage under the same salt; the store loaded the tombstones by them). The first
    miss takes those in; only the rest (the stored atoms' other identifiers) is hashed here,
    a SHA-256 each (~10k instructions). Other batches ask a few hashes (a quarantine, a
    blocked merge), not worth taking 500 events' in."""

    __slots__ = ("events", "salt")

    def __init__(self, salt: bytes, events: Sequence[Event] = ()) -> None:
        super().__init__()
        self.salt = salt
        self.events = events

    def __missing__(self, ident: Identifier) -> str:
        events = self.events
        if events:
            self.events = ()
            ids = list(map(_identifiers_of, events))
            hashes = list(map(_hashes_of, events))
            # in C (~2.9k instructions per event less than a loop over them, cachegrind)
            if all(map(eq, map(len, ids), map(len, hashes))):
                pairs = zip(chain.from_iterable(ids), chain.from_iterable(hashes), strict=True)
                self.update(pairs)
            else:  # an event built without its hashes: the others'
                for event_ids, event_hashes in zip(ids, hashes, strict=True):
                    if len(event_ids) == len(event_hashes):
                        self.update(zip(event_ids, event_hashes, strict=True))
            digest = self.get(ident)
            if digest is not None:
                return digest
        digest = self[ident] = suppression_hash(ident, self.salt)
        return digest


@dataclass
class ProfilesBatch:
    """What one load returned, decoded: records, tombstones, live profiles, redirects."""

    ctx: Context
    versions: dict[Ref, int]
    records: dict[Identifier, IdentifierRecord]
    tombstones: dict[str, Tombstone]  # by salted hash
    profiles: dict[str, StoredProfile]
    redirects: dict[str, str]
    seen: frozenset[str]
    truncated: bool = False  # the load's walk stopped at ``MAX_LOAD_PROFILES`` (``Loaded``)

    @classmethod
    def from_loaded(cls, loaded: Loaded, ctx: Context) -> ProfilesBatch:
        cache = ctx.cache or DecodeCache(max_bytes=0)
        versions: dict[Ref, int] = {}
        records: dict[Identifier, IdentifierRecord] = {}
        profiles: dict[str, StoredProfile] = {}
        redirects: dict[str, str] = {}
        rules = ctx.rules
        for ref, entity in loaded.entities.items():
            versions[ref] = version = entity.version
            if version <= 0:  # ``not entity.exists``, inline
                continue
            fields = entity.fields
            kind, name = ref  # a named tuple: unpacked in C
            if kind is _K_IDENTIFIER:
                pid = fields.get("p")
                # decoded, not looked up in the cache: a record's state is a few dozen bytes
                # (``{"v":2}``, or the account ids it was seen with), which ``orjson`` parses
                # in about the time a lookup takes (a miss took 3-5 times that, and its entry
                # took budget from the profiles, whose misses cost a whole decode each)
                state = orjson.loads(fields.get("s", b"{}"))
                holders = orjson.loads(fields.get(HOLDERS_FIELD, b"[]"))
                records[parse_key(name)] = IdentifierRecord.from_json(
                    state, pid.decode() if pid is not None else None, holders
                )
            elif kind is _K_PROFILE:
                if "r" in fields:
                    redirects[name] = fields["r"].decode()
                elif "s" in fields:
                    profiles[name] = cache.get(ref, fields["s"], _profile_decoder(ref, rules))
        tombstones = {
            digest: Tombstone.from_json(orjson.loads(raw))
            for digest, raw in loaded.suppressed.items()
        }
        return cls(
            ctx, versions, records, tombstones, profiles, redirects, loaded.seen, loaded.truncated
        )

    # ------------------------------------------------------------------ the lane
    def run(self, events: Sequence[Event]) -> LaneOutcome:
        out = LaneOutcome()
        fresh, duplicates = dedupe.fresh(events, self.seen)
        for event in duplicates:
            out.outcomes[(observe.TYPE_VALUES[event.tp.type], DUPLICATE)] += 1
        # each event's touchpoint, id, type, time in UTC and consent, read once (several
        # stages ask; an attribute of a pydantic model is read through ``BaseModel``'s
        # ``__getattr__`` hook, ~0.1 µs more each on CPython 3.11)
        tps = [e.tp for e in fresh]
        fields = [tp.__dict__ for tp in tps]  # the model's fields: one hook call, not three
        event_ids = out.processed = [f["event_id"] for f in fields]
        types = [f["type"] for f in fields]
        # ``utc``, inline: a touchpoint's time is aware (``AwareDatetime``)
        times = [f["occurred_at"].astimezone(UTC) for f in fields]
        consents = [observe.event_consent(tp) for tp in tps]
        rules = self.ctx.rules
        # an erasure in play (a tombstone loaded, a request): its closure hashes every
        # identifier of every atom, the events' among them (``_Digests``)
        erasing = bool(self.tombstones) or _T_ERASURE_REQUESTED in types
        resolution = identity.resolve(
            self._evidence(fresh if erasing else ()),
            [  # ``Sighting(...)`` and ``Stamp(...)``, each in one C call
                new_tuple(
                    identity.Sighting,
                    (
                        event_id,
                        new_tuple(Stamp, (at, event_id)),
                        ranked(e.identifiers, rules),
                        event_type is _T_ERASURE_REQUESTED,
                    ),
                )
                for e, event_id, event_type, at in zip(fresh, event_ids, types, times, strict=True)
            ],
        )
        out.counts.update(resolution.counts)
        if erasing:  # (rare) the holders of what it erased that the load did not reach
            out.need = self._unloaded_holders(resolution)
        before = self._gates_before(resolution)
        touched = self._fold_facts(tps, event_ids, times, consents, resolution)
        touched |= self._prune_by_accounts(resolution)
        gates = self._render(resolution, touched, out)
        self._leave_audiences(resolution, out)
        self._audit(tps, event_ids, consents, resolution, before=before, gates=gates, out=out)
        # in the identifiers' order (type, then value: unique keys, so the identifiers and
        # records are never compared), without calling ``Identifier``'s hash or ordering
        ordered = sorted([((i.type, i.value), i, r) for i, r in resolution.records.items()])
        out.effects += [IdentifierWritten(ident, record) for _, ident, record in ordered]
        out.effects.extend(resolution.suppressed)
        out.effects.extend(resolution.redirected)
        out.effects.extend(resolution.erased)
        out.effects.extend(resolution.published)
        # counted in C (``Counter.update`` of an iterable), in the events' order as the loop did
        type_values, placed = observe.TYPE_VALUES, resolution.outcomes
        out.outcomes.update(
            [
                (type_values[event_type], placed.get(event_id, OK))
                for event_type, event_id in zip(types, event_ids, strict=True)
            ]
        )
        return out

    def _unloaded_holders(self, res: identity.Resolution) -> list[str]:
        """The profiles holding atoms that carry an identifier whose record the batch deletes
        (one it erased) that the load did not reach: a load follows ``MAX_HOLDERS`` of a
        record's holders (the record keeps up to 256). Their atoms still carry the erased
        identifier, so the batch is loaded again with them (``LaneOutcome.need``) before it
        commits; whatever the order of the events, every holder then loses it (a review of
        2026-12-04: three of 36 kept an erased kiosk)."""
        loaded, profiles, redirects = self.records, self.profiles, self.redirects
        unreached: set[str] = set()
        for ident, record in res.records.items():
            if record is None:
                before = loaded.get(ident)
                if before is not None and len(before.holders) > MAX_HOLDERS:
                    unreached.update(
                        [h for h in before.holders if h not in profiles and h not in redirects]
                    )
        return sorted(unreached)

    def _evidence(self, events: Sequence[Event] = ()) -> identity.Evidence:
        """``events``: the batch's (fresh) ones, whose identifiers' hashes they carry."""
        ctx = self.ctx
        return identity.Evidence(
            rules=ctx.rules,
            # the batch asks again and again: a known one answered in C, without a Python call
            hash_of=_Digests(ctx.salt, events).__getitem__,
            records=self.records,
            tombstones=self.tombstones,
            profiles=self.profiles,
            policy=ctx.policy,
            redirected=frozenset(self.redirects),
            # after a truncated walk, the profile ids it visited (present or not): a record
            # linked to another one is its owner's, who was not loaded (a review of
            # 2026-12-04); a whole walk visited every owner (None: nothing to look at)
            visited=(
                frozenset(name for kind, name in self.versions if kind is _K_PROFILE)
                if self.truncated
                else None
            ),
            topics={"merges": ctx.topics.merges, "erasures": ctx.topics.erasures},
        )

    def _gates_before(self, res: identity.Resolution) -> Callable[[str], Gate | None]:
        """Each person's consent as it stood before this batch's events (revocations): their
        facts are taken now (the fold replaces them), the gate built when first asked (only
        an event that denies a purpose asks)."""
        facts = {
            pid: [g.facts for g in person.groups.values()] for pid, person in res.people.items()
        }
        gates: dict[str, Gate] = {}

        def before(pid: str) -> Gate | None:
            gate = gates.get(pid)
            if gate is None and pid in facts:
                gate = gates[pid] = self._gate(facts[pid])
            return gate

        return before

    def _fold_facts(
        self,
        tps: Sequence[Touchpoint],
        event_ids: Sequence[str],
        times: Sequence[datetime],
        consents: Sequence[EventConsent],
        res: identity.Resolution,
    ) -> set[str]:
        """Each event's observation (with its time in UTC and its consent) into its group,
        each group pruned once; returns the people touched."""
        policy = self.ctx.policy
        event_group, fold_pruned = res.event_group, profile_facts.fold_pruned
        by_group: dict[str, list[Observation]] = {}  # group key -> its events, in batch order
        for tp, event_id, at, consent in zip(tps, event_ids, times, consents, strict=True):
            gkey = event_group.get(event_id)
            if gkey is None:
                continue
            obs = observe.observation(tp, at, consent)
            found = by_group.get(gkey)
            if found is None:
                by_group[gkey] = [obs]
            else:
                found.append(obs)
        owner_of_group, people = res.owner_of_group, res.people
        touched: set[str] = set()
        for gkey, observations in by_group.items():
            owner = owner_of_group[gkey]
            groups = people[owner].groups
            group = groups[gkey]
            # ``prune(fold_all(...))``; ``replace(group, facts=...)`` without its generic
            # machinery (a group is both of its fields)
            groups[gkey] = _new_group(group.atoms, fold_pruned(group.facts, observations, policy))
            touched.add(owner)
        return touched

    def _prune_by_accounts(self, res: identity.Resolution) -> set[str]:
        """Denials of an account revoke, in storage too, across the groups linked to it.

        An account's (a unique identifier's) group is its for good, whatever else is learned
        later; so is the evidence that an identifier was seen with an account. So: the
        history of account ``C`` is the merge of the account groups whose atoms carry ``C``;
        an account group is linked to the accounts its atoms carry, any other group to the
        accounts whose erasure would erase it whole (``_linked_accounts``); each group is
        pruned with the histories of the accounts it is linked to. All of it only grows with
        more events, so the pruning does not depend on their order. Where an identifier could
        still turn out to be someone else's (an email two accounts used), both accounts'
        denials apply to its own group (fail closed); a statement made under such an
        identifier alone never prunes an account's data in storage: the gate hides it.
        Returns the people whose facts changed."""
        policy = self.ctx.policy
        bound = policy.max_explicit_grants
        linked: dict[tuple[str, str], set[str]] = {}
        history = self._account_histories(res, linked)
        changed: set[str] = set()
        if not history:
            return changed
        # the accounts with a history, by type: another group's linked accounts are asked
        # only for those (an account without one merges nothing)
        with_history: dict[str, set[str]] = {}
        for account in history:
            unique_type, _, value = account.partition(":")
            with_history.setdefault(unique_type, set()).add(value)
        for pid, person in res.people.items():
            for gkey, group in list(person.groups.items()):
                facts = group.facts
                if facts.is_empty:
                    continue
                accounts = linked.get((pid, gkey))
                if accounts is None:
                    accounts = self._linked_accounts(res, group, with_history)
                also = EMPTY_HISTORY
                for account in sorted(accounts) if len(accounts) > 1 else accounts:
                    found = history.get(account)
                    if found is not None:
                        also = also.merged(found, bound)
                if also is EMPTY_HISTORY or (also is facts.consent and facts.pruned is policy):
                    # (the latter: ``prune``'s fixpoint, nothing denied later than its own)
                    continue
                pruned = profile_facts.prune(facts, policy, also)
                if pruned is not facts:
                    person.groups[gkey] = replace(group, facts=pruned)
                    changed.add(pid)
        return changed

    def _account_histories(
        self, res: identity.Resolution, linked: dict[tuple[str, str], set[str]]
    ) -> dict[str, ConsentHistory]:
        """Each account's history: the merge of the account groups' that carry it. Fills
        ``linked`` with the account groups' accounts (by person and group). An empty history
        merges to nothing (``merged`` returns the other side): an account whose groups stated
        nothing has no entry, and a batch in which none stated anything prunes nothing."""
        bound = self.ctx.policy.max_explicit_grants
        unique = self.ctx.rules.unique_types  # ``rules.is_unique``, inline
        history: dict[str, ConsentHistory] = {}
        for pid, person in res.people.items():
            for gkey, group in person.groups.items():
                if gkey.startswith("u:"):
                    # the accounts its atoms carry (``Identifier.key``, inline)
                    accounts = linked[(pid, gkey)] = {
                        f"{ident.type}:{ident.value}"
                        for atom in group.atoms.values()
                        for ident in atom.ids
                        if ident.type in unique
                    }
                    consent = group.facts.consent
                    if consent.purposes:
                        for account in accounts:
                            history[account] = history.get(account, EMPTY_HISTORY).merged(
                                consent, bound
                            )
        return history

    def _linked_accounts(
        self, res: identity.Resolution, group: Group, with_history: Mapping[str, set[str]]
    ) -> set[str]:
        """The accounts (``type:value`` of unique identifiers) with a history that a group
        other than an account group is linked to for good: those whose erasure would erase
        the group whole (``resolvers.identity.erasure``), so that nothing pruned under their
        denials can be seen again. An atom goes with an account when it carries the account
        id, when an identifier of it that relays (any but a device) was seen with the account,
        or when every identifier of it was (the records keep them, capped: the same whatever
        the order); a group goes when all its atoms do. A device seen with the account alone
        does not link an atom that also carries an identifier of someone else's (ann@'s click
        on the account's device): its erasure cuts the device out and the click is ann@'s, so
        the account's denials hide it at rendering while it is in the account's person, and
        do not prune it. ``with_history``: the values of the accounts with a history, by
        type."""
        rules = self.ctx.rules
        unique, devices = rules.unique_types, rules.device_types  # ``is_unique``, inline
        written, loaded = res.records, self.records
        out: set[str] | None = None
        for atom in group.atoms.values():
            linked: set[str] = set()
            every: set[str] | None = None  # the accounts every identifier was seen with
            for ident in atom.ids:
                ident_type = ident.type
                if ident_type in unique:
                    if ident.value in with_history.get(ident_type, ()):
                        linked.add(f"{ident_type}:{ident.value}")
                    every = set()
                    continue
                record = written.get(ident)  # ``_record``, inline
                if record is None:
                    record = loaded.get(ident, EMPTY_RECORD)
                seen: set[str] = set()
                for unique_type, values in record.seen_with.items():
                    wanted = with_history.get(unique_type)
                    if wanted:
                        seen.update([f"{unique_type}:{v}" for v in values if v in wanted])
                if ident_type not in devices:
                    linked |= seen
                every = seen if every is None else every & seen
            if every:
                linked |= every
            out = linked if out is None else out & linked
            if not out:
                break
        return out or set()

    def _gate(self, groups: Sequence[Facts]) -> Gate:
        if len(groups) == 1:  # most people: their one group's history and region
            only = groups[0]
            stamped = only.region
            return Gate(self.ctx.policy, only.consent, None if stamped is None else stamped.value)
        consent: ConsentHistory = EMPTY_HISTORY
        region: Stamped | None = None
        bound = self.ctx.policy.max_explicit_grants
        for facts in groups:
            consent = consent.merged(facts.consent, bound)
            region = profile_facts.later(region, facts.region)
        return Gate(self.ctx.policy, consent, region.value if region is not None else None)

    def _render(
        self, res: identity.Resolution, touched: set[str], out: LaneOutcome
    ) -> dict[str, Gate]:
        gates: dict[str, Gate] = {}
        for pid in sorted(res.people):
            person = res.people[pid]
            if pid not in touched and not person.changed:
                continue
            gates[pid], _ = self._write(person.stored(), out)
        return gates

    def _write(
        self, stored: StoredProfile, out: LaneOutcome, *, only_if_moved: bool = False
    ) -> tuple[Gate, dict[str, Any]]:
        """Render ``stored``, evaluate its audiences, write it (with ``only_if_moved``: only
        when its membership changed). Returns its gate and snapshot."""
        groups = [g.facts for g in stored.groups.values()]
        gate = self._gate(groups)
        version = self.versions.get(profile_ref(stored.profile_id), 0) + 1
        snapshot = render(
            _new_person(  # positional: every field of ``Person``, in order
                stored.profile_id,
                version,
                stored.identifiers,
                groups,
                stored.first.at,  # created_at
                stored.merged_from,
                (),  # audiences (``_join_audiences`` sets the snapshot's)
                # shown only while ads is granted now (render empties the field otherwise)
                ad_identifiers(stored.identifiers) if _P_ADS in gate.granted_now() else (),
                {},  # extra
            ),
            gate,
        )
        members, moved = self._join_audiences(stored, snapshot, version, out)
        if moved is not None or not only_if_moved:
            if members != stored.audiences:
                stored = replace(stored, audiences=members)
            out.effects.append(_new_profile_written(stored, version, snapshot))
        return gate, snapshot

    def refresh(self) -> tuple[LaneOutcome, dict[str, dict[str, Any]]]:
        """The scheduled pass over the loaded profiles (no events): audiences re-evaluated at
        the batch's clock; a profile whose membership moved gets a new snapshot, the others
        are not written. Returns the outcome and every profile's snapshot (for the
        category medians)."""
        out = LaneOutcome()
        snapshots = {
            pid: self._write(stored, out, only_if_moved=True)[1]
            for pid, stored in sorted(self.profiles.items())
        }
        return out, snapshots

    def _join_audiences(
        self, stored: StoredProfile, snapshot: dict[str, Any], version: int, out: LaneOutcome
    ) -> tuple[tuple[str, ...], AudiencesChanged | None]:
        """The audiences ``snapshot`` belongs to at the batch's clock (sorted), into the
        snapshot; what changed since the profile's last snapshot as an effect (returned too)."""
        ctx = self.ctx
        audiences = ctx.audiences
        # none defined (a worker without an audiences file): a member of none, asked of none
        members: tuple[str, ...] = (
            tuple(sorted(audiences.members(snapshot, ctx.now, ctx.medians)))
            if audiences.by_name
            else ()
        )
        snapshot["audiences"] = list(members)
        loaded = self.profiles.get(stored.profile_id)
        before = loaded.audiences if loaded is not None else ()
        if before == members:  # the same audiences (both sorted): none entered or left
            return members, None
        entered, exited = changes(before, members)
        if not entered and not exited:
            return members, None
        change = AudiencesChanged(
            stored.profile_id,
            tuple(entered),
            tuple(exited),
            ctx.now,
            ctx.topics.audience_changes,
            version,
        )
        out.effects.append(change)
        return members, change

    def _leave_audiences(self, res: identity.Resolution, out: LaneOutcome) -> None:
        """A profile merged away or erased leaves every audience it was in."""
        ctx = self.ctx
        gone = {e.profile_id for e in res.redirected} | {e.profile_id for e in res.erased}
        for pid in sorted(gone):
            loaded = self.profiles.get(pid)
            if loaded is not None and loaded.audiences and pid not in res.people:
                out.effects.append(
                    AudiencesChanged(
                        pid, (), loaded.audiences, ctx.now, ctx.topics.audience_changes
                    )
                )

    def _audit(
        self,
        tps: Sequence[Touchpoint],
        event_ids: Sequence[str],
        consents: Sequence[EventConsent],
        res: identity.Resolution,
        *,
        before: Callable[[str], Gate | None],
        gates: Mapping[str, Gate],
        out: LaneOutcome,
    ) -> None:
        """The consent audit of the batch (``resolvers.stages.audit``)."""
        event_group, owner_of_group = res.event_group, res.owner_of_group
        owners = [
            owner_of_group.get(gkey) if (gkey := event_group.get(event_id)) is not None else None
            for event_id in event_ids
        ]
        ctx = self.ctx
        out.effects.extend(
            audit.audit(
                tps,
                consents,
                owners,
                before,
                gates,
                policy=ctx.policy,
                topic=ctx.topics.consent_audit,
                now=ctx.now,
                counts=out.counts,
            )
        )


__all__ = ["HELD_FIELD", "Group", "ProfilesBatch"]
