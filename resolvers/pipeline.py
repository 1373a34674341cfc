"""The pipeline, read top to bottom: what happens to a batch of touchpoint records.

Two lanes read every record of the raw topic, each as its own Kafka consumer group, and each
owns its own state (ADR 0002): identity and profiles never read stock, stock never reads a
profile, so nothing needs one transaction across both, and a store's stock does not wait
behind identity work.

    lane        PREPARE (per record)      STAGES (per event, batch state)
    profiles    parse -> normalize        dedupe -> suppress -> erase -> resolve -> consent
                                          -> aggregate
    inventory   parse (stock types only)  dedupe -> inventory

Per batch and lane: PREPARE, one store round trip (``load``) for everything the batch touches,
the STAGES, then one atomic store call (``commit``); on conflict, load again. Event ids are
deduplicated per lane (the store's *scope*).

Each stage returns ``Ok | Drop`` (``resolvers.steps``). Input that cannot be decoded becomes a
:class:`~resolvers.steps.DeadLetter` in PREPARE (``parse``) and never stops the batch (the
profiles lane reports it; the inventory lane skips it, so each bad record reaches the DLQ
once); a store or broker failure raises, and the caller retries the batch without committing
offsets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Protocol

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
from schemas.bounds import DEFAULT_BOUNDS, InputBounds
from schemas.normalize import NormalizeConfig
from schemas.touchpoint import Touchpoint


class Stage(Protocol):
    NAME: str

    def run(self, event: Event, state: BatchState) -> Ok | Drop: ...


@dataclass(frozen=True)
class Lane:
    """One consumer group's pass over the raw topic: the events it takes and its stages.

    ``prepare``: the per-record steps, by name: ``parse`` always, then ``normalize`` if listed
    (identifiers normalized and hashed). ``identity``: the lane loads identity state
    (identifier records, profiles, suppression); ``stock``: it loads stock ledgers.
    ``types``: the event types it decodes (None = all); ``takes``: which decoded events it
    keeps (None = every one); ``dead_letters``: it reports bad records (to the DLQ).
    """

    name: str
    prepare: tuple[str, ...]
    stages: tuple[Stage, ...]
    identity: bool
    stock: bool
    dead_letters: bool
    types: frozenset[str] | None = None
    takes: Callable[[Touchpoint], bool] | None = None


PROFILES: Final = Lane(
    name="profiles",
    prepare=(parse.NAME, normalize.NAME),
    stages=(dedupe, suppress, erase, resolve, consent, aggregate),
    identity=True,
    stock=False,
    dead_letters=True,
)
INVENTORY: Final = Lane(
    name="inventory",
    prepare=(parse.NAME,),
    stages=(dedupe, inventory),
    identity=False,
    stock=True,
    dead_letters=False,
    types=inventory.STOCK_TYPES,
    takes=inventory.moves_stock,  # e.g. an order event without lines: nothing to do here
)
LANES: Final = {lane.name: lane for lane in (PROFILES, INVENTORY)}

#: Outcome of a record the inventory lane could not decode (the profiles lane dead-letters it).
INVALID: Final = "invalid"


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
    lane: Lane = PROFILES,
    now: datetime | None = None,
    bounds: InputBounds = DEFAULT_BOUNDS,
) -> tuple[list[Event], list[DeadLetter]]:
    """The lane's events of ``records``, decoded (and normalized), and the bad records.
    ``now`` (the batch's clock) enables the time bound of ``bounds`` (``schemas.bounds``)."""
    events: list[Event] = []
    dead: list[DeadLetter] = []
    for record in records:
        if lane.types is None:
            parsed: Ok | DeadLetter | None = parse.run(
                record, max_bytes=max_bytes, now=now, bounds=bounds
            )
        else:
            parsed = parse.run_if_type(
                record, lane.types, max_bytes=max_bytes, now=now, bounds=bounds
            )
        if parsed is None:
            continue
        if isinstance(parsed, DeadLetter):
            dead.append(parsed)
            continue
        event = parsed.event
        if lane.takes is not None and not lane.takes(event.tp):
            continue
        if normalize.NAME in lane.prepare:
            event = normalize.run(
                event, config=config, salt=salt, default_region=default_region
            ).event
        events.append(event)
    return events, dead


def load_request(events: Sequence[Event], lane: Lane = PROFILES) -> LoadRequest:
    identifiers: dict[str, None] = {}
    hashes: dict[str, None] = {}
    skus: set[str] = set()
    for event in events:
        if lane.identity:
            identifiers.update(dict.fromkeys(i.key for i in event.identifiers))
            hashes.update(dict.fromkeys(event.suppression_hashes))
        if lane.stock:
            skus |= inventory.skus(event.tp)
    return LoadRequest(
        identifiers=tuple(identifiers),
        stocks=tuple(sorted(skus)),
        event_ids=tuple(dict.fromkeys(e.tp.event_id for e in events)),
        suppression_hashes=tuple(hashes),
        scope=lane.name,
    )


def run_stages(
    events: Sequence[Event], state: BatchState, result: BatchResult, lane: Lane = PROFILES
) -> None:
    for event in events:
        current: Event = event
        for stage in lane.stages:
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
    lane: Lane = PROFILES,
    bounds: InputBounds = DEFAULT_BOUNDS,
) -> BatchResult:
    """Process one batch of ``lane`` end to end against ``store``. Raises on infra errors."""
    ctx = make_context()
    events, dead = prepare(
        records,
        max_bytes=max_bytes,
        config=config,
        salt=ctx.salt,
        default_region=ctx.default_region,
        lane=lane,
        now=ctx.now,
        bounds=bounds,
    )
    unparsed: Counter[tuple[str, str]] = Counter()
    if dead and lane.dead_letters:
        unparsed[("unknown", "dlq")] = len(dead)
    elif dead:  # another lane reports them; counted here, never dead-lettered twice
        unparsed[("unknown", INVALID)], dead = len(dead), []
    if not events and not dead:
        return BatchResult(outcomes=unparsed)  # nothing of this lane's: no round trip
    request = load_request(events, lane)
    for attempt in range(1, max_attempts + 1):
        result = BatchResult(dead_letters=dead, attempts=attempt, outcomes=Counter(unparsed))
        # the load also returns the records of every identifier a loaded profile holds,
        # which a merge re-points (see resolvers.store.HELD_FIELD)
        state = BatchState.from_loaded(store.load(request), ctx)
        run_stages(events, state, result, lane)
        if dead:
            state.count("dlq", len(dead))
        commit = state.to_commit(scope=lane.name)
        if not commit.event_ids and not commit.writes and not commit.counters:
            return result
        if store.commit(commit).ok:
            result.counters = state.counters
            result.processed = len(commit.event_ids)
            return result
        ctx = make_context()
    raise CommitConflictError(f"batch still conflicting after {max_attempts} attempts")
