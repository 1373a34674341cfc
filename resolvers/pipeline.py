"""The pipeline, read top to bottom: what happens to a batch of touchpoint records.

Two lanes read every record of the raw topic, each as its own Kafka consumer group, and each
owns its own state (ADR 0002): identity and profiles never read stock, stock never reads a
profile, so nothing needs one transaction across both.

    lane        PREPARE (per record)      STAGES (per batch, on the lane's typed state)
    profiles    parse -> normalize        dedupe -> identity -> facts -> render
    inventory   parse (stock types only)  dedupe -> inventory

Per batch and lane: PREPARE, one store round trip (``load``) for everything the batch can
touch, the STAGES (pure: they return effects, ``resolvers.effects``), then one atomic store
call (``commit``, encoded by ``resolvers.commit_codec``); on a conflict, load again. Event ids
are deduplicated per lane (the store's *scope*).

Every profile is a function of the SET of events, whatever their order, batching,
partitioning or redelivery (ADR 0004): identity is recomputed from the evidence in canonical
order, facts are joins, consent is decided at rendering against the person's whole history.

Input that cannot be decoded becomes a :class:`~resolvers.steps.DeadLetter` in PREPARE and
never stops the batch (the profiles lane reports it; the inventory lane skips it, so each bad
record reaches the DLQ once); a store or broker failure raises, and the caller retries the
batch without committing offsets.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final

from resolvers import claims as claiming
from resolvers import commit_codec, parts
from resolvers.context import Context
from resolvers.decode_cache import DecodeCache
from resolvers.effects import Count, Measure, ProfileWritten
from resolvers.identity.evidence import profile_id_for
from resolvers.inventory import SkuStock
from resolvers.lanes.inventory import InventoryBatch, LaneOutcome
from resolvers.lanes.profiles import ProfilesBatch
from resolvers.lanes.stored_profile import StoredProfile
from resolvers.stages import dedupe, identity, inventory, normalize, parse
from resolvers.steps import DUPLICATE, OK, DeadLetter, Event, Ok, RawRecord, event_id_of
from resolvers.store import (
    MAX_LOAD_PROFILES,
    Commit,
    CommitResult,
    Loaded,
    LoadRequest,
    Ref,
    StateStore,
    identifier_ref,
    profile_ref,
)
from resolvers.tuples import new_tuple
from schemas.bounds import DEFAULT_BOUNDS, InputBounds
from schemas.normalize import DEFAULT, NormalizeConfig, blocked_by_default

#: A lane's batch stages, in order (a test pins them). Each names a module of
#: ``resolvers.stages`` or the lane's own fold (``facts``, ``render``: ``resolvers.profile``).
PROFILES_STAGES: Final = (dedupe.NAME, identity.NAME, "facts", "render")
INVENTORY_STAGES: Final = (dedupe.NAME, inventory.NAME)


@dataclass(frozen=True)
class Lane:
    """One consumer group's pass over the raw topic.

    ``normalizes``: the identifiers of each decoded touchpoint are normalized (and hashed),
    before ``takes``; ``identity``: the lane
    loads identity evidence; ``stock``: it loads stock ledgers. ``types``: the event types it
    decodes (None = all); ``takes``: which decoded events it keeps, with what it computes for
    them once (None = every one, as decoded);
    ``dead_letters``: it reports bad records (to the DLQ). ``decode``: how a record becomes
    an event, when it is not a touchpoint (the routed inventory lane's movement records).
    """

    name: str
    stages: tuple[str, ...]
    normalizes: bool
    identity: bool
    stock: bool
    dead_letters: bool
    types: frozenset[str] | None = None
    takes: Callable[[Event], Event | None] | None = None
    decode: Callable[[RawRecord], Ok | DeadLetter] | None = None


PROFILES: Final = Lane(
    name="profiles",
    stages=PROFILES_STAGES,
    normalizes=True,
    identity=True,
    stock=False,
    dead_letters=True,
)
INVENTORY: Final = Lane(
    name="inventory",
    stages=INVENTORY_STAGES,
    normalizes=False,
    identity=False,
    stock=True,
    dead_letters=False,
    types=inventory.STOCK_TYPES,
    takes=inventory.with_movements,  # e.g. an order event without lines: nothing to do here
)
LANES: Final = {lane.name: lane for lane in (PROFILES, INVENTORY)}
#: The inventory lane fed by the stock-movement topic (``LOOM_INVENTORY_ROUTING=by-sku``,
#: ADR 0014): the same stages, state and processed markers; its records are routed movements,
#: and it dead-letters the ones it cannot decode (no other lane reads that topic).
ROUTED_INVENTORY: Final = replace(
    INVENTORY, types=None, takes=None, dead_letters=True, decode=inventory.decode_routed
)

#: Outcome of a record the inventory lane could not decode (the profiles lane dead-letters it).
INVALID: Final = "invalid"
#: Outcome of a record the profiles lane dead-lettered.
DLQ: Final = "dlq"
#: Every outcome an event can have (``loom_events_total{outcome}``).
OUTCOMES: Final = frozenset(
    {
        OK,
        DUPLICATE,
        DLQ,
        INVALID,
        identity.ERASED,
        identity.NOTHING_TO_ERASE,
        identity.SUPPRESSED,
        identity.UNATTRIBUTED,
    }
)


class CommitConflictError(RuntimeError):
    """The batch conflicted with concurrent writers more often than allowed (retryable)."""


@dataclass
class BatchResult:
    dead_letters: list[DeadLetter] = field(default_factory=list)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (type, outcome)
    counts: Counter[Count] = field(default_factory=Counter)
    attempts: int = 0  # store round trips (load + commit); > 1 after a conflict
    processed: int = 0
    parts: int = 0  # parts sent to the store's commit, over all attempts
    conflicted_parts: int = 0  # parts whose commit conflicted (each computed again)
    recomputed_events: int = 0  # the events of those parts
    deferred_parts: int = 0  # parts another worker held (claims, ADR 0040), loaded again
    deferred_events: int = 0  # the events of those parts
    contested: list[str] = field(default_factory=list)  # what each conflict named (no PII
    # beyond the key: a ref, ``suppressed:<hash>`` or an event id); for ``run_batch(hot=...)``


def _add(result: BatchResult, outcome: LaneOutcome, processed: int) -> None:
    """A committed (or nothing-to-write) part's outcome into the batch's result."""
    result.outcomes.update(outcome.outcomes)
    result.counts.update(outcome.counts)
    result.processed += processed


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
    decoder, types, takes, normalizes = lane.decode, lane.types, lane.takes, lane.normalizes
    floor = None if now is None else parse.earliest_reference(records, now)
    for record in records:
        event: Event | None
        if decoder is not None:
            parsed = decoder(record)
            if isinstance(parsed, DeadLetter):
                dead.append(parsed)
                continue
            event = parsed.event
        else:
            tp = (
                parse.decode(record, max_bytes=max_bytes, now=now, bounds=bounds, floor=floor)
                if types is None
                else parse.decode_if_type(
                    record, types, max_bytes=max_bytes, now=now, bounds=bounds
                )
            )
            if tp is None:
                continue
            # ``type(tp) is``: ``isinstance`` of a touchpoint (a pydantic model) reads its
            # ``__class__`` through ``BaseModel``'s attribute hook (~0.05 µs, CPython 3.11)
            if type(tp) is DeadLetter:
                dead.append(tp)
                continue
            if normalizes:  # each event built once, with its identifiers
                ids, hashes = normalize.identifiers(
                    tp, config=config, salt=salt, default_region=default_region
                )
                event = new_tuple(Event, (record, tp, ids, hashes, None, None))  # in one C call
            else:
                event = Event(record, tp)
        if takes is not None:
            event = takes(event)
            if event is None:
                continue
        events.append(event)
    return events, dead


@dataclass(frozen=True, slots=True)
class Prepared:
    """PREPARE of the first ``count`` of a batch's ``records``, done before its ``run_batch``
    (``run_batch(prepared=...)``, which prepares the rest): a lane's worker prepares its next
    batch while the store waits for Redis on this one (``streams.ahead``, ADR 0038).
    ``prepare`` is a loop over the records, so its results over consecutive slices of a batch
    (:meth:`of` their chunks), concatenated, are its result over the batch."""

    records: Sequence[RawRecord]
    count: int
    events: list[Event]
    dead: list[DeadLetter]

    @classmethod
    def of(
        cls,
        records: Sequence[RawRecord],
        count: int,
        chunks: Iterable[tuple[list[Event], list[DeadLetter]]],
    ) -> Prepared:
        """The chunks' results of ``records[:count]``, in order."""
        events: list[Event] = []
        dead: list[DeadLetter] = []
        for chunk_events, chunk_dead in chunks:
            events += chunk_events
            dead += chunk_dead
        return cls(records, count, events, dead)


def load_request(
    events: Sequence[Event], lane: Lane = PROFILES, profiles: Sequence[str] = ()
) -> LoadRequest:
    identifiers: dict[str, None] = {}
    hashes: dict[str, None] = {}
    candidates: dict[str, None] = dict.fromkeys(profiles)
    # each event's id read once (through the touchpoint model's attribute hook); a stock lane
    # asks for its movements' markers instead
    event_ids = list(map(event_id_of, events)) if lane.identity or not lane.stock else []
    if lane.identity:  # in first-seen order over the events (lists: no generator resumed per item)
        # each ``Identifier.key``, inline (an identifier unpacks as its type and value)
        identifiers = dict.fromkeys([f"{t}:{v}" for e in events for t, v in e.identifiers])
        hashes = dict.fromkeys([h for e in events for h in e.suppression_hashes])
        # the ids a new person of this batch would get: load their versions
        candidates.update(
            dict.fromkeys(
                [
                    profile_id_for(event_id)
                    for e, event_id in zip(events, event_ids, strict=True)
                    if e.identifiers
                ]
            )
        )
    skus: set[str] = set()
    if lane.stock:
        for event in events:
            skus.update(inventory.event_skus(event))
    return LoadRequest(
        identifiers=tuple(identifiers),
        versions=tuple(candidates),
        stocks=tuple(sorted(skus)),
        event_ids=tuple(
            dict.fromkeys(m for e in events for m in inventory.markers(e))
            if lane.stock
            else dict.fromkeys(event_ids)
        ),
        suppression_hashes=tuple(hashes),
        scope=lane.name,
    )


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
    max_parts: int = 1,
    retry_parts: int | None = None,
    hot: Collection[str] = (),
    prepared: Prepared | None = None,
    claims: claiming.Claims | None = None,
) -> BatchResult:
    """Process one batch of ``lane`` end to end against ``store``. Raises on infra errors.

    ``prepared``: PREPARE of the first of these ``records`` done already (:class:`Prepared`,
    its time bound checked at the clock of that moment); the rest is done here.

    The batch is split into up to ``max_parts`` independent parts (``resolvers.parts``; 1 = the
    whole batch, as a worker alone runs) committed in one atomic store call; a part that
    conflicts is loaded and computed again, the others are done.
    ``retry_parts``: the parts of the attempts after a conflict (default ``max_parts``: a
    worker that commits whole batches while alone splits the one that conflicted). ``hot``:
    what recent conflicts named (the caller keeps them from ``BatchResult.contested``): their
    parts are kept small. ``claims``: the lane's other workers are told which parts this one
    computes, and parts they hold wait for them (``resolvers.claims``, ADR 0040); waiting
    rounds do not count against ``max_attempts``."""
    ctx = make_context()
    done = 0
    events: list[Event] = []
    dead: list[DeadLetter] = []
    if prepared is not None:
        if prepared.records is not records:
            raise ValueError("run_batch: prepared is of other records")
        done = prepared.count
        events += prepared.events  # copies: a retry of this call finds them as they were
        dead += prepared.dead
    if done < len(records):
        rest_events, rest_dead = prepare(
            records[done:] if done else records,
            max_bytes=max_bytes,
            config=config,
            salt=ctx.salt,
            default_region=ctx.default_region,
            lane=lane,
            now=ctx.now,
            bounds=bounds,
        )
        events += rest_events
        dead += rest_dead
    unparsed: Counter[tuple[str, str]] = Counter()
    if dead and lane.dead_letters:
        unparsed[("unknown", DLQ)] = len(dead)
    elif dead:  # another lane reports them; counted here, never dead-lettered twice
        unparsed[("unknown", INVALID)], dead = len(dead), []
    if not events and not dead:
        return BatchResult(outcomes=unparsed)  # nothing of this lane's: no round trip
    result = BatchResult(dead_letters=dead, outcomes=unparsed)
    dlq_uncounted = len(dead)  # the stats hash counts them with a committed part
    pending: Sequence[Event] = events
    request = load_request(events, lane)
    # the events' identifiers passed the replay's blocklist if normalized under DEFAULT (a worker
    # prepares ahead under the config it passes here: ``streams.batch_runner``)
    vouch = lane.normalizes and config is DEFAULT
    # profiles a part wrote without having loaded them (ids a new person may get), read by the
    # next load and kept with that part's events
    extra: dict[str, str] = {}  # profile id -> an event id of the part
    # identifier records a part would have written without having loaded them (a profile
    # hash without its field ``i``, written before it existed: ADR 0029's note), likewise
    extra_ids: dict[str, str] = {}  # "type:value" -> an event id of the part
    # profiles a part needs walked that the load did not reach (the holders of an identifier it
    # erased past the ones a load follows: ``LaneOutcome.need``), likewise
    walk: dict[str, str] = {}  # profile id -> an event id of the part
    contested = set(hot)
    rounds = 0  # of them, rounds that deferred a part (claims)
    with _claiming(claims):
        while result.attempts - rounds < max_attempts:
            result.attempts += 1
            attempt = result.attempts
            loaded = store.load(request)
            # the clock read after the load: what it loaded (an audience pass's commit, another
            # worker's) was decided at a clock no later than this one, so a time-dependent
            # audience is never decided again at an older clock (a write after the load fails
            # the commit's compare-and-set and is loaded again)
            ctx = make_context()
            if vouch and ctx.rules.is_blocked is blocked_by_default:
                # the events' identifiers passed the replay's blocklist when normalized: it
                # need not ask it again of the new ones (``schemas.normalize.blocked_by_default``)
                ctx.rules.vouch_unblocked([i for e in pending for i in e.identifiers])
            links = [(eid, profile_ref(pid)) for pid, eid in extra.items()]
            links += [(eid, identifier_ref(key)) for key, eid in extra_ids.items()]
            links += [(eid, profile_ref(pid)) for pid, eid in walk.items()]
            split: Sequence[parts.Part] = parts.split(
                pending,
                loaded,
                identity=lane.identity,
                max_parts=max_parts if attempt == 1 else (retry_parts or max_parts),
                links=links,
                hot=contested,
            )
            waiting: list[Event] = []
            claimed: dict[int, frozenset[int]] = {}  # id(part) -> its hashes
            if claims is not None:
                split, waiting, claimed = _claim(
                    claims, split, result, identity=lane.identity, links=links, rounds=rounds
                )
            ready, again = _compute(
                split,
                lane=lane,
                ctx=ctx,
                loaded=loaded,
                extra=extra,
                extra_ids=extra_ids,
                walk=walk,
                result=result,
                dlq_uncounted=dlq_uncounted,
            )
            replies = _commit(store, ready, claims, claimed)
            dlq_uncounted -= _settle(
                ready, replies, result=result, ctx=ctx, contested=contested, again=again
            )
            if not again and not waiting:
                break
            if waiting:
                rounds += 1
                again.extend(waiting)
                _wait(claims, rounds)
            pending = again
            request = load_request(again, lane)
            request = replace(
                request,
                identifiers=(*request.identifiers, *extra_ids),
                profiles=(*request.profiles, *walk),
                versions=(*request.versions, *extra),
            )
        else:
            raise CommitConflictError(f"batch still conflicting after {max_attempts} attempts")
    return result


@contextlib.contextmanager
def _claiming(claims: claiming.Claims | None) -> Iterator[None]:
    """A batch's claims, begun before its first load and ended however it ends: a batch that
    raises ends them too (what it claimed, and a release a commit that then failed had armed;
    left armed, that release rode this worker's next commit and named it with this batch's
    entities: a review of the twenty-ninth pass)."""
    if claims is None:
        yield
        return
    claims.begin()
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):  # the batch's own error is the one to see
            claims.end()
        raise
    claims.end()


def _wait(claims: claiming.Claims | None, rounds: int) -> None:
    """Before events that waited for other workers are loaded again (only claims make them
    wait)."""
    if claims is not None:
        claims.wait(rounds)


def _commit(
    store: StateStore,
    ready: Sequence[_Ready],
    claims: claiming.Claims | None,
    claimed: Mapping[int, frozenset[int]],
) -> list[CommitResult]:
    """The store's replies to the commit of ``ready`` (nothing to commit: no round trip); a
    claim is released by that commit."""
    if not ready:
        return []
    if claims is not None:
        claims.committing(frozenset().union(*(claimed[id(r.part)] for r in ready)))
    return store.commit_parts([r.commit for r in ready])


def _settle(
    ready: Sequence[_Ready],
    replies: Sequence[CommitResult],
    *,
    result: BatchResult,
    ctx: Context,
    contested: set[str],
    again: list[Event],
) -> int:
    """Each committed part's outcome into ``result``; a conflicted part's events into
    ``again``, what it named into ``contested``. Returns the dead letters counted."""
    result.parts += len(ready)
    counted = 0
    for r, reply in zip(ready, replies, strict=True):
        if reply.ok:
            _add(result, r.outcome, len(r.commit.event_ids))
            counted += r.dlq
            if ctx.cache is not None:
                _remember_written(ctx.cache, r.written)
        else:
            result.conflicted_parts += 1
            result.recomputed_events += len(r.part.events)
            result.contested.append(reply.detail)
            contested.add(reply.detail)
            again.extend(r.part.events)
    return counted


def _claim(
    claims: claiming.Claims,
    split: Sequence[parts.Part],
    result: BatchResult,
    *,
    identity: bool,
    links: Sequence[tuple[str, Ref]],
    rounds: int,
) -> tuple[Sequence[parts.Part], list[Event], dict[int, frozenset[int]]]:
    """Claim what of ``split`` this worker computes now (``resolvers.claims``): the parts to
    compute, the events that wait for other workers, and each part's hashes by its ``id``. A
    part another worker holds is cut into its components, and those it does not hold are
    computed now (as one part); if a commit came after the load that no claim names, every
    part waits (loaded again); after ``MAX_ROUNDS`` deferrals nothing waits."""
    hashes = {id(p): claiming.part_hashes(p) for p in split}
    for _ in range(claiming.ATTEMPTS):
        holding = claims.look()
        if rounds >= claiming.MAX_ROUNDS:
            holding = frozenset()
        if holding is None:  # the load may predate writes no claim names: all of it again
            now: list[parts.Part] = []
            waiting = [e for p in split for e in p.events]
            claimed: dict[int, frozenset[int]] = {}
            deferred = len(split)
        else:
            now, waiting, claimed, deferred = _sort_out(
                split, hashes, holding, identity=identity, links=links
            )
        if claims.hold(frozenset().union(*claimed.values())):
            result.deferred_parts += deferred
            result.deferred_events += len(waiting)
            return now, waiting, claimed
    return split, [], hashes  # unclaimed: the compare-and-set decides


def _sort_out(
    split: Sequence[parts.Part],
    hashes: Mapping[int, frozenset[int]],
    holding: frozenset[int],
    *,
    identity: bool,
    links: Sequence[tuple[str, Ref]],
) -> tuple[list[parts.Part], list[Event], dict[int, frozenset[int]], int]:
    """``split`` against what others hold: the parts to compute now, the events that wait,
    the hashes of each part computed by its ``id``, and how many components wait."""
    now: list[parts.Part] = []
    waiting: list[Event] = []
    claimed: dict[int, frozenset[int]] = {}
    deferred = 0
    for part in split:
        mine = hashes[id(part)]
        if holding.isdisjoint(mine):
            now.append(part)
            claimed[id(part)] = mine
            continue
        free: list[parts.Part] = []
        free_hashes: list[frozenset[int]] = []
        for sub in parts.split(
            part.events, part.loaded, identity=identity, max_parts=len(part.events), links=links
        ):
            sub_hashes = claiming.part_hashes(sub)
            if holding.isdisjoint(sub_hashes):
                free.append(sub)
                free_hashes.append(sub_hashes)
            else:
                deferred += 1
                waiting.extend(sub.events)
        if free:
            whole = parts.merged(part, free)
            now.append(whole)
            claimed[id(whole)] = frozenset().union(*free_hashes)
    return now, waiting, claimed, deferred


@dataclass(frozen=True, slots=True)
class _Ready:
    """A part computed and encoded, to be committed with the batch's others."""

    part: parts.Part
    outcome: LaneOutcome
    commit: Commit
    dlq: int  # dead letters its counters count
    written: list[tuple[Ref, bytes, StoredProfile | SkuStock]]  # ref, stored state, value


def _compute(
    split: Sequence[parts.Part],
    *,
    lane: Lane,
    ctx: Context,
    loaded: Loaded,
    extra: dict[str, str],
    extra_ids: dict[str, str],
    walk: dict[str, str],
    result: BatchResult,
    dlq_uncounted: int,
) -> tuple[list[_Ready], list[Event]]:
    """Run the lane over each part: the parts to commit, and the events of parts that must be
    loaded again (they would write a profile or an identifier record the load did not read,
    with nothing to compare-and-set it against: noted in ``extra`` and ``extra_ids``; or they
    need profiles walked that the load did not reach, ``LaneOutcome.need``: noted in ``walk``,
    each asked once and at most ``MAX_LOAD_PROFILES`` in all, so the batch still ends).
    Parts with nothing to write (all duplicates) go straight into ``result``."""
    ready: list[_Ready] = []
    again: list[Event] = []
    dlq_counted = False
    for part in split:
        outcome = _run_lane(lane, part.loaded, ctx, part.events)
        missing = _unloaded_profiles(outcome, part.loaded.entities)
        if missing:  # read what the load missed, then compute again
            again.extend(part.events)
            extra.update(dict.fromkeys(missing, part.events[0].tp.event_id))
            continue
        need = outcome.need
        if need:  # (rare: an erasure) walk from them, then compute again
            need = [p for p in need if p not in walk][: MAX_LOAD_PROFILES - len(walk)]
            if need:
                again.extend(part.events)
                walk.update(dict.fromkeys(need, part.events[0].tp.event_id))
                continue
        dlq = 0 if dlq_counted else dlq_uncounted
        if dlq:  # the stats hash counts the batch's dead letters with one committed part
            outcome.counts[Count(Measure.DLQ)] += dlq
            dlq_counted = True
        if not outcome.processed and not outcome.effects and not outcome.counts:
            _add(result, outcome, 0)  # all duplicates: nothing to write
            continue
        written: list[tuple[Ref, bytes, StoredProfile | SkuStock]] = []
        unloaded: list[str] = []
        commit = commit_codec.encode(
            versions={ref: e.version for ref, e in part.loaded.entities.items()},
            effects=outcome.effects,
            event_ids=outcome.processed,
            counts=outcome.counts,
            profile_topic=ctx.topics.profile_changes,
            scope=lane.name,
            unsuppressed=[h for h in part.hashes if h not in loaded.suppressed],
            written=written,
            unloaded=unloaded,
        )
        if unloaded:  # identifier records the load did not read: read them, compute again
            again.extend(part.events)
            extra_ids.update(dict.fromkeys(unloaded, part.events[0].tp.event_id))
            dlq_counted = dlq_counted and not dlq  # counted with a part that commits
            continue
        ready.append(_Ready(part, outcome, commit, dlq, written))
    return ready, again


def _run_lane(lane: Lane, loaded: Loaded, ctx: Context, events: Sequence[Event]) -> LaneOutcome:
    if lane.identity:
        return ProfilesBatch.from_loaded(loaded, ctx).run(events)
    return InventoryBatch.from_loaded(loaded, ctx).run(events)


def _remember_written(
    cache: DecodeCache, written: Iterable[tuple[Ref, bytes, StoredProfile | SkuStock]]
) -> None:
    """The profiles and SKU ledgers the batch wrote, decoded, for the next batch's load: the
    stored state is this batch's encoding of exactly these values (``lanes.stored_profile``
    and ``SkuStock.to_dict`` round-trip), so an entity touched again is not parsed again
    while nobody else wrote it."""
    for ref, state, value in written:
        cache.put(ref, state, value)


def _unloaded_profiles(outcome: LaneOutcome, loaded: Mapping[Ref, object]) -> list[str]:
    return [
        e.profile.profile_id
        for e in outcome.effects
        if type(e) is ProfileWritten and profile_ref(e.profile.profile_id) not in loaded
    ]
