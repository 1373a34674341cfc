"""The verdicts of a gate with a consent history, remembered by the history's shape (issue 17,
twenty-first pass), against the gate as it was (``gate_reference``: remembered per history
object): every verdict the same, whichever histories, of whichever shapes, asked first."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import gate_reference
import pytest
from consent_worlds import POLICY, REGIONS, T0, Said, history_of, said, said_events, t, worlds
from hypothesis import given, settings
from hypothesis import strategies as st

from resolvers.consent import (
    ConsentPolicy,
    EventConsent,
    Gate,
    Purpose,
    Source,
    Statement,
    statements,
)
from resolvers.consent import gate as gate_module

#: A verdict as its fields (the reference's ``Verdict`` is a class of its own).
Fields = tuple[str, bool, str, str]


def fields_of(verdicts: tuple[object, ...]) -> list[Fields]:
    return [(v.purpose, v.allowed, v.reason, v.source) for v in verdicts]  # type: ignore[attr-defined]


def warped(at: datetime, stretch: int, shift: int) -> datetime:
    """``at`` under a strictly increasing map of time: a history's shape stays the same."""
    return T0 + (at - T0) * stretch + timedelta(minutes=shift)


#: Sources a twin's statement may take instead of its own (the shape reads a last denial's
#: and a latest statement's, never a kept grant's).
_SOURCES = st.sampled_from([Source.EVENT, Source.CONSENT_UPDATED, Source.GPC, Source.TCF])


def times_of(events: list[Said]) -> list[datetime]:
    """Each event's time and half a minute before and after it (the places a fact's time can
    take among them: at one of them, before, between, after)."""
    return [e.at + timedelta(minutes=d) for e in events for d in (-0.5, 0.0, 0.5)]


@st.composite
def people(draw: st.DrawFn) -> list[list[Said]]:
    """A person's events, the same events at their times shuffled, and their twins (the same
    statements, of other sources, explicit or not): histories whose shapes differ only here
    and there (which grant is the first, which record was dropped, a denial's source), as a
    person of a few statements' shape often does from another's."""
    events = draw(worlds(max_size=6, minutes=6, regions=True))
    times = draw(st.permutations([e.at for e in events]))
    twins = [
        replace(
            e,
            consent=EventConsent(
                {p: Statement(s.granted, draw(_SOURCES)) for p, s in e.consent.own.items()},
                e.consent.invalid,
            ),
            explicit=draw(st.booleans()),
        )
        for e in events
    ]
    return [events, [replace(e, at=at) for e, at in zip(events, times, strict=True)], twins]


@settings(max_examples=200, deadline=None)
@given(
    histories=st.lists(people(), min_size=1, max_size=3).map(lambda ps: [h for p in ps for h in p]),
    facts=st.lists(said_events(minutes=6, regions=True), min_size=1, max_size=3),
    stretch=st.integers(1, 3),
    shift=st.integers(-5, 30),
    persons=st.lists(st.sampled_from(REGIONS), min_size=1, max_size=3, unique=True),
    kinds=st.lists(
        st.tuples(st.sampled_from(REGIONS), st.booleans()), min_size=1, max_size=2, unique=True
    ),
    bound=st.sampled_from([1, 2, 16]),
    served=st.one_of(st.none(), st.frozensets(st.sampled_from(list(Purpose)))),
)
def test_verdicts_remembered_by_shape_are_the_reference_s(
    histories: list[list[Said]],
    facts: list[Said],
    stretch: int,
    shift: int,
    persons: list[str | None],
    kinds: list[tuple[str | None, bool]],
    bound: int,
    served: frozenset[Purpose] | None,
) -> None:
    """Gates of several histories (often of one shape: small worlds, shuffled, twins) and of
    their warped copies (each a new object: one shape, other times), of people in a few
    regions, asked in turn, each about the facts' consents (the fact's object and an equal
    one of its own, a new event's) in a few regions and kinds, at every place among the
    history's and the facts' times: the verdicts are the reference gate's, purpose by
    purpose, and so are the purposes the fact serves (of all, or of some asked)."""
    for events in histories:
        copy = [replace(e, at=warped(e.at, stretch, shift)) for e in events]
        for warp, history in ((False, history_of(events, bound)), (True, history_of(copy, bound))):
            ats = times_of(events + facts)
            for person in persons:
                gate = Gate(POLICY, history, person)
                for fact in facts:
                    for consent in (
                        fact.consent,
                        EventConsent(dict(fact.consent.own), fact.consent.invalid),
                    ):
                        for each in ats:
                            at = warped(each, stretch, shift) if warp else each
                            for region, behavioural in kinds:
                                got = gate.verdicts(
                                    at=at, consent=consent, region=region, behavioural=behavioural
                                )
                                reference = gate_reference.Gate(POLICY, history, person)
                                expected = reference.verdicts(
                                    at=at, consent=consent, region=region, behavioural=behavioural
                                )
                                assert fields_of(got) == fields_of(expected)
                                serves = gate.serves(
                                    at=at,
                                    consent=consent,
                                    region=region,
                                    behavioural=behavioural,
                                    purposes=served,
                                )
                                assert serves == reference.serves(
                                    at=at,
                                    consent=consent,
                                    region=region,
                                    behavioural=behavioural,
                                    purposes=served,
                                )


def test_the_remembered_verdicts_stay_bounded_however_many_questions() -> None:
    """However many distinct questions are asked (here: facts of as many regions), the memo
    of verdicts stays within its bound, and a gate still answers as the reference."""
    merged = history_of(
        [Said(T0, statements({"marketing": True}, False, None, explicit=True), True)]
    )
    gate = Gate(POLICY, merged, "DE")
    consent = statements({"analytics": False}, False, None)
    at = T0 + timedelta(minutes=5)
    for n in range(3 * gate_module._SHAPED_SIZE):
        region = f"R{n}"
        got = gate.verdicts(at=at, consent=consent, region=region, behavioural=False)
        expected = gate_reference.Gate(POLICY, merged, "DE").verdicts(
            at=at, consent=consent, region=region, behavioural=False
        )
        assert fields_of(got) == fields_of(expected)
        assert len(gate_module._SHAPED) <= gate_module._SHAPED_SIZE


def test_shapes_stay_bounded_and_a_new_shape_never_gets_an_old_id() -> None:
    """However many policies (each a shape of its own for one history), the shapes remembered
    stay within their bound; emptied, they give no old id to a new shape, so no verdict
    remembered of an old shape answers for a new one."""
    merged = history_of([Said(T0, statements({"ads": True}, False, None, explicit=True), True)])
    at = T0 + timedelta(minutes=1)
    consent = statements(None, False, None)
    size = gate_module._SHAPES_SIZE
    policies: list[ConsentPolicy] = []  # kept alive: each id its own
    ids: set[int] = set()
    for n in range(2 * size + 1):
        # two kinds, told apart by a US fact's ads: a stale shape would answer the other's
        granting = frozenset({Purpose.ANALYTICS}) | (
            frozenset({Purpose.ADS}) if (n // size) % 2 else frozenset()
        )
        policy = ConsentPolicy(opt_out_default=granting)
        policies.append(policy)
        gate = Gate(policy, merged, "DE")
        got = gate.verdicts(at=at, consent=consent, region="US", behavioural=False)
        expected = gate_reference.Gate(policy, merged, "DE").verdicts(
            at=at, consent=consent, region="US", behavioural=False
        )
        assert fields_of(got) == fields_of(expected)
        assert len(gate_module._SHAPES) <= gate_module._SHAPES_SIZE
        assert gate._after is not None
        ids.add(gate._after[1])
    assert len(ids) == 2 * size + 1


@pytest.mark.parametrize("bound", [1, 16])
def test_histories_of_one_shape_but_for_which_grant_came_first(bound: int) -> None:
    """Two histories whose times take the same ranks in every part but analytics' explicit
    grants (kept, or dropped with ``bound`` 1): at 0 and 2 in one, at 1 and 2 in the other.
    A fact at 0.5 with no statement of its own is granted analytics by the first only (the
    second's first grant is later: a late grant, or a truncated history), asked in turn."""

    def update(minute: float, **purposes: bool) -> Said:
        return Said(t(minute), said(Source.CONSENT_UPDATED, **purposes), True)

    def event(minute: float, **purposes: bool) -> Said:
        return Said(t(minute), said(Source.EVENT, **purposes), False)

    first = [update(0, analytics=True, ads=True), event(1, marketing=True)]
    second = [update(0, ads=True), update(1, analytics=True), event(1, marketing=True)]
    consent = statements(None, False, None)
    answers = []
    for events in (first, second, first, second):
        history = history_of([*events, update(2, analytics=True)], bound)
        got = Gate(POLICY, history, "DE").verdicts(
            at=t(0.5), consent=consent, region="DE", behavioural=False
        )
        expected = gate_reference.Gate(POLICY, history, "DE").verdicts(
            at=t(0.5), consent=consent, region="DE", behavioural=False
        )
        assert fields_of(got) == fields_of(expected)
        answers.append(fields_of(got)[0])  # analytics
    assert answers[0] != answers[1]


def test_histories_of_one_shape_but_for_the_source_of_their_last_denial() -> None:
    """Two histories denying ads at 1 (one by the event's own statement, one by GPC) and
    granting it again at 2: their latest statements are alike, their last denials' sources
    are not, and a fact at 0.5 is revoked by each in its own words, asked in turn."""
    answers = []
    for source in (Source.EVENT, Source.GPC, Source.EVENT, Source.GPC):
        history = history_of(
            [Said(t(1), said(source, ads=False)), Said(t(2), said(Source.EVENT, ads=True))]
        )
        got = Gate(POLICY, history, "US").verdicts(
            at=t(0.5), consent=statements(None, False, None), region="US", behavioural=False
        )
        expected = gate_reference.Gate(POLICY, history, "US").verdicts(
            at=t(0.5), consent=statements(None, False, None), region="US", behavioural=False
        )
        assert fields_of(got) == fields_of(expected)
        answers.append(fields_of(got)[3])  # ads
    assert answers[0] != answers[1]
