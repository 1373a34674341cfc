"""A group's facts (``resolvers.profile.facts``): a fold that is a function of the SET of its
events. Scenarios one by one, then properties over worlds that span more days and events
than the behaviour windows (shrunk by ``small_windows``), so roll-ups, husks and the horizon
all happen."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from builders import permuted, split
from hypothesis import example, given, settings
from hypothesis import strategies as st
from profile_worlds import (
    EVERYTHING,
    POLICY,
    T0,
    TRACKED_CODE,
    at,
    merge,
    obs,
    observe,
    observe_all,
    order,
    prune,
    returned,
    small_windows,
    tracked,
    worlds,
)

from resolvers.consent import (
    EMPTY_HISTORY,
    BehaviourPruning,
    ConsentHistory,
    Purpose,
    never_serves,
)
from resolvers.consent.signals import from_code
from resolvers.profile import facts as facts_module
from resolvers.profile.facts import (
    EMPTY_FACTS,
    RECENT_EVENTS,
    Facts,
    Observation,
    OrderFacts,
    Stamped,
    day_of,
)

PROPS = settings(max_examples=150, deadline=None)
SORT_KEYS = st.lists(st.integers(0, 1000), max_size=40)
CUTS = st.lists(st.integers(0, 40), max_size=4)


def _husk_world() -> list[Observation]:
    """An event, a later denial of both behaviour purposes, an event that rolls it up."""
    return [
        tracked("x", days=0),
        obs(
            "deny",
            days=1,
            type="consent_updated",
            consent={"analytics": False, "personalization": False},
        ),
        tracked("z", days=10),
    ]


def behaviour(facts: Facts) -> set[str]:
    """Event ids of the recent behaviour kept one by one that may still serve (not husks)."""
    return {e for e, item in facts.recent.items() if item.digest.seen or item.digest.interest}


# --------------------------------------------------------------------------- traits, region


def test_traits_are_latest_by_event_time_not_arrival_and_ungated() -> None:
    denied = {"analytics": False, "personalization": False, "marketing": False, "ads": False}
    old = obs("a", 1, type="signup", traits={"city": "Oslo", "first_name": "Ann"}, consent=denied)
    new = obs("b", 10, type="profile_updated", traits={"city": "Bergen"}, consent=denied)
    same_time = obs("a2", 10, type="profile_updated", traits={"city": "Arendal"})
    for arrival in ([old, new, same_time], [same_time, new, old]):
        traits = observe_all(arrival).traits
        assert {k: s.value for k, s in traits.items()} == {"city": "Bergen", "first_name": "Ann"}
        assert traits["city"] == Stamped("Bergen", at(10), "b")  # ties: the larger event id


def test_region_is_the_latest_by_time() -> None:
    events = [obs("a", 1, region="US"), obs("b", 5, region="DE"), obs("c", 9)]
    for arrival in (events, list(reversed(events))):
        region = observe_all(arrival).region
        assert region == Stamped("DE", at(5), "b")


# --------------------------------------------------------------------------- transactions


def test_one_transaction_per_order_id_the_latest_version_wins() -> None:
    first = order("a", 1, "o1", "100", categories=["shoes", "shoes", "", "hats"], skus=["s9", "s1"])
    corrected = order("b", 5, "o1", "80")
    other = order("c", 3, "o2", "5", "eur", store="oslo-1")
    for arrival in ([first, corrected, other], [other, corrected, first]):
        ledger = observe_all(arrival).transactions
        assert set(ledger) == {"order:o1", "order:o2"}
        assert (ledger["order:o1"].event_id, ledger["order:o1"].amount) == ("b", Decimal(80))
        assert ledger["order:o2"].currency == "EUR"  # upper-cased
        assert (ledger["order:o2"].in_store, ledger["order:o2"].location_id) == (True, "oslo-1")
    assert observe_all([first]).transactions["order:o1"].categories == ("shoes", "hats")
    assert observe_all([first]).transactions["order:o1"].sku == "s9"


def test_one_transaction_per_return_event_with_the_amount_returned() -> None:
    events = [
        returned("r1", 2, "o1", "30"),
        returned("r2", 3, "o1", "-20"),  # sign-agnostic
        returned("r2", 3, "o1", "-20"),  # redelivery
    ]
    ledger = observe_all(events).transactions
    assert set(ledger) == {"return:r1", "return:r2"}
    assert ledger["return:r2"].amount == Decimal(20)
    assert all(t.is_return for t in ledger.values())


def test_order_fulfilled_is_behaviour_not_a_transaction() -> None:
    fulfilled = tracked("f", 2, type="order_fulfilled", order=OrderFacts("o1", Decimal(1), "NOK"))
    facts = observe_all([order("a", 1, "o1", "1"), fulfilled])
    assert set(facts.transactions) == {"order:o1"}
    assert behaviour(facts) == {"f"}


def test_transactions_are_never_pruned_by_consent() -> None:
    denied_own = order("a", 1, "o1", "10", consent={"analytics": False, "personalization": False})
    unreadable = order("b", 2, "o2", "10", consent={"analytics": "yes"})
    revoked = order("c", 3, "o3", "10")
    later_denial = obs("d", 9, type="consent_updated", consent={p: False for p in EVERYTHING})
    facts = observe_all([denied_own, unreadable, revoked, later_denial])
    assert set(facts.transactions) == {"order:o1", "order:o2", "order:o3"}
    assert facts.transactions["order:o2"].consent == "!"  # kept with what its event said


def test_the_ledger_keeps_the_newest_transactions_whatever_the_order() -> None:
    events = [order(f"e{i}", i, f"o{i}", "1") for i in range(8)]
    with small_windows(transactions=5):
        for arrival in (events, list(reversed(events))):
            assert set(observe_all(arrival).transactions) == {f"order:o{i}" for i in range(3, 8)}
        # an old order arriving late stays out; a new version of a kept order replaces it
        kept = observe_all(events)
        assert observe(kept, order("late", 0.5, "o-old", "1")) == kept
        newer = observe(kept, order("v2", 20, "o4", "2"))
        assert newer.transactions["order:o4"].event_id == "v2"


# --------------------------------------------------------------------------- behaviour


def test_behaviour_is_kept_one_by_one_and_a_redelivery_changes_nothing() -> None:
    view = tracked("v", 1, type="product_viewed", category="shoes", sku="s1", channel="app")
    facts = observe_all([view, tracked("w", 2)])
    assert behaviour(facts) == {"v", "w"}
    item = facts.recent["v"]
    assert (item.code, item.region) == (TRACKED_CODE, "")
    assert (item.digest.events, item.digest.channels, dict(item.digest.categories)) == (
        1,
        frozenset({"app"}),
        {"shoes": 1},
    )
    assert observe(facts, view) == facts


@pytest.mark.parametrize(
    ("type_", "weight", "activity"),
    [
        ("product_viewed", 1, True),
        ("page_view", 1, True),
        ("cart_updated", 2, True),
        ("wishlist_added", 1, True),  # any other type: the default weight
        ("consent_updated", 1, False),  # not customer activity
    ],
)
def test_category_weights_and_what_counts_as_activity(
    type_: str, weight: int, activity: bool
) -> None:
    digest = observe_all([tracked("e", 1, type=type_, category="hats")]).recent["e"].digest
    assert dict(digest.categories) == {"hats": weight}
    assert bool(digest.activities) is activity


def test_older_behaviour_rolls_up_into_day_digests_per_code_and_region() -> None:
    yes = {"analytics": True, "personalization": True}
    events = [
        obs("a", 1, type="product_viewed", category="shoes", channel="web", consent=yes),
        obs("b", 2, type="cart_updated", category="shoes", channel="app", consent=yes),
        obs("c", 3, channel="web", consent=yes, preferences={"size": "M"}),
        obs("d", 4, channel="web", consent={"analytics": True}),  # another code
        obs("e", 5, channel="web", consent=yes, region="US"),  # another region
        tracked("now", 10, days=facts_module.RECENT_DAYS + 1),
    ]
    for arrival in (events, list(reversed(events))):
        facts = observe_all(arrival)
        assert behaviour(facts) == {"now"}
        day = day_of(T0)
        code = TRACKED_CODE
        assert set(facts.digests) == {
            (day, code, ""),
            (day, "analytics+event", ""),
            (day, code, "US"),
        }
        digest = facts.digests[(day, code, "")]
        assert (digest.first_at, digest.last_at, digest.events) == (at(1), at(3), 3)
        assert digest.channels == {"web", "app"}
        assert dict(digest.categories) == {"shoes": 3}
        assert [a.event_id for a in digest.activities] == ["c", "b", "a"]
        assert {k: s.value for k, s in digest.preferences.items()} == {"size": '"M"'}


def test_only_the_newest_recent_events_are_kept_one_by_one() -> None:
    events = [tracked(f"e{i:03d}", i) for i in range(RECENT_EVENTS + 10)]
    facts = observe_all(events)
    assert behaviour(facts) == {f"e{i:03d}" for i in range(10, RECENT_EVENTS + 10)}
    assert sum(d.events for d in facts.digests.values()) == 10


def test_behaviour_beyond_the_horizon_is_dropped() -> None:
    with small_windows():
        facts = observe_all(
            [tracked("old", days=0), tracked("mid", days=5), tracked("new", days=13)]
        )
        assert [k[0] - day_of(T0) for k in facts.digests] == [5]  # day 0 is past 13 - 12
        assert observe(facts, tracked("older", days=0, minutes=5)) == facts


def test_prune_drops_the_part_an_event_s_own_statement_denies() -> None:
    facts = observe_all(
        [
            obs("a", 3, category="shoes", consent={"analytics": False, "personalization": True}),
            obs("b", 1, category="shoes", consent={"analytics": False, "personalization": False}),
            obs("c", 2, category="shoes", consent={"analytics": "yes"}),  # unreadable
        ]
    )
    assert behaviour(facts) == {"a"}  # b and c can never serve anything
    for husk in (facts.recent["b"].digest, facts.recent["c"].digest):  # kept until they roll up
        assert (husk.seen, husk.events, husk.interest, husk.categories) == (False, 0, False, {})
    digest = facts.recent["a"].digest
    assert (digest.seen, digest.events, digest.channels) == (False, 0, frozenset())
    assert (digest.interest, dict(digest.categories)) == (True, {"shoes": 1})


def test_a_later_denial_of_the_group_revokes_earlier_behaviour() -> None:
    events = [
        tracked("a", 1, category="shoes"),
        obs("b", 9, type="consent_updated", consent={"personalization": False}),
        tracked("c", 10, category="hats"),
    ]
    facts = observe_all(events)
    assert (facts.recent["a"].digest.interest, facts.recent["a"].digest.categories) == (False, {})
    assert facts.recent["a"].digest.seen
    assert facts.recent["c"].digest.interest  # after the denial: may still serve


def test_a_denial_of_the_account_a_device_belongs_to_revokes_the_device_s_behaviour() -> None:
    device = observe_all([tracked("browse", 1, category="shoes"), tracked("later", 9)])
    account_denial = observe_all(
        [obs("settings", 5, type="consent_updated", consent={"personalization": False})]
    ).consent
    assert prune(device) == device  # its own history denies nothing
    pruned = prune(device, also=account_denial)
    assert (pruned.recent["browse"].digest.interest, pruned.recent["browse"].digest.seen) == (
        False,
        True,
    )
    assert pruned.recent["later"] == device.recent["later"]  # after the denial
    assert pruned.consent == device.consent  # the account's history is not copied in


def test_a_digest_straddling_a_denial_stays_a_husk_and_later_events_of_its_key_join_it() -> None:
    day1 = T0 + timedelta(days=1)
    deny = obs(
        "deny",
        when=day1 + timedelta(hours=1),
        type="consent_updated",
        consent={"analytics": False, "personalization": False},
    )
    early = tracked("x", when=day1, category="shoes")
    later_same_day = tracked("w", when=day1 + timedelta(hours=5), category="hats")
    roll = tracked("z", days=10)
    with small_windows():
        facts = observe_all([early, roll, deny])  # x rolled up before the denial came
        husk = facts.digests[(day_of(day1), TRACKED_CODE, "")]
        assert (husk.seen, husk.interest, husk.events, dict(husk.categories)) == (
            False,
            False,
            0,
            {},
        )
        # w (after the denial) falls into the same day digest, judged from its earliest event
        after = observe(facts, later_same_day)
        joined = after.digests[(day_of(day1), TRACKED_CODE, "")]
        assert (joined.seen, joined.interest, joined.events, dict(joined.categories)) == (
            False,
            False,
            0,
            {},
        )
        assert (joined.first_at, joined.last_at) == (early.at, later_same_day.at)
        assert "w" not in after.recent


def test_whether_a_husk_exists_does_not_depend_on_when_the_denial_arrived() -> None:
    x, deny, z = _husk_world()
    with small_windows():
        assert observe_all([x, deny, z]) == observe_all([x, z, deny])


def test_prune_is_idempotent_and_observe_returns_pruned_facts() -> None:
    with small_windows():
        facts = observe_all(_husk_world())
        assert prune(facts) is facts
        assert prune(prune(facts)) == prune(facts)
    assert prune(EMPTY_FACTS) is EMPTY_FACTS


def test_merge_with_nothing_is_identity() -> None:
    facts = observe_all([obs("a", 1), order("b", 2, "o1", "3")])
    assert merge(facts, EMPTY_FACTS) is facts
    assert merge(EMPTY_FACTS, facts) is facts
    assert EMPTY_FACTS.is_empty
    assert not facts.is_empty


# --------------------------------------------------------------------------- input


def test_observation_and_order_facts_validate_their_input() -> None:
    with pytest.raises(ValueError, match="event_id"):
        obs("")
    with pytest.raises(ValueError, match="finite"):
        OrderFacts("o", Decimal("NaN"), "NOK")
    with pytest.raises(ValueError, match="order_id"):
        OrderFacts("", Decimal(1), "NOK")
    with pytest.raises(ValueError, match="currency"):
        OrderFacts("o", Decimal(1), " ")


def test_observation_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        obs("a", when=datetime(2024, 5, 1, 9, 0))


def test_offsets_are_normalised_to_utc() -> None:
    oslo = timezone(timedelta(hours=2))
    local = obs("a", when=datetime(2024, 5, 1, 11, 0, tzinfo=oslo))
    assert local.at == T0
    assert local.at.utcoffset() == timedelta(0)


# --------------------------------------------------------------------------- properties


@PROPS
@given(events=worlds(), keys=SORT_KEYS)
@example(events=_husk_world(), keys=[0, 2, 1])
def test_facts_do_not_depend_on_arrival_order(events: list[Observation], keys: list[int]) -> None:
    with small_windows():
        assert observe_all(permuted(events, keys)) == observe_all(events)


@PROPS
@given(events=worlds(deletions=False), keys=SORT_KEYS)
def test_facts_do_not_depend_on_arrival_order_where_nothing_is_deleted(
    events: list[Observation], keys: list[int]
) -> None:
    with small_windows():
        assert observe_all(permuted(events, keys)) == observe_all(events)


@PROPS
@given(events=worlds(), cut=st.integers(0, 30), again=st.integers(0, 30))
@example(events=_husk_world(), cut=2, again=1)
def test_a_group_s_batch_folds_as_its_events_one_after_another(
    events: list[Observation], cut: int, again: int
) -> None:
    """``fold_all`` (a batch's events of one group at once) is ``fold`` of each in turn, from
    any facts so far; redeliveries of events folded (or rolled up) before change nothing."""
    with small_windows():
        before = observe_all(events[:cut])
        batch = events[cut:] + events[:again]
        one_by_one = before
        for o in batch:
            one_by_one = facts_module.fold(one_by_one, o, POLICY)
        at_once = facts_module.fold_all(before, batch, POLICY)
        assert at_once == one_by_one
        assert prune(at_once) == prune(one_by_one)
        assert (at_once is before) == (one_by_one is before)


def test_a_batch_of_redeliveries_rolled_into_their_day_returns_the_facts_themselves() -> None:
    with small_windows():
        events = [tracked(f"e{i}", days=i) for i in range(12)]
        facts = observe_all(events)
        rolled = [o for o in events if o.event_id not in facts.recent]
        assert rolled  # the oldest rolled up into their day digests
        assert facts_module.fold_all(facts, rolled, POLICY) is facts
        assert facts_module.fold_all(facts, [*rolled, events[-1]], POLICY) is not facts


def _observe_in_parts(events: list[Observation], keys: list[int], cuts: list[int]) -> Facts:
    """The events in some order, cut into groups observed apart, then merged."""
    merged = EMPTY_FACTS
    for part in reversed(split(permuted(events, keys), cuts)):
        merged = merge(observe_all(part), merged)
    return merged


@PROPS
@given(events=worlds(), keys=SORT_KEYS, cuts=CUTS)
@example(events=_husk_world(), keys=[0, 2, 1], cuts=[1])
def test_any_split_merged_equals_observing_all(
    events: list[Observation], keys: list[int], cuts: list[int]
) -> None:
    with small_windows():
        assert _observe_in_parts(events, keys, cuts) == observe_all(events)


@PROPS
@given(events=worlds(deletions=False), keys=SORT_KEYS, cuts=CUTS)
def test_any_split_merged_equals_observing_all_where_nothing_is_deleted(
    events: list[Observation], keys: list[int], cuts: list[int]
) -> None:
    with small_windows():
        assert _observe_in_parts(events, keys, cuts) == observe_all(events)


@PROPS
@given(a=worlds(12, deletions=False), b=worlds(12, deletions=False), c=worlds(12, deletions=False))
def test_merge_is_commutative_and_associative(
    a: list[Observation], b: list[Observation], c: list[Observation]
) -> None:
    with small_windows():
        fa, fb, fc = (observe_all(_renamed(x, tag)) for x, tag in ((a, "a"), (b, "b"), (c, "c")))
        assert merge(fa, fb) == merge(fb, fa)
        assert merge(merge(fa, fb), fc) == merge(fa, merge(fb, fc))


@PROPS
@given(events=worlds(), picks=st.lists(st.integers(0, 100), max_size=5))
@example(events=[tracked("x", days=0, category="shoes"), tracked("z", days=10)], picks=[0])
def test_observing_an_event_again_changes_nothing(
    events: list[Observation], picks: list[int]
) -> None:
    with small_windows():
        facts = observe_all(events)
        for pick in picks if events else ():
            assert observe(facts, events[pick % len(events)]) == facts


def test_a_redelivered_event_changes_nothing_whether_recent_or_rolled_up() -> None:
    """An event redelivered after it rolled into its day digest counts once."""
    x = tracked("x", days=0, category="shoes")
    with small_windows():
        recent = observe_all([x])
        assert observe(recent, x) == recent
        rolled = observe_all([x, tracked("z", days=10)])
        twice = observe(rolled, x)
    key = (day_of(x.at), TRACKED_CODE, "")
    assert (rolled.digests[key].events, dict(rolled.digests[key].categories)) == (1, {"shoes": 1})
    assert twice == rolled


@PROPS
@given(events=worlds(), keys=SORT_KEYS)
def test_prune_is_idempotent(events: list[Observation], keys: list[int]) -> None:
    with small_windows():
        facts = observe_all(permuted(events, keys))
        assert prune(facts) == facts
        assert prune(prune(facts)) == prune(facts)


@PROPS
@given(events=worlds(), keys=SORT_KEYS)
def test_the_ledger_holds_the_latest_version_of_every_order_and_every_give_back(
    events: list[Observation], keys: list[int]
) -> None:
    facts = observe_all(permuted(events, keys))
    expected: dict[str, tuple[datetime, str]] = {}
    for e in events:
        if e.order is None:
            continue
        if e.type == "order_returned":
            key = f"return:{e.event_id}"
        elif e.type == "order_cancelled":
            key = f"cancel:{e.event_id}"
        elif e.type in ("order_completed", "pos_sale"):
            key = f"order:{e.order.order_id}"
        else:
            continue
        expected[key] = max(expected.get(key, (e.at, e.event_id)), (e.at, e.event_id))
    assert {k: (t.at, t.event_id) for k, t in facts.transactions.items()} == expected


@PROPS
@given(events=worlds(), keys=SORT_KEYS)
def test_behaviour_keeps_exactly_the_parts_that_may_still_serve(
    events: list[Observation], keys: list[int]
) -> None:
    """Every kept piece of behaviour may still serve its part; nothing pruned could."""
    with small_windows():
        facts = observe_all(permuted(events, keys))

    def dead(purpose: Purpose, at: datetime, code: str, region: str) -> bool:
        return never_serves(
            facts.consent,
            purpose,
            at=at,
            consent=from_code(code),
            policy=POLICY,
            region=region or None,
        )

    for item in facts.recent.values():
        first = item.digest.first_at
        assert item.digest.seen is not dead(Purpose.ANALYTICS, first, item.code, item.region)
        assert item.digest.interest is not dead(
            Purpose.PERSONALIZATION, first, item.code, item.region
        )
    for (_, code, region), digest in facts.digests.items():
        if digest.seen:
            assert not dead(Purpose.ANALYTICS, digest.first_at, code, region)
        else:
            assert (digest.events, digest.channels) == (0, frozenset())
        if digest.interest:
            assert not dead(Purpose.PERSONALIZATION, digest.first_at, code, region)
        else:
            assert (dict(digest.categories), digest.activities, dict(digest.preferences)) == (
                {},
                (),
                {},
            )


def _renamed(events: list[Observation], tag: str) -> list[Observation]:
    return [e._replace(event_id=f"{tag}-{e.event_id}") for e in events]


def test_facts_are_empty_exactly_when_they_equal_no_facts() -> None:
    full = observe_all([obs("e1", consent={"analytics": True}), order("e2", 5, "o1", "10")])
    assert full.consent.purposes
    assert full.transactions
    assert full.recent
    one_part = [
        replace(EMPTY_FACTS, **{name: getattr(full, name)})
        for name in ("consent", "transactions", "recent", "latest")
    ] + [
        replace(EMPTY_FACTS, traits={"city": Stamped("Oslo", T0, "e1")}),
        replace(EMPTY_FACTS, region=Stamped("NO", T0, "e1")),
        replace(EMPTY_FACTS, digests={(0, "", ""): next(iter(full.recent.values())).digest}),
    ]
    for facts in [EMPTY_FACTS, Facts(), Facts(traits={}, recent={}), full, *one_part]:
        assert facts.is_empty == (facts == EMPTY_FACTS), facts
    assert all(not facts.is_empty for facts in one_part)


# --------------------------------------------------------------------------- _prune, as it was


def _prune_as_it_was(facts: Facts, also: ConsentHistory) -> Facts:
    """``facts._prune`` before it copied lazily (main e95256f): both mappings copied, the
    consent read, every item visited. The reference its lazy version must equal."""
    if facts.latest is None:
        return facts
    history = facts.consent
    if also.purposes:
        history = history.merged(also, POLICY.max_explicit_grants)
    pruning = BehaviourPruning(history, POLICY)
    latest_day = day_of(facts.latest)
    recent, digests = dict(facts.recent), dict(facts.digests)
    old = facts_module._to_roll_up(recent, latest_day - facts_module.RECENT_DAYS)
    facts_module._roll_up(recent, digests, old)
    changed = bool(old)
    for event_id, item in list(recent.items()):
        if not item.digest.seen and not item.digest.interest:
            continue
        kept = facts_module._prune_digest(item.digest, item.code, item.region, pruning)
        if kept is not item.digest:
            changed = True
            recent[event_id] = replace(item, digest=kept)
    horizon = latest_day - facts_module.BEHAVIOUR_DAYS
    for key, digest in list(digests.items()):
        if key[0] < horizon:
            del digests[key]
            changed = True
            continue
        if not digest.seen and not digest.interest:
            continue
        kept = facts_module._prune_digest(digest, key[1], key[2], pruning)
        if kept is not digest:
            digests[key] = kept
            changed = True
    transactions = facts.transactions
    if len(transactions) > facts_module.MAX_TRANSACTIONS:
        newest = sorted(transactions.values(), key=lambda t: (t.rank(), t.key), reverse=True)
        transactions = {t.key: t for t in newest[: facts_module.MAX_TRANSACTIONS]}
        changed = True
    if not changed:
        return facts
    return replace(facts, transactions=transactions, recent=recent, digests=digests)


@PROPS
@given(events=worlds(), more=worlds(max_size=12), cut=st.integers(0, 30), other=worlds(10))
def test_prune_copies_lazily_and_returns_what_it_did(
    events: list[Observation], more: list[Observation], cut: int, other: list[Observation]
) -> None:
    """``_prune`` equals the version that copied both mappings up front (equal facts, the
    same order of ``recent`` and ``digests``, the facts themselves when nothing changed),
    on facts folded without pruning, on pruned facts with more events folded in, and with
    another group's history (``also``) or none."""
    with small_windows():
        folded = facts_module.fold_all(EMPTY_FACTS, events, POLICY)
        pruned_then_more = facts_module.fold_all(observe_all(events[:cut]), more, POLICY)
        also = observe_all(other).consent
        for facts in (folded, pruned_then_more, observe_all(events)):
            for extra in (EMPTY_HISTORY, also):
                expected = _prune_as_it_was(facts, extra)
                got = facts_module._prune(facts, POLICY, extra)
                assert got == expected
                assert list(got.recent) == list(expected.recent)
                assert list(got.digests) == list(expected.digests)
                assert (got is facts) == (expected is facts)
