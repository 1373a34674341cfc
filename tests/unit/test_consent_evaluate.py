"""Consent evaluation rules, stored state, merge, and arrival-order independence."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import fields
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolvers.consent import (
    PURPOSE_GATES,
    ConsentAuditRecord,
    ConsentChange,
    ConsentDecision,
    ConsentInput,
    ConsentInputError,
    ConsentPolicy,
    ConsentState,
    ConsentStateError,
    Decision,
    Purpose,
    PurposeHistory,
    Reason,
    Source,
    evaluate,
    gated_fields,
    merge_states,
)
from resolvers.consent.formats import decode_tcf

A, P, M, D, N = (
    Purpose.ANALYTICS,
    Purpose.PERSONALIZATION,
    Purpose.MARKETING,
    Purpose.ADS,
    Purpose.NECESSARY,
)
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=1)
POLICY = ConsentPolicy()


def tc_string(purposes: set[int]) -> str:
    """A TCF v2 core segment with the given purpose consents (all else fixed, no vendors)."""
    bits = (
        "000010"  # version 2
        + "0" * 72  # created, last updated
        + "0" * 24  # CMP id and version
        + "0" * 6  # consent screen
        + "000100"
        + "001110"  # language "EO"
        + "0" * 12  # vendor list version
        + "000100"  # TCF policy version 4 (v2.2)
        + "00"  # service specific, non-standard texts
        + "0" * 12  # special features
        + "".join("1" if i in purposes else "0" for i in range(1, 25))
        + "0" * 24  # LI transparency
        + "0"  # purpose one treatment
        + "001101"
        + "001110"  # publisher country "NO"
        + "0" * 16
        + "0"  # MaxVendorId 0, bitfield
    )
    bits += "0" * (-len(bits) % 8)
    raw = int(bits, 2).to_bytes(len(bits) // 8, "big")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def t(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ev(
    minute: int,
    *,
    region: str | None = "DE",
    consent: Mapping[str, object] | None = None,
    gpc: bool = False,
    signals: Mapping[str, object] | None = None,
    update: bool = False,
    event_id: str | None = None,
) -> ConsentInput:
    return ConsentInput(
        event_id=event_id or f"e{minute}{'u' if update else ''}",
        occurred_at=t(minute),
        region=region,
        consent=consent,  # type: ignore[arg-type]  # tests also feed non-booleans
        gpc=gpc,
        signals=signals,
        is_consent_update=update,
    )


def upd(minute: int, region: str | None = "DE", **consent: bool) -> ConsentInput:
    return ev(minute, region=region, consent=consent, update=True)


def run(
    inputs: Iterable[ConsentInput],
    state: ConsentState | None = None,
    policy: ConsentPolicy = POLICY,
) -> tuple[ConsentDecision, ConsentState | None]:
    decision: ConsentDecision | None = None
    for inp in inputs:
        decision = evaluate(inp, state, policy, now=NOW)
        state = decision.new_state
    assert decision is not None
    return decision, state


# ---------------------------------------------------------------------------------------------
# The rules, one row each: (inputs in arrival order) -> decision on the LAST input
# ---------------------------------------------------------------------------------------------

RULES: list[tuple[str, list[ConsentInput], frozenset[Purpose], dict[Purpose, Reason]]] = [
    (
        "opt-in region, no signal: only necessary",
        [ev(1, region="DE")],
        frozenset({N}),
        {
            A: Reason.REGION_DEFAULT,
            P: Reason.REGION_DEFAULT,
            M: Reason.REGION_DEFAULT,
            D: Reason.REGION_DEFAULT,
        },
    ),
    (
        "opt-out region, no signal: analytics and personalization",
        [ev(1, region="US")],
        frozenset({N, A, P}),
        {M: Reason.REGION_DEFAULT, D: Reason.REGION_DEFAULT},
    ),
    (
        "unknown region: nothing but necessary",
        [ev(1, region=None)],
        frozenset({N}),
        {
            A: Reason.REGION_DEFAULT,
            P: Reason.REGION_DEFAULT,
            M: Reason.REGION_DEFAULT,
            D: Reason.REGION_DEFAULT,
        },
    ),
    (
        "event's own consent map grants in an opt-in region",
        [ev(1, consent={"analytics": True, "marketing": True})],
        frozenset({N, A, M}),
        {P: Reason.REGION_DEFAULT, D: Reason.REGION_DEFAULT},
    ),
    (
        "event's own denial beats the opt-out default",
        [ev(1, region="US", consent={"analytics": False})],
        frozenset({N, P}),
        {A: Reason.NO_CONSENT, M: Reason.REGION_DEFAULT, D: Reason.REGION_DEFAULT},
    ),
    (
        "stored grant covers a later event without signals",
        [upd(1, analytics=True), ev(5)],
        frozenset({N, A}),
        {P: Reason.REGION_DEFAULT, M: Reason.REGION_DEFAULT, D: Reason.REGION_DEFAULT},
    ),
    (
        "late grant does not legitimise an earlier event",
        [upd(5, analytics=True), ev(1)],
        frozenset({N}),
        {
            A: Reason.LATE_GRANT,
            P: Reason.REGION_DEFAULT,
            M: Reason.REGION_DEFAULT,
            D: Reason.REGION_DEFAULT,
        },
    ),
    (
        "late grant after an explicit denial",
        [upd(0, analytics=False), upd(5, analytics=True), ev(1)],
        frozenset({N}),
        {
            A: Reason.LATE_GRANT,
            P: Reason.REGION_DEFAULT,
            M: Reason.REGION_DEFAULT,
            D: Reason.REGION_DEFAULT,
        },
    ),
    (
        "granted at event time but revoked since: revocation wins",
        [upd(1, analytics=True), upd(9, analytics=False), ev(5)],
        frozenset({N}),
        {
            A: Reason.REVOKED,
            P: Reason.REGION_DEFAULT,
            M: Reason.REGION_DEFAULT,
            D: Reason.REGION_DEFAULT,
        },
    ),
    (
        "event's own grant but a later revocation is stored",
        [upd(9, analytics=False), ev(5, consent={"analytics": True})],
        frozenset({N}),
        {
            A: Reason.REVOKED,
            P: Reason.REGION_DEFAULT,
            M: Reason.REGION_DEFAULT,
            D: Reason.REGION_DEFAULT,
        },
    ),
    (
        "opt-out default at event time, revoked later",
        [upd(9, region="US", personalization=False), ev(5, region="US")],
        frozenset({N, A}),
        {P: Reason.REVOKED, M: Reason.REGION_DEFAULT, D: Reason.REGION_DEFAULT},
    ),
    (
        "older revocation arriving late changes nothing current",
        [upd(9, analytics=True), upd(1, analytics=False), ev(10)],
        frozenset({N, A}),
        {P: Reason.REGION_DEFAULT, M: Reason.REGION_DEFAULT, D: Reason.REGION_DEFAULT},
    ),
    (
        "older revocation arriving late still governs events of its time",
        [upd(0, analytics=True), upd(9, analytics=True), upd(3, analytics=False), ev(5)],
        frozenset({N}),
        {
            A: Reason.LATE_GRANT,
            P: Reason.REGION_DEFAULT,
            M: Reason.REGION_DEFAULT,
            D: Reason.REGION_DEFAULT,
        },
    ),
    (
        "grant and revocation at the same instant: revocation wins",
        [upd(5, analytics=True), upd(5, analytics=False), ev(6)],
        frozenset({N}),
        {
            A: Reason.NO_CONSENT,
            P: Reason.REGION_DEFAULT,
            M: Reason.REGION_DEFAULT,
            D: Reason.REGION_DEFAULT,
        },
    ),
    (
        "GPC denies ads over a stored grant",
        [upd(1, ads=True, marketing=True), ev(5, gpc=True)],
        frozenset({N, M}),
        {A: Reason.REGION_DEFAULT, P: Reason.REGION_DEFAULT, D: Reason.GPC},
    ),
    (
        "GPC denies ads over the same event's explicit grant",
        [ev(5, region="US", consent={"ads": True}, gpc=True)],
        frozenset({N, A, P}),
        {M: Reason.REGION_DEFAULT, D: Reason.GPC},
    ),
    (
        "GPC is recorded: a later event without GPC is still denied ads",
        [upd(1, ads=True), ev(5, gpc=True), ev(6)],
        frozenset({N}),
        {
            A: Reason.REGION_DEFAULT,
            P: Reason.REGION_DEFAULT,
            M: Reason.REGION_DEFAULT,
            D: Reason.GPC,
        },
    ),
    (
        "an earlier event served ads, GPC arrived since: denied as gpc",
        [upd(1, ads=True), ev(9, gpc=True), ev(5)],
        frozenset({N}),
        {
            A: Reason.REGION_DEFAULT,
            P: Reason.REGION_DEFAULT,
            M: Reason.REGION_DEFAULT,
            D: Reason.GPC,
        },
    ),
    (
        "a later explicit grant overrides an earlier GPC",
        [ev(1, gpc=True), upd(5, ads=True), ev(6)],
        frozenset({N, D}),
        {A: Reason.REGION_DEFAULT, P: Reason.REGION_DEFAULT, M: Reason.REGION_DEFAULT},
    ),
    (
        "invalid TCF string: the event serves nothing but necessary",
        [upd(1, analytics=True), ev(5, signals={"tcf": "garbage!"})],
        frozenset({N}),
        {
            A: Reason.INVALID_SIGNAL,
            P: Reason.INVALID_SIGNAL,
            M: Reason.INVALID_SIGNAL,
            D: Reason.INVALID_SIGNAL,
        },
    ),
    (
        "non-boolean in the consent map is an invalid signal",
        [ev(5, region="US", consent={"analytics": "yes"})],
        frozenset({N}),
        {
            A: Reason.INVALID_SIGNAL,
            P: Reason.INVALID_SIGNAL,
            M: Reason.INVALID_SIGNAL,
            D: Reason.INVALID_SIGNAL,
        },
    ),
    (
        "unknown signal format is ignored",
        [ev(5, region="US", signals={"acme": {"x": 1}})],
        frozenset({N, A, P}),
        {M: Reason.REGION_DEFAULT, D: Reason.REGION_DEFAULT},
    ),
    (
        "necessary cannot be denied",
        [ev(5, region=None, consent={"necessary": False})],
        frozenset({N}),
        {
            A: Reason.REGION_DEFAULT,
            P: Reason.REGION_DEFAULT,
            M: Reason.REGION_DEFAULT,
            D: Reason.REGION_DEFAULT,
        },
    ),
    (
        "Segment categories on a consent update",
        [ev(1, signals={"segment": {"Analytics": True, "Advertising": False}}, update=True), ev(2)],
        frozenset({N, A}),
        {P: Reason.REGION_DEFAULT, M: Reason.REGION_DEFAULT, D: Reason.NO_CONSENT},
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
        frozenset({N, A, D}),
        {P: Reason.REGION_DEFAULT, M: Reason.REGION_DEFAULT},
    ),
    (
        "TCF string granting everything it can",
        [ev(1, signals={"tcf": tc_string(set(range(1, 12)))})],
        frozenset({N, A, P, D}),
        {M: Reason.REGION_DEFAULT},
    ),
    (
        "vendor denial beats Loom's own grant in the same event",
        [ev(1, consent={"analytics": True}, signals={"gcm": {"analytics_storage": "denied"}})],
        frozenset({N}),
        {
            A: Reason.NO_CONSENT,
            P: Reason.REGION_DEFAULT,
            M: Reason.REGION_DEFAULT,
            D: Reason.REGION_DEFAULT,
        },
    ),
]


@pytest.mark.parametrize(
    ("inputs", "allowed", "denied"),
    [pytest.param(i, a, d, id=name) for name, i, a, d in RULES],
)
def test_rule(
    inputs: list[ConsentInput], allowed: frozenset[Purpose], denied: dict[Purpose, Reason]
) -> None:
    decision, _ = run(inputs)
    assert decision.allowed == allowed
    assert dict(decision.denied) == denied
    assert N in decision.allowed
    assert set(decision.allowed).isdisjoint(decision.denied)


def test_tc_string_helper_builds_what_it_says() -> None:
    decoded = decode_tcf(tc_string({1, 8, 24}))
    assert decoded.purposes_consent == {1, 8, 24}
    assert (decoded.consent_language, decoded.publisher_cc) == ("EO", "NO")


# ---------------------------------------------------------------------------------------------
# Recording, revocation and audit
# ---------------------------------------------------------------------------------------------


def test_consent_update_is_recorded_with_time_and_source() -> None:
    decision, _ = run([upd(3, analytics=True, ads=False)])
    state = decision.new_state
    assert state.current(A) == ConsentChange(True, t(3), Source.CONSENT_UPDATED)
    assert state.current(D) == ConsentChange(False, t(3), Source.CONSENT_UPDATED)
    assert state.current(P) is None
    assert state.summary()["analytics"] == {
        "granted": True,
        "at": t(3).isoformat(),
        "source": "consent_updated",
    }


@pytest.mark.parametrize(
    ("signals", "purpose", "source"),
    [
        ({"segment": {"Analytics": True}}, A, Source.SEGMENT),
        ({"gcm": {"analytics_storage": "granted"}}, A, Source.GCM),
        ({"tcf": tc_string({1, 8, 9, 10})}, A, Source.TCF),
    ],
)
def test_vendor_signals_record_their_source(
    signals: dict[str, object], purpose: Purpose, source: Source
) -> None:
    decision, _ = run([ev(1, signals=signals, update=True)])
    assert decision.new_state.current(purpose) == ConsentChange(True, t(1), source)


def test_revocation_is_reported_for_purge_with_an_audit_record() -> None:
    decision, _ = run([upd(1, analytics=True, marketing=True), upd(5, analytics=False)])
    assert decision.revoked == {A}
    purges = [r for r in decision.audit if r.decision is Decision.PURGE]
    assert [(r.purpose, r.reason, r.source) for r in purges] == [
        (A, Reason.REVOKED, "consent_updated")
    ]


def test_gpc_revokes_ads() -> None:
    decision, _ = run([upd(1, ads=True), ev(5, gpc=True)])
    assert decision.revoked == {D}
    assert decision.new_state.current(D) == ConsentChange(False, t(5), Source.GPC)
    purge = next(r for r in decision.audit if r.decision is Decision.PURGE)
    assert purge.reason is Reason.GPC


def test_late_older_revocation_revokes_nothing() -> None:
    decision, _ = run([upd(9, analytics=True), upd(1, analytics=False)])
    assert decision.revoked == frozenset()
    assert decision.new_state.current(A) == ConsentChange(True, t(9), Source.CONSENT_UPDATED)


def test_revoking_the_opt_out_default_is_a_revocation() -> None:
    # Data may have been collected under the US default: a denial must purge it.
    decision, _ = run([ev(1, region="US"), ev(2, region="US", consent={"personalization": False})])
    assert decision.revoked == {P}


def test_opt_in_default_denial_is_not_a_revocation() -> None:
    decision, _ = run([ev(1, region="DE", consent={"analytics": False})])
    assert decision.revoked == frozenset()


def test_audit_records_carry_no_identifiers_and_cover_every_purpose() -> None:
    decision, _ = run([upd(1, analytics=True), ev(5, event_id="evt-42")])
    assert {f.name for f in fields(ConsentAuditRecord)} == {
        "event_id",
        "purpose",
        "decision",
        "reason",
        "source",
        "policy_version",
        "decided_at",
    }
    by_purpose = {r.purpose: r for r in decision.audit}
    assert set(by_purpose) == set(Purpose)
    assert all(r.event_id == "evt-42" for r in decision.audit)
    assert all(r.policy_version == POLICY.version for r in decision.audit)
    assert all(r.decided_at == NOW for r in decision.audit)
    assert by_purpose[N].reason is Reason.ALWAYS
    assert (by_purpose[A].decision, by_purpose[A].reason) == (Decision.ALLOW, Reason.GRANTED)
    assert by_purpose[A].source == "consent_updated"
    assert (by_purpose[D].decision, by_purpose[D].source) == (Decision.DENY, "default")
    assert json.loads(json.dumps(by_purpose[A].to_dict()))["reason"] == "granted"


def test_invalid_signal_records_denials_but_not_grants() -> None:
    decision, _ = run(
        [
            ev(
                5,
                consent={"analytics": True, "marketing": False},
                signals={"tcf": "%%%"},
                update=True,
            )
        ]
    )
    assert decision.new_state.current(A) is None
    assert decision.new_state.current(M) == ConsentChange(False, t(5), Source.CONSENT_UPDATED)
    assert decision.signal_errors == ("tcf:undecodable",)


@pytest.mark.parametrize(
    ("inp", "errors"),
    [
        (ev(1, signals={"acme": 1}), ("signals:unknown_format:acme",)),
        (ev(1, signals={"tcf": 7}), ("tcf:wrong_type",)),
        (ev(1, signals={"gcm": "granted"}), ("gcm:wrong_type",)),
        (ev(1, consent={"analytic": True}), ("consent:unknown_purpose:analytic",)),
        (ev(1, consent={"ads": 1}), ("consent:not_boolean:ads",)),
        (ev(1, consent={"a b\n<x>": True}), ("consent:unknown_purpose:a?b??x?",)),
    ],
)
def test_signal_errors_are_reported(inp: ConsentInput, errors: tuple[str, ...]) -> None:
    assert evaluate(inp, None, POLICY, now=NOW).signal_errors == errors


def test_redelivery_is_idempotent() -> None:
    inp = ev(5, consent={"analytics": True, "ads": False}, gpc=True, update=True)
    first = evaluate(inp, None, POLICY, now=NOW)
    second = evaluate(inp, first.new_state, POLICY, now=NOW)
    assert second.new_state == first.new_state
    assert second.allowed == first.allowed
    assert second.revoked == frozenset()


def test_repeated_event_grants_do_not_grow_history_but_denials_do() -> None:
    _, state = run([ev(m, consent={"analytics": True, "marketing": False}) for m in range(10)])
    assert state is not None
    assert len(state.history(A).changes) == 1
    assert len(state.history(M).changes) == 10


def test_ordinary_event_denial_after_a_grant_revokes() -> None:
    decision, state = run([ev(1, consent={"analytics": True}), ev(5, consent={"analytics": False})])
    assert state is not None
    assert [c.granted for c in state.history(A).changes] == [True, False]
    assert decision.revoked == {A}
    assert decision.denied[A] is Reason.NO_CONSENT
    later, _ = run([ev(6)], state=state)
    assert later.denied[A] is Reason.NO_CONSENT


def test_older_grant_arriving_late_cannot_outlive_a_repeated_denial() -> None:
    # deny @1, deny @9 (page views), then a grant stamped @5 arrives late: @9 still denies.
    decision, state = run(
        [
            ev(1, consent={"ads": False}),
            ev(9, consent={"ads": False}),
            ev(5, consent={"ads": True}, event_id="late"),
            ev(10),
        ]
    )
    assert state is not None
    assert decision.denied[D] is Reason.NO_CONSENT
    current = state.current(D)
    assert current is not None
    assert current.granted is False


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ConsentInputError):
        ConsentInput(event_id="e", occurred_at=datetime(2025, 1, 1))
    with pytest.raises(ConsentInputError):
        evaluate(ev(1), None, POLICY, now=datetime(2025, 1, 1))


def test_times_are_normalised_to_utc() -> None:
    oslo = timezone(timedelta(hours=2))
    inp = ConsentInput("e", datetime(2025, 3, 1, 14, 0, tzinfo=oslo), consent={"ads": True})
    assert evaluate(inp, None, POLICY, now=NOW).new_state.current(D) == ConsentChange(
        True, t(0), Source.EVENT
    )


# ---------------------------------------------------------------------------------------------
# Bounded history: fail closed beyond it
# ---------------------------------------------------------------------------------------------


def test_history_is_bounded_and_older_questions_fail_closed() -> None:
    policy = ConsentPolicy(max_history=3)
    updates = [upd(m, analytics=True) for m in (0, 10, 20, 30, 40)]
    decision, state = run([*updates, ev(45)], policy=policy)
    assert state is not None
    history = state.history(A)
    assert history.truncated
    assert [c.at for c in history.changes] == [t(20), t(30), t(40)]
    assert decision.allowed == {N, A}
    # an event older than the oldest kept change cannot be answered: denied
    late, _ = run([ev(5)], state=state, policy=policy)
    assert late.denied[A] is Reason.HISTORY_TRUNCATED
    # inside the kept window it still can
    inside, _ = run([ev(25)], state=state, policy=policy)
    assert A in inside.allowed


def test_history_window_answers_inside_it() -> None:
    policy = ConsentPolicy(max_history=3)
    _, state = run([upd(m, analytics=m in (20, 40)) for m in (0, 10, 20, 30, 40)], policy=policy)
    assert state is not None
    assert [c.granted for c in state.history(A).changes] == [True, False, True]
    inside, _ = run([ev(25)], state=state, policy=policy)
    assert A in inside.allowed  # granted @20, still granted (@40)
    gap, _ = run([ev(35)], state=state, policy=policy)
    assert gap.denied[A] is Reason.LATE_GRANT  # denied @30, granted again only @40


# ---------------------------------------------------------------------------------------------
# Stored state serialisation
# ---------------------------------------------------------------------------------------------


def test_state_json_roundtrip() -> None:
    _, state = run(
        [upd(1, analytics=True, ads=True), ev(3, gpc=True), upd(2, marketing=False)],
        policy=ConsentPolicy(max_history=1),
    )
    assert state is not None
    text = json.dumps(state.to_dict())
    back = ConsentState.from_dict(json.loads(text))
    assert back == state
    assert back.history(D).truncated
    assert back.to_dict() == state.to_dict()


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"format": 2, "purposes": {}},
        {"format": 1, "purposes": []},
        {"format": 1, "purposes": {"nope": {"changes": [], "truncated": False}}},
        {"format": 1, "purposes": {"ads": {"changes": [], "truncated": "no"}}},
        {
            "format": 1,
            "purposes": {
                "ads": {"changes": [{"granted": 1, "at": "x", "source": "gpc"}], "truncated": False}
            },
        },
        {
            "format": 1,
            "purposes": {
                "ads": {
                    "changes": [{"granted": True, "at": "2025-01-01T00:00:00", "source": "gpc"}],
                    "truncated": False,
                }
            },
        },  # naive time
        {
            "format": 1,
            "purposes": {
                "ads": {
                    "changes": [
                        {"granted": True, "at": "2025-01-01T00:00:00+00:00", "source": "elsewhere"}
                    ],
                    "truncated": False,
                }
            },
        },
        {
            "format": 1,
            "purposes": {
                "ads": {
                    "changes": [
                        {"granted": True, "at": "2025-01-02T00:00:00+00:00", "source": "gpc"},
                        {"granted": True, "at": "2025-01-01T00:00:00+00:00", "source": "gpc"},
                    ],
                    "truncated": False,
                }
            },
        },  # out of order
    ],
)
def test_state_from_dict_rejects_malformed(data: dict[str, object]) -> None:
    with pytest.raises(ConsentStateError):
        ConsentState.from_dict(data)


# ---------------------------------------------------------------------------------------------
# Merge: the more restrictive value wins
# ---------------------------------------------------------------------------------------------


def _state(**purposes: list[tuple[int, bool]]) -> ConsentState:
    return ConsentState(
        {
            Purpose(name): PurposeHistory(
                tuple(ConsentChange(g, t(m), Source.CONSENT_UPDATED) for m, g in changes)
            )
            for name, changes in purposes.items()
        }
    )


@pytest.mark.parametrize(
    ("a", "b", "current"),
    [
        ([(1, True)], [(2, False)], False),
        ([(1, False)], [(2, True)], False),  # the newer grant does not beat the other's denial
        ([(1, True)], [(2, True)], True),
        ([(1, False)], [(2, False)], False),
        ([(1, True)], [], True),  # nothing recorded on one side imposes nothing
        ([], [(1, False)], False),
        ([(1, False), (5, True)], [(3, True)], True),
    ],
)
def test_merge_current_is_the_more_restrictive(
    a: list[tuple[int, bool]], b: list[tuple[int, bool]], current: bool
) -> None:
    sa, sb = _state(analytics=a), _state(analytics=b)
    for merged in (merge_states(sa, sb), merge_states(sb, sa)):
        change = merged.current(A)
        assert change is not None
        assert change.granted is current
    assert merge_states(sa, sb) == merge_states(sb, sa)


def test_merge_history_is_restrictive_at_every_instant() -> None:
    a = _state(ads=[(0, True), (10, False), (20, True)])
    b = _state(ads=[(5, False), (15, True)])
    merged = merge_states(a, b).history(D)
    assert [(c.at, c.granted) for c in merged.changes] == [
        (t(0), True),
        (t(5), False),
        (t(10), False),
        (t(15), False),
        (t(20), True),
    ]
    assert merged.changes[1].source == Source.MERGE  # a granted, b denied
    # an event at minute 17 of the absorbed profile is judged on the merged history
    decision = evaluate(ev(17), ConsentState({D: merged}), POLICY, now=NOW)
    assert decision.denied[D] is Reason.LATE_GRANT


def test_merge_then_evaluate_denies_what_either_side_denied() -> None:
    anonymous = run([ev(1, consent={"marketing": True, "analytics": True})])[1]
    customer = run([upd(0, marketing=False)])[1]
    assert anonymous is not None
    assert customer is not None
    merged = merge_states(anonymous, customer)
    decision = evaluate(ev(2), merged, POLICY, now=NOW)
    assert decision.denied[M] in (Reason.NO_CONSENT, Reason.REVOKED)
    assert A in decision.allowed


def test_merge_with_truncated_side_starts_at_its_window() -> None:
    a = ConsentState(
        {A: PurposeHistory((ConsentChange(True, t(10), Source.EVENT),), truncated=True)}
    )
    b = _state(analytics=[(1, True), (12, True)])
    merged = merge_states(a, b).history(A)
    assert merged.truncated
    assert [c.at for c in merged.changes] == [t(10), t(12)]
    assert not merged.known_at(t(5))


# ---------------------------------------------------------------------------------------------
# Properties: arrival order of consent updates does not matter
# ---------------------------------------------------------------------------------------------

_update = st.tuples(
    st.integers(0, 40),  # minute
    st.sampled_from(list(Purpose)),
    st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(updates=st.lists(_update, max_size=20), data=st.data())
def test_state_does_not_depend_on_arrival_order(
    updates: list[tuple[int, Purpose, bool]], data: st.DataObject
) -> None:
    inputs = [ev(m, consent={p.value: g}, update=True) for m, p, g in updates]
    shuffled = data.draw(st.permutations(inputs))
    _, in_order = run([ev(100), *inputs])
    _, reordered = run([ev(100), *shuffled])
    assert in_order == reordered


@settings(max_examples=100, deadline=None)
@given(updates=st.lists(_update, max_size=30), data=st.data())
def test_current_state_does_not_depend_on_arrival_order_when_bounded(
    updates: list[tuple[int, Purpose, bool]], data: st.DataObject
) -> None:
    policy = ConsentPolicy(max_history=3)
    inputs = [ev(m, consent={p.value: g}, update=True) for m, p, g in updates]
    shuffled = data.draw(st.permutations(inputs))
    _, s1 = run([ev(100), *inputs], policy=policy)
    _, s2 = run([ev(100), *shuffled], policy=policy)
    assert s1 == s2
    assert s1 is not None
    for purpose in (A, P, M, D):
        latest = max(
            (ConsentChange(g, t(m), Source.CONSENT_UPDATED) for m, p, g in updates if p == purpose),
            key=lambda c: c.key,
            default=None,
        )
        assert s1.current(purpose) == latest


@settings(max_examples=100, deadline=None)
@given(
    a=st.lists(st.tuples(st.integers(0, 30), st.booleans()), max_size=6),
    b=st.lists(st.tuples(st.integers(0, 30), st.booleans()), max_size=6),
    probe=st.integers(0, 31),
)
def test_merge_is_commutative_and_restrictive_at_every_instant(
    a: list[tuple[int, bool]], b: list[tuple[int, bool]], probe: int
) -> None:
    sa = run([upd(m, analytics=g) for m, g in a])[1] if a else ConsentState()
    sb = run([upd(m, analytics=g) for m, g in b])[1] if b else ConsentState()
    assert sa is not None
    assert sb is not None
    merged = merge_states(sa, sb)
    assert merged == merge_states(sb, sa)
    values = [
        c.granted for c in (sa.history(A).as_of(t(probe)), sb.history(A).as_of(t(probe))) if c
    ]
    got = merged.history(A).as_of(t(probe))
    if values:
        assert got is not None
        assert got.granted is all(values)
    else:
        assert got is None


# ---------------------------------------------------------------------------------------------
# Purpose gates
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
        },
        P: {"category_affinities", "recent_activity", "preferences"},
        M: {"reachable", "audiences"},
        D: {"ad_identifiers"},
    }
    assert N not in PURPOSE_GATES


def test_gates_are_disjoint_and_gated_fields_unions_them() -> None:
    all_fields = [f for gate in PURPOSE_GATES.values() for f in gate]
    assert len(all_fields) == len(set(all_fields))
    assert gated_fields([M, D]) == {"reachable", "audiences", "ad_identifiers"}
    assert gated_fields([]) == frozenset()
    assert gated_fields([N]) == frozenset()
