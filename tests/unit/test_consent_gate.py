"""The one place that decides what a fact may serve (``resolvers.consent.gate``).

One table row per situation, one test per rule of the module docstring, and properties: the
gate never fails open, it equals the docstring's rules read off the raw statements, and
``never_serves`` (what the fold prunes) never contradicts it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import pytest
from consent_worlds import (
    POLICY,
    REGIONS,
    A,
    D,
    M,
    N,
    P,
    Said,
    all_records,
    denials,
    explicit_grants,
    history_of,
    latest,
    said,
    said_events,
    t,
    tc_string,
    worlds,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from resolvers.consent import (
    CONSENT_PURPOSES,
    EMPTY_HISTORY,
    PURPOSE_GATES,
    ConsentHistory,
    Current,
    EventConsent,
    Gate,
    Purpose,
    Reason,
    Source,
    Verdict,
    gated_fields,
    never_serves,
    statements,
)

PROPS = settings(max_examples=200, deadline=None)


def ev(
    minute: float,
    *,
    region: str | None = "DE",
    consent: Mapping[str, object] | None = None,
    gpc: bool = False,
    signals: Mapping[str, object] | None = None,
    update: bool = False,
) -> Said:
    """An event as the pipeline folds it (``update``: an explicit consent moment)."""
    return Said(t(minute), statements(consent, gpc, signals, explicit=update), update, region)


def upd(minute: float, region: str | None = "DE", **consent: bool) -> Said:
    return ev(minute, region=region, consent=consent, update=True)


def person_region(events: Sequence[Said]) -> str | None:
    """The person's region: the latest region by time (as the facts keep it)."""
    located = [e for e in events if e.region is not None]
    return max(located, key=lambda e: e.at).region if located else None


def judge(
    events: Sequence[Said], fact: Said, region: str | None = None
) -> Mapping[Purpose, Verdict]:
    """Verdicts on ``fact`` for the person whose events are ``events``."""
    gate = Gate(POLICY, history_of(events), region or person_region(events))
    return {
        v.purpose: v for v in gate.verdicts(at=fact.at, consent=fact.consent, region=fact.region)
    }


# ---------------------------------------------------------------------------------------------
# The table: (the person's events; the verdict is on the LAST one) -> allowed, denied reasons
# ---------------------------------------------------------------------------------------------

#: Denied purposes not listed in a row are denied by the region default (``region_default``).
RULES: list[tuple[str, list[Said], frozenset[Purpose], dict[Purpose, Reason]]] = [
    (
        "opt-in region, no signal: only necessary",
        [ev(1, region="DE")],
        frozenset(),
        {},
    ),
    (
        "opt-out region, no signal: analytics and personalization",
        [ev(1, region="US")],
        frozenset({A, P}),
        {},
    ),
    (
        "unknown region: nothing but necessary",
        [ev(1, region=None)],
        frozenset(),
        {},
    ),
    (
        "the event's own consent map grants in an opt-in region",
        [ev(1, consent={"analytics": True, "marketing": True})],
        frozenset({A, M}),
        {},
    ),
    (
        "the event's own denial beats the opt-out default",
        [ev(1, region="US", consent={"analytics": False})],
        frozenset({P}),
        {A: Reason.NO_CONSENT},
    ),
    (
        "an explicit grant covers a later event without statements",
        [upd(1, analytics=True), ev(5)],
        frozenset({A}),
        {},
    ),
    (
        "a cookie banner's grant on another event covers nothing else",
        [ev(1, consent={"analytics": True}), ev(5)],
        frozenset(),
        {},
    ),
    (
        "a late grant does not legitimise an earlier event",
        [upd(5, analytics=True), ev(1)],
        frozenset(),
        {A: Reason.LATE_GRANT},
    ),
    (
        "a denial in force at the event's time, granted again only later",
        [upd(0, analytics=False), upd(5, analytics=True), ev(1)],
        frozenset(),
        {A: Reason.NO_CONSENT},
    ),
    (
        "granted at the event's time but revoked since: revocation wins",
        [upd(1, analytics=True), upd(9, analytics=False), ev(5)],
        frozenset(),
        {A: Reason.REVOKED},
    ),
    (
        "the event's own grant, but a later revocation",
        [upd(9, analytics=False), ev(5, consent={"analytics": True})],
        frozenset(),
        {A: Reason.REVOKED},
    ),
    (
        "a revocation wins for good, even after a re-grant",
        [upd(1, analytics=True), upd(6, analytics=False), upd(8, analytics=True), ev(5)],
        frozenset(),
        {A: Reason.REVOKED},
    ),
    (
        "the opt-out default at the event's time, revoked later",
        [upd(9, region="US", personalization=False), ev(5, region="US")],
        frozenset({A}),
        {P: Reason.REVOKED},
    ),
    (
        "an older denial changes nothing after a later explicit grant",
        [upd(9, analytics=True), upd(1, analytics=False), ev(10)],
        frozenset({A}),
        {},
    ),
    (
        "an older denial still governs the events of its time",
        [upd(0, analytics=True), upd(9, analytics=True), upd(3, analytics=False), ev(5)],
        frozenset(),
        {A: Reason.NO_CONSENT},
    ),
    (
        "grant and denial at the same instant: the denial wins",
        [upd(5, analytics=True), upd(5, analytics=False), ev(6)],
        frozenset(),
        {A: Reason.NO_CONSENT},
    ),
    (
        "GPC denies ads over an explicit grant",
        [upd(1, ads=True, marketing=True), ev(5, gpc=True)],
        frozenset({M}),
        {D: Reason.GPC},
    ),
    (
        "GPC denies ads over the same event's own grant",
        [ev(5, region="US", consent={"ads": True}, gpc=True)],
        frozenset({A, P}),
        {D: Reason.GPC},
    ),
    (
        "GPC is kept: a later event without GPC is still denied ads",
        [upd(1, ads=True), ev(5, gpc=True), ev(6)],
        frozenset(),
        {D: Reason.GPC},
    ),
    (
        "an earlier event served ads, GPC arrived since",
        [upd(1, ads=True), ev(9, gpc=True), ev(5)],
        frozenset(),
        {D: Reason.GPC},
    ),
    (
        "a later explicit grant overrides an earlier GPC",
        [ev(1, gpc=True), upd(5, ads=True), ev(6)],
        frozenset({D}),
        {},
    ),
    (
        "an undecodable TCF string: the event serves nothing but necessary",
        [upd(1, analytics=True), ev(5, signals={"tcf": "garbage!"})],
        frozenset(),
        {
            A: Reason.INVALID_SIGNAL,
            P: Reason.INVALID_SIGNAL,
            M: Reason.INVALID_SIGNAL,
            D: Reason.INVALID_SIGNAL,
        },
    ),
    (
        "a non-boolean in the consent map is an invalid signal",
        [ev(5, region="US", consent={"analytics": "yes"})],
        frozenset(),
        {
            A: Reason.INVALID_SIGNAL,
            P: Reason.INVALID_SIGNAL,
            M: Reason.INVALID_SIGNAL,
            D: Reason.INVALID_SIGNAL,
        },
    ),
    (
        "an unknown signal format is ignored",
        [ev(5, region="US", signals={"acme": {"x": 1}})],
        frozenset({A, P}),
        {},
    ),
    (
        "necessary cannot be denied",
        [ev(5, region=None, consent={"necessary": False})],
        frozenset(),
        {},
    ),
    (
        "Segment categories on a consent update",
        [ev(1, signals={"segment": {"Analytics": True, "Advertising": False}}, update=True), ev(2)],
        frozenset({A}),
        {D: Reason.NO_CONSENT},
    ),
    (
        "Consent Mode v2 on an ordinary event",
        [
            ev(
                1,
                signals={
                    "gcm": {
                        "analytics_storage": "granted",
                        "ad_storage": "granted",
                        "ad_user_data": "granted",
                        "ad_personalization": "granted",
                    }
                },
            )
        ],
        frozenset({A, D}),
        {},
    ),
    (
        "a TCF string granting everything it can (not marketing)",
        [ev(1, signals={"tcf": tc_string(set(range(1, 12)))})],
        frozenset({A, P, D}),
        {},
    ),
    (
        "a vendor denial beats Loom's own grant in the same event",
        [ev(1, consent={"analytics": True}, signals={"gcm": {"analytics_storage": "denied"}})],
        frozenset(),
        {A: Reason.NO_CONSENT},
    ),
    (
        "the person moved to an opt-in region: the old default no longer serves",
        [ev(0.5, region="US"), ev(9, region="DE"), ev(1, region="US")],
        frozenset(),
        {},
    ),
    (
        "the person moved to an opt-out region: an opt-in fact still needs a grant",
        [ev(1, region="DE"), ev(9, region="US"), ev(1, region="DE")],
        frozenset(),
        {},
    ),
]


@pytest.mark.parametrize(
    ("events", "allowed", "denied"),
    [pytest.param(e, a, d, id=name) for name, e, a, d in RULES],
)
def test_rule(
    events: list[Said], allowed: frozenset[Purpose], denied: dict[Purpose, Reason]
) -> None:
    fact = events[-1]
    for order in (events, list(reversed(events))):  # the history is a set
        verdicts = judge(order, fact)
        assert {p for p, v in verdicts.items() if v.allowed} == allowed
        expected = {p: Reason.REGION_DEFAULT for p in CONSENT_PURPOSES if p not in allowed}
        assert {p: v.reason for p, v in verdicts.items() if not v.allowed} == expected | denied
        gate = Gate(POLICY, history_of(order), person_region(order))
        served = gate.serves(at=fact.at, consent=fact.consent, region=fact.region)
        assert served == allowed


# ---------------------------------------------------------------------------------------------
# One test per rule of the docstring
# ---------------------------------------------------------------------------------------------


def test_rule_1_necessary_always_serves_even_an_invalid_denied_fact() -> None:
    gate = Gate(POLICY, history_of([upd(9, analytics=False)]), None)
    bad = said(invalid=True, analytics=False)
    verdict = gate.verdict(N, at=t(1), consent=bad, region=None)
    assert verdict == Verdict(N, True, Reason.ALWAYS, "default")
    assert N not in gate.serves(at=t(1), consent=bad, region=None)  # serves() lists the others


def test_rule_2_an_unreadable_signal_serves_nothing_whatever_was_granted() -> None:
    grants = [upd(0, analytics=True, personalization=True, marketing=True, ads=True)]
    gate = Gate(POLICY, history_of(grants), "US")
    fact = said(invalid=True)
    assert gate.serves(at=t(5), consent=fact, region="US") == frozenset()
    assert {v.reason for v in gate.verdicts(at=t(5), consent=fact, region="US")} == {
        Reason.INVALID_SIGNAL
    }
    assert {v.source for v in gate.verdicts(at=t(5), consent=fact, region="US")} == {"invalid"}


@pytest.mark.parametrize("denied_at", [5, 6, 60])
def test_rule_3_a_denial_at_or_after_the_fact_revokes_it_for_good(denied_at: int) -> None:
    events = [
        upd(0, analytics=True),
        ev(5, consent={"analytics": True}),  # the fact, with its own grant
        upd(denied_at, analytics=False),
        upd(100, analytics=True),  # granted again since: the fact stays revoked
    ]
    verdict = judge(events, events[1])[A]
    assert (verdict.allowed, verdict.reason, verdict.source) == (
        False,
        Reason.REVOKED,
        "consent_updated",
    )
    later = judge(events, ev(101))[A]
    assert later.allowed  # what comes after the re-grant serves


def test_rule_3_a_gpc_denial_after_the_fact_is_reported_as_gpc() -> None:
    events = [upd(0, ads=True), ev(5), ev(7, gpc=True)]
    verdict = judge(events, events[1])[D]
    assert (verdict.allowed, verdict.reason, verdict.source) == (False, Reason.GPC, "gpc")


def test_rule_4_the_event_s_own_statement_decides_its_time() -> None:
    events = [ev(1, consent={"marketing": True}), ev(2, consent={"marketing": False}), ev(3)]
    # its own grant serves in an opt-in region ... until the person's later denial (rule 3)
    assert judge(events[:1], events[0])[M] == Verdict(M, True, Reason.GRANTED, "event")
    assert judge(events, events[0])[M].reason is Reason.REVOKED
    # its own denial never serves, whatever was granted before or after
    with_grants = [upd(0, marketing=True), events[1], upd(9, marketing=True)]
    assert judge(with_grants, events[1])[M] == Verdict(M, False, Reason.NO_CONSENT, "event")


def test_rule_4_an_explicit_grant_after_the_last_denial_and_not_after_the_fact() -> None:
    events = [upd(1, personalization=False), ev(3), upd(4, personalization=True), ev(6)]
    assert judge(events, events[1])[P].reason is Reason.NO_CONSENT  # denied at its time
    assert judge(events, events[3])[P] == Verdict(P, True, Reason.GRANTED, "consent_updated")
    exactly = ev(4)  # a fact at the grant's own instant is covered
    assert judge([*events, exactly], exactly)[P].allowed


@pytest.mark.parametrize("explicit_type", [True, False])
def test_rule_4_only_an_explicit_moment_covers_other_events(explicit_type: bool) -> None:
    grant = ev(1, consent={"analytics": True}, update=explicit_type)
    verdict = judge([grant, ev(2)], ev(2))[A]
    assert verdict.allowed is explicit_type
    if not explicit_type:
        assert (verdict.reason, verdict.source) == (Reason.REGION_DEFAULT, "default")


@pytest.mark.parametrize(
    ("fact_region", "person", "allowed"),
    [
        ("DE", "DE", frozenset()),  # opt-in
        ("GB", "GB", frozenset()),
        ("CH", "CH", frozenset()),
        ("US", "US", frozenset({A, P})),  # opt-out
        ("BR", "BR", frozenset()),  # unknown
        (None, "US", frozenset({A, P})),  # no region on the fact: the person's
        (None, None, frozenset()),
        ("US", None, frozenset()),  # the person's current region is unknown: not granted now
    ],
)
def test_rule_4_no_statement_takes_the_default_of_the_fact_s_region(
    fact_region: str | None, person: str | None, allowed: frozenset[Purpose]
) -> None:
    gate = Gate(POLICY, EMPTY_HISTORY, person)
    assert gate.serves(at=t(1), consent=said(), region=fact_region) == allowed


def test_rule_4_behaviour_that_stated_nothing_has_only_its_own_region_s_default() -> None:
    gate = Gate(POLICY, history_of([upd(1, analytics=True)]), "US")  # an explicit grant

    def behaviour(region: str | None, **consent: bool) -> Verdict:
        fact = ev(5, region=region, consent=consent or None)
        return gate.verdict(A, at=fact.at, consent=fact.consent, region=region, behavioural=True)

    tracking = behaviour("DE")  # an explicit grant covers a transaction, never tracking
    assert (tracking.allowed, tracking.reason, tracking.source) == (
        False,
        Reason.REGION_DEFAULT,
        "default",
    )
    assert gate.verdict(A, at=t(5), consent=said(), region="DE").allowed  # a transaction
    assert behaviour("US").allowed  # the opt-out default of its own region
    assert not behaviour(None).allowed  # no region: unknown, not the person's
    assert behaviour("DE", analytics=True) == Verdict(A, True, Reason.GRANTED, "event")


def test_rule_4_behaviour_under_a_denial_in_force_waits_for_an_explicit_grant() -> None:
    events = [
        ev(1, region="US", consent={"analytics": False}),
        ev(3, region="US"),
        upd(4, "US", analytics=True),
        ev(6, region="US"),
    ]
    gate = Gate(POLICY, history_of(events), person_region(events))
    before, after = events[1], events[3]
    denied = gate.verdict(A, at=before.at, consent=before.consent, region="US", behavioural=True)
    assert (denied.allowed, denied.reason, denied.source) == (False, Reason.NO_CONSENT, "event")
    lifted = gate.verdict(A, at=after.at, consent=after.consent, region="US", behavioural=True)
    assert (lifted.allowed, lifted.reason) == (True, Reason.REGION_DEFAULT)


def test_rule_5_a_move_to_an_opt_in_region_denies_what_a_default_allowed() -> None:
    fact = ev(1, region="US")
    before = Gate(POLICY, EMPTY_HISTORY, "US")
    after = Gate(POLICY, EMPTY_HISTORY, "DE")
    assert before.serves(at=fact.at, consent=fact.consent, region="US") == {A, P}
    verdict = after.verdict(A, at=fact.at, consent=fact.consent, region="US")
    assert (verdict.allowed, verdict.reason, verdict.source) == (
        False,
        Reason.REGION_DEFAULT,
        "default",
    )
    # an explicit grant is the person's own choice: the move does not undo it
    granted = Gate(POLICY, history_of([upd(0, analytics=True)]), "DE")
    assert granted.verdict(A, at=fact.at, consent=fact.consent, region="US").allowed


def test_rule_5_a_fact_granted_at_its_time_is_denied_once_the_latest_choice_is_no() -> None:
    # the event's own grant, the person's later non-explicit "no" on another purpose only
    events = [ev(1, consent={"analytics": True, "ads": True}), ev(3, consent={"ads": False})]
    verdicts = judge(events, events[0])
    assert verdicts[A].allowed
    assert verdicts[D].reason is Reason.REVOKED


def test_late_grant_is_the_reason_when_only_a_later_grant_exists() -> None:
    for later in (upd(9, marketing=True), ev(9, consent={"marketing": True})):
        verdict = judge([ev(2), later], ev(2))[M]
        assert (verdict.allowed, verdict.reason) == (False, Reason.LATE_GRANT)


def test_history_truncated_when_the_answer_lies_among_dropped_grants() -> None:
    grants = [upd(m, analytics=True) for m in (1, 2, 20, 30)]
    history = history_of(grants, bound=2)  # keeps 20 and 30; the one at 2 is the newest dropped
    gate = Gate(POLICY, history, "DE")
    at_15 = gate.verdict(A, at=t(1.5), consent=said(), region="DE")
    assert (at_15.allowed, at_15.reason, at_15.source) == (
        False,
        Reason.HISTORY_TRUNCATED,
        "history",
    )
    assert gate.verdict(A, at=t(2), consent=said(), region="DE").allowed  # the dropped one itself
    assert gate.verdict(A, at=t(25), consent=said(), region="DE").allowed
    assert gate.verdict(A, at=t(0), consent=said(), region="DE").reason is Reason.HISTORY_TRUNCATED


def test_current_is_the_latest_statement_or_the_default_of_the_current_region() -> None:
    gate = Gate(
        POLICY, history_of([upd(3, ads=True), ev(4, gpc=True), upd(5, marketing=True)]), "US"
    )
    assert gate.current(D) == Current(False, t(4), "gpc")
    assert gate.current(M) == Current(True, t(5), "consent_updated")
    assert gate.current(A) == Current(True, None, "default")  # US default
    assert gate.granted_now() == {A, P, M}
    assert Gate(POLICY, EMPTY_HISTORY, "NO").granted_now() == frozenset()


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------


def reference(
    events: Sequence[Said], fact: Said, person: str | None, purpose: Purpose, behavioural: bool
) -> bool:
    """The docstring's rules 2-5, read off the raw statements of ``events``."""
    if fact.consent.invalid:
        return False
    own = fact.consent.stated(purpose)
    if own is not None and not own.granted:
        return False
    if any(d.at >= fact.at for d in denials(events, purpose)):
        return False
    last_denial = latest(denials(events, purpose))
    granted_since = any(
        g.at <= fact.at and (last_denial is None or g.key > last_denial.key)
        for g in explicit_grants(events, purpose)
    )  # an explicit grant after the last denial, not after the fact
    if own is not None:
        at_time = True  # its own grant
    elif behavioural:  # its own region's default, while no denial is in force
        in_force = last_denial is not None and not granted_since
        at_time = purpose in POLICY.default_for(fact.region) and not in_force
    elif granted_since:
        at_time = True
    else:
        at_time = last_denial is None and purpose in POLICY.default_for(fact.region or person)
    now = latest(all_records(events, purpose))
    still = now.granted if now is not None else purpose in POLICY.default_for(person)
    return at_time and still


Situation = tuple[list[Said], Said, str | None]


@st.composite
def situations(draw: st.DrawFn) -> Situation:
    """A person's events, a fact (often one of them) and the person's current region."""
    events: list[Said] = draw(worlds(12, regions=True))
    own_event: bool = draw(st.booleans())
    fact: Said = draw(
        st.sampled_from(events) if events and own_event else said_events(regions=True)
    )
    person: str | None = draw(st.sampled_from(["DE", "US", "BR", None]))
    return events, fact, person


KINDS = pytest.mark.parametrize("behavioural", [False, True], ids=["transaction", "behaviour"])


@KINDS
@PROPS
@given(situation=situations(), bound=st.integers(1, 3))
def test_never_fails_open(behavioural: bool, situation: Situation, bound: int) -> None:
    """Whatever the bound: nothing is allowed that a denial at or after the fact, the fact's
    own statement or an unreadable signal forbids, nor anything the rules do not grant."""
    events, fact, person = situation
    gate = Gate(POLICY, history_of(events, bound), person)
    for v in gate.verdicts(
        at=fact.at, consent=fact.consent, region=fact.region, behavioural=behavioural
    ):
        if not v.allowed:
            continue
        assert not fact.consent.invalid
        own = fact.consent.stated(v.purpose)
        assert own is None or own.granted
        assert all(d.at < fact.at for d in denials(events, v.purpose))
        assert reference(events, fact, person, v.purpose, behavioural), v


@KINDS
@PROPS
@given(situation=situations())
def test_the_gate_is_exactly_the_docstring_rules_when_nothing_is_dropped(
    behavioural: bool, situation: Situation
) -> None:
    events, fact, person = situation
    gate = Gate(POLICY, history_of(events), person)
    for purpose in CONSENT_PURPOSES:
        verdict = gate.verdict(
            purpose, at=fact.at, consent=fact.consent, region=fact.region, behavioural=behavioural
        )
        assert verdict.allowed is reference(events, fact, person, purpose, behavioural), verdict


@PROPS
@given(situation=situations(), data=st.data())
def test_never_serves_only_drops_behaviour_the_gate_denies_forever(
    situation: Situation, data: st.DataObject
) -> None:
    """``never_serves`` on a group's part of the history implies that the gate denies the
    behavioural fact under the whole person's history, whatever the person's region, and it
    stays true as the history grows."""
    events, fact, _ = situation
    part = [e for e in events if data.draw(st.booleans())]
    whole = history_of(events)
    at, consent, region = fact.at, fact.consent, fact.region
    for purpose in CONSENT_PURPOSES:

        def dead(history: ConsentHistory, purpose: Purpose = purpose) -> bool:
            return never_serves(
                history, purpose, at=at, consent=consent, policy=POLICY, region=region
            )

        if not dead(history_of(part)):
            continue
        assert dead(whole)
        for person in ("US", "DE", None):
            gate = Gate(POLICY, whole, person)
            verdict = gate.verdict(purpose, at=at, consent=consent, region=region, behavioural=True)
            assert not verdict.allowed


@pytest.mark.parametrize(
    ("history", "consent", "region", "expected"),
    [
        ([], said(), "US", False),  # the opt-out default may serve it
        ([], said(), "DE", True),  # it stated nothing in an opt-in region: never
        ([], said(), None, True),  # no region: unknown, which grants nothing
        ([], said(analytics=True), "DE", False),  # its own grant
        ([], said(analytics=False), "US", True),  # its own denial
        ([], said(invalid=True), "US", True),
        ([upd(5, analytics=False)], said(), "US", True),  # a denial at the fact's time
        ([upd(9, analytics=False)], said(), "US", True),  # ... or after it
        ([upd(4, analytics=False)], said(), "US", False),  # before it: a grant may lift it
        ([upd(9, personalization=False)], said(), "US", False),  # another purpose
        ([upd(9, analytics=True)], said(analytics=True), "DE", False),
    ],
)
def test_never_serves(
    history: list[Said], consent: EventConsent, region: str | None, expected: bool
) -> None:
    got = never_serves(
        history_of(history), A, at=t(5), consent=consent, policy=POLICY, region=region
    )
    assert got is expected


def test_verdicts_cover_every_consent_purpose_in_order() -> None:
    gate = Gate(POLICY, EMPTY_HISTORY, "US")
    verdicts = gate.verdicts(at=t(1), consent=said(), region="US")
    assert [v.purpose for v in verdicts] == list(CONSENT_PURPOSES)
    assert {v.purpose: v.allowed for v in verdicts} == {A: True, P: True, M: False, D: False}


# ---------------------------------------------------------------------------------------------
# What each purpose gates
# ---------------------------------------------------------------------------------------------


def test_purpose_gates_are_the_agreed_field_names() -> None:
    assert dict(PURPOSE_GATES) == {
        A: {
            "first_seen",
            "last_seen",
            "channels",
            "shopping_mode",
            "orders_online",
            "orders_in_store",
            "revenue",
            "average_order_value",
            "last_order",
            "preferred_payment_method",
            "preferred_store",
            "returns",
            "lifetime_value",
            "category_purchases",
            "preferred_channel",
        },
        P: {"category_affinities", "recent_activity", "preferences"},
        M: {"reachable"},
        D: {"ad_identifiers"},
    }
    assert N not in PURPOSE_GATES
    assert Source.DEFAULT.value == "default"


def test_gates_are_disjoint_and_gated_fields_unions_them() -> None:
    all_fields = [f for gate in PURPOSE_GATES.values() for f in gate]
    assert len(all_fields) == len(set(all_fields))
    assert gated_fields([M, D]) == {"reachable", "ad_identifiers"}
    assert gated_fields([]) == frozenset()
    assert gated_fields([N]) == frozenset()


@given(
    st.lists(st.tuples(said_events(regions=True), st.booleans()), min_size=1, max_size=12),
    st.sampled_from([None, "US", "DE", "XX"]),
)
@settings(max_examples=200, deadline=None)
def test_verdicts_without_history_are_remembered_and_the_same_at_any_time(
    facts: list[tuple[Said, bool]], person_region: str | None
) -> None:
    """A gate without consent history answers each (consent, region, kind) once: the
    answers it remembers are the ones a fresh gate gives at every fact's own time."""
    gate = Gate(POLICY, EMPTY_HISTORY, person_region)
    for s, behavioural in facts + facts[::-1]:
        fresh = Gate(POLICY, EMPTY_HISTORY, person_region)
        expected = tuple(
            fresh.verdict(p, at=s.at, consent=s.consent, region=s.region, behavioural=behavioural)
            for p in CONSENT_PURPOSES
        )
        got = gate.verdicts(at=s.at, consent=s.consent, region=s.region, behavioural=behavioural)
        assert got == expected
        served = gate.serves(at=s.at, consent=s.consent, region=s.region, behavioural=behavioural)
        assert served == frozenset(v.purpose for v in expected if v.allowed)


# --------------------------------------------------------------------------- every verdict at once


def _old_verdicts(
    gate: Gate, at: datetime, consent: EventConsent, region: str | None, behavioural: bool
) -> tuple[Verdict, ...]:
    """``Gate._verdicts`` before its reads were hoisted, verbatim (``self`` is ``gate``)."""
    verdict = gate.verdict
    return tuple(
        [
            verdict(p, at=at, consent=consent, region=region, behavioural=behavioural)
            for p in CONSENT_PURPOSES
        ]
    )


@settings(max_examples=400, deadline=None)
@given(
    history=worlds(regions=True),
    fact=said_events(regions=True),
    person_region=st.sampled_from(REGIONS),
    behavioural=st.booleans(),
    bound=st.sampled_from([1, 2, 16]),
    asked_first=st.booleans(),
)
def test_every_verdict_at_once_is_each_verdict_in_turn(
    history: list[Said],
    fact: Said,
    person_region: str | None,
    behavioural: bool,
    bound: int,
    asked_first: bool,
) -> None:
    """``Gate.verdicts`` of a person with a history (the audit asks it of their every event):
    the same verdicts, in the same order, as :meth:`Gate.verdict` asked purpose by purpose."""
    merged = history_of(history, bound)
    gate, old_gate = (Gate(POLICY, merged, person_region) for _ in range(2))
    if asked_first:  # the current choices already computed (a render asked first)
        gate.granted_now()
        old_gate.granted_now()
    new = gate._verdicts(fact.at, fact.consent, fact.region, behavioural)
    old = _old_verdicts(old_gate, fact.at, fact.consent, fact.region, behavioural)
    assert new == old
    assert [v.reason for v in new] == [v.reason for v in old]
    assert gate.verdicts(
        at=fact.at, consent=fact.consent, region=fact.region, behavioural=behavioural
    ) == _old_verdicts(gate, fact.at, fact.consent, fact.region, behavioural)


# --------------------------------------------------------------------------- later than the history


@settings(max_examples=400, deadline=None)
@given(
    history=worlds(regions=True),
    facts=st.lists(said_events(minutes=24, regions=True), min_size=1, max_size=5),
    asked=st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 1), st.sampled_from(REGIONS), st.booleans()),
        min_size=2,
        max_size=10,
    ),
    person_region=st.sampled_from(REGIONS),
    bound=st.sampled_from([1, 2, 16]),
)
def test_verdicts_later_than_the_history_are_remembered_as_asked(
    history: list[Said],
    facts: list[Said],
    asked: list[tuple[int, int, str | None, bool]],
    person_region: str | None,
    bound: int,
) -> None:
    """``Gate.verdicts`` of a person with a history, asked again and again (the audit asks it
    of each of the person's events): the answers remembered for facts later than the history
    are those a fresh gate computes (``Gate._verdicts``, what ``verdicts`` answered before),
    whatever was asked before. The facts' times run past the history's (minutes 0-24 against
    0-12, ties included), and one or two consents are asked at every fact's time (one consent
    object, several questions)."""
    merged = history_of(history, bound)
    gate = Gate(POLICY, merged, person_region)
    for when, which, region, behavioural in asked:
        at, consent = facts[when % len(facts)].at, facts[which % len(facts)].consent
        got = gate.verdicts(at=at, consent=consent, region=region, behavioural=behavioural)
        expected = Gate(POLICY, merged, person_region)._verdicts(at, consent, region, behavioural)
        assert got == expected
        assert [v.reason for v in got] == [v.reason for v in expected]
        assert [v.source for v in got] == [v.source for v in expected]


# --------------------------------------------------------------------------- by the place of a time


@settings(max_examples=400, deadline=None)
@given(
    history=worlds(regions=True),
    facts=st.lists(said_events(regions=True), min_size=1, max_size=5),
    asked=st.lists(
        st.tuples(
            st.integers(0, 4),
            st.sampled_from([-0.5, 0.0, 0.0, 0.5]),
            st.integers(0, 4),
            st.sampled_from(REGIONS),
            st.booleans(),
        ),
        min_size=2,
        max_size=12,
    ),
    person_region=st.sampled_from(REGIONS),
    bound=st.sampled_from([1, 2, 16]),
    asked_first=st.booleans(),
)
def test_verdicts_are_remembered_by_the_place_of_the_fact_s_time_among_the_history_s(
    history: list[Said],
    facts: list[Said],
    asked: list[tuple[int, float, int, str | None, bool]],
    person_region: str | None,
    bound: int,
    asked_first: bool,
) -> None:
    """``Gate.verdicts`` of a person with a history, asked again and again in any order (the
    audit asks it of each of the person's events, seventeenth pass): what it remembers by the
    place of a fact's time among the history's times is what a fresh gate computes
    (``Gate._verdicts``, what ``verdicts`` answered before), at the history's own times
    (facts and history share minutes 0-12: ties), half a minute before and after them (the
    same place but for a tie), and past them; one or two consents asked at each time."""
    merged = history_of(history, bound)
    gate = Gate(POLICY, merged, person_region)
    if asked_first:  # the current choices already computed (a render asked first)
        gate.granted_now()
    for when, shift, which, region, behavioural in asked:
        at = facts[when % len(facts)].at + timedelta(minutes=shift)
        consent = facts[which % len(facts)].consent
        got = gate.verdicts(at=at, consent=consent, region=region, behavioural=behavioural)
        expected = Gate(POLICY, merged, person_region)._verdicts(at, consent, region, behavioural)
        assert got == expected
        assert [v.reason for v in got] == [v.reason for v in expected]
        assert [v.source for v in got] == [v.source for v in expected]


@settings(max_examples=300, deadline=None)
@given(
    history=worlds(regions=True),
    facts=st.lists(said_events(regions=True), min_size=1, max_size=5),
    asked=st.lists(
        st.tuples(
            st.integers(0, 4),
            st.sampled_from([-0.5, 0.0, 0.0, 0.5]),
            st.integers(0, 4),
            st.sampled_from(REGIONS),
            st.booleans(),
            st.sampled_from([None, frozenset(CONSENT_PURPOSES), frozenset({A, P}), frozenset({M})]),
        ),
        min_size=2,
        max_size=12,
    ),
    person_region=st.sampled_from(REGIONS),
    bound=st.sampled_from([1, 2, 16]),
)
def test_what_a_fact_serves_is_each_verdict_in_turn_whatever_was_asked_before(
    history: list[Said],
    facts: list[Said],
    asked: list[tuple[int, float, int, str | None, bool, frozenset[Purpose] | None]],
    person_region: str | None,
    bound: int,
) -> None:
    """``Gate.serves`` of a person with a history (a render asks it of each fact with the
    purposes it shows; remembered with the verdicts since the seventeenth pass): the purposes
    whose :meth:`Gate.verdict` allows, asked purpose by purpose of a fresh gate (what it
    answered before), whatever the gate was asked before (verdicts or serves)."""
    merged = history_of(history, bound)
    gate = Gate(POLICY, merged, person_region)
    for i, (when, shift, which, region, behavioural, purposes) in enumerate(asked):
        at = facts[when % len(facts)].at + timedelta(minutes=shift)
        consent = facts[which % len(facts)].consent
        if i % 3 == 2:  # the audit's question in between
            gate.verdicts(at=at, consent=consent, region=region, behavioural=behavioural)
        got = gate.serves(
            at=at, consent=consent, region=region, behavioural=behavioural, purposes=purposes
        )
        fresh = Gate(POLICY, merged, person_region)
        expected = frozenset(
            [
                p
                for p in (CONSENT_PURPOSES if purposes is None else purposes)
                if fresh.verdict(
                    p, at=at, consent=consent, region=region, behavioural=behavioural
                ).allowed
            ]
        )
        assert got == expected


@settings(max_examples=300, deadline=None)
@given(
    history=worlds(regions=True),
    facts=st.lists(said_events(regions=True), min_size=1, max_size=4),
    asked=st.lists(
        st.tuples(
            st.sampled_from(REGIONS),
            st.integers(0, 3),
            st.sampled_from([-0.5, 0.0, 0.5]),
            st.sampled_from(REGIONS),
            st.booleans(),
        ),
        min_size=2,
        max_size=12,
    ),
    bound=st.sampled_from([1, 2, 16]),
)
def test_gates_of_one_history_share_what_they_remember_rightly(
    history: list[Said],
    facts: list[Said],
    asked: list[tuple[str | None, int, float, str | None, bool]],
    bound: int,
) -> None:
    """The verdicts a history's gates remember are shared by every gate of that history
    object and policy (a person's gate is built anew each batch, their history kept): gates
    of one history in any person's region, new or asked before, asked in turn, answer what a
    fresh gate computes."""
    merged = history_of(history, bound)
    gates: dict[str | None, Gate] = {}
    for person_region, which, shift, region, behavioural in asked:
        fact = facts[which % len(facts)]
        at = fact.at + timedelta(minutes=shift)
        gate = gates.setdefault(person_region, Gate(POLICY, merged, person_region))
        for asking in (gate, Gate(POLICY, merged, person_region)):
            got = asking.verdicts(
                at=at, consent=fact.consent, region=region, behavioural=behavioural
            )
            fresh = Gate(POLICY, merged, person_region)
            assert got == fresh._verdicts(at, fact.consent, region, behavioural)
            assert [v.reason for v in got] == [
                v.reason for v in fresh._verdicts(at, fact.consent, region, behavioural)
            ]


def test_a_history_s_remembered_verdicts_stay_bounded_however_many_events_ask() -> None:
    """Each new event's consent is an object of its own: a person whose history stays the
    same (and so stays remembered) for many events does not make the memo of verdicts grow
    (it keys on the consent's code, not on the object), and a gate still answers each of
    them as a fresh gate computes."""
    from resolvers.consent import gate as gate_module

    merged = history_of([upd(1, marketing=True)])
    gate = Gate(POLICY, merged, "DE")
    at = t(60)
    before = len(gate_module._SHAPED)
    for n in range(3 * 256):
        consent = statements({"marketing": n % 2 == 0}, False, None)  # a new object each time
        got = gate.verdicts(at=at, consent=consent, region="DE", behavioural=False)
        assert got == Gate(POLICY, merged, "DE")._verdicts(at, consent, "DE", False)
        assert len(gate_module._SHAPED) <= before + 2  # two codes: two questions
