"""Stage: an ``erasure_requested`` event forgets the person for good.

The profile(s) its identifiers point to are deleted with their identifiers and merge
redirects; salted hashes of every identifier (the event's and the profile's) join the
suppression set, so late or replayed events cannot rebuild the person. The erasure is
announced: a tombstone on ``profiles.changes`` and a record on the erasure topic. Erasing
someone unknown still suppresses the identifiers named, and is idempotent.
"""

from __future__ import annotations

from resolvers.batch import BatchState
from resolvers.steps import Drop, Event, Ok
from schemas.touchpoint import EventType

NAME = "erase"


def run(event: Event, state: BatchState) -> Ok | Drop:
    tp = event.tp
    if tp.type is not EventType.ERASURE_REQUESTED:
        return Ok(event)
    profile_ids = {
        pid
        for i in event.identifiers
        if (pid := state.identity.identifier(i).profile_id) is not None
    }
    erased = 0
    for pid in sorted(profile_ids):
        ident = state.erase_profile(pid)
        if ident is None:
            continue
        erased += 1
        state.publish(
            state.ctx.topics.erasures,
            pid,
            {
                "profile_id": pid,
                "event_id": tp.event_id,
                "requested_at": tp.occurred_at.isoformat(),
                "identifiers_suppressed": len(ident.all_identifiers()),
                "merged_from": list(ident.merged_from),
            },
        )
    for identifier in event.identifiers:
        state.suppress(identifier)
    state.count("erasures", erased)
    return Drop(event, "erased" if erased else "erasure_nothing_to_erase")
