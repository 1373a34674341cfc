"""Property tests of the identity engine: order/batch independence, idempotence, limits, blocks.

Batches are simulated the way the pipeline runs them: a fake store keeps the JSON of every
record (``to_dict`` -> JSON -> ``from_dict``), and each batch loads a fresh
:class:`InMemoryIdentityState` with exactly what the real loader loads (the batch's
identifiers, the profiles they point to, and the records of those profiles' identifiers),
then writes back only the changed records and deletes the absorbed profiles.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from resolvers.identity_rules import IdentityRules

from resolvers.identity import (
    IdentifierRecord,
    InMemoryIdentityState,
    ProfileIdentity,
    ResolveRequest,
    apply,
    resolve,
)
from schemas.identifiers import (
    ANONYMOUS_ID,
    CARD_TOKEN,
    CUSTOMER_ID,
    EMAIL,
    LOYALTY_ID,
    PHONE,
    Identifier,
)
from schemas.normalize import is_blocked, normalize_identifiers

T0 = datetime(2025, 1, 1, tzinfo=UTC)
PROPS = settings(max_examples=150, deadline=None)


# --------------------------------------------------------------------------- harness


@dataclass
class FakeStore:
    """Persisted records as JSON text, like the Redis store keeps them."""

    identifiers: dict[Identifier, str] = field(default_factory=dict)
    profiles: dict[str, str] = field(default_factory=dict)

    def load(self, batch: Iterable[ResolveRequest]) -> InMemoryIdentityState:
        idents: dict[Identifier, IdentifierRecord] = {}
        wanted = {i for req in batch for i in req.identifiers}
        for ident in wanted:
            if ident in self.identifiers:
                idents[ident] = IdentifierRecord.from_dict(json.loads(self.identifiers[ident]))
        profiles: dict[str, ProfileIdentity] = {}
        for rec in list(idents.values()):
            if rec.profile_id is not None and rec.profile_id not in profiles:
                profiles[rec.profile_id] = ProfileIdentity.from_dict(
                    json.loads(self.profiles[rec.profile_id])
                )
        for profile in profiles.values():
            for ident in profile.all_identifiers():
                if ident not in idents:
                    idents[ident] = IdentifierRecord.from_dict(json.loads(self.identifiers[ident]))
        return InMemoryIdentityState.from_records(idents, profiles)

    def save(self, state: InMemoryIdentityState) -> None:
        for ident, rec in state.changed_identifiers().items():
            self.identifiers[ident] = json.dumps(rec.to_dict())
        for pid, prof in state.changed_profiles().items():
            self.profiles[pid] = json.dumps(prof.to_dict())
        for pid in state.removed_profiles:
            self.profiles.pop(pid, None)

    def everything(self) -> InMemoryIdentityState:
        return InMemoryIdentityState.from_records(
            {i: IdentifierRecord.from_dict(json.loads(r)) for i, r in self.identifiers.items()},
            {p: ProfileIdentity.from_dict(json.loads(r)) for p, r in self.profiles.items()},
        )


def id_factory() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"p{next(counter):05d}"


def run_batches(
    events: Sequence[ResolveRequest], cuts: Iterable[int], rules: IdentityRules
) -> InMemoryIdentityState:
    store = FakeStore()
    new_id = id_factory()
    bounds = sorted({0, len(events), *(c % (len(events) + 1) for c in cuts)})
    for lo, hi in itertools.pairwise(bounds):
        batch = events[lo:hi]
        state = store.load(batch)
        for req in batch:
            apply(state, resolve(req, state, rules, new_profile_id=new_id).effects)
        store.save(state)
    return store.everything()


def run_one_state(events: Sequence[ResolveRequest], rules: IdentityRules) -> InMemoryIdentityState:
    state = InMemoryIdentityState()
    new_id = id_factory()
    for req in events:
        apply(state, resolve(req, state, rules, new_profile_id=new_id).effects)
    return state


def connected_components(events: Sequence[ResolveRequest]) -> frozenset[frozenset[Identifier]]:
    parent: dict[Identifier, Identifier] = {}

    def find(x: Identifier) -> Identifier:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for req in events:
        first, *rest = req.identifiers
        for other in rest:
            parent[find(other)] = find(first)
        find(first)
    groups: dict[Identifier, set[Identifier]] = {}
    for x in list(parent):
        groups.setdefault(find(x), set()).add(x)
    return frozenset(frozenset(g) for g in groups.values())


def assert_consistent(state: InMemoryIdentityState, rules: IdentityRules) -> None:
    """Limits hold; records and profiles point at each other; quarantined ones are detached."""
    profiles = state.profiles()
    for pid, prof in profiles.items():
        assert prof.profile_id == pid
        for id_type, values in prof.identifiers.items():
            assert 0 < len(values) <= rules.limit(id_type), (pid, id_type, values)
            for value in values:
                assert state.identifier(Identifier(id_type, value)).profile_id == pid
    for ident, rec in state.identifier_records().items():
        if rec.quarantined:
            assert rec.profile_id is None
        if rec.profile_id is not None:
            assert ident.value in profiles[rec.profile_id].identifiers[ident.type]
        for values in rec.seen_with.values():
            assert len(values) <= rules.cooccurrence_cap


# --------------------------------------------------------------------------- strategies


@st.composite
def conflict_free_events(draw: st.DrawFn) -> list[ResolveRequest]:
    """Events of several people; each person's identifiers stay within the default limits."""
    people: list[list[Identifier]] = []
    for n in range(draw(st.integers(1, 4))):
        mine: list[Identifier] = []
        if draw(st.booleans()):
            mine.append(Identifier(CUSTOMER_ID, f"c{n}"))
        if draw(st.booleans()):
            mine.append(Identifier(LOYALTY_ID, f"l{n}"))
        for id_type, most in ((EMAIL, 3), (PHONE, 2), (ANONYMOUS_ID, 3), (CARD_TOKEN, 2)):
            mine += [
                Identifier(id_type, f"{id_type}-{n}-{k}") for k in range(draw(st.integers(0, most)))
            ]
        if not mine:
            mine.append(Identifier(ANONYMOUS_ID, f"only-{n}"))
        people.append(mine)
    events: list[ResolveRequest] = []
    for k in range(draw(st.integers(1, 14))):
        person = draw(st.sampled_from(people))
        idents = draw(st.lists(st.sampled_from(person), min_size=1, max_size=4, unique=True))
        minutes = draw(st.integers(0, 10_000))
        events.append(ResolveRequest(f"e{k}", T0 + timedelta(minutes=minutes), tuple(idents)))
    return events


SMALL_RULES = IdentityRules(
    limits={EMAIL: 2, PHONE: 1, ANONYMOUS_ID: 2, CARD_TOKEN: 2},
    quarantine_threshold=2,
    is_blocked=lambda t, v: v.startswith("bad"),
)

POOL = st.sampled_from(
    [
        Identifier(CUSTOMER_ID, "c1"),
        Identifier(CUSTOMER_ID, "c2"),
        Identifier(CUSTOMER_ID, "c3"),
        Identifier(CUSTOMER_ID, "bad-0"),
        Identifier(LOYALTY_ID, "l1"),
        Identifier(LOYALTY_ID, "l2"),
        Identifier(EMAIL, "a@x"),
        Identifier(EMAIL, "b@x"),
        Identifier(EMAIL, "c@x"),
        Identifier(EMAIL, "bad@x"),
        Identifier(PHONE, "+1"),
        Identifier(PHONE, "+2"),
        Identifier(ANONYMOUS_ID, "d1"),
        Identifier(ANONYMOUS_ID, "d2"),
        Identifier(ANONYMOUS_ID, "d3"),
        Identifier(CARD_TOKEN, "t1"),
        Identifier(CARD_TOKEN, "bad-token"),
        Identifier("store_member", "m1"),
        Identifier("store_member", "m2"),
    ]
)


@st.composite
def arbitrary_events(draw: st.DrawFn) -> list[ResolveRequest]:
    """Events over a small shared pool: plenty of uniqueness, limit and quarantine conflicts."""
    n = draw(st.integers(1, 25))
    return [
        ResolveRequest(
            f"e{k}",
            T0 + timedelta(minutes=draw(st.integers(0, 100))),
            tuple(draw(st.lists(POOL, min_size=0, max_size=5))),
        )
        for k in range(n)
    ]


# --------------------------------------------------------------------------- properties


@PROPS
@given(
    events=conflict_free_events(),
    data=st.data(),
)
def test_partition_is_independent_of_order_and_batches(
    events: list[ResolveRequest], data: st.DataObject
) -> None:
    rules = IdentityRules()
    expected = connected_components(events)
    assert run_one_state(events, rules).partition() == expected

    shuffled = data.draw(st.permutations(events), label="order")
    cuts = data.draw(st.lists(st.integers(0, 100), max_size=6), label="cuts")
    batched = run_batches(shuffled, cuts, rules)
    assert batched.partition() == expected
    assert_consistent(batched, rules)
    # no conflicts means nothing was quarantined or dropped
    assert not any(r.quarantined for r in batched.identifier_records().values())
    # every profile's merged_from names only profiles that no longer exist
    live = set(batched.profiles())
    for prof in batched.profiles().values():
        assert live.isdisjoint(prof.merged_from)


@PROPS
@given(events=conflict_free_events())
def test_replaying_applied_events_changes_nothing(events: list[ResolveRequest]) -> None:
    rules = IdentityRules()
    state = run_one_state(events, rules)
    before = (state.identifier_records(), state.profiles())

    def no_new_id() -> str:
        raise AssertionError("replay must not create a profile")

    for req in events:
        result = resolve(req, state, rules, new_profile_id=no_new_id)
        assert not result.changes_state, result.effects
        assert result.dropped == ()
        owners = {state.identifier(i).profile_id for i in req.identifiers}
        assert owners == {result.profile_id}
    assert (state.identifier_records(), state.profiles()) == before


@PROPS
@given(events=arbitrary_events(), cuts=st.lists(st.integers(0, 100), max_size=5))
def test_limits_hold_and_state_stays_consistent_for_arbitrary_input(
    events: list[ResolveRequest], cuts: list[int]
) -> None:
    state = InMemoryIdentityState()
    new_id = id_factory()
    for req in events:
        result = resolve(req, state, SMALL_RULES, new_profile_id=new_id)
        apply(state, result.effects)
        assert_consistent(state, SMALL_RULES)
        # resolving the just-applied event again changes nothing
        again = resolve(req, state, SMALL_RULES, new_profile_id=new_id)
        assert not again.changes_state, again.effects
        assert again.profile_id == result.profile_id
        # what the resolution says is linked really is on its profile
        for ident in result.linked:
            assert state.identifier(ident).profile_id == result.profile_id
    # the batched pipeline keeps the same invariants (and never misses a record it needs)
    assert_consistent(run_batches(events, cuts, SMALL_RULES), SMALL_RULES)


@PROPS
@given(events=arbitrary_events(), cuts=st.lists(st.integers(0, 100), max_size=5))
def test_blocked_values_never_link_nor_count_as_evidence(
    events: list[ResolveRequest], cuts: list[int]
) -> None:
    state = run_batches(events, cuts, SMALL_RULES)
    for ident, rec in state.identifier_records().items():
        assert not SMALL_RULES.is_blocked(ident.type, ident.value) or rec.is_empty
        for values in rec.seen_with.values():
            assert not any(v.startswith("bad") for v in values)
    for prof in state.profiles().values():
        for values in prof.identifiers.values():
            assert not any(v.startswith("bad") for v in values)


RAW_EMAILS = st.sampled_from(
    ["Ann@Shop.no", " ann@shop.no ", "ANN@SHOP.NO", "test@test.com", "noemail@shop.no", "null"]
)
RAW_PHONES = st.sampled_from(["1234567890", "+47 912 34 567", "91234567", "0000000", "n/a"])
RAW_CUSTOMERS = st.sampled_from(["C-1", "C-2", "guest", "undefined", "-1", "0"])


@PROPS
@given(
    raw_events=st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                EMAIL: RAW_EMAILS,
                PHONE: RAW_PHONES,
                CUSTOMER_ID: RAW_CUSTOMERS,
                ANONYMOUS_ID: st.sampled_from(["dev-1", "dev-2", "none", "anonymous"]),
            },
        ),
        min_size=1,
        max_size=20,
    )
)
def test_with_the_real_normalizer_placeholders_never_link_and_variants_coincide(
    raw_events: list[dict[str, str]],
) -> None:
    rules = IdentityRules(is_blocked=is_blocked)
    state = InMemoryIdentityState()
    new_id = id_factory()
    for k, raw in enumerate(raw_events):
        accepted = normalize_identifiers(raw, region="NO").accepted
        req = ResolveRequest(f"e{k}", T0 + timedelta(seconds=k), accepted)
        apply(state, resolve(req, state, rules, new_profile_id=new_id).effects)
    assert_consistent(state, rules)
    linked: dict[str, Any] = {}
    for ident, rec in state.identifier_records().items():
        if rec.profile_id is not None:
            assert not is_blocked(ident.type, ident.value)
            linked[ident.key] = rec.profile_id
    assert not {"phone:1234567890", "email:test@test.com", "customer_id:guest"} & set(linked)
    emails = {k for k in linked if k.startswith("email:")}
    assert emails <= {"email:ann@shop.no"}
    phones = {k for k in linked if k.startswith("phone:")}
    assert phones <= {"phone:+4791234567"}
