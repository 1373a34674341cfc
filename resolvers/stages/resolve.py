"""Stage: which profile an event belongs to; creates, extends and merges profiles.

The identity engine (``resolvers.identity``) decides; this stage applies its effects to the
batch state, merges the profiles' aggregates and consent when identities merge, and records
every merge, blocked merge and quarantine on the ``identity.merges`` topic (identifiers as
salted hashes, never raw).
"""

from __future__ import annotations

from resolvers import identity
from resolvers.batch import BatchState, hashed, profile_id_for
from resolvers.steps import Event, Ok

NAME = "resolve"


def run(event: Event, state: BatchState) -> Ok:
    tp = event.tp
    if not event.identifiers:
        return Ok(event)
    created = 0

    def new_profile_id() -> str:
        nonlocal created
        created += 1
        return profile_id_for(tp.event_id, created)

    request = identity.ResolveRequest(tp.event_id, tp.occurred_at, event.identifiers)
    resolution = identity.resolve(
        request, state.identity, state.ctx.rules, new_profile_id=new_profile_id
    )
    identity.apply(state.identity, resolution.effects)
    salt = state.ctx.salt
    topic = state.ctx.topics.merges
    for effect in resolution.effects:
        if isinstance(effect, identity.ProfileCreated):
            state.count("profiles_created")
            state.touch_profile(effect.profile_id)
        elif isinstance(effect, identity.IdentifierLinked):
            state.touch_profile(effect.profile_id)
        elif isinstance(effect, identity.ProfilesMerged):
            _merge(state, effect.survivor, effect.absorbed)
            state.count("merges")
            state.publish(
                topic,
                effect.survivor,
                {
                    "kind": "merged",
                    "survivor": effect.survivor,
                    "absorbed": effect.absorbed,
                    "event_id": effect.evidence.event_id,
                    "rule": effect.evidence.rule,
                    "evidence_types": sorted(
                        {k.partition(":")[0] for k in effect.evidence.identifiers}
                    ),
                    "occurred_at": effect.evidence.occurred_at.isoformat(),
                },
            )
        elif isinstance(effect, identity.MergeBlocked):
            state.count("merges_blocked")
            state.count(f"merges_blocked:{effect.rule}")
            state.publish(
                topic,
                effect.profile_ids[0],
                {
                    "kind": "merge_blocked",
                    "profile_ids": list(effect.profile_ids),
                    "event_id": effect.event_id,
                    "rule": effect.rule,
                    "reason": effect.reason,
                    "dropped": hashed(effect.dropped, salt),
                    "dropped_types": sorted({i.type for i in effect.dropped}),
                },
            )
        elif isinstance(effect, identity.IdentifierQuarantined):
            state.count("quarantined")
            if effect.detached_from is not None:
                state.touch_profile(effect.detached_from)
            state.publish(
                topic,
                effect.detached_from,
                {
                    "kind": "quarantined",
                    "identifier_type": effect.identifier.type,
                    "identifier": hashed([effect.identifier], salt)[0],
                    "reason": effect.reason,
                    "evidence_count": effect.evidence_count,
                    "event_id": tp.event_id,
                },
            )
    if resolution.profile_id is not None:
        state.touch_profile(resolution.profile_id)
    return Ok(event.evolve(profile_id=resolution.profile_id, identifiers=resolution.linked))


def _merge(state: BatchState, survivor: str, absorbed: str) -> None:
    a = state.profile_data(survivor)
    b = state.profiles.pop(absorbed, None)
    state.dirty_profiles.discard(absorbed)
    if b is None:
        return
    state.profiles[survivor] = a.merged_with(b)
