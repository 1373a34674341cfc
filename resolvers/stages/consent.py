"""Stage: which purposes the event may serve; records consent changes; purges on revocation.

Never fails open: the policy (``resolvers.consent``) denies whatever it cannot establish as
granted. A revocation purges the purpose's data from the profile in this same batch commit.
Every denial and purge is counted and audited on ``consent.audit``: one record per event that
had any, listing each purpose's decision, reason and source, with the event id, profile id and
policy version (no identifiers or traits). Allowed purposes are not audited.
"""

from __future__ import annotations

from resolvers import consent as policy
from resolvers import profile
from resolvers.batch import BatchState
from resolvers.steps import Event, Ok
from schemas.touchpoint import EventType, Touchpoint

NAME = "consent"


def consent_input(tp: Touchpoint) -> policy.ConsentInput:
    own = None
    if tp.consent is not None:
        own = {k: v for k, v in tp.consent.model_dump(exclude_none=True).items()}
    signals = None
    if tp.consent_signals is not None:
        signals = tp.consent_signals.model_dump(exclude_none=True)
    return policy.ConsentInput(
        event_id=tp.event_id,
        occurred_at=tp.occurred_at,
        region=tp.region,
        consent=own,
        gpc=bool(tp.gpc),
        signals=signals or None,
        is_consent_update=tp.type is EventType.CONSENT_UPDATED,
    )


def run(event: Event, state: BatchState) -> Ok:
    tp = event.tp
    pid = event.profile_id
    data = state.profile_data(pid) if pid is not None else None
    decision = policy.evaluate(
        consent_input(tp),
        data.consent if data is not None else None,
        state.ctx.policy,
        now=state.ctx.now,
    )
    if data is not None and pid is not None:
        data.consent = decision.new_state
        data.observe_region(tp.region, tp.occurred_at)
        for purpose in sorted(decision.revoked):
            data.aggregate = profile.purge(data.aggregate, purpose.value)
            state.count(f"consent_purged:{purpose.value}")
        state.touch_profile(pid)
    for purpose, reason in sorted(decision.denied.items()):
        state.count(f"consent_denied:{purpose.value}:{reason}")
    redactions = [r for r in decision.audit if r.decision is not policy.Decision.ALLOW]
    if redactions:
        first = redactions[0]
        state.publish(
            state.ctx.topics.consent_audit,
            pid,
            {
                "event_id": tp.event_id,
                "profile_id": pid,
                "policy_version": first.policy_version,
                "decided_at": first.decided_at.isoformat(),
                "decisions": [
                    {
                        "purpose": r.purpose.value,
                        "decision": r.decision.value,
                        "reason": r.reason.value,
                        "source": r.source,
                    }
                    for r in redactions
                ],
            },
        )
    return Ok(event.evolve(purposes=frozenset(p.value for p in decision.allowed)))
