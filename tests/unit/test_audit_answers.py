"""The consent audit counting and grouping per distinct answer (issue 17's twentieth pass)
writes exactly what it wrote per event (``audit_reference``, main 50cb82b's verbatim): the
same records in the same order (their bytes), the same counts in the same order, for any
batch of people with or without a consent history (before and after the batch), events of
any kind (erasures, transactions, explicit choices, behaviour) with shared or own consents,
placed or not, at times among their histories'.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import audit_reference
import orjson
from consent_worlds import EVENT_CONSENTS, POLICY, REGIONS, history_of, t, worlds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolvers.consent import EMPTY_HISTORY, EventConsent, Gate
from resolvers.effects import Count, Measure, Published
from resolvers.stages import audit
from schemas.touchpoint import EventType, Touchpoint

PEOPLE = ("p0", "p1", "p2", "p3")
#: Behaviour, explicit choices, transactions and erasures (the audit skips those).
TYPES = (
    EventType.PAGE_VIEW,
    EventType.PRODUCT_VIEWED,
    EventType.CONSENT_UPDATED,
    EventType.SIGNUP,
    EventType.ORDER_COMPLETED,
    EventType.ORDER_RETURNED,
    EventType.ERASURE_REQUESTED,
)
NOW = t(600)


@st.composite
def gates_of(draw: st.DrawFn) -> dict[str, Gate]:
    """Some of the people's gates: a history (or none) and a region each."""
    out: dict[str, Gate] = {}
    for pid in draw(st.lists(st.sampled_from(PEOPLE), unique=True)):
        history = history_of(draw(worlds(6, regions=True))) if draw(st.booleans()) else None
        out[pid] = Gate(
            POLICY, EMPTY_HISTORY if history is None else history, draw(st.sampled_from(REGIONS))
        )
    return out


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[Touchpoint], list[EventConsent], list[str | None]]:
    # a few consents shared by many events (as ``observe.event_consent``'s memo shares them)
    shared = draw(st.lists(EVENT_CONSENTS[False] | EVENT_CONSENTS[True], min_size=1, max_size=3))
    tps: list[Touchpoint] = []
    consents: list[EventConsent] = []
    owners: list[str | None] = []
    for i in range(draw(st.integers(0, 24))):
        kind = draw(st.sampled_from(TYPES))
        tps.append(
            Touchpoint.model_construct(
                event_id=f"e{i:02d}",
                type=kind,
                region=draw(st.sampled_from(REGIONS)),
                occurred_at=t(draw(st.integers(0, 12)))
                + timedelta(hours=draw(st.sampled_from((0, 0, 1)))),
            )
        )
        own = draw(
            st.one_of(st.sampled_from(shared), EVENT_CONSENTS[kind is EventType.CONSENT_UPDATED])
        )
        consents.append(own)
        owners.append(draw(st.sampled_from((*PEOPLE, None))))
    return tps, consents, owners


def run(
    module: object,
    batch: tuple[list[Touchpoint], list[EventConsent], list[str | None]],
    before: dict[str, Gate],
    after: dict[str, Gate],
) -> tuple[list[tuple[str, str | None, bytes]], list[tuple[Count, int]]]:
    counts: Counter[Count] = Counter({Count(Measure.CONSENT_PURGED, "ads"): 1})  # counted into
    fresh, consents, owners = batch
    out: list[Published] = module.audit(  # type: ignore[attr-defined]
        fresh,
        consents,
        owners,
        before.get,
        after,
        policy=POLICY,
        topic="consent.audit",
        now=NOW,
        counts=counts,
    )
    return [(p.topic, p.key, orjson.dumps(p.value)) for p in out], list(counts.items())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches(), gates_of(), gates_of())
def test_the_audit_per_answer_writes_and_counts_what_it_did_per_event(
    batch: tuple[list[Touchpoint], list[EventConsent], list[str | None]],
    before: dict[str, Gate],
    after: dict[str, Gate],
) -> None:
    assert run(audit, batch, before, after) == run(audit_reference, batch, before, after)
