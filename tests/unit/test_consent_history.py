"""A person's consent history (``resolvers.consent.history``): a function of the SET of events.

The laws of ``merged`` (commutative, associative, idempotent), what the history keeps compared
with the raw statements (latest, last denial, the newest explicit grants after it), the bound
that fails closed, and the stored JSON form.
"""

from __future__ import annotations

import json
import weakref
from datetime import timedelta
from functools import reduce

import pytest
from builders import permuted, split
from consent_worlds import (
    A,
    D,
    M,
    P,
    Said,
    all_records,
    denials,
    explicit_grants,
    history_of,
    latest,
    said,
    t,
    worlds,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

from resolvers.consent import (
    CONSENT_PURPOSES,
    EMPTY_HISTORY,
    ConsentHistory,
    ConsentRecord,
    ConsentStateError,
    PurposeHistory,
    Source,
    from_event,
)

LAWS = settings(max_examples=300, deadline=None)
BOUNDS = st.integers(1, 3)
#: Enough room that no explicit grant is ever dropped from a generated world.
ROOMY = 64

#: Grants at minutes 1, 2, 3 (bound 2 drops the first), then a denial at 10.
_G1, _G2, _G3 = (Said(t(m), said(Source.CONSENT_UPDATED, analytics=True), True) for m in (1, 2, 3))
_DENY = Said(t(10), said(Source.CONSENT_UPDATED, analytics=False), True)


SORT_KEYS = st.lists(st.integers(0, 1000), max_size=20)
CUTS = st.lists(st.integers(0, 40), max_size=5)


# --------------------------------------------------------------------------- the laws


@LAWS
@given(a=worlds(), b=worlds(), bound=BOUNDS)
def test_merged_is_commutative(a: list[Said], b: list[Said], bound: int) -> None:
    ha, hb = history_of(a, bound), history_of(b, bound)
    assert ha.merged(hb, bound) == hb.merged(ha, bound)


@LAWS
@given(a=worlds(), b=worlds(), bound=BOUNDS)
def test_merged_is_idempotent(a: list[Said], b: list[Said], bound: int) -> None:
    ha = history_of(a, bound)
    both = ha.merged(history_of(b, bound), bound)
    assert ha.merged(ha, bound) == ha
    assert both.merged(ha, bound) == both  # absorbing a part again changes nothing
    assert ha.merged(EMPTY_HISTORY, bound) == ha == EMPTY_HISTORY.merged(ha, bound)


@pytest.mark.parametrize("bound", [2, ROOMY])
@LAWS
@given(a=worlds(), b=worlds(), c=worlds())
@example(a=[_G1, _G2], b=[_G3], c=[_DENY])
def test_merged_is_associative(bound: int, a: list[Said], b: list[Said], c: list[Said]) -> None:
    ha, hb, hc = (history_of(x, bound) for x in (a, b, c))
    assert ha.merged(hb, bound).merged(hc, bound) == ha.merged(hb.merged(hc, bound), bound)


@pytest.mark.parametrize("bound", [2, ROOMY])
@LAWS
@given(events=worlds(20), keys=SORT_KEYS, cuts=CUTS)
@example(events=[_G1, _G2, _G3, _DENY], keys=[1, 2, 3, 0], cuts=[])
def test_per_event_histories_merge_to_one_history_in_any_order_and_grouping(
    bound: int, events: list[Said], keys: list[int], cuts: list[int]
) -> None:
    parts = [history_of(part, bound) for part in split(permuted(events, keys), cuts)]
    right_first = reduce(lambda acc, h: h.merged(acc, bound), parts, EMPTY_HISTORY)
    assert right_first == history_of(events, bound)


def test_merge_order_never_changes_an_answer_of_the_history() -> None:
    """Where the bug above shows, the answers the gate reads still agree."""
    grants_first = history_of([_G1, _G2, _G3, _DENY], bound=2).of(A)
    denial_first = history_of([_DENY, _G1, _G2, _G3], bound=2).of(A)
    for minute in range(-1, 14):
        assert grants_first.explicit_grant_between(t(10), t(minute)) is False
        assert denial_first.explicit_grant_between(t(10), t(minute)) is False
    assert (grants_first.latest, grants_first.last_denial, grants_first.grants) == (
        denial_first.latest,
        denial_first.last_denial,
        denial_first.grants,
    )


def test_a_grant_dropped_before_a_later_denial_is_forgotten_with_it() -> None:
    grants_first = history_of([_G1, _G2, _G3, _DENY], bound=2).of(A)
    assert grants_first.dropped is None
    assert grants_first == history_of([_DENY, _G1, _G2, _G3], bound=2).of(A)


# --------------------------------------------------------------------------- what is kept


@LAWS
@given(events=worlds(20), keys=SORT_KEYS, bound=BOUNDS)
def test_history_keeps_latest_last_denial_and_the_newest_explicit_grants_after_it(
    events: list[Said], keys: list[int], bound: int
) -> None:
    history = history_of(permuted(events, keys), bound)
    for purpose in CONSENT_PURPOSES:
        h = history.of(purpose)
        assert h.latest == latest(all_records(events, purpose))
        last_denial = latest(denials(events, purpose))
        assert h.last_denial == last_denial
        after = [
            g
            for g in explicit_grants(events, purpose)
            if last_denial is None or g.key > last_denial.key
        ]
        newest = sorted({g.key: g for g in after}.values(), key=lambda g: g.key)[-bound:]
        assert list(h.grants) == newest
        if not after or len({g.key for g in after}) <= bound:
            assert h.dropped is None or (last_denial is not None and h.dropped <= last_denial.at)


@LAWS
@given(events=worlds(20), keys=SORT_KEYS, bound=BOUNDS)
def test_explicit_grant_between_fails_closed_only_where_dropped_grants_may_answer(
    events: list[Said], keys: list[int], bound: int
) -> None:
    history = history_of(permuted(events, keys), bound)
    probes = [t(m) for m in range(-1, 14)] + [e.at for e in events]
    for purpose in CONSENT_PURPOSES:
        h = history.of(purpose)
        last_denial = latest(denials(events, purpose))
        floor = None if last_denial is None else last_denial.at
        after = {
            g.key: g
            for g in explicit_grants(events, purpose)
            if last_denial is None or g.key > last_denial.key
        }
        for until in probes:
            truth = any((floor is None or g.at > floor) and g.at <= until for g in after.values())
            answer = h.explicit_grant_between(floor, until)
            if len(after) <= bound:
                assert answer is truth, (purpose, until)
            elif answer is None:
                assert not any(
                    (floor is None or g.at > floor) and g.at <= until for g in h.grants
                ), "a kept grant answers it"
            else:
                assert answer is truth, (purpose, until)


def test_the_bound_keeps_the_newest_explicit_grants_and_fails_closed_below_them() -> None:
    events = [
        Said(t(m), said(Source.CONSENT_UPDATED, analytics=True), True) for m in range(0, 50, 10)
    ]
    h = history_of(events, bound=3).of(A)
    assert [g.at for g in h.grants] == [t(20), t(30), t(40)]
    assert h.dropped == t(10)
    assert h.explicit_grant_between(None, t(25)) is True  # a kept grant
    assert h.explicit_grant_between(None, t(10)) is True  # the newest dropped one itself
    assert h.explicit_grant_between(None, t(15)) is True
    assert h.explicit_grant_between(None, t(5)) is None  # maybe the one at 0: unknown
    assert h.explicit_grant_between(t(12), t(15)) is False  # nothing dropped is after 12


def test_only_explicit_grants_are_kept_one_by_one() -> None:
    banner = Said(t(1), said(analytics=True, marketing=False))  # an ordinary event
    form = Said(t(2), said(Source.CONSENT_UPDATED, personalization=True), explicit=True)
    history = history_of([banner, form])
    assert history.of(A) == PurposeHistory(latest=ConsentRecord(True, t(1), Source.EVENT))
    assert history.of(M).last_denial == ConsentRecord(False, t(1), Source.EVENT)
    assert history.of(P).grants == (ConsentRecord(True, t(2), Source.CONSENT_UPDATED),)
    assert history.of(D) == PurposeHistory()
    assert set(history.purposes) == {A, M, P}  # nothing stored for a silent purpose


def test_an_event_without_statements_contributes_nothing() -> None:
    assert from_event(said(), t(1), explicit=True) is EMPTY_HISTORY
    assert history_of([Said(t(1), said(), True)]) == EMPTY_HISTORY


@pytest.mark.parametrize("explicit", [True, False])
def test_at_equal_times_a_denial_wins_and_no_grant_survives_it(explicit: bool) -> None:
    grant = Said(t(5), said(Source.CONSENT_UPDATED, ads=True), explicit)
    deny = Said(t(5), said(Source.GPC, ads=False), explicit)
    for order in ([grant, deny], [deny, grant]):
        h = history_of(order).of(D)
        assert h.latest == ConsentRecord(False, t(5), Source.GPC)
        assert h.last_denial == h.latest
        assert h.grants == ()
    assert ConsentRecord(True, t(5), Source.GPC).key < ConsentRecord(False, t(5), Source.EVENT).key


def test_a_grant_after_the_last_denial_is_kept_and_an_older_one_is_not() -> None:
    events = [
        Said(t(1), said(Source.CONSENT_UPDATED, analytics=True), True),
        Said(t(3), said(analytics=False)),
        Said(t(5), said(Source.CONSENT_UPDATED, analytics=True), True),
    ]
    h = history_of(reversed(events)).of(A)
    assert h.grants == (ConsentRecord(True, t(5), Source.CONSENT_UPDATED),)
    assert h.explicit_grant_between(t(3), t(4)) is False
    assert h.explicit_grant_between(t(3), t(5)) is True


# --------------------------------------------------------------------------- stored form


@LAWS
@given(events=worlds(20), bound=BOUNDS)
def test_json_round_trip(events: list[Said], bound: int) -> None:
    history = history_of(events, bound)
    back = ConsentHistory.from_json(json.loads(json.dumps(history.to_json())))
    assert back == history
    assert back.to_json() == history.to_json()


def test_json_form_is_pinned() -> None:
    history = history_of(
        [
            Said(t(1), said(Source.CONSENT_UPDATED, analytics=True), True),
            Said(t(2) + timedelta(microseconds=5), said(Source.GPC, ads=False)),
        ]
    )
    assert history.to_json() == {
        "f": 2,
        "analytics": {
            "l": [True, "2025-03-01T12:01:00Z", "consent_updated"],
            "g": [[True, "2025-03-01T12:01:00Z", "consent_updated"]],
        },
        "ads": {
            "l": [False, "2025-03-01T12:02:00.000005Z", "gpc"],
            "d": [False, "2025-03-01T12:02:00.000005Z", "gpc"],
        },
    }


_AT = "2025-01-01T00:00:00Z"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param({}, id="no-format"),
        pytest.param({"f": 1}, id="old-format"),
        pytest.param([], id="not-a-mapping"),
        pytest.param({"f": 2, "nope": {}}, id="unknown-purpose"),
        pytest.param({"f": 2, "ads": []}, id="purpose-not-a-mapping"),
        pytest.param({"f": 2, "ads": {"l": [1, _AT, "gpc"]}}, id="granted-not-boolean"),
        pytest.param({"f": 2, "ads": {"l": [True, "2025-01-01T00:00:00", "gpc"]}}, id="naive"),
        pytest.param({"f": 2, "ads": {"l": [True, "yesterday", "gpc"]}}, id="not-a-time"),
        pytest.param({"f": 2, "ads": {"d": [False, _AT, "elsewhere"]}}, id="unknown-source"),
        pytest.param({"f": 2, "ads": {"g": [[True, _AT]]}}, id="short-record"),
        pytest.param({"f": 2, "ads": {"g": "abc"}}, id="grants-not-a-list"),
        pytest.param({"f": 2, "ads": {"x": 7}}, id="dropped-not-a-time"),
    ],
)
def test_malformed_json_raises_consent_state_error(raw: object) -> None:
    with pytest.raises(ConsentStateError):
        ConsentHistory.from_json(raw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param({"f": 2, "analytics": {"g": [[False, _AT, "consent_updated"]]}}, id="g"),
        pytest.param({"f": 2, "analytics": {"d": [True, _AT, "consent_updated"]}}, id="d"),
    ],
)
def test_json_whose_records_contradict_their_role_is_malformed(raw: dict[str, object]) -> None:
    with pytest.raises(ConsentStateError):
        ConsentHistory.from_json(raw)


# --------------------------------------------------------------------------- the merge's memo


def _plain(a: ConsentHistory, b: ConsentHistory, bound: int) -> ConsentHistory:
    """``a.merged(b, bound)`` of copies (no memo: computed)."""
    return ConsentHistory(dict(a.purposes)).merged(ConsentHistory(dict(b.purposes)), bound)


@LAWS
@given(
    pool=st.lists(st.tuples(worlds(), BOUNDS), min_size=1, max_size=3),
    steps=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), BOUNDS), max_size=12),
)
def test_a_remembered_merge_is_the_merge(
    pool: list[tuple[list[Said], int]], steps: list[tuple[int, int, int]]
) -> None:
    """``ConsentHistory.merged`` remembers its last merge with a non-empty history (the
    other, the bound, the merge): merging the same objects again, under the same bound,
    returns it. Merges of a few histories (built under one bound, merged under others:
    a smaller bound drops grants), again and again, in both orders, and merges of merges
    are each the merge computed afresh."""
    histories = [history_of(world, bound) for world, bound in pool]
    for i, j, bound in steps:
        a, b = histories[i % len(histories)], histories[j % len(histories)]
        merged = a.merged(b, bound)
        assert merged == _plain(a, b, bound)
        assert merged.to_json() == _plain(a, b, bound).to_json()
        histories.append(merged)


def test_the_same_merge_again_is_remembered() -> None:
    a = history_of([_G1, _G2])
    b = history_of([_G3, _DENY])
    merged = a.merged(b, 2)
    assert a.merged(b, 2) is merged
    assert a.merged(b, 1) == _plain(a, b, 1)


def test_a_remembered_merge_keeps_neither_input_alive() -> None:
    """The memo holds the other history weakly: dropped, it is freed by reference counting
    (no cycle waits for a full collection, even for a history merged with itself), and a
    new history equal to it is merged afresh."""
    a = history_of([_G1, _G2])
    b = history_of([_G3, _DENY])
    gone = weakref.ref(b)
    a.merged(b, 2)
    del b
    assert gone() is None
    again = history_of([_G3, _DENY])
    assert a.merged(again, 2) == _plain(a, again, 2)
    itself = weakref.ref(a)
    a.merged(a, 2)
    del a
    assert itself() is None
