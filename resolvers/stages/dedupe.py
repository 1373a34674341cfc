"""Stage 3: drop events whose id was already processed (in an earlier batch or this one)."""

from __future__ import annotations

from resolvers.batch import BatchState
from resolvers.steps import DUPLICATE, Drop, Event, Ok

NAME = "dedupe"


def run(event: Event, state: BatchState) -> Ok | Drop:
    event_id = event.tp.event_id
    if event_id in state.seen:
        return Drop(event, DUPLICATE)
    state.seen.add(event_id)
    state.processed.append(event_id)
    return Ok(event)
