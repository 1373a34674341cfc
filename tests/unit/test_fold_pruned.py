"""A batch's fold of a group (``resolvers.profile.facts.fold_pruned``) is ``prune(fold_all(...))``
as it was before issue 17's fifteenth pass (kept verbatim in ``fold_reference``): the same
facts, their mappings in the same order, marked as ``prune``'s fixpoint the same way.

``fold_pruned`` skips ``prune`` where it can see that nothing would change (facts that were
its fixpoint under the policy, or held no behaviour, plus events that roll nothing up and
that no denial of the group revokes); the property draws groups as a batch meets them: new,
pruned by an earlier batch (with or without an account's history), folded but not pruned,
decoded (the fixpoint's mark lost), or folded under another policy (a worker whose consent
policy changed), then a batch's events (redeliveries too), with the fold's windows as they
are and shrunk (roll-ups, digests, horizons, too many transactions).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from unittest import mock

import fold_reference as ref
from builders import with_fingerprints
from hypothesis import given, settings
from hypothesis import strategies as st
from profile_worlds import (
    POLICY,
    TRACKED_CODE,
    WORLD_DAYS,
    at,
    obs,
    small_windows,
    statement,
    tracked,
    worlds,
)

from resolvers.consent import BehaviourPruning, ConsentHistory, ConsentPolicy, Purpose
from resolvers.profile import facts as facts_module
from resolvers.profile.facts import EMPTY_FACTS, IMPLIED_IDS, Facts, Observation

#: A policy that lets behaviour serve where ``POLICY`` does not (no opt-in region, analytics
#: and personalization by default where the region is unknown): facts folded under it keep
#: what ``POLICY`` drops by itself.
LENIENT = ConsentPolicy(
    version="lenient",
    opt_in_regions=frozenset(),
    opt_out_regions=frozenset({"US", "DE"}),
    unknown_default=frozenset({Purpose.ANALYTICS, Purpose.PERSONALIZATION}),
)

#: How the group's facts were when the batch met them.
STARTS = ("empty", "pruned", "pruned_with_account", "folded", "decoded", "other_policy")

#: An account's denial of analytics and personalization, late in the worlds' days.
ACCOUNT_DENIES: ConsentHistory = statement(Purpose.ANALYTICS, False, 60 * 24 * 9).merged(
    statement(Purpose.PERSONALIZATION, False, 60 * 24 * 9)
)


@contextlib.contextmanager
def _windows(small: bool) -> Iterator[None]:
    """The fold's windows, shrunk (``small_windows``) in both the fold and its reference."""
    if not small:
        yield
        return
    # the reference's own windows: ``small_windows``' defaults
    ref_windows = {"RECENT_DAYS": 3, "BEHAVIOUR_DAYS": 12, "MAX_TRANSACTIONS": 6}
    with small_windows(), mock.patch.multiple(ref, **ref_windows):
        assert facts_module.RECENT_DAYS == ref.RECENT_DAYS
        yield


def _start(kind: str, events: list[Observation], *, reference: bool) -> Facts:
    """The group's facts as the batch meets them (built by the old or the new code: ``prune``
    marks what it returns, so each run gets its own)."""
    fold_all = ref.fold_all if reference else facts_module.fold_all
    prune = ref.prune if reference else facts_module.prune
    if kind == "empty":
        return EMPTY_FACTS
    if kind == "other_policy":
        return prune(fold_all(EMPTY_FACTS, events, LENIENT), LENIENT)
    folded = fold_all(EMPTY_FACTS, events, POLICY)
    if kind == "folded":
        return folded
    if kind == "pruned_with_account":
        return prune(folded, POLICY, ACCOUNT_DENIES)
    pruned = prune(folded, POLICY)
    return replace(pruned) if kind == "decoded" else pruned  # a copy has no mark


def _renamed(events: list[Observation], prefix: str) -> list[Observation]:
    return [e._replace(event_id=prefix + e.event_id) for e in events]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(STARTS),
    worlds(12),
    worlds(12),
    st.booleans(),
    st.booleans(),
)
def test_fold_pruned_is_prune_of_fold_all_as_before(
    start: str, before: list[Observation], batch: list[Observation], redelivered: bool, small: bool
) -> None:
    before = _renamed(before, "b")
    # the batch's events; with ``redelivered``, the earlier events come again among them
    events = _renamed(batch, "n") + (before if redelivered else [])
    with _windows(small):
        old_start = _start(start, before, reference=True)
        old = ref.prune(ref.fold_all(old_start, events, POLICY), POLICY)
        new_start = _start(start, before, reference=False)
        new = facts_module.fold_pruned(new_start, events, POLICY)
    # a recent event's fingerprint is implied by its id (ADR 0032): the reference wrote it
    assert all(item.digest.ids == IMPLIED_IDS for item in new.recent.values())
    assert with_fingerprints(new) == old
    for part in ("traits", "transactions", "recent", "digests"):
        have = getattr(with_fingerprints(new), part)
        assert list(have.items()) == list(getattr(old, part).items()), part
    assert new.pruned is old.pruned
    assert (new is new_start) == (old is old_start)
    # and pruned again with an account's denials (the lane's pruning by accounts)
    with _windows(small):
        again = facts_module.prune(new, POLICY, ACCOUNT_DENIES)
        old_again = ref.prune(old, POLICY, ACCOUNT_DENIES)
    assert with_fingerprints(again) == old_again
    assert list(with_fingerprints(again).recent.items()) == list(old_again.recent.items())
    assert list(again.digests.items()) == list(old_again.digests.items())
    assert (again is new) == (old_again is old)


def test_a_fold_that_changes_nothing_when_pruned_does_not_prune() -> None:
    """The worlds above reach the shortcut: a new group's tracked events, within the recent
    window and not denied, are the fixpoint as folded (``_prune`` is not called)."""
    events = [tracked("e1", 0), tracked("e2", 5)]
    with mock.patch.object(facts_module, "_prune", side_effect=AssertionError("pruned")):
        folded = facts_module.fold_pruned(EMPTY_FACTS, events, POLICY)
    assert folded.pruned is POLICY
    assert list(folded.recent) == ["e1", "e2"]
    assert folded == facts_module.prune(facts_module.fold_all(EMPTY_FACTS, events, POLICY), POLICY)


def test_a_later_denial_of_the_group_prunes_what_it_folded() -> None:
    """A denial of analytics after a tracked event revokes that part: not the shortcut."""
    denial = obs("e2", 5, type="consent_updated", consent={"analytics": False})
    folded = facts_module.fold_pruned(EMPTY_FACTS, [tracked("e1", 0), denial], POLICY)
    digest = folded.recent["e1"].digest
    assert not digest.seen
    assert digest.interest
    assert folded.pruned is POLICY


# ------------------------------------------------- pruned again with the accounts' histories

#: An account's history: a few explicit statements of the behaviour purposes (and one
#: other), at the worlds' times (``at(minute, day)``: equal to an event's time now and then).
_ACCOUNT_STATEMENTS = st.lists(
    st.tuples(
        st.sampled_from([Purpose.ANALYTICS, Purpose.PERSONALIZATION, Purpose.MARKETING]),
        st.booleans(),
        st.integers(0, WORLD_DAYS),
        st.integers(0, 2),
    ),
    max_size=4,
)


def _account(said: list[tuple[Purpose, bool, int, int]]) -> ConsentHistory:
    history = ConsentHistory()
    for purpose, granted, day, minute in said:
        history = history.merged(statement(purpose, granted, day * 24 * 60 + minute))
    return history


ACCOUNTS = _ACCOUNT_STATEMENTS.map(_account)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(STARTS),
    worlds(12),
    st.lists(
        st.tuples(ACCOUNTS, st.sampled_from(["same", "same", "decoded", "other_policy"])),
        min_size=1,
        max_size=5,
    ),
    st.booleans(),
)
def test_pruned_again_and_again_with_accounts_is_prune_as_before(
    start: str, events: list[Observation], steps: list[tuple[ConsentHistory, str]], small: bool
) -> None:
    """The lane prunes each group linked to an account with the account's history at every
    batch that loads it: ``prune`` then returns facts at once while the account denies
    nothing later than the facts' own history or the accounts' it was pruned with before
    (``Facts.pruned_also``), and ``BehaviourPruning`` reads ``also``'s denials without the
    histories merged. Each step is ``prune`` as it was (``fold_reference``: a full prune
    unless the account denies nothing later than the group itself): the same facts, in the
    same orders, the same object exactly when the reference's is. Between steps the facts
    may be decoded (their marks lost) or pruned under another policy."""
    with _windows(small):
        new = _start(start, events, reference=False)
        old = _start(start, events, reference=True)
        for also, how in steps:
            policy = LENIENT if how == "other_policy" else POLICY
            if how == "decoded":
                new, old = replace(new), replace(old)  # a copy has no mark
            again = facts_module.prune(new, policy, also)
            old_again = ref.prune(old, policy, also)
            assert with_fingerprints(again) == old_again
            assert list(with_fingerprints(again).recent.items()) == list(old_again.recent.items())
            assert list(again.digests.items()) == list(old_again.digests.items())
            assert (again is new) == (old_again is old)
            assert again.pruned is old_again.pruned
            new, old = again, old_again


def test_a_group_pruned_with_its_account_is_not_pruned_again_for_the_same_denials() -> None:
    """The short-cut is taken: pruned with an account that denied analytics after its
    events, the group returns itself at once when pruned with the same denial (or an
    earlier one), and is pruned again when the account denies personalization too."""
    events = [tracked("e1", 0), tracked("e2", 5)]
    group = facts_module.fold_pruned(EMPTY_FACTS, events, POLICY)
    denies = statement(Purpose.ANALYTICS, False, 60)
    pruned = facts_module.prune(group, POLICY, denies)
    assert not pruned.recent["e1"].digest.seen
    with mock.patch.object(facts_module, "_prune", side_effect=AssertionError("pruned")):
        assert facts_module.prune(pruned, POLICY, denies) is pruned
        assert facts_module.prune(pruned, POLICY, statement(Purpose.ANALYTICS, False, 30)) is (
            pruned
        )
    later = denies.merged(statement(Purpose.PERSONALIZATION, False, 60))
    again = facts_module.prune(pruned, POLICY, later)
    assert not again.recent["e1"].digest.interest
    assert again == ref.prune(ref.prune(group, POLICY, denies), POLICY, later)


@settings(max_examples=300, deadline=None)
@given(ACCOUNTS, ACCOUNTS, st.integers(0, WORLD_DAYS), st.integers(0, 2))
def test_behaviour_pruning_with_also_is_that_of_the_merged_histories(
    history: ConsentHistory, also: ConsentHistory, day: int, minute: int
) -> None:
    """``BehaviourPruning(history, policy, also)`` decides as that of the merge (which
    ``prune`` built before): the later of each pair of denials."""
    when = at(minute, day)
    with_also = BehaviourPruning(history, POLICY, also)
    merged = BehaviourPruning(history.merged(also), POLICY)
    for code in ("", TRACKED_CODE):
        for region in ("", "DE", "US"):
            assert with_also.never(when, code, region) == merged.never(when, code, region)
