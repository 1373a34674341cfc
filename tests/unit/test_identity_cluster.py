"""Who is who (``resolvers.identity.cluster``): the people as a function of the set of atoms.

Retail scenarios one by one, then properties over worlds of atoms drawn from a small pool
(unique conflicts, tight limits, shared identifiers left out): any input order gives the same
people, no person breaks a rule, every atom lands with the person of its best identifier,
profile ids come from the earliest event, and without conflicts the people are exactly the
connected components of the co-occurrence graph."""

from __future__ import annotations

from collections.abc import Iterable
from unittest import mock

import pytest
from builders import permuted
from hypothesis import given, settings
from hypothesis import strategies as st
from identity_worlds import POOL, RULES, SMALL_RULES, atom, atom_worlds, i, stamp

from resolvers.identity.cluster import (
    DROP_LIMIT_EXCEEDED,
    DROP_UNIQUE_CONFLICT,
    Blocked,
    Clustering,
    _Replay,
    _rule,
    cluster,
)
from resolvers.identity.evidence import Atom, profile_id_for, ranked
from resolvers.identity.rules import IdentityRules
from schemas.identifiers import Identifier
from schemas.normalize import is_blocked, normalize_identifiers

PROPS = settings(max_examples=300, deadline=None)
NOTHING: frozenset[Identifier] = frozenset()


def people(c: Clustering) -> set[frozenset[str]]:
    """The partition, as sets of identifier keys."""
    return {frozenset(x.key for x in p.all_identifiers()) for p in c.people.values()}


def owner(c: Clustering, key: str) -> str | None:
    return c.person_of(i(key))


# --------------------------------------------------------------------------- scenarios


@pytest.mark.parametrize("browse_first", [False, True])
def test_anonymous_browsing_then_login_joins_the_device_to_the_customer(browse_first: bool) -> None:
    signup = atom("signup", 0, "customer_id:C-100", "email:ann@example.com")
    browse = atom("browse", -1 if browse_first else 1, "anonymous_id:tablet-9")
    login = atom("login", 3, "anonymous_id:tablet-9", "customer_id:C-100")
    c = cluster([login, browse, signup], NOTHING, RULES)
    assert people(c) == {
        frozenset({"customer_id:C-100", "email:ann@example.com", "anonymous_id:tablet-9"})
    }
    earliest = browse if browse_first else signup
    (pid,) = c.people
    assert pid == profile_id_for(earliest.first.event_id)
    assert c.people[pid].first == earliest.first
    assert c.blocked == ()


def test_a_pos_card_token_later_seen_online_with_an_email_is_one_person() -> None:
    atoms = [
        atom("pos", 0, "card_token:tok_4242", "loyalty_id:L-77"),
        atom("web", 1, "email:bob@example.com", "anonymous_id:web-1"),
        atom("checkout", 2, "email:bob@example.com", "card_token:tok_4242"),
    ]
    c = cluster(atoms, NOTHING, RULES)
    assert len(c.people) == 1
    assert {owner(c, k) for k in ("loyalty_id:L-77", "anonymous_id:web-1")} == {
        profile_id_for("pos")
    }


def test_siblings_on_one_tablet_never_merge_and_the_merge_is_blocked() -> None:
    anna = atom("e1", 1, "anonymous_id:family-tablet", "customer_id:anna")
    ben = atom("e2", 2, "anonymous_id:family-tablet", "customer_id:ben")
    c = cluster([ben, anna], NOTHING, RULES)
    assert people(c) == {
        frozenset({"customer_id:anna", "anonymous_id:family-tablet"}),
        frozenset({"customer_id:ben"}),
    }
    assert c.blocked == (
        Blocked(
            ben, "unique:customer_id", DROP_UNIQUE_CONFLICT, (i("anonymous_id:family-tablet"),)
        ),
    )
    assert owner(c, "customer_id:ben") == profile_id_for("e2")


def test_a_shared_tablet_left_out_links_nobody_and_its_own_events_land_nowhere() -> None:
    tablet = i("anonymous_id:family-tablet")
    atoms = [
        atom("e1", 1, tablet.key, "customer_id:anna"),
        atom("e2", 2, tablet.key, "customer_id:ben"),
        atom("e3", 3, tablet.key),  # anonymous browsing on the tablet
    ]
    c = cluster(atoms, frozenset({tablet}), RULES)
    assert people(c) == {frozenset({"customer_id:anna"}), frozenset({"customer_id:ben"})}
    assert c.person_of(tablet) is None
    assert c.blocked == ()


def test_email_case_and_whitespace_variants_are_one_person() -> None:
    variants = ("Jane.Doe@Example.com", "  jane.doe@example.COM ", "JANE.DOE@EXAMPLE.COM")
    atoms = [
        Atom(
            ranked(normalize_identifiers({"email": v}, region="NO").accepted, RULES),
            stamp(f"e{n}", n),
        )
        for n, v in enumerate(variants)
    ]
    assert len({a.key for a in atoms}) == 1  # one identifier set: one atom in the evidence
    c = cluster(atoms[:1], NOTHING, RULES)
    assert people(c) == {frozenset({"email:jane.doe@example.com"})}


def test_placeholder_values_never_reach_an_atom() -> None:
    accepted = normalize_identifiers(
        {"customer_id": "cust-1", "phone": "1234567890", "email": "test@test.com"}, region="NO"
    ).accepted
    assert accepted == (i("customer_id:cust-1"),)


def test_a_blocked_value_that_skipped_normalization_still_links_nobody() -> None:
    rules = IdentityRules(is_blocked=is_blocked)
    atoms = [atom(f"e{n}", n, f"customer_id:cust-{n}", "phone:1234567890") for n in range(5)]
    c = cluster(atoms, NOTHING, rules)
    assert len(c.people) == 5
    assert owner(c, "phone:1234567890") is None


def test_a_customer_who_changes_email_keeps_both_on_one_person() -> None:
    atoms = [
        atom("e1", 1, "customer_id:C-7", "email:old@x.no"),
        atom("e2", 2, "customer_id:C-7", "email:new@x.no"),
        atom("e3", 3, "email:old@x.no"),
        atom("e4", 4, "email:new@x.no"),
    ]
    c = cluster(atoms, NOTHING, RULES)
    assert people(c) == {frozenset({"customer_id:C-7", "email:old@x.no", "email:new@x.no"})}
    assert c.people[profile_id_for("e1")].identifiers == {
        "customer_id": ("C-7",),
        "email": ("new@x.no", "old@x.no"),
    }


def test_a_second_loyalty_id_is_not_added_to_a_person_holding_one() -> None:
    second = atom("e2", 2, "customer_id:C-1", "loyalty_id:L-2")
    c = cluster([atom("e1", 1, "customer_id:C-1", "loyalty_id:L-1"), second], NOTHING, RULES)
    assert owner(c, "loyalty_id:L-2") is None
    assert c.blocked == (
        Blocked(second, "unique:loyalty_id", DROP_UNIQUE_CONFLICT, (i("loyalty_id:L-2"),)),
    )


def test_a_per_type_limit_drops_the_extra_email_and_says_why() -> None:
    rules = IdentityRules(limits={"email": 2})
    third = atom("e3", 3, "customer_id:C", "email:c@x.no")
    atoms = [
        atom("e1", 1, "customer_id:C", "email:a@x.no"),
        atom("e2", 2, "customer_id:C", "email:b@x.no"),
        third,
    ]
    c = cluster(atoms, NOTHING, rules)
    assert c.people[profile_id_for("e1")].identifiers["email"] == ("a@x.no", "b@x.no")
    assert c.blocked == (Blocked(third, "limit:email", DROP_LIMIT_EXCEEDED, (i("email:c@x.no"),)),)


def test_a_merge_exceeding_a_limit_is_blocked_and_the_bridge_dropped() -> None:
    rules = IdentityRules(limits={"email": 2})
    bridge = atom("e4", 4, "customer_id:C", "anonymous_id:dev")
    atoms = [
        atom("e1", 1, "customer_id:C", "email:a@x.no", "phone:+4791234567"),
        atom("e2", 2, "customer_id:C", "email:b@x.no"),
        atom("e3", 3, "email:z@x.no", "anonymous_id:dev"),
        bridge,
    ]
    c = cluster(atoms, NOTHING, rules)
    assert owner(c, "anonymous_id:dev") == profile_id_for("e3")
    assert owner(c, "customer_id:C") == profile_id_for("e1")
    assert c.blocked == (
        Blocked(bridge, "limit:email", DROP_LIMIT_EXCEEDED, (i("anonymous_id:dev"),)),
    )


def test_three_people_merge_into_the_one_with_the_earliest_event() -> None:
    atoms = [
        atom("e1", 1, "email:a@x.no"),
        atom("e2", 2, "phone:+4791234567"),
        atom("e3", 3, "anonymous_id:d"),
        atom("e4", 4, "phone:+4791234567", "anonymous_id:d"),
        atom("e5", 5, "email:a@x.no", "anonymous_id:d"),
    ]
    for arrival in (atoms, list(reversed(atoms))):
        c = cluster(arrival, NOTHING, RULES)
        assert set(c.people) == {profile_id_for("e1")}
        assert people(c) == {frozenset({"email:a@x.no", "phone:+4791234567", "anonymous_id:d"})}


def test_the_survivor_is_the_earliest_by_event_time_not_by_arrival_or_event_id() -> None:
    late = atom("a-late", 60 * 48, "email:x@y.no")
    early = atom("z-early", 0, "phone:+4791234567")
    bridge = atom("bridge", 60 * 72, "email:x@y.no", "phone:+4791234567")
    c = cluster([late, bridge, early], NOTHING, RULES)
    assert set(c.people) == {profile_id_for("z-early")}
    tie = [atom("b", 0, "email:x@y.no"), atom("a", 0, "phone:+4791234567"), bridge]
    assert set(cluster(tie, NOTHING, RULES).people) == {profile_id_for("a")}  # then event id


def test_an_atom_lands_with_the_person_of_its_best_identifier() -> None:
    shared_email = atom("e2", 2, "customer_id:C2", "email:family@x.no")
    atoms = [atom("e1", 1, "customer_id:C1", "email:family@x.no"), shared_email]
    c = cluster(atoms, NOTHING, RULES)
    assert owner(c, "customer_id:C2") == profile_id_for("e2")
    assert owner(c, "email:family@x.no") == profile_id_for("e1")
    assert [b.rule for b in c.blocked] == ["unique:customer_id"]


def test_atoms_of_only_left_out_identifiers_make_nobody() -> None:
    shared = frozenset({i("anonymous_id:kiosk")})
    c = cluster([atom("e1", 1, "anonymous_id:kiosk")], shared, RULES)
    assert (dict(c.people), dict(c.owner), c.blocked) == ({}, {}, ())
    assert cluster([], NOTHING, RULES) == Clustering({}, {}, ())


# --------------------------------------------------------------------------- properties

EXCLUDED = st.sets(st.sampled_from(POOL), max_size=3).map(lambda ks: frozenset(i(k) for k in ks))


@PROPS
@given(atoms=atom_worlds(), excluded=EXCLUDED, keys=st.lists(st.integers(0, 100), max_size=12))
def test_the_people_do_not_depend_on_the_order_of_the_atoms(
    atoms: list[Atom], excluded: frozenset[Identifier], keys: list[int]
) -> None:
    assert cluster(permuted(atoms, keys), excluded, SMALL_RULES) == cluster(
        atoms, excluded, SMALL_RULES
    )


@PROPS
@given(atoms=atom_worlds(), excluded=EXCLUDED)
def test_no_person_breaks_a_rule_and_the_owner_map_agrees(
    atoms: list[Atom], excluded: frozenset[Identifier]
) -> None:
    c = cluster(atoms, excluded, SMALL_RULES)
    owned: dict[Identifier, str] = {}
    for pid, person in c.people.items():
        assert person.profile_id == pid
        for id_type, values in person.identifiers.items():
            assert 0 < len(values) <= SMALL_RULES.limit(id_type), (pid, id_type, values)
            assert list(values) == sorted(set(values))
        owned.update(dict.fromkeys(person.all_identifiers(), pid))
    assert dict(c.owner) == owned
    assert not excluded & set(owned)
    for b in c.blocked:  # every block names its rule and the identifiers it dropped
        kind = "unique" if SMALL_RULES.is_unique(b.rule.partition(":")[2]) else "limit"
        assert b.rule.startswith(f"{kind}:")
        assert b.reason == (DROP_UNIQUE_CONFLICT if kind == "unique" else DROP_LIMIT_EXCEEDED)
        assert b.dropped
        assert set(b.dropped) <= set(b.atom.ids) - excluded


@PROPS
@given(atoms=atom_worlds(), excluded=EXCLUDED)
def test_every_atom_lands_with_the_person_of_its_best_identifier(
    atoms: list[Atom], excluded: frozenset[Identifier]
) -> None:
    c = cluster(atoms, excluded, SMALL_RULES)
    dropped: dict[str, set[Identifier]] = {}
    for b in c.blocked:
        dropped.setdefault(b.atom.first.event_id, set()).update(b.dropped)
    for a in atoms:
        usable = [x for x in a.ids if x not in excluded]
        if not usable:
            continue
        home = c.person_of(usable[0])
        assert home is not None, a
        for x in usable[1:]:
            assert c.person_of(x) == home or x in dropped.get(a.first.event_id, set()), (a, x)


@PROPS
@given(atoms=atom_worlds(), excluded=EXCLUDED)
def test_a_profile_id_comes_from_the_earliest_event_of_the_person(
    atoms: list[Atom], excluded: frozenset[Identifier]
) -> None:
    c = cluster(atoms, excluded, SMALL_RULES)
    landed: dict[str, list[Atom]] = {}  # by the person of the atom's best identifier
    for a in atoms:
        usable = [x for x in a.ids if x not in excluded]
        if usable:
            landed.setdefault(c.person_of(usable[0]) or "", []).append(a)
    assert set(landed) == set(c.people)  # every person holds an atom, every atom a person
    for pid, person in c.people.items():
        assert person.first == min(a.first for a in landed[pid])
        assert pid == profile_id_for(person.first.event_id)


#: No unique type and limits nothing reaches: nothing is ever in conflict.
OPEN_RULES = IdentityRules(unique_types=frozenset(), limits={}, default_limit=100)


def components(atoms: Iterable[Atom], excluded: frozenset[Identifier]) -> set[frozenset[str]]:
    """Connected components of the graph linking identifiers seen in one atom."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            x = parent[x]
        return x

    for a in atoms:
        keys = [x.key for x in a.ids if x not in excluded]
        for k in keys:
            parent[find(k)] = find(keys[0])
    groups: dict[str, set[str]] = {}
    for k in parent:
        groups.setdefault(find(k), set()).add(k)
    return {frozenset(g) for g in groups.values()}


@PROPS
@given(atoms=atom_worlds(rules=OPEN_RULES), excluded=EXCLUDED)
def test_without_conflicts_the_people_are_the_connected_components(
    atoms: list[Atom], excluded: frozenset[Identifier]
) -> None:
    c = cluster(atoms, excluded, OPEN_RULES)
    assert people(c) == components(atoms, excluded)
    assert c.blocked == ()


# --------------------------------------------------------------------------- the replay's fast path


def _old_place(self: _Replay, atom: Atom, ids: tuple[Identifier, ...]) -> None:
    """``_Replay.place`` before its lone-identifier fast path, verbatim."""
    owner, limits, people = self.owner, self.limits, self.people
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


@PROPS
@given(
    atoms=atom_worlds(20),
    excluded=EXCLUDED,
    rules=st.sampled_from([SMALL_RULES, RULES]),
    keys=st.lists(st.integers(0, 100), max_size=20),
)
def test_the_replay_places_as_before_its_lone_identifier_fast_path(
    atoms: list[Atom],
    excluded: frozenset[Identifier],
    rules: IdentityRules,
    keys: list[int],
) -> None:
    atoms = permuted(atoms, keys)
    new = cluster(atoms, excluded, rules)
    with mock.patch.object(_Replay, "place", _old_place):
        old = cluster(atoms, excluded, rules)
    assert new == old
    assert list(new.people) == list(old.people)
    assert [list(p.identifiers) for p in new.people.values()] == [
        list(p.identifiers) for p in old.people.values()
    ]
    assert list(new.owners.items()) == list(old.owners.items())
