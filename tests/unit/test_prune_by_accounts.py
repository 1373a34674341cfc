"""The profiles lane's pruning by accounts (``ProfilesBatch._prune_by_accounts``) decides as the
version that computed every group's accounts and every account's history up front (kept
verbatim below; the ``_accounts`` it calls is ``tests/accounts_reference.py``'s, the reference
``tests/pipeline/lane_reference.py`` shares, verbatim but for the rule of 2026-12-04: a group
other than an account group is linked to the accounts whose erasure would erase it whole): the
same people changed, every group's facts the same.

The lane's version skips what cannot change anything (an account group that stated nothing
adds no history; a batch without any history prunes nothing; a group whose only linked
history is its own, pruned under the policy already, is ``prune``'s fixpoint; since the
fifteenth pass, a group other than an account group is asked only for the accounts with a
history, and its identifiers' records are read inline): the property
draws people whose groups share accounts, devices seen with accounts, folded facts with
denials, pruned (as the fold leaves them) or not (as a load leaves them).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime

from accounts_reference import _accounts as old_accounts
from hypothesis import given, settings
from hypothesis import strategies as st
from identity_worlds import RULES, i, stamp
from profile_worlds import POLICY, obs, worlds

from resolvers.consent import EMPTY_HISTORY, ConsentHistory
from resolvers.context import Context, TopicNames
from resolvers.identity.evidence import Atom, IdentifierRecord
from resolvers.lanes.profiles import ProfilesBatch
from resolvers.lanes.stored_profile import Group
from resolvers.profile import facts as profile_facts
from resolvers.profile.facts import EMPTY_FACTS, Facts, Observation
from resolvers.stages import identity
from schemas.identifiers import Identifier

ACCOUNTS = ("customer_id:C1", "customer_id:C2", "loyalty_id:L1")
DEVICES = ("email:a@x", "anonymous_id:d1", "anonymous_id:d2")


# --------------------------------------------------------------------------- the old version
def old_prune_by_accounts(self: ProfilesBatch, res: identity.Resolution) -> set[str]:
    """``ProfilesBatch._prune_by_accounts`` before the thirteenth pass, verbatim (its
    ``_accounts`` call names ``accounts_reference``'s, as ``old_accounts``)."""
    policy = self.ctx.policy
    bound = policy.max_explicit_grants
    linked: dict[tuple[str, str], set[str]] = {}
    history: dict[str, ConsentHistory] = {}
    for pid, person in res.people.items():
        for gkey, group in person.groups.items():
            accounts = linked[(pid, gkey)] = old_accounts(self, res, gkey, group)
            if gkey.startswith("u:"):
                for account in accounts:
                    history[account] = history.get(account, EMPTY_HISTORY).merged(
                        group.facts.consent, bound
                    )
    changed: set[str] = set()
    for pid, person in res.people.items():
        for gkey, group in list(person.groups.items()):
            also = EMPTY_HISTORY
            for account in sorted(linked[(pid, gkey)]):
                if account in history:
                    also = also.merged(history[account], bound)
            if group.facts.is_empty or also is EMPTY_HISTORY:
                continue
            pruned = profile_facts.prune(group.facts, policy, also)
            if pruned is not group.facts:
                person.groups[gkey] = replace(group, facts=pruned)
                changed.add(pid)
    return changed


# --------------------------------------------------------------------------- worlds
#: One group as drawn: its identifier keys, its events, whether they were pruned (a fold),
#: whether it is keyed as a group without an account even if it carries one (the lane's
#: identity never makes one; the pruning handles it, so the property draws it).
GroupSpec = tuple[tuple[str, ...], list[Observation], bool, bool]


@st.composite
def _group(draw: st.DrawFn) -> GroupSpec:
    keys = draw(st.lists(st.sampled_from(ACCOUNTS + DEVICES), min_size=1, max_size=3, unique=True))
    plain = draw(st.sampled_from([False, False, False, True]))
    return tuple(keys), draw(worlds(12)), draw(st.booleans()), plain


@st.composite
def _world(
    draw: st.DrawFn,
) -> tuple[list[list[GroupSpec]], dict[str, dict[str, tuple[str, ...]]], set[str]]:
    people = draw(st.lists(st.lists(_group(), min_size=1, max_size=3), min_size=1, max_size=3))
    seen_with = draw(
        st.dictionaries(
            st.sampled_from(DEVICES),
            st.dictionaries(
                st.sampled_from(["customer_id", "loyalty_id"]),
                st.lists(st.sampled_from(["C1", "C2", "L1", "C9"]), min_size=1, unique=True).map(
                    lambda vs: tuple(sorted(vs))
                ),
                min_size=1,
            ),
        )
    )
    written = draw(st.sets(st.sampled_from(DEVICES)))  # records the batch wrote (else loaded)
    return people, seen_with, written


def _facts(events: list[Observation], pruned: bool) -> Facts:
    # built afresh for each run: ``prune`` marks what it returns (its fixpoint)
    folded = profile_facts.fold_all(EMPTY_FACTS, events, POLICY)
    return profile_facts.prune(folded, POLICY) if pruned else folded


def _build(
    world: tuple[list[list[GroupSpec]], dict[str, dict[str, tuple[str, ...]]], set[str]],
) -> tuple[ProfilesBatch, identity.Resolution]:
    people_specs, seen_with, written = world
    people: dict[str, identity.PersonDraft] = {}
    for p, specs in enumerate(people_specs):
        pid = f"p{p}"
        groups: dict[str, Group] = {}
        for g, (keys, events, pruned, plain) in enumerate(specs):
            ids = tuple(sorted(i(k) for k in keys))
            accounts = sorted(k for k in keys if k in ACCOUNTS)
            # an account group by its (first) account: two people may hold one (a conflict)
            gkey = f"u:{accounts[0]}#{p}.{g}" if accounts and not plain else f"a:{p}.{g}"
            atom = Atom(ids, stamp(f"{pid}.{g}"), ())
            groups[gkey] = Group({f"k{g}": atom}, _facts(events, pruned))
        people[pid] = identity.PersonDraft(pid, stamp(pid), {}, groups)
    records: dict[Identifier, IdentifierRecord] = {}
    res_records: dict[Identifier, IdentifierRecord | None] = {}
    for key, seen in seen_with.items():
        record = IdentifierRecord(seen_with=seen)
        (res_records if key in written else records)[i(key)] = record
    ctx = Context(
        rules=RULES,
        policy=POLICY,
        topics=TopicNames(),
        salt=b"test",
        now=datetime(2025, 1, 1, tzinfo=UTC),
    )
    batch = ProfilesBatch(ctx, {}, records, {}, {}, {}, frozenset())
    res = identity.Resolution(people, {}, {}, {}, res_records, [], [], [], [], Counter())
    return batch, res


@settings(max_examples=200, deadline=None)
@given(_world())
def test_prune_by_accounts_decides_as_before(
    world: tuple[list[list[GroupSpec]], dict[str, dict[str, tuple[str, ...]]], set[str]],
) -> None:
    batch, res = _build(world)
    changed = batch._prune_by_accounts(res)
    old_batch, old_res = _build(world)
    old_changed = old_prune_by_accounts(old_batch, old_res)
    assert changed == old_changed
    for pid, person in res.people.items():
        old_groups = old_res.people[pid].groups
        assert list(person.groups) == list(old_groups)
        for gkey, group in person.groups.items():
            assert group.facts == old_groups[gkey].facts
            assert list(group.facts.recent) == list(old_groups[gkey].facts.recent)
            assert list(group.facts.digests) == list(old_groups[gkey].facts.digests)


def test_a_device_seen_with_an_account_loses_what_the_account_denied() -> None:
    """The property's worlds reach the pruning: a device's behaviour goes when the account
    it was seen with denies analytics and personalization later."""
    device = [obs("e1", 0, consent={"analytics": True, "personalization": True})]
    denied = {"analytics": False, "personalization": False}
    account = [obs("e2", 5, type="consent_updated", consent=denied)]
    world = (
        [
            [
                (("anonymous_id:d1",), device, True, False),
                (("customer_id:C1",), account, True, False),
            ]
        ],
        {"anonymous_id:d1": {"customer_id": ("C1",)}},
        set(),
    )
    batch, res = _build(world)
    assert batch._prune_by_accounts(res) == {"p0"}
    digest = res.people["p0"].groups["a:0.0"].facts.recent["e1"].digest
    assert not digest.seen
    assert not digest.interest


def test_a_device_seen_with_an_account_does_not_prune_what_an_erasure_would_leave() -> None:
    """An e-mail used on the account's device (ann@'s click on C1's tablet): C1's erasure
    cuts the device out and leaves the click to the e-mail, so C1's denial does not prune it
    in storage (the gate hides it while it is in C1's person); once the e-mail was seen with
    C1 too, the erasure would take the whole atom and the denial prunes it."""
    click = [obs("e1", 0, consent={"analytics": True, "personalization": True})]
    denied = {"analytics": False, "personalization": False}
    account = [obs("e2", 5, type="consent_updated", consent=denied)]

    def world(
        email_seen_with: tuple[str, ...],
    ) -> tuple[list[list[GroupSpec]], dict[str, dict[str, tuple[str, ...]]], set[str]]:
        seen: dict[str, dict[str, tuple[str, ...]]] = {"anonymous_id:d1": {"customer_id": ("C1",)}}
        if email_seen_with:
            seen["email:a@x"] = {"customer_id": email_seen_with}
        groups: list[GroupSpec] = [
            (("anonymous_id:d1", "email:a@x"), click, True, False),
            (("customer_id:C1",), account, True, False),
        ]
        return [groups], seen, set()

    batch, res = _build(world(()))
    assert batch._prune_by_accounts(res) == set()
    assert res.people["p0"].groups["a:0.0"].facts.recent["e1"].digest.seen
    batch, res = _build(world(("C1",)))
    assert batch._prune_by_accounts(res) == {"p0"}
    assert not res.people["p0"].groups["a:0.0"].facts.recent["e1"].digest.seen


def test_a_group_goes_with_an_account_only_when_every_atom_does() -> None:
    """A group of two atoms, a device seen with the account and another device seen with
    nobody: the account's erasure would leave the second atom (and the group), so its denial
    does not prune the group in storage; once the second device was seen with the account too,
    it does. (The property's groups have one atom each.)"""
    click = [obs("e1", 0, consent={"analytics": True, "personalization": True})]
    denied = {"analytics": False, "personalization": False}
    account = [obs("e2", 5, type="consent_updated", consent=denied)]

    def two_atoms(d2_seen_with: tuple[str, ...]) -> tuple[ProfilesBatch, identity.Resolution]:
        seen: dict[str, dict[str, tuple[str, ...]]] = {"anonymous_id:d1": {"customer_id": ("C1",)}}
        if d2_seen_with:
            seen["anonymous_id:d2"] = {"customer_id": d2_seen_with}
        groups: list[GroupSpec] = [
            (("anonymous_id:d1",), click, True, False),
            (("customer_id:C1",), account, True, False),
        ]
        batch, res = _build(([groups], seen, set()))
        group = res.people["p0"].groups["a:0.0"]
        other = Atom((i("anonymous_id:d2"),), stamp("p0.0b"), ())
        res.people["p0"].groups["a:0.0"] = replace(group, atoms={**group.atoms, "k0b": other})
        return batch, res

    for d2_seen_with in ((), ("C2",)):
        batch, res = two_atoms(d2_seen_with)
        old_batch, old_res = two_atoms(d2_seen_with)
        assert batch._prune_by_accounts(res) == old_prune_by_accounts(old_batch, old_res) == set()
        assert res.people["p0"].groups["a:0.0"].facts.recent["e1"].digest.seen
    batch, res = two_atoms(("C1",))
    old_batch, old_res = two_atoms(("C1",))
    assert batch._prune_by_accounts(res) == old_prune_by_accounts(old_batch, old_res) == {"p0"}
    assert not res.people["p0"].groups["a:0.0"].facts.recent["e1"].digest.seen
