"""The identity stage (``resolvers.stages.identity``) and the replay
(``resolvers.identity.cluster``) as they were before issue 17's fourteenth pass (main
0ce3b22), kept verbatim as the reference the faster stage is compared with
(``test_identity_stage_reference``). Only the module docstrings and ``__all__`` were dropped,
and the stage calls this module's ``cluster``. Not used by Loom. Changed since with the stage:
identifiers shared through another one (``_shared_through``, a review of 2026-12-04)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Final, NamedTuple

import orjson

from resolvers.consent import ConsentPolicy
from resolvers.effects import (
    Count,
    Measure,
    ProfileErased,
    ProfileRedirected,
    Published,
    Suppressed,
)
from resolvers.identity.cluster import Blocked, Clustering, Person, _Building, _rule
from resolvers.identity.erasure import Closure, Tombstone
from resolvers.identity.evidence import (
    EMPTY_RECORD,
    Atom,
    IdentifierRecord,
    Stamp,
    is_account,
    profile_id_for,
)
from resolvers.identity.evidence import keys as atom_keys
from resolvers.identity.rules import IdentityRules
from resolvers.lanes.stored_profile import Group, StoredProfile
from resolvers.profile import facts as profile_facts
from resolvers.profile.facts import EMPTY_FACTS, Facts
from resolvers.timefmt import format_time
from resolvers.tuples import new_tuple
from schemas.identifiers import Identifier

# Enum members read per event, bound once (prefix: M_ measure): on CPython
# 3.11 a member read off its class costs ~0.1 µs (its metaclass's attribute hook), a
# constant ~0.01 (ADR 0019).
_M_ERASURES: Final = Measure.ERASURES
_M_MERGES: Final = Measure.MERGES
_M_MERGES_BLOCKED: Final = Measure.MERGES_BLOCKED
_M_PROFILES_CREATED: Final = Measure.PROFILES_CREATED
_M_QUARANTINED: Final = Measure.QUARANTINED
_M_SUPPRESSED_EVENTS: Final = Measure.SUPPRESSED_EVENTS
_M_UNATTRIBUTED: Final = Measure.UNATTRIBUTED


NAME = "identity"

#: Event outcomes this stage decides (besides ``ok``).
ERASED: Final = "erased"
NOTHING_TO_ERASE: Final = "erasure_nothing_to_erase"
SUPPRESSED: Final = "suppressed"  # carried an erased person's identifier
UNATTRIBUTED: Final = "unattributed"  # carried only shared identifiers: nobody's event


class Sighting(NamedTuple):
    """One new event's identity input: identifiers normalized, blocked values removed. A
    named tuple: one is built per event (cheaper than a frozen dataclass)."""

    event_id: str
    stamp: Stamp
    ids: tuple[Identifier, ...]
    erase: bool = False  # an erasure request naming ``ids``


@dataclass(frozen=True, slots=True)
class Evidence:
    rules: IdentityRules
    hash_of: Callable[[Identifier], str]  # salted suppression hash
    records: Mapping[Identifier, IdentifierRecord]
    tombstones: Mapping[str, Tombstone]  # by salted hash
    profiles: Mapping[str, StoredProfile]  # live, loaded
    policy: ConsentPolicy  # the facts of regrouped atoms are merged under it
    redirected: frozenset[str] = frozenset()  # loaded ids that are redirects today
    topics: Mapping[str, str] = field(default_factory=dict)  # merges, erasures


@dataclass
class PersonDraft:
    """A person after this batch, before their facts fold and render."""

    profile_id: str
    first: Stamp
    identifiers: Mapping[str, tuple[str, ...]]
    groups: dict[str, Group]
    merged_from: set[str] = field(default_factory=set)
    changed: bool = False  # identity, composition or history changed: render it

    def stored(self) -> StoredProfile:
        return StoredProfile(
            self.profile_id,
            self.first,
            self.identifiers,
            dict(self.groups),
            tuple(sorted(self.merged_from - {self.profile_id})),
        )


@dataclass
class Resolution:
    people: dict[str, PersonDraft]
    owner_of_group: dict[str, str]  # group key -> profile id
    event_group: dict[str, str]  # event id -> the group its facts fold into
    outcomes: dict[str, str]  # event id -> outcome other than ok
    records: dict[Identifier, IdentifierRecord | None]  # changed records (None: delete)
    suppressed: list[Suppressed]
    redirected: list[ProfileRedirected]
    erased: list[ProfileErased]
    published: list[Published]
    counts: Counter[Count]


# --------------------------------------------------------------------------- the stage


def resolve(evidence: Evidence, sightings: Iterable[Sighting]) -> Resolution:
    sightings = list(sightings)
    events = [s for s in sightings if not s.erase]
    run = _Run(evidence)
    run.erase([s for s in sightings if s.erase])
    run.expand(events)
    run.regroup()
    run.add_atoms(events)
    run.cooccur()
    run.assign()
    run.diff()
    run.write_records()
    run.tombstones()
    return run.resolution


class _Run:
    """One batch's identity resolution; each method is one step of the module docstring."""

    def __init__(self, evidence: Evidence) -> None:
        self.ev = evidence
        self.rules = evidence.rules
        self.records: dict[Identifier, IdentifierRecord] = dict(evidence.records)
        self.closure = Closure(evidence.rules, evidence.hash_of)
        for digest, tomb in evidence.tombstones.items():
            self.closure.tombstone(digest, tomb)
        # the evidence being rebuilt
        self.groups: dict[str, dict[str, Atom]] = {}
        self.facts: dict[str, Facts] = {}
        self.old_owner: dict[str, str] = {}
        for pid, profile in evidence.profiles.items():
            for gkey, group in profile.groups.items():
                self.groups[gkey] = dict(group.atoms)
                self.facts[gkey] = group.facts
                self.old_owner[gkey] = pid
        self.changed = False  # identity evidence changed: recluster
        self.erasing = False
        self.pending: list[Sighting] = []
        # records cooccur replaced, by (type, value): (identifier, record now)
        self.relearned: dict[tuple[str, str], tuple[Identifier, IdentifierRecord]] = {}
        self.clustering: Clustering | None = None
        self.requested: dict[str, tuple[Identifier, ...]] = {}
        self.resolution = Resolution(
            people={},
            owner_of_group={},
            event_group={},
            outcomes={},
            records={},
            suppressed=[],
            redirected=[],
            erased=[],
            published=[],
            counts=Counter(),
        )

    # 1. erase ----------------------------------------------------------------------------
    def erase(self, requests: list[Sighting]) -> None:
        for request in requests:
            self.closure.request(request.ids)
            known = any(not self.records.get(i, EMPTY_RECORD).is_empty for i in request.ids)
            self.resolution.outcomes[request.event_id] = ERASED if known else NOTHING_TO_ERASE
            # added with the announcement of a request that erased no profile (2026-12-05)
            self.requested[request.event_id] = request.ids
            self.erasing = True

    def expand(self, events: list[Sighting]) -> None:
        """Follow the erasures through the stored atoms and the new events' ones."""
        if not self.closure.absorbed:
            return
        stored = [a for atoms in self.groups.values() for a in atoms.values()]
        before = dict(self.closure.absorbed)
        self.closure.expand([*stored, *(Atom(s.ids, s.stamp) for s in events if s.ids)])
        if any(before.get(d) != t for d, t in self.closure.absorbed.items()):
            self.erasing = True

    def tombstones(self) -> None:
        """Every tombstone this batch made or changed, with the profiles now holding its
        ghost."""
        if not self.closure.absorbed:
            return  # no tombstone, nothing to hold
        for gkey, atoms in self.groups.items():
            owner = self.resolution.owner_of_group.get(gkey)
            if owner is not None:
                for atom in atoms.values():
                    self.closure.hold(atom.ghosts, owner)
        for digest, tomb in self.closure.absorbed.items():
            if self.ev.tombstones.get(digest) != tomb:
                self.resolution.suppressed.append(Suppressed(digest, _tomb_json(tomb)))

    # 2. regroup: apply the closure to the stored atoms -------------------------------------
    def regroup(self) -> None:
        if not self.closure.absorbed:
            return
        groups, facts = self.groups, self.facts
        self.groups, self.facts = {}, {}
        for gkey, atoms in groups.items():
            for atom in atoms.values():
                kept = self.closure.reduce(atom, anchored=gkey.startswith("u:"))
                if kept is not atom:
                    self.changed = True
                if kept is None:
                    continue
                self._put(kept, facts[gkey], owner=self.old_owner.get(gkey))
                facts[gkey] = EMPTY_FACTS  # a group's facts move once, with its first atom

    def _put(
        self,
        atom: Atom,
        facts: Facts,
        *,
        owner: str | None = None,
        keys: tuple[str, str] | None = None,
    ) -> str:
        """``keys``: the atom's group key and key when the caller has them."""
        gkey, key = keys if keys is not None else atom_keys(atom.ids, self.rules)
        atoms = self.groups.setdefault(gkey, {})
        old = atoms.get(key)
        atoms[key] = atom if old is None else old.joined(atom)
        if not facts.is_empty:
            have = self.facts.get(gkey, EMPTY_FACTS)
            self.facts[gkey] = profile_facts.merge(have, facts, self.ev.policy)
        else:
            self.facts.setdefault(gkey, EMPTY_FACTS)
        if owner is not None:
            self.old_owner.setdefault(gkey, owner)
        return gkey

    # 3. atoms of the new events --------------------------------------------------------------
    def add_atoms(self, sightings: list[Sighting]) -> None:
        rules, closure, groups, facts = self.rules, self.closure, self.groups, self.facts
        res = self.resolution
        event_group, pending = res.event_group, self.pending
        for s in sightings:
            ids = s.ids
            if not ids:
                continue
            atom: Atom | None = None  # built when needed: most events repeat a known set
            if closure.absorbed:  # else nothing to reduce
                atom = closure.reduce(Atom(ids, s.stamp), anchored=is_account(ids, rules))
                if atom is None:
                    res.outcomes[s.event_id] = SUPPRESSED
                    res.counts[Count(_M_SUPPRESSED_EVENTS)] += 1
                    continue
                ids = atom.ids
            gkey, akey = atom_keys(ids, rules)
            atoms = groups.get(gkey)
            old = atoms.get(akey) if atoms is not None else None
            if old is None:
                if self._all_shared(ids):
                    res.outcomes[s.event_id] = UNATTRIBUTED  # nobody's; no replay
                    res.counts[Count(_M_UNATTRIBUTED)] += 1
                    continue
                if atoms is None:
                    atoms = groups[gkey] = {}
                    facts.setdefault(gkey, EMPTY_FACTS)
                # ``Atom(ids, s.stamp)`` in one C call
                atoms[akey] = atom if atom is not None else new_tuple(Atom, (ids, s.stamp, ()))
                self.changed = True
            elif atom is not None or old.ghosts or s.stamp < old.first:
                # (else ``old.joined`` is ``old``: the set seen again, no earlier, no ghosts)
                joined = old.joined(
                    atom if atom is not None else new_tuple(Atom, (ids, s.stamp, ()))
                )
                if joined is not old:  # an earlier stamp, or ghosts
                    groups[gkey][akey] = joined
                    self.changed = True
            event_group[s.event_id] = gkey
            pending.append(s if ids is s.ids else Sighting(s.event_id, s.stamp, ids))

    # 4. co-occurrence and shared identifiers --------------------------------------------------
    def cooccur(self) -> None:
        rules, records, relearned = self.rules, self.records, self.relearned
        unique = rules.unique_types
        for s in self.pending:
            if len(s.ids) < 2:
                continue  # a lone identifier co-occurs with nothing (the test below)
            uniques = [i for i in s.ids if i.type in unique]
            if not uniques or len(uniques) == len(s.ids):
                continue
            for ident in s.ids:
                if ident.type in unique:
                    continue
                old = records.get(ident, EMPTY_RECORD)
                new = old.with_cooccurrence(ident, uniques, rules)
                if new is old:
                    continue
                records[ident] = new
                relearned[(ident.type, ident.value)] = (ident, new)
                if new.quarantined and not old.quarantined:
                    self.changed = True
                    self._quarantined(ident, new, s.event_id)

    def _quarantined(self, ident: Identifier, record: IdentifierRecord, event_id: str) -> None:
        counts = [len(vs) for vs in record.seen_with.values()]
        self.resolution.counts[Count(_M_QUARANTINED)] += 1
        self.resolution.published.append(
            Published(
                self.ev.topics.get("merges", "identity.merges"),
                record.profile_id,
                {
                    "kind": "quarantined",
                    "identifier_type": ident.type,
                    "identifier": self.ev.hash_of(ident)[:16],
                    "reason": f"quarantine:{ident.type}",
                    "evidence_count": max(counts, default=0),
                    "event_id": event_id,
                },
            )
        )

    def _all_shared(self, ids: tuple[Identifier, ...]) -> bool:
        records = self.records
        for ident in ids:
            record = records.get(ident)
            if record is None or not record.quarantined:
                return False
        return True

    def _shared(self) -> frozenset[Identifier]:
        return frozenset(i for i, r in self.records.items() if r.quarantined)

    def _shared_through(self, atoms: list[Atom]) -> frozenset[Identifier]:
        """Added with the stage (a review of 2026-12-04), written plainly: an identifier seen
        in an atom with one of a more trustworthy type, neither unique nor a device, counts
        that one's account ids as its own."""
        rules = self.rules
        counted: dict[Identifier, dict[str, set[str]]] = {}
        for ident, record in self.records.items():
            counted[ident] = {t: set(vs) for t, vs in record.seen_with.items()}
        through: set[Identifier] = set()
        for atom in atoms:
            for other in atom.ids:
                if rules.is_unique(other.type) or rules.is_device(other.type):
                    continue
                for ident in atom.ids:
                    if rules.is_unique(ident.type) or rules.rank(ident.type) <= rules.rank(
                        other.type
                    ):
                        continue
                    seen = self.records.get(other, EMPTY_RECORD).seen_with
                    for id_type, values in seen.items():
                        counted.setdefault(ident, {}).setdefault(id_type, set()).update(values)
        for ident, by_type in counted.items():
            if any(len(vs) > rules.threshold(ident.type) for vs in by_type.values()):
                through.add(ident)
        return frozenset(through)

    # 5. people -------------------------------------------------------------------------------
    def assign(self) -> None:
        res = self.resolution
        shared = self._shared()
        if not self.changed and not self.erasing:
            for pid, profile in self.ev.profiles.items():
                res.people[pid] = PersonDraft(
                    pid,
                    profile.first,
                    profile.identifiers,
                    {g: Group(self.groups[g], self.facts[g]) for g in profile.groups},
                    set(profile.merged_from),
                )
                for gkey in profile.groups:
                    res.owner_of_group[gkey] = pid
            self._unattributed()
            return
        atoms = [a for atoms in self.groups.values() for a in atoms.values()]
        shared = shared | self._shared_through(atoms)
        self.clustering = clustering = cluster(atoms, shared, self.rules)
        people, owner_of_group, facts = res.people, res.owner_of_group, self.facts
        owners = clustering.owners
        for pid, person in clustering.people.items():
            people[pid] = PersonDraft(pid, person.first, person.identifiers, {})
        left_out = {(i.type, i.value) for i in shared}
        for gkey, group_atoms in self.groups.items():
            best = _best(group_atoms, left_out, self.rules)
            owner = owners.get(best) if best is not None else None
            if owner is None:
                continue  # only shared identifiers: its events are nobody's
            owner_of_group[gkey] = owner
            people[owner].groups[gkey] = Group(group_atoms, facts[gkey])
        self._unattributed()
        self._blocked(clustering)

    def _unattributed(self) -> None:
        """Events whose group has no owner carried only shared identifiers: nobody's."""
        res = self.resolution
        for event_id, gkey in list(res.event_group.items()):
            if gkey not in res.owner_of_group:
                del res.event_group[event_id]
                res.outcomes[event_id] = UNATTRIBUTED
                res.counts[Count(_M_UNATTRIBUTED)] += 1

    def _blocked(self, clustering: Clustering) -> None:
        new = {s.event_id for s in self.pending}
        for blocked in clustering.blocked:
            if blocked.atom.first.event_id not in new:
                continue  # announced when its atom first came
            res = self.resolution
            owner = clustering.person_of(blocked.atom.ids[0])
            others = sorted({p for i in blocked.dropped if (p := clustering.person_of(i))})
            res.counts[Count(_M_MERGES_BLOCKED, rule=blocked.rule)] += 1
            res.published.append(
                Published(
                    self.ev.topics.get("merges", "identity.merges"),
                    owner,
                    {
                        "kind": "merge_blocked",
                        "profile_ids": [p for p in (owner, *others) if p is not None],
                        "event_id": blocked.atom.first.event_id,
                        "rule": blocked.rule,
                        "reason": blocked.reason,
                        "dropped": [self.ev.hash_of(i)[:16] for i in blocked.dropped],
                        "dropped_types": sorted({i.type for i in blocked.dropped}),
                    },
                )
            )

    # 6. what happened to the profiles that were -----------------------------------------------
    def diff(self) -> None:
        res = self.resolution
        people = res.people
        live = set(people)
        for pid, profile in self.ev.profiles.items():
            older = tuple(p for p in profile.merged_from if p not in live)
            if pid in people:
                person = people[pid]
                person.merged_from |= set(older)
                person.changed |= _changed(profile, person)
                continue
            target = self._successor(profile)
            if target is None:
                reason = "erased" if self.erasing else "dissolved"
                res.erased.append(ProfileErased(pid, older, reason))
                continue
            into = people[target]
            into.merged_from |= {pid, *older}
            into.changed = True
            res.redirected.append(ProfileRedirected(pid, target, older))
            res.counts[Count(_M_MERGES)] += 1
            res.published.append(
                Published(
                    self.ev.topics.get("merges", "identity.merges"),
                    target,
                    {
                        "kind": "merged",
                        "survivor": target,
                        "absorbed": pid,
                        "event_id": into.first.event_id,
                        "rule": "shared_event",
                        "occurred_at": format_time(into.first.at),
                    },
                )
            )
        for pid, person in people.items():
            person.merged_from -= live  # an id live again (a person re-formed) is no redirect
            if pid not in self.ev.profiles:
                person.changed = True
                if pid not in self.ev.redirected:
                    res.counts[Count(_M_PROFILES_CREATED)] += 1
        if self.erasing:
            self._announce_erasures()

    def _successor(self, profile: StoredProfile) -> str | None:
        """Where a profile that is no longer a person lives on: the person now holding its
        earliest events (None: they were erased, or all became nobody's)."""
        candidates = [
            (group.earliest(), self.resolution.owner_of_group[gkey])
            for gkey, group in profile.groups.items()
            if gkey in self.resolution.owner_of_group
        ]
        regrouped = [
            (min(a.first for a in self.groups[g].values()), owner)
            for g, owner in self.resolution.owner_of_group.items()
            if self.old_owner.get(g) == profile.profile_id
        ]
        found = min(candidates + regrouped, default=None)
        return found[1] if found is not None else None

    def _announce_erasures(self) -> None:
        res = self.resolution
        requests = [e for e, o in res.outcomes.items() if o in (ERASED, NOTHING_TO_ERASE)]
        announced = False
        for erased in res.erased:
            if erased.reason != "erased":
                continue
            announced = True
            res.counts[Count(_M_ERASURES)] += 1
            res.published.append(
                Published(
                    self.ev.topics.get("erasures", "privacy.erasures"),
                    erased.profile_id,
                    {
                        "profile_id": erased.profile_id,
                        # the request; None when a later event linked the profile to an
                        # identifier erased before (the erasure continues, ADR 0004)
                        # changed with the attribution to the request that named it (2026-12-05)
                        "event_id": next(
                            (
                                e
                                for e in requests
                                if {
                                    i
                                    for _, atom in self.ev.profiles[erased.profile_id].atoms()
                                    for i in atom.ids
                                }
                                & set(self.requested.get(e, ()))
                            ),
                            requests[0] if requests else None,
                        ),
                        "identifiers_suppressed": len(self.closure.absorbed),
                        "merged_from": list(erased.merged_from),
                        # added with the gateway memory's erasure (not part of the refactor)
                        "customer_digests": sorted(
                            {
                                self.ev.hash_of(i)
                                for _, atom in self.ev.profiles[erased.profile_id].atoms()
                                for i in atom.ids
                                if i.type == "customer_id"
                            }
                        ),
                    },
                )
            )
        # added with the announcement of a request that erased no profile (2026-12-05)
        topic = self.ev.topics.get("erasures", "privacy.erasures")
        named = {
            d
            for p in res.published
            if p.topic == topic and p.value is not None
            for d in p.value["customer_digests"]
        }
        known = self.closure.known
        left = sorted(
            d
            for d in self.closure.absorbed
            if d in known
            and known[d].type == "customer_id"
            and d not in named
            and d not in self.ev.tombstones
        )
        alone = [e for e in requests if not announced or res.outcomes[e] != ERASED]
        for event_id in alone or ([requests[0] if requests else None] if left else []):
            res.published.append(
                Published(
                    self.ev.topics.get("erasures", "privacy.erasures"),
                    event_id or left[0],
                    {
                        "profile_id": None,
                        "event_id": event_id,
                        "identifiers_suppressed": len(self.closure.absorbed),
                        "merged_from": [],
                        "customer_digests": sorted(
                            {
                                *left,
                                *(
                                    self.ev.hash_of(i)
                                    for i in (self.requested.get(event_id, ()) if event_id else ())
                                    if i.type == "customer_id"
                                ),
                            }
                        ),
                    },
                )
            )

    # 7. identifier records ----------------------------------------------------------------------
    def write_records(self) -> None:
        """Each record the batch loaded or learned, and each identifier the people's atoms
        carry: linked to its owner, held by the profiles whose groups carry it."""
        holders = self._holders()
        relearned = self.relearned
        owners = self.clustering.owners if self.clustering is not None else None
        absorbed = self.closure.absorbed
        for ident, loaded in self.ev.records.items():
            key = (ident.type, ident.value)
            learned = relearned.pop(key, None)
            held = holders.pop(key, None)
            if (
                learned is None
                and not absorbed
                and held is not None
                and len(held[1]) == 1
                and len(loaded.holders) == 1
                and loaded.holders[0] in held[1]
                and (owners is None or owners.get(key) == loaded.profile_id)
            ):
                continue  # most: still linked and held as loaded (``_write_record``'s answer)
            self._write_record(
                ident,
                key,
                loaded if learned is None else learned[1],
                loaded,
                held[1] if held is not None else None,
            )
        for key, (ident, record) in relearned.items():  # first records, learned this batch
            held = holders.pop(key, None)
            self._write_record(ident, key, record, None, held[1] if held is not None else None)
        for key, (ident, held_by) in holders.items():  # no record yet
            self._write_record(ident, key, EMPTY_RECORD, None, held_by)

    def _holders(self) -> dict[tuple[str, str], tuple[Identifier, set[str]]]:
        """The profiles holding atoms that carry each identifier, by ``(type, value)``."""
        owner_of_group = self.resolution.owner_of_group
        holders: dict[tuple[str, str], tuple[Identifier, set[str]]] = {}
        for gkey, atoms in self.groups.items():
            owner = owner_of_group.get(gkey)
            if owner is None:
                continue
            for atom in atoms.values():
                for ident in atom.ids:
                    key = (ident.type, ident.value)
                    held = holders.get(key)
                    if held is None:
                        holders[key] = (ident, {owner})
                    else:
                        held[1].add(owner)
        return holders

    def _write_record(
        self,
        ident: Identifier,
        key: tuple[str, str],
        old: IdentifierRecord,
        loaded: IdentifierRecord | None,
        held: set[str] | None,
    ) -> None:
        """``old`` (the record as this batch left it) linked and held as the people are now;
        written if it differs from what was ``loaded``, deleted if it became empty."""
        out = self.resolution.records
        if self.closure.absorbed and self.closure.is_absorbed(ident):
            if loaded is not None:
                out[ident] = None
            return
        names: set[str] = held if held is not None else set()
        if old.holders:  # profiles not loaded still hold it, as far as this batch knows
            loaded_pids = self.ev.profiles
            names = names | {h for h in old.holders if h not in loaded_pids}
        clustering = self.clustering
        owner = clustering.owners.get(key) if clustering is not None else old.profile_id
        new = old.linked_to(owner).with_holders(names)
        if new.is_empty:
            if loaded is not None:
                out[ident] = None
        elif new is not loaded and new != loaded:
            out[ident] = new


def _best(
    atoms: Mapping[str, Atom], left_out: set[tuple[str, str]], rules: IdentityRules
) -> tuple[str, str] | None:
    """A group's best identifier still linking (its account id, or its atom's best one), as
    ``(type, value)``; ``left_out``: the shared ones, likewise."""
    index = rules.rank_index
    unlisted = len(index)
    best: tuple[int, str, str] | None = None
    for atom in atoms.values():
        for ident in atom.ids:
            id_type, value = ident
            if (id_type, value) in left_out:
                continue
            rank = (index.get(id_type, unlisted), id_type, value)  # as ``ranked`` orders
            if best is None or rank < best:
                best = rank
            break  # an atom's identifiers are ranked: its first one still linking is its best
    return (best[1], best[2]) if best is not None else None


def _changed(profile: StoredProfile, person: PersonDraft) -> bool:
    if profile.first != person.first or dict(profile.identifiers) != dict(person.identifiers):
        return True
    if set(profile.groups) != set(person.groups):
        return True
    return any(
        dict(profile.groups[g].atoms) != dict(person.groups[g].atoms) for g in profile.groups
    )


def _tomb_json(tomb: Tombstone) -> bytes:
    return orjson.dumps(tomb.to_json())


# --------------------------------------------------------------------------- the replay, verbatim


class _Replay:
    """The replay's state. Identifiers are keyed by ``(type, value)`` here (hashed in C; an
    :class:`Identifier`'s dataclass ``__hash__`` is a Python call)."""

    def __init__(self, rules: IdentityRules) -> None:
        self.rules = rules
        self.parent: list[int] = []  # union-find over people, by creation
        self.people: dict[int, _Building] = {}
        self.owner: dict[tuple[str, str], int] = {}
        self.blocked: list[Blocked] = []
        self.limits: dict[str, int] = {}  # rules.limit, by type
        self.ranks: dict[str, tuple[int, str]] = {}  # rules.rank, by type (of placed ones)

    def find(self, node: int) -> int:
        parent = self.parent
        root = node
        while parent[root] != root:
            root = parent[root]
        while parent[node] != root:  # path compression
            parent[node], node = root, parent[node]
        return root

    def _limit(self, id_type: str) -> int:
        limit = self.limits[id_type] = self.rules.limit(id_type)
        self.ranks[id_type] = self.rules.rank(id_type)
        return limit

    def _conflict(
        self, combined: Mapping[str, set[str]], theirs: Mapping[str, set[str]]
    ) -> tuple[str, str] | None:
        """The first rule (type priority) that joining ``theirs`` to ``combined`` would
        break."""
        limits = self.limits
        for id_type in sorted(theirs, key=self.ranks.__getitem__) if len(theirs) > 1 else theirs:
            ours = combined.get(id_type)
            total = len(theirs[id_type]) if not ours else len(ours | theirs[id_type])
            if total > limits[id_type]:
                return _rule(id_type, self.rules)
        return None

    def place(self, atom: Atom, ids: tuple[Identifier, ...]) -> None:
        owner, limits, people = self.owner, self.limits, self.people
        if len(ids) == 1:  # most atoms (a device or an email alone): no conflict possible
            self._place_alone(atom, ids[0])
            return
        joined: list[int] = []
        combined: dict[str, set[str]] = {}
        to_link: list[Identifier] = []
        blocked: dict[tuple[str, str], list[Identifier]] = {}
        for ident in ids:
            id_type = ident.type
            node = owner.get((id_type, ident.value))
            if node is None:
                have = combined.get(id_type)
                if have is None:
                    have = combined[id_type] = set()
                limit = limits.get(id_type)
                if limit is None:
                    limit = self._limit(id_type)
                if ident.value in have:
                    to_link.append(ident)
                elif len(have) >= limit:
                    blocked.setdefault(_rule(id_type, self.rules), []).append(ident)
                else:
                    have.add(ident.value)
                    to_link.append(ident)
                continue
            root = self.find(node)
            if root in joined:
                continue
            theirs = people[root].ids
            if combined:
                conflict = self._conflict(combined, theirs)
                if conflict is not None:
                    blocked.setdefault(conflict, []).append(ident)
                    continue
            joined.append(root)
            for id_type, values in theirs.items():
                have = combined.get(id_type)
                if have is None:
                    combined[id_type] = set(values)
                else:
                    have.update(values)
        self._settle(atom, joined, to_link)
        if blocked:
            self.blocked.extend(
                Blocked(atom, rule, reason, tuple(idents))
                for (rule, reason), idents in sorted(blocked.items())
            )

    def _place_alone(self, atom: Atom, ident: Identifier) -> None:
        """:meth:`place` of an atom of one identifier: placed already, it joins that person
        and links nothing; else it makes a new person (every limit is at least 1)."""
        id_type, value = ident
        key = (id_type, value)
        owner = self.owner
        if key in owner:
            return
        if id_type not in self.limits:
            self._limit(id_type)  # (and its rank, which ``_conflict`` reads later)
        target = len(self.parent)
        self.parent.append(target)
        self.people[target] = _Building(atom.first, {id_type: {value}})
        owner[key] = target

    def _settle(self, atom: Atom, joined: list[int], to_link: list[Identifier]) -> None:
        """The people ``atom`` joined become one (the earliest's), or it makes a new person;
        its identifiers ``to_link`` are placed with them."""
        people = self.people
        if joined:
            target = joined[0]
            if len(joined) > 1:
                target = min(joined, key=lambda r: people[r].first)
                for root in joined:
                    if root != target:
                        self._merge(target, root)
        elif to_link:
            target = len(self.parent)
            self.parent.append(target)
            people[target] = _Building(atom.first)
        else:
            return
        owner, building = self.owner, people[target].ids
        for ident in to_link:
            owner[(ident.type, ident.value)] = target
            placed = building.get(ident.type)
            if placed is None:
                building[ident.type] = {ident.value}
            else:
                placed.add(ident.value)

    def _merge(self, target: int, absorbed: int) -> None:
        self.parent[absorbed] = target
        gone = self.people.pop(absorbed)
        into = self.people[target]
        for id_type, values in gone.ids.items():
            into.ids.setdefault(id_type, set()).update(values)


#: An atom's stamp (the replay's order), read in C.
_first: Final[Callable[[Atom], Stamp]] = attrgetter("first")


def cluster(
    atoms: Iterable[Atom], excluded: frozenset[Identifier], rules: IdentityRules
) -> Clustering:
    """The people the atoms make, leaving out ``excluded`` identifiers (shared or erased) and
    values ``rules.is_blocked`` refuses (placeholders normalization should have dropped)."""
    replay = _Replay(rules)
    left_out = {(i.type, i.value) for i in excluded}
    memo, blocks = rules.blocked_memo, rules.blocks
    for atom in sorted(atoms, key=_first):
        ids = atom.ids
        for ident in ids:
            key = (ident.type, ident.value)
            if key in left_out:
                break
            blocked = memo.get(key)
            if blocked or (blocked is None and blocks(key)):
                break
        else:  # most atoms: nothing to leave out
            if ids:
                replay.place(atom, ids)
            continue
        ids = tuple(i for i in ids if (k := (i.type, i.value)) not in left_out and not blocks(k))
        if ids:
            replay.place(atom, ids)
    people: dict[str, Person] = {}
    ids_of: dict[int, str] = {}
    for root, building in replay.people.items():
        pid = profile_id_for(building.first.event_id)
        ids_of[root] = pid
        people[pid] = Person(
            pid,
            building.first,
            {t: tuple(sorted(vs)) for t, vs in sorted(building.ids.items())},
        )
    find = replay.find
    profile_of = [ids_of[find(node)] for node in range(len(replay.parent))]
    owners = {key: profile_of[node] for key, node in replay.owner.items()}
    return Clustering(people, owners, tuple(replay.blocked))
