"""Stage 4: an event carrying any identifier of an erased person loses all its identity.

It still flows on (a POS sale still moves stock) but can never rebuild a profile: not through
the erased identifiers, and not through new ones it carries alongside them.
"""

from __future__ import annotations

from resolvers.batch import BatchState
from resolvers.steps import Event, Ok

NAME = "suppress"


def run(event: Event, state: BatchState) -> Ok:
    if any(h in state.suppressed for h in event.suppression_hashes):
        state.count("suppressed_events")
        return Ok(event.evolve(identifiers=(), suppression_hashes=()))
    # the commit re-checks these: an erasure landing meanwhile makes it conflict
    state.relied_unsuppressed.update(event.suppression_hashes)
    return Ok(event)
