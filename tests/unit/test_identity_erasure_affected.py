"""The identity stage follows erasures through the atoms they reach only
(``Closure.expand_known``, ``Closure.absorbed_values``, the stage's ``expand`` and
``regroup``), and resolves every batch exactly as the full walk does: every loaded atom
hashed and indexed (``Closure.expand``), every atom reduced and put again (``regroup``).

Worlds: stored profiles whose groups hold drawn atoms (some with ghosts of identifiers erased
earlier) and facts of their own, loaded tombstones (mostly of identifiers the batch's events
carry, as the store loads them, sometimes of others: the full walk then), erasure requests
and events. The full walk is the stage with the by-value paths turned off."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import replace
from datetime import timedelta
from typing import Any
from unittest.mock import patch

import builders
from hypothesis import given, settings
from hypothesis import strategies as st
from identity_worlds import POOL, RULES, SMALL_RULES, T0, atom, hash_of, i, stamp

from resolvers.consent import ConsentPolicy
from resolvers.identity import erasure
from resolvers.identity.erasure import Closure, Tombstone
from resolvers.identity.evidence import Atom, ranked
from resolvers.identity.evidence import keys as atom_keys
from resolvers.identity.rules import IdentityRules
from resolvers.lanes.stored_profile import Group, StoredProfile
from resolvers.profile.facts import Facts, Stamped
from resolvers.stages import identity
from resolvers.stages.identity import Evidence, Sighting

PROPS = settings(max_examples=400, deadline=None)
PROFILE_IDS = ("p0", "p1", "p2")


def canonical(value: Any) -> Any:
    """``value`` as nested lists that keep every type name, field and mapping order. Fields
    out of comparison are left out: they are memos of the value (``Facts.encoded`` and
    ``pruned``). The full walk puts :data:`EMPTY_FACTS` for a group's empty facts, whereas
    groups no erasure touches keep theirs (an empty ``Facts`` of their own, equal to it)."""
    return builders.canonical(value, memos=False)


@st.composite
def worlds(draw: st.DrawFn) -> tuple[Evidence, list[Sighting]]:
    rules: IdentityRules = draw(st.sampled_from([RULES, SMALL_RULES]))
    keys = st.lists(st.sampled_from(POOL), min_size=1, max_size=4, unique=True)
    # stored atoms, each at its own keys (as the stage puts them), some with ghosts
    groups: dict[str, dict[str, Atom]] = {}
    for n, members in enumerate(draw(st.lists(keys.map(frozenset), max_size=14, unique=True))):
        others = sorted(hash_of(i(k)) for k in POOL if k not in members)
        ghosts = draw(st.lists(st.sampled_from(others), max_size=2, unique=True))
        a = atom(f"s{n:02d}", draw(st.integers(0, 30)), *sorted(members), rules=rules)
        a = Atom(a.ids, a.first, tuple(sorted(ghosts)))
        gkey, akey = atom_keys(a.ids, rules)
        groups.setdefault(gkey, {})[akey] = a
    profiles: dict[str, dict[str, Group]] = {}
    for n, (gkey, atoms) in enumerate(groups.items()):
        trait = Stamped(gkey, T0 + timedelta(minutes=n), f"s{n:02d}")  # facts to follow
        facts = Facts(traits={f"t{n}": trait}) if draw(st.booleans()) else Facts()  # or none
        group = Group(atoms, facts)
        profiles.setdefault(draw(st.sampled_from(PROFILE_IDS)), {})[gkey] = group
    stored = {
        pid: StoredProfile(pid, min(g.earliest() for g in gs.values()), {}, gs)
        for pid, gs in profiles.items()
    }
    # the batch: events, erasure requests
    sightings = [
        Sighting(f"n{n:02d}", stamp(f"n{n:02d}", 40 + n), ranked(map(i, ks), rules))
        for n, ks in enumerate(draw(st.lists(keys, max_size=6)))
    ]
    for n, ks in enumerate(draw(st.lists(keys, max_size=2))):
        ids = ranked(map(i, ks), rules)
        sightings.append(Sighting(f"r{n:02d}", stamp(f"r{n:02d}", 50 + n), ids, erase=True))
    # tombstones: of the events' identifiers (as the store loads them), sometimes of others
    carried = sorted({x.key for s in sightings if not s.erase for x in s.ids})
    erased = draw(st.lists(st.sampled_from(carried), unique=True)) if carried else []
    if draw(st.booleans()):
        erased += draw(st.lists(st.sampled_from(POOL), max_size=2, unique=True))
    tombstones = {}
    for key in erased:
        ident = i(key)
        tombstones[hash_of(ident)] = Tombstone(
            not rules.is_device(ident.type),
            draw(st.booleans()),
            rules.is_unique(ident.type),
            tuple(draw(st.lists(st.sampled_from(PROFILE_IDS), max_size=2, unique=True))),
        )
    evidence = Evidence(
        rules=rules,
        hash_of=hash_of,
        records={},
        tombstones=tombstones,
        profiles=stored,
        policy=ConsentPolicy(),
    )
    return evidence, sightings


class _Seen(identity._Run):
    """The stage's run, its evidence after ``regroup`` and at the end kept for comparison."""

    runs: list[_Seen] = []

    def regroup(self) -> None:
        super().regroup()
        self.after_regroup = canonical((self.groups, self.facts, self.closure.absorbed))
        self.changed_by_regroup = self.changed
        _Seen.runs.append(self)


def resolved(evidence: Evidence, sightings: Iterable[Sighting], *, full: bool) -> Any:
    """Everything ``resolve`` decided, and the run's state after ``regroup``; ``full``: with
    the by-value paths turned off (every atom hashed, indexed, reduced and put again)."""
    with ExitStack() as stack:
        stack.enter_context(patch.object(identity, "_Run", _Seen))
        if full:
            stack.enter_context(patch.object(Closure, "expand_known", lambda self, atoms: False))
            stack.enter_context(patch.object(Closure, "absorbed_values", lambda self: None))
        _Seen.runs.clear()
        resolution = identity.resolve(evidence, sightings)
        (run,) = _Seen.runs
    return (
        canonical(resolution),
        run.after_regroup,
        run.changed_by_regroup,
        canonical(run.closure.absorbed),
        canonical(resolution.suppressed),
    )


@PROPS
@given(world=worlds(), scans=st.sampled_from([0, 1, erasure._SCANS]))
def test_following_the_erasures_by_value_resolves_as_the_full_walk(
    world: tuple[Evidence, list[Sighting]], scans: int
) -> None:
    """``scans``: how many identifiers ``expand_known`` follows by a scan before it indexes
    the atoms (0: all by the index)."""
    evidence, sightings = world
    with patch.object(erasure, "_SCANS", scans):
        fast = resolved(evidence, sightings, full=False)
    assert fast == resolved(evidence, sightings, full=True)


def test_an_erasure_reaches_atoms_through_ghosts_and_relays() -> None:
    """A tombstone loaded by an event's email reaches the stored atom with the email, which
    relays to the phone, which reaches a second stored atom (transitively); an atom of
    neither stays as it is, unhashed."""
    rules = RULES
    first = atom("s1", 1, "email:a@x", "phone:+1", rules=rules)
    second = atom("s2", 2, "phone:+1", "card_token:t1", rules=rules)
    apart = atom("s3", 3, "email:b@x", rules=rules)
    groups = {}
    for a in (first, second, apart):
        gkey, akey = atom_keys(a.ids, rules)
        groups[gkey] = Group({akey: a})
    evidence = Evidence(
        rules=rules,
        hash_of=hash_of,
        records={},
        tombstones={hash_of(i("email:a@x")): Tombstone(relays=True, named=True)},
        profiles={"p0": StoredProfile("p0", first.first, {}, groups)},
        policy=ConsentPolicy(),
    )
    sightings = [Sighting("n1", stamp("n1", 9), ranked([i("email:a@x")], rules))]
    hashed: list[str] = []

    def counted(ident: Any) -> str:
        hashed.append(ident.key)
        return hash_of(ident)

    evidence_counted = replace(evidence, hash_of=counted)
    fast = resolved(evidence_counted, sightings, full=False)
    assert "email:b@x" not in hashed  # the atom of neither was never hashed
    assert fast == resolved(evidence, sightings, full=True)
    run = identity._Run(evidence)
    run.closure.learn(i(k) for k in ("email:a@x",))
    assert run.closure.expand_known([first, second, apart])
    gone = {run.closure.known[d].key for d in run.closure.absorbed}
    assert gone == {"email:a@x", "phone:+1", "card_token:t1"}
