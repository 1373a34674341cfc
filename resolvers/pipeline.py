"""The pipeline, read top to bottom: what happens to a batch of touchpoint records.

    PREPARE (per record, no state)     parse -> normalize
    load                               one store round trip for everything the batch touches
    STAGES (per event, batch state)    dedupe -> suppress -> erase -> resolve -> consent
                                       -> aggregate -> inventory
    commit                             one atomic store call; on conflict, load again

Each stage returns ``Ok | Drop | DeadLetter`` (``resolvers.steps``). Bad input becomes a
:class:`~resolvers.steps.DeadLetter` and never stops the batch; a store or broker failure
raises, and the caller retries the batch without committing offsets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from resolvers.batch import BatchState, Context
from resolvers.stages import (
    aggregate,
    consent,
    dedupe,
    erase,
    inventory,
    normalize,
    parse,
    resolve,
    suppress,
)
from resolvers.steps import DeadLetter, Drop, Event, Ok, RawRecord
from resolvers.store import LoadRequest, StateStore
from schemas.normalize import NormalizeConfig


class Stage(Protocol):
    NAME: str

    def run(self, event: Event, state: BatchState) -> Ok | Drop: ...


PREPARE: tuple[str, ...] = (parse.NAME, normalize.NAME)
STAGES: tuple[Stage, ...] = (dedupe, suppress, erase, resolve, consent, aggregate, inventory)


class CommitConflictError(RuntimeError):
    """The batch conflicted with concurrent writers more often than allowed (retryable)."""


@dataclass
class BatchResult:
    dead_letters: list[DeadLetter] = field(default_factory=list)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (type, outcome)
    counters: Counter[str] = field(default_factory=Counter)
    attempts: int = 0
    processed: int = 0


def prepare(
    records: Sequence[RawRecord],
    *,
    max_bytes: int,
    config: NormalizeConfig,
    salt: bytes,
    default_region: str | None = None,
) -> tuple[list[Event], list[DeadLetter]]:
    events: list[Event] = []
    dead: list[DeadLetter] = []
    for record in records:
        parsed = parse.run(record, max_bytes=max_bytes)
        if isinstance(parsed, DeadLetter):
            dead.append(parsed)
            continue
        ok = normalize.run(parsed.event, config=config, salt=salt, default_region=default_region)
        events.append(ok.event)
    return events, dead


def load_request(events: Sequence[Event]) -> LoadRequest:
    identifiers: dict[str, None] = {}
    hashes: dict[str, None] = {}
    skus: set[str] = set()
    for event in events:
        identifiers.update(dict.fromkeys(i.key for i in event.identifiers))
        hashes.update(dict.fromkeys(event.suppression_hashes))
        skus |= inventory.skus(event.tp)
    return LoadRequest(
        identifiers=tuple(identifiers),
        stocks=tuple(sorted(skus)),
        event_ids=tuple(dict.fromkeys(e.tp.event_id for e in events)),
        suppression_hashes=tuple(hashes),
    )


def run_stages(events: Sequence[Event], state: BatchState, result: BatchResult) -> None:
    for event in events:
        current: Event = event
        for stage in STAGES:
            step = stage.run(current, state)
            if isinstance(step, Drop):
                result.outcomes[(event.tp.type.value, step.reason)] += 1
                break
            current = step.event
        else:
            result.outcomes[(event.tp.type.value, "ok")] += 1


def run_batch(
    records: Sequence[RawRecord],
    store: StateStore,
    make_context: Callable[[], Context],
    *,
    max_bytes: int,
    config: NormalizeConfig,
    max_attempts: int = 20,
) -> BatchResult:
    """Process one batch end to end against ``store``. Raises on infrastructure errors."""
    ctx = make_context()
    events, dead = prepare(
        records,
        max_bytes=max_bytes,
        config=config,
        salt=ctx.salt,
        default_region=ctx.default_region,
    )
    request = load_request(events)
    for attempt in range(1, max_attempts + 1):
        result = BatchResult(dead_letters=dead, attempts=attempt)
        for _ in dead:
            result.outcomes[("unknown", "dlq")] += 1
        # the load also returns the records of every identifier a loaded profile holds,
        # which a merge re-points (see resolvers.store.HELD_FIELD)
        state = BatchState.from_loaded(store.load(request), ctx)
        run_stages(events, state, result)
        if dead:
            state.count("dlq", len(dead))
        commit = state.to_commit()
        if not commit.event_ids and not commit.writes and not commit.counters:
            return result
        if store.commit(commit).ok:
            result.counters = state.counters
            result.processed = len(commit.event_ids)
            return result
        ctx = make_context()
    raise CommitConflictError(f"batch still conflicting after {max_attempts} attempts")
