"""What erasures cover (``resolvers.identity.erasure``): a closure over the atoms, whatever the
order of requests and events. Scenarios one by one, a reference closure computed the slow way,
``reduce`` (anchored and floating atoms, ghosts) and tombstones."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace

import pytest
from builders import permuted, split
from hypothesis import given, settings
from hypothesis import strategies as st
from identity_worlds import IDENTIFIERS, RULES, atom, atom_worlds, hash_of, i

from resolvers.identity.erasure import MAX_HOLDERS, Closure, Tombstone
from resolvers.identity.evidence import Atom
from resolvers.identity.rules import IdentityRules
from schemas.identifiers import Identifier

PROPS = settings(max_examples=300, deadline=None)


def follow(named: Iterable[Identifier], atoms: Iterable[Atom] = ()) -> Closure:
    """A request naming ``named``, followed through ``atoms``."""
    c = Closure(RULES, hash_of)
    c.request(named)
    c.expand(atoms)
    return c


def closure(*named: str, atoms: Iterable[Atom] = ()) -> Closure:
    return follow([i(k) for k in named], atoms)


def absorbed(c: Closure) -> set[str]:
    """The keys of the absorbed identifiers (the closure knows them all by value here)."""
    return {c.known[d].key for d in c.absorbed}


# --------------------------------------------------------------------------- scenarios


def test_a_request_absorbs_what_is_seen_with_the_person_transitively() -> None:
    atoms = [
        atom("e1", 1, "customer_id:C1", "email:ann@x"),
        atom("e2", 2, "email:ann@x", "phone:+1"),
        atom("e3", 3, "phone:+1", "card_token:t1"),
        atom("e4", 4, "email:bob@x", "card_token:t2"),  # someone else
    ]
    c = closure("customer_id:C1", atoms=atoms)
    assert absorbed(c) == {"customer_id:C1", "email:ann@x", "phone:+1", "card_token:t1"}
    named, relayed = c.absorbed[hash_of(i("customer_id:C1"))], c.absorbed[hash_of(i("phone:+1"))]
    assert (named.relays, named.named, relayed.relays, relayed.named) == (True, True, True, False)


def test_a_device_is_absorbed_but_does_not_relay() -> None:
    atoms = [
        atom("e1", 1, "customer_id:C1", "anonymous_id:tablet"),
        atom("e2", 2, "anonymous_id:tablet", "email:sibling@x"),  # someone else on the tablet
    ]
    c = closure("customer_id:C1", atoms=atoms)
    assert absorbed(c) == {"customer_id:C1", "anonymous_id:tablet"}
    tablet = c.absorbed[hash_of(i("anonymous_id:tablet"))]
    assert (tablet.relays, tablet.named) == (False, False)
    named_device = closure("anonymous_id:tablet", atoms=atoms)
    assert absorbed(named_device) == {"anonymous_id:tablet"}


def test_an_account_id_joins_with_a_named_identifier_or_an_erased_account_in_its_atom() -> None:
    atoms = [
        atom("e1", 1, "customer_id:C1", "email:family@x"),
        atom("e2", 2, "customer_id:C2", "email:family@x"),  # the spouse
    ]
    one_spouse = closure("customer_id:C1", atoms=atoms)
    assert absorbed(one_spouse) == {"customer_id:C1", "email:family@x"}
    the_email = closure("email:family@x", atoms=atoms)
    assert absorbed(the_email) == {"customer_id:C1", "customer_id:C2", "email:family@x"}
    # the person's own loyalty id, seen with their customer id, goes with it
    loyalty = [
        *atoms,
        atom("e3", 3, "customer_id:C1", "loyalty_id:L1"),
        atom("e4", 4, "loyalty_id:L1", "customer_id:C3"),
    ]
    with_loyalty = closure("customer_id:C1", atoms=loyalty)
    assert absorbed(with_loyalty) == {
        "customer_id:C1",
        "email:family@x",
        "loyalty_id:L1",
        "customer_id:C3",
    }
    assert with_loyalty.absorbed[hash_of(i("loyalty_id:L1"))].account


def test_a_late_login_erases_what_the_device_browsed_before() -> None:
    """Issue 14: the erasure came first, the login linking the device to the person later."""
    c = closure("customer_id:C1")
    assert absorbed(c) == {"customer_id:C1"}
    browsing = atom("e1", 1, "anonymous_id:d1")
    assert c.reduce(browsing, anchored=False) is browsing  # nothing known yet
    login = atom("e9", 9, "anonymous_id:d1", "customer_id:C1")
    c.expand([browsing, login])
    assert absorbed(c) == {"customer_id:C1", "anonymous_id:d1"}
    assert c.reduce(browsing, anchored=False) is None  # the device's profile goes
    assert c.reduce(login, anchored=True) is None


def test_a_later_request_finds_the_accounts_next_to_an_identifier_erased_before() -> None:
    first = closure("customer_id:C1", atoms=[atom("e1", 1, "customer_id:C1", "email:family@x")])
    spouse = first.reduce(atom("e2", 2, "customer_id:C2", "email:family@x"), anchored=True)
    assert spouse == atom("e2", 2, "customer_id:C2", ghosts=[hash_of(i("email:family@x"))])
    # a new batch: the tombstones are loaded; now a request names the email itself
    later = Closure(RULES, hash_of)
    for digest, tomb in first.absorbed.items():
        later.tombstone(digest, tomb)
    later.request([i("email:family@x")])
    later.expand([spouse])
    assert later.is_absorbed(i("customer_id:C2"))
    assert later.absorbed[hash_of(i("email:family@x"))].named


@pytest.mark.parametrize(
    ("keys", "anchored", "expected"),
    [
        # an erased person's account: the atom goes
        (["customer_id:C1", "email:ann@x"], True, None),
        # another account that shared an absorbed email keeps the atom, minus the email
        (["customer_id:C2", "email:ann@x", "phone:+2"], True, ["customer_id:C2", "phone:+2"]),
        # a floating atom with a relaying absorbed identifier is the erased person's
        (["email:ann@x", "anonymous_id:d9"], False, None),
        # a floating atom with only an absorbed device keeps the rest
        (["anonymous_id:tablet", "email:sibling@x"], False, ["email:sibling@x"]),
        (["anonymous_id:tablet"], False, None),  # nothing left
        (["email:other@x"], False, ["email:other@x"]),  # untouched
    ],
)
def test_reduce(keys: list[str], anchored: bool, expected: list[str] | None) -> None:
    c = closure(
        "customer_id:C1",
        atoms=[atom("e0", 0, "customer_id:C1", "email:ann@x", "anonymous_id:tablet")],
    )
    given_atom = atom("e5", 5, *keys, ghosts=["h(old)"])
    got = c.reduce(given_atom, anchored=anchored)
    if expected is None:
        assert got is None
        return
    assert got is not None
    assert [x.key for x in got.ids] == expected
    assert got.first == given_atom.first
    gone = sorted({"h(old)", *(hash_of(i(k)) for k in keys if k not in expected)})
    assert list(got.ghosts) == gone
    if expected == keys:
        assert got is given_atom


def test_without_erasures_reduce_is_the_identity() -> None:
    a = atom("e1", 1, "customer_id:C1", "email:a@x")
    assert Closure(RULES, hash_of).reduce(a, anchored=True) is a


def test_hold_names_the_profiles_holding_a_ghost() -> None:
    c = closure("email:a@x")
    digest = hash_of(i("email:a@x"))
    c.hold([digest, "h(unknown)"], "p_2")
    c.hold([digest], "p_1")
    c.hold([digest], "p_1")
    assert c.absorbed[digest].holders == ("p_1", "p_2")
    assert "h(unknown)" not in c.absorbed


# --------------------------------------------------------------------------- properties


def reference(atoms: list[Atom], named: set[Identifier], rules: IdentityRules) -> set[Identifier]:
    """The module docstring's closure, computed naively as a least fixed point."""
    out = set(named)
    while True:
        grown = set(out)
        for a in atoms:
            if not any(x in out and not rules.is_device(x.type) for x in a.ids):
                continue
            pulls = any(x in named or (x in out and rules.is_unique(x.type)) for x in a.ids)
            grown |= {x for x in a.ids if not rules.is_unique(x.type) or pulls}
        if grown == out:
            return out
        out = grown


NAMED = st.lists(IDENTIFIERS, max_size=4)


@PROPS
@given(atoms=atom_worlds(), named=NAMED)
def test_the_closure_is_the_documented_least_fixed_point(
    atoms: list[Atom], named: list[Identifier]
) -> None:
    c = follow(named, atoms)
    assert {c.known[d] for d in c.absorbed} == reference(atoms, set(named), RULES)
    for digest, tomb in c.absorbed.items():
        ident = c.known[digest]
        assert tomb.relays is not RULES.is_device(ident.type)
        assert tomb.named is (ident in named)
        assert tomb.account is RULES.is_unique(ident.type)


@PROPS
@given(
    atoms=atom_worlds(),
    named=NAMED,
    request_cuts=st.lists(st.integers(0, 10), max_size=3),
    atom_keys=st.lists(st.integers(0, 100), max_size=12),
    atom_cuts=st.lists(st.integers(0, 20), max_size=3),
)
def test_the_closure_does_not_depend_on_the_order_of_requests_and_events(
    atoms: list[Atom],
    named: list[Identifier],
    request_cuts: list[int],
    atom_keys: list[int],
    atom_cuts: list[int],
) -> None:
    """Requests in several batches, each followed through the atoms known by then (in any
    order), end where one request naming everything, followed through all, ends."""
    at_once = follow(named, atoms)

    stepwise = Closure(RULES, hash_of)
    known: list[Atom] = []
    requests = split(named, request_cuts)
    arrivals = split(permuted(atoms, atom_keys), atom_cuts)
    for step in range(max(len(requests), len(arrivals))):
        if step < len(requests):
            stepwise.request(requests[step])
        if step < len(arrivals):
            known += arrivals[step]
        stepwise.expand(known)
    stepwise.expand(atoms)
    assert stepwise.absorbed == at_once.absorbed


@PROPS
@given(atoms=atom_worlds(), named=NAMED)
def test_reduce_keeps_no_absorbed_member_and_forgets_nothing_else(
    atoms: list[Atom], named: list[Identifier]
) -> None:
    c = follow(named, atoms)
    for a in atoms:
        for anchored in (True, False):
            got = c.reduce(a, anchored=anchored)
            if got is None:
                continue
            assert not any(c.is_absorbed(x) for x in got.ids)
            assert set(got.ids) | {c.known[g] for g in got.ghosts} == set(a.ids)
            assert got.first == a.first


# --------------------------------------------------------------------------- tombstones

TOMBSTONES = st.builds(
    Tombstone,
    relays=st.booleans(),
    named=st.booleans(),
    account=st.booleans(),
    holders=st.lists(st.sampled_from([f"p_{n}" for n in range(40)]), unique=True).map(
        lambda h: tuple(sorted(h))
    ),
)


@PROPS
@given(a=TOMBSTONES, b=TOMBSTONES, c=TOMBSTONES)
def test_tombstones_merge_commutatively_associatively_and_idempotently(
    a: Tombstone, b: Tombstone, c: Tombstone
) -> None:
    assert a.merged(b) == b.merged(a)
    assert a.merged(b).merged(c) == a.merged(b.merged(c))
    assert a.merged(a) == replace(a, holders=a.holders[:MAX_HOLDERS])
    merged = a.merged(b)
    assert merged.relays is (a.relays or b.relays)
    assert merged.named is (a.named or b.named)
    assert merged.account is (a.account or b.account)
    assert merged.pulls_accounts is (merged.named or merged.account)
    assert merged.holders == tuple(sorted(set(a.holders) | set(b.holders)))[:MAX_HOLDERS]


@PROPS
@given(tomb=TOMBSTONES)
def test_tombstones_round_trip_through_json(tomb: Tombstone) -> None:
    assert Tombstone.from_json(json.loads(json.dumps(tomb.to_json()))) == tomb


def test_a_tombstone_of_unknown_kind_is_read_as_relaying() -> None:
    assert Tombstone.from_json({}) == Tombstone(relays=True)
    assert Tombstone(relays=False).to_json() == {"r": False}
    assert Tombstone(relays=True, named=True, account=True, holders=("p",)).to_json() == {
        "r": True,
        "n": True,
        "a": True,
        "h": ["p"],
    }
