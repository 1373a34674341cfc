"""Stage: drop events whose id this lane processed already (in an earlier batch or this one).

The store's load says which of the batch's event ids the lane processed; the commit marks the
fresh ones in the same atomic call as their effects, so a redelivered event changes nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from resolvers.steps import Event, event_id_of

NAME = "dedupe"


def fresh(events: Iterable[Event], seen: Collection[str]) -> tuple[list[Event], list[Event]]:
    """(events to process, duplicates), in batch order."""
    out: list[Event] = []
    duplicates: list[Event] = []
    taken: set[str] = set()
    for event in events:
        event_id = event_id_of(event)
        if event_id in seen or event_id in taken:
            duplicates.append(event)
        else:
            taken.add(event_id)
            out.append(event)
    return out, duplicates
