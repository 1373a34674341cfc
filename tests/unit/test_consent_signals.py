"""What one event says about consent (``resolvers.consent.signals``): the fold of its consent
map, GPC flag and vendor signals, and the compact code facts keep it under."""

from __future__ import annotations

import pytest
from consent_worlds import EVENT_CONSENTS, A, D, P, said, tc_string
from hypothesis import given, settings
from hypothesis import strategies as st

from resolvers.consent import (
    CONSENT_PURPOSES,
    EXPLICIT_TYPES,
    NO_STATEMENTS,
    EventConsent,
    Purpose,
    Source,
    Statement,
    statements,
)
from resolvers.consent.signals import from_code

PROPS = settings(max_examples=200, deadline=None)


def own(consent: EventConsent) -> dict[Purpose, tuple[bool, str]]:
    return {p: (s.granted, s.source.value) for p, s in consent.own.items()}


@pytest.mark.parametrize(("explicit", "source"), [(False, "event"), (True, "consent_updated")])
def test_the_consent_map_states_per_purpose_with_the_event_s_source(
    explicit: bool, source: str
) -> None:
    got = statements({"analytics": True, "ads": False}, False, None, explicit=explicit)
    assert own(got) == {A: (True, source), D: (False, source)}
    assert not got.invalid
    assert got.errors == ()


def test_nothing_said_is_no_statement() -> None:
    assert statements(None, False, None) == NO_STATEMENTS
    assert statements({}, False, {}) == NO_STATEMENTS
    assert NO_STATEMENTS.stated(A) is None


def test_necessary_is_never_a_statement() -> None:
    assert statements({"necessary": False}, False, None) == NO_STATEMENTS


@pytest.mark.parametrize("granted", [True, False, None])
def test_gpc_denies_ads_and_is_reported_as_gpc_over_any_other_statement(
    granted: bool | None,
) -> None:
    consent = None if granted is None else {"ads": granted}
    got = statements(consent, True, {"gcm": {"ad_storage": "denied"}})
    assert got.stated(D) == Statement(False, Source.GPC)


def test_any_denial_wins_over_grants_of_other_formats() -> None:
    got = statements(
        {"analytics": True, "personalization": True},
        False,
        {"segment": {"Analytics": True}, "gcm": {"personalization_storage": "denied"}},
    )
    assert own(got) == {A: (True, "event"), P: (False, "gcm")}


def test_the_first_source_speaks_for_agreeing_grants() -> None:
    got = statements({"analytics": True}, False, {"tcf": tc_string({1, 8, 9, 10})})
    assert got.stated(A) == Statement(True, Source.EVENT)
    assert got.stated(D) == Statement(False, Source.TCF)  # TCF speaks about ads too


@pytest.mark.parametrize(
    ("signals", "purpose", "source"),
    [
        ({"segment": {"Analytics": True}}, A, Source.SEGMENT),
        ({"gcm": {"analytics_storage": "granted"}}, A, Source.GCM),
        ({"tcf": tc_string({1, 8, 9, 10})}, A, Source.TCF),
    ],
)
def test_vendor_signals_state_with_their_source(
    signals: dict[str, object], purpose: Purpose, source: Source
) -> None:
    assert statements(None, False, signals).stated(purpose) == Statement(True, source)


@pytest.mark.parametrize(
    ("consent", "signals", "errors"),
    [
        ({"analytics": "yes", "ads": False}, None, ("consent:not_boolean:analytics",)),
        ({"analytics": True, "ads": False}, {"tcf": "%%%"}, ("tcf:undecodable",)),
        ({"analytics": True, "ads": False}, {"tcf": 7}, ("tcf:wrong_type",)),
        ({"analytics": True, "ads": False}, {"gcm": "granted"}, ("gcm:wrong_type",)),
        ({"analytics": True, "ads": False}, {"segment": ["x"]}, ("segment:wrong_type",)),
    ],
)
def test_an_unreadable_signal_makes_the_event_invalid_and_keeps_only_its_denials(
    consent: dict[str, object], signals: dict[str, object] | None, errors: tuple[str, ...]
) -> None:
    got = statements(consent, False, signals)
    assert got.invalid
    assert own(got) == {D: (False, "event")}
    assert got.errors == errors


@pytest.mark.parametrize(
    ("consent", "signals", "errors"),
    [
        (None, {"acme": 1}, ("signals:unknown_format:acme",)),
        ({"analytic": True}, None, ("consent:unknown_purpose:analytic",)),
        ({"a b\n<x>": True}, None, ("consent:unknown_purpose:a?b??x?",)),  # no raw text out
        ({"x" * 80: True}, None, ("consent:unknown_purpose:" + "x" * 40,)),
    ],
)
def test_unknown_names_are_reported_but_do_not_invalidate(
    consent: dict[str, object] | None, signals: dict[str, object] | None, errors: tuple[str, ...]
) -> None:
    got = statements(consent, False, signals)
    assert not got.invalid
    assert got.errors == errors


def test_explicit_types_are_the_person_s_own_choices() -> None:
    assert {"consent_updated", "signup", "loyalty_enrolled", "profile_updated"} == EXPLICIT_TYPES
    assert "page_view" not in EXPLICIT_TYPES


# --------------------------------------------------------------------------- the code


@pytest.mark.parametrize(
    ("consent", "code"),
    [
        (NO_STATEMENTS, ""),
        (said(analytics=True), "analytics+event"),
        (said(Source.GPC, ads=False), "ads-gpc"),
        (
            EventConsent({D: Statement(False, Source.GPC), A: Statement(True, Source.TCF)}),
            "ads-gpc;analytics+tcf",  # purposes sorted by name, whatever the mapping order
        ),
        (said(invalid=True, marketing=False), "!marketing-event"),
        (said(invalid=True), "!"),
    ],
)
def test_code_is_canonical(consent: EventConsent, code: str) -> None:
    assert consent.code == code
    back = from_code(code)
    assert (dict(back.own), back.invalid) == (dict(consent.own), consent.invalid)


_STATEMENT = st.builds(Statement, st.booleans(), st.sampled_from(list(Source)))
_OWN = st.dictionaries(st.sampled_from(CONSENT_PURPOSES), _STATEMENT)


@PROPS
@given(own_=_OWN, invalid=st.booleans())
def test_from_code_inverts_code(own_: dict[Purpose, Statement], invalid: bool) -> None:
    consent = EventConsent(own_, invalid)
    back = from_code(consent.code)
    assert dict(back.own) == own_
    assert back.invalid is invalid
    assert back.code == consent.code


@PROPS
@given(a=_OWN, b=_OWN)
def test_equal_codes_are_equal_statements(
    a: dict[Purpose, Statement], b: dict[Purpose, Statement]
) -> None:
    assert (EventConsent(a).code == EventConsent(b).code) is (a == b)


@PROPS
@given(consent=st.one_of(EVENT_CONSENTS[False], EVENT_CONSENTS[True]))
def test_folded_statements_survive_the_code(consent: EventConsent) -> None:
    back = from_code(consent.code)
    assert dict(back.own) == dict(consent.own)
    assert back.invalid is consent.invalid
    if consent.invalid:  # an invalid event keeps only denials
        assert not any(s.granted for s in consent.own.values())


@pytest.mark.parametrize("code", ["analytics", "analytics*event", "bogus+event", "ads+nowhere"])
def test_from_code_rejects_what_code_never_writes(code: str) -> None:
    with pytest.raises(ValueError, match=r"consent code|Source"):
        from_code(code)


@given(st.booleans().flatmap(lambda explicit: EVENT_CONSENTS[explicit]))
def test_an_event_denies_exactly_when_one_of_its_statements_is_a_denial(
    consent: EventConsent,
) -> None:
    assert consent.denies == any(not s.granted for s in consent.own.values())
    assert from_code(consent.code).denies == consent.denies
