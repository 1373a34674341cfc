"""Stage: who each event belongs to, recomputed from the evidence so that order never matters.

Per batch, over the evidence the store loaded (the profiles the batch's identifiers lead to,
their atoms and groups, the identifiers' records and erasure tombstones):

1. **erase**: erasure requests and tombstones of earlier ones absorb identifiers
   (``resolvers.identity.erasure``); atoms carrying an erased person's account id or personal
   identifier are deleted with their facts, erased devices are cut out of the rest;
2. **atoms**: each event's identifier set joins the evidence (the earliest event of a set
   stamps it) and its group (``resolvers.identity.evidence``);
3. **co-occurrence**: identifiers learn which account ids they were seen with; one seen with
   more than its type's threshold is shared (quarantined) and links nobody, past or future
   (at the replay, one seen with an e-mail or phone also counts that one's account ids);
4. **cluster**: when any of that changed, the people are recomputed from all loaded atoms in
   canonical order (``resolvers.identity.cluster``) and every group goes to the person of its
   best identifier; profiles that no longer exist redirect to the one that holds their
   earliest events, or are erased;
5. **records**: identifier records follow (linked profile, holders).

Returns :class:`Resolution`, values only; the lane folds the events' facts into the groups and
renders the people it touched.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import chain
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
from resolvers.frozen import fast_new
from resolvers.identity.cluster import Clustering, cluster
from resolvers.identity.erasure import Closure, Tombstone
from resolvers.identity.evidence import (
    EMPTY_RECORD,
    Atom,
    IdentifierRecord,
    Stamp,
    atom_key,
    is_account,
)
from resolvers.identity.evidence import keys as atom_keys
from resolvers.identity.rules import IdentityRules
from resolvers.lanes.stored_profile import Group, StoredProfile
from resolvers.profile import facts as profile_facts
from resolvers.profile.facts import EMPTY_FACTS, Facts
from resolvers.timefmt import format_time
from resolvers.tuples import new_tuple
from schemas.identifiers import CUSTOMER_ID, Identifier

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


#: ``Group(atoms, facts)``, built for every group of every person a batch resolves: each
#: slot set by plain assignment (``resolvers.frozen.fast_new``), not through ``__set__``.
_new_group: Final = fast_new(Group)

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
    #: the profile ids a truncated load visited; None: every record's profile was
    visited: frozenset[str] | None = None


@dataclass(slots=True)
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
            # (most people merged nobody: no set built and sorted)
            tuple(sorted(self.merged_from - {self.profile_id})) if self.merged_from else (),
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
        self.pinned: dict[Identifier, str] = {}
        #: the identifiers each erasure request of the batch named, by its event id
        self.requested: dict[str, tuple[Identifier, ...]] = {}
        #: ``closure.is_absorbed``, or its answer by value (``write_records`` sets it)
        self.is_absorbed: Callable[[Identifier], bool] = self.closure.is_absorbed
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
            self.requested[request.event_id] = request.ids
            self.erasing = True

    def expand(self, events: list[Sighting]) -> None:
        """Follow the erasures through the stored atoms and the new events' ones: by the
        absorbed identifiers' values (``Closure.expand_known``: only the atoms they reach are
        hashed) when the events name every loaded tombstone's identifier, as they do when
        the store loaded it by their hashes; else by hashing every atom."""
        closure = self.closure
        if not closure.absorbed:
            return
        stored = [a for atoms in self.groups.values() for a in atoms.values()]
        before = dict(closure.absorbed)
        # ``Atom(s.ids, s.stamp)`` of each event, in one C call
        stored += [new_tuple(Atom, (s.ids, s.stamp, ())) for s in events if s.ids]
        closure.learn(chain.from_iterable([s.ids for s in events]))
        if not closure.expand_known(stored):
            closure.expand(stored)
        if any(before.get(d) != t for d, t in closure.absorbed.items()):
            self.erasing = True

    def tombstones(self) -> None:
        """Every tombstone this batch made or changed, with the profiles now holding its
        ghost."""
        if not self.closure.absorbed:
            return  # no tombstone, nothing to hold
        hold = self.closure.hold
        for gkey, atoms in self.groups.items():
            owner = self.resolution.owner_of_group.get(gkey)
            if owner is not None:
                for atom in atoms.values():
                    if atom.ghosts:  # (most atoms have none: nothing to hold)
                        hold(atom.ghosts, owner)
        for digest, tomb in self.closure.absorbed.items():
            if self.ev.tombstones.get(digest) != tomb:
                self.resolution.suppressed.append(Suppressed(digest, _tomb_json(tomb)))

    # 2. regroup: apply the closure to the stored atoms -------------------------------------
    def regroup(self) -> None:
        """Reduce every atom (``Closure.reduce``) and put it where its identifiers left now
        say, with its group's facts.

        When the absorbed identifiers are known by value (``Closure.absorbed_values``), only
        the atoms carrying one can change (``reduce`` leaves any other as it is, after
        hashing its identifiers), and any other atom sits at its own keys already
        (``atom_keys``, where ``_put`` put it). So a group none of whose atoms carries one,
        and that no moved atom reached before it, comes out of the walk of ``_put``s as it
        went in, with its facts (``merge`` of nothing and them is them): it is taken over
        whole, in its turn (the new mapping's order is the walk's). When no atom carries one,
        the groups stay as they are (a group's empty facts then stay its own, equal to
        ``EMPTY_FACTS``, which the walk puts). Atoms keyed under older rules stay where
        they are, as in any batch without an erasure (the walk would re-key them)."""
        closure = self.closure
        if not closure.absorbed:
            return
        gone = closure.absorbed_values()
        groups = self.groups
        touched: Container[str] = groups  # the groups holding an atom that carries one
        if gone is not None:
            carried = [a.ids for atoms in groups.values() for a in atoms.values()]
            # (a group without atoms would go: the walk then)
            if all(groups.values()) and gone.isdisjoint(chain.from_iterable(carried)):
                return
            touched = {
                gkey
                for gkey, atoms in groups.items()
                for a in atoms.values()
                if not gone.isdisjoint(a.ids)
            }
        facts = self.facts
        self.groups, self.facts = {}, {}
        for gkey, atoms in groups.items():
            if gkey not in touched and atoms and gkey not in self.groups:
                self.groups[gkey] = atoms
                group_facts = facts[gkey]
                self.facts[gkey] = EMPTY_FACTS if group_facts.is_empty else group_facts
                continue
            for atom in atoms.values():
                if gone is not None and gone.isdisjoint(atom.ids):
                    kept: Atom | None = atom  # what ``reduce`` returns, unhashed
                else:
                    kept = closure.reduce(atom, anchored=gkey.startswith("u:"))
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
        absorbed, hash_of = closure.absorbed, closure.hash_of
        # each distinct set's keys once (half the batch's events repeat a set of the batch)
        keyed: dict[tuple[Identifier, ...], tuple[str, str]] = {}
        for s in sightings:
            ids = s.ids
            if not ids:
                continue
            atom: Atom | None = None  # built when needed: most events repeat a known set
            # reduced only when it carries an absorbed identifier (else ``reduce`` returns
            # the atom as it is, which the code below treats as it treats ``None``)
            if absorbed and not absorbed.keys().isdisjoint(map(hash_of, ids)):
                atom = closure.reduce(Atom(ids, s.stamp), anchored=is_account(ids, rules))
                if atom is None:
                    res.outcomes[s.event_id] = SUPPRESSED
                    res.counts[Count(_M_SUPPRESSED_EVENTS)] += 1
                    continue
                ids = atom.ids
            found = keyed.get(ids)
            if found is None:
                found = keyed[ids] = atom_keys(ids, rules)
            gkey, akey = found
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
        # A set seen again in the batch teaches nothing: a record keeps the smallest values
        # of the union of what it was taught, so teaching it the same values again (after
        # anything else) leaves it as it is, and a record that did not change quarantines
        # nothing. Each distinct set is taught once, where it first comes.
        done: set[tuple[Identifier, ...]] = set()
        for s in self.pending:
            if len(s.ids) < 2 or s.ids in done:
                continue  # a lone identifier co-occurs with nothing (the test below)
            done.add(s.ids)
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

    def _shared_through(
        self, atoms: list[Atom], shared: frozenset[Identifier]
    ) -> frozenset[Identifier]:
        """Identifiers shared through another one (a review of 2026-12-04): an identifier seen
        in an atom with one of a more trustworthy type that is not a device (an e-mail, a
        phone) counts the account ids that one was seen with (its record) as its own. A card
        terminal whose sales carry each customer's e-mail, never an account id, or a tablet
        Ann logged in on and Bob gave his e-mail on, is shared like one seen with their
        accounts. A function of the loaded atoms and records (each order-free), recomputed at
        each replay, not stored; it only grows with them (as the records' own count) while a
        type's threshold is under the cap of the types it learns through (the defaults: 1 or
        3, under e-mail's and phone's 4)."""
        rules, records = self.rules, self.records
        unique, is_device = rules.unique_types, rules.is_device
        # what can be learned through: an identifier that is neither an account id nor a
        # device, seen with account ids (in most loads, an e-mail or phone or none)
        via = {
            i: r.seen_with
            for i, r in records.items()
            if r.seen_with and i.type not in unique and not is_device(i.type)
        }
        if not via:
            return frozenset()
        learned: dict[Identifier, list[Mapping[str, tuple[str, ...]]]] = {}
        for atom in atoms:
            ids = atom.ids
            if len(ids) < 2:
                continue
            for n, through in enumerate(ids):
                seen = via.get(through)
                if seen is None:
                    continue
                for ident in ids[n + 1 :]:  # ranked: the ones after it, of its type or worse
                    if ident.type == through.type or ident.type in unique or ident in shared:
                        continue  # a peer (two e-mails of one event), an account id, shared
                    learned.setdefault(ident, []).append(seen)
        out: set[Identifier] = set()
        for ident, seens in learned.items():
            own = records.get(ident, EMPTY_RECORD).seen_with
            threshold = rules.threshold(ident.type)
            accounts: dict[str, set[str]] = {}
            for seen in seens:
                for id_type, values in seen.items():
                    accounts.setdefault(id_type, set(own.get(id_type, ()))).update(values)
            if any(len(values) > threshold for values in accounts.values()):
                out.add(ident)
        return frozenset(out)

    def _pinned(self) -> dict[Identifier, str]:
        """Records linked to a profile the load's walk did not visit, with that profile."""
        visited = self.ev.visited
        if visited is None:
            return {}
        return {
            i: r.profile_id
            for i, r in self.records.items()
            if r.profile_id is not None and r.profile_id not in visited and not r.quarantined
        }

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
                    {g: _new_group(self.groups[g], self.facts[g]) for g in profile.groups},
                    set(profile.merged_from),
                )
                for gkey in profile.groups:
                    res.owner_of_group[gkey] = pid
            self._unattributed()
            return
        atoms = [a for atoms in self.groups.values() for a in atoms.values()]
        through = self._shared_through(atoms, shared)
        if through:
            shared |= through
        # identifiers linked to a profile the load did not reach (a walk truncated at
        # ``max_profiles``): that person's atoms are not here, so the replay must not hand
        # the identifier to a loaded one; it stays out and keeps its owner (``_pinned``)
        self.pinned = pinned = self._pinned()
        self.clustering = clustering = cluster(
            atoms, shared | pinned.keys() if pinned else shared, self.rules
        )
        people, owner_of_group, facts = res.people, res.owner_of_group, self.facts
        owners = clustering.owners
        for pid, person in clustering.people.items():
            people[pid] = PersonDraft(pid, person.first, person.identifiers, {})
        rules = self.rules
        for gkey, group_atoms in self.groups.items():
            if len(group_atoms) == 1:
                # ``_best`` of one atom: its first identifier not shared (an identifier is its
                # own ``(type, value)`` key, so ``shared`` is the left-out set as it is)
                best: tuple[str, str] | None = None
                for atom in group_atoms.values():
                    for ident in atom.ids:
                        if ident not in shared:
                            best = ident
                            break
            else:
                best = _best(group_atoms, shared, rules)
            owner = owners.get(best) if best is not None else None
            if owner is None:
                continue  # only shared identifiers: its events are nobody's
            owner_of_group[gkey] = owner
            people[owner].groups[gkey] = _new_group(group_atoms, facts[gkey])
        self._unattributed()
        self._blocked(clustering)

    def _unattributed(self) -> None:
        """Events whose group has no owner carried only shared identifiers: nobody's."""
        res = self.resolution
        event_group, owner_of_group = res.event_group, res.owner_of_group
        # (collected first, in the events' order, then taken out: most events have an owner)
        for event_id in [e for e, gkey in event_group.items() if gkey not in owner_of_group]:
            del event_group[event_id]
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
        """One record per erased profile on ``privacy.erasures``; and one per request that
        erased no profile (none found: a profile erased before, or events the batch's erasure
        suppressed before a profile was made of them), so that every customer id the batch
        erased is named (by digest) for the privacy worker to forget in the gateway's memory,
        whichever batches the events came in (ADR 0007's note of 2026-12-05)."""
        res = self.resolution
        requests = [e for e, o in res.outcomes.items() if o in (ERASED, NOTHING_TO_ERASE)]
        topic = self.ev.topics.get("erasures", "privacy.erasures")
        suppressed = len(self.closure.absorbed)
        named: set[str] = set()  # the customer digests the records name
        announced = False
        for erased in res.erased:
            if erased.reason != "erased":
                continue
            announced = True
            res.counts[Count(_M_ERASURES)] += 1
            digests = self._customer_digests(erased.profile_id)
            named.update(digests)
            res.published.append(
                Published(
                    topic,
                    erased.profile_id,
                    {
                        "profile_id": erased.profile_id,
                        # the request; None when a later event linked the profile to an
                        # identifier erased before (the erasure continues, ADR 0004)
                        "event_id": self._request_of(erased.profile_id, requests),
                        "identifiers_suppressed": suppressed,
                        "merged_from": list(erased.merged_from),
                        "customer_digests": digests,
                    },
                )
            )
        # the customer ids the batch erased that no erased profile held: its events'
        # (suppressed with no profile made) or a request's; not those erased before (their
        # tombstones loaded): the trail does not note each return of an erased customer
        known, before = self.closure.known, self.ev.tombstones
        left = sorted(
            d
            for d in self.closure.absorbed
            if d in known and known[d].type == CUSTOMER_ID and d not in before and d not in named
        )
        alone: list[str | None] = [
            e for e in requests if not announced or res.outcomes[e] != ERASED
        ]
        if not alone and left:  # every request erased a profile, or none is in the batch
            alone = [requests[0] if requests else None]
        for event_id in alone:
            res.published.append(
                Published(
                    topic,
                    # no profile to key it by: the request (an event id is no personal data),
                    # else the first digest (a salted hash, as P:v1:suppressed keeps it)
                    event_id or left[0],
                    {
                        "profile_id": None,
                        "event_id": event_id,
                        "identifiers_suppressed": suppressed,
                        "merged_from": [],
                        # and what the request named, erased before or not (asked again)
                        "customer_digests": self._named_digests(event_id, left),
                    },
                )
            )

    def _request_of(self, profile_id: str, requests: list[str]) -> str | None:
        """The first of the batch's requests that named an identifier the erased profile
        held (a shop's redact sends many in one batch); else the first request (the profile
        was reached through another's identifiers), or None (no request: ADR 0004)."""
        held = {i for _, atom in self.ev.profiles[profile_id].atoms() for i in atom.ids}
        for event_id in requests:
            if not held.isdisjoint(self.requested.get(event_id, ())):
                return event_id
        return requests[0] if requests else None

    def _named_digests(self, event_id: str | None, left: list[str]) -> list[str]:
        named = [
            i
            for i in (self.requested.get(event_id, ()) if event_id is not None else ())
            if i.type == CUSTOMER_ID
        ]
        return sorted({*left, *(self.ev.hash_of(i) for i in named)}) if named else left

    def _customer_digests(self, profile_id: str) -> list[str]:
        """The suppression hashes of the customer ids the erased profile held: the privacy
        worker forgets them in the gateway's Shopify memory (ADR 0007), which must not learn
        of an erasure by id (``privacy.erasures`` is kept)."""
        profile = self.ev.profiles[profile_id]
        ids = {i for _, atom in profile.atoms() for i in atom.ids if i.type == CUSTOMER_ID}
        return sorted(self.ev.hash_of(i) for i in ids)

    # 7. identifier records ----------------------------------------------------------------------
    def write_records(self) -> None:
        """Each record the batch loaded or learned, and each identifier the people's atoms
        carry: linked to its owner, held by the profiles whose groups carry it."""
        holders = self._holders()
        relearned = self.relearned
        owners = self.clustering.owners if self.clustering is not None else None
        absorbed = self.closure.absorbed
        # every identifier the loaded atoms carry has its record loaded: by value when the
        # absorbed ones are known by value (a salted SHA-256 of each otherwise)
        gone = self.closure.absorbed_values() if absorbed else None
        self.is_absorbed = is_absorbed = (
            self.closure.is_absorbed if gone is None else gone.__contains__
        )
        for ident, loaded in self.ev.records.items():
            key: tuple[str, str] = ident  # its own key (see ``cluster._Replay``)
            learned = relearned.pop(key, None)
            held = holders.pop(key, None)
            if (
                learned is None
                and held is not None
                and len(held[1]) == 1
                and len(loaded.holders) == 1
                and loaded.holders[0] in held[1]
                and (owners is None or owners.get(key) == loaded.profile_id)
                and (not absorbed or not is_absorbed(ident))
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
        # No record yet: most are held by one profile, with nothing absorbed; then
        # ``_write_record(ident, key, EMPTY_RECORD, None, held_by)`` is the empty record
        # linked to its owner (``None`` when nothing was replayed) and held by that profile,
        # new, so written: built at once
        out, nothing_seen = self.resolution.records, EMPTY_RECORD.seen_with
        for key, (ident, held_by) in holders.items():
            if absorbed or len(held_by) > 1:
                self._write_record(ident, key, EMPTY_RECORD, None, held_by)
            else:
                owner = owners.get(key) if owners is not None else None
                out[ident] = new_tuple(IdentifierRecord, (owner, nothing_seen, False, (*held_by,)))

    def _holders(self) -> dict[tuple[str, str], tuple[Identifier, set[str]]]:
        """The profiles holding atoms that carry each identifier, by ``(type, value)``."""
        owner_of_group = self.resolution.owner_of_group
        holders: dict[tuple[str, str], tuple[Identifier, set[str]]] = {}
        for gkey, atoms in self.groups.items():
            owner = owner_of_group.get(gkey)
            if owner is None:
                continue
            for atom in atoms.values():
                for ident in atom.ids:  # its own ``(type, value)`` key (see ``cluster._Replay``)
                    held = holders.get(ident)
                    if held is None:
                        holders[ident] = (ident, {owner})
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
        if self.closure.absorbed and self.is_absorbed(ident):
            if loaded is not None:
                out[ident] = None
            return
        names: set[str] = held if held is not None else set()
        if old.holders:  # profiles not loaded still hold it, as far as this batch knows
            loaded_pids = self.ev.profiles
            names = names | {h for h in old.holders if h not in loaded_pids}
        clustering = self.clustering
        owner = clustering.owners.get(key) if clustering is not None else old.profile_id
        if owner is None and key in self.pinned:
            owner = self.pinned[key]  # its person was not loaded: still theirs
        new = old.linked_to(owner).with_holders(names)
        if new.is_empty:
            if loaded is not None:
                out[ident] = None
        elif new is not loaded and new != loaded:
            out[ident] = new


def _best(
    atoms: Mapping[str, Atom], left_out: Container[tuple[str, str]], rules: IdentityRules
) -> tuple[str, str] | None:
    """A group's best identifier still linking (its account id, or its atom's best one), as
    ``(type, value)``; ``left_out``: the shared ones, likewise."""
    index = rules.rank_index
    unlisted = len(index)
    best: tuple[int, str, str] | None = None
    for atom in atoms.values():
        for ident in atom.ids:
            if ident in left_out:  # its own ``(type, value)`` key (see ``cluster._Replay``)
                continue
            id_type, value = ident
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


__all__ = [
    "ERASED",
    "NOTHING_TO_ERASE",
    "SUPPRESSED",
    "UNATTRIBUTED",
    "Evidence",
    "PersonDraft",
    "Resolution",
    "Sighting",
    "atom_key",
    "resolve",
]
