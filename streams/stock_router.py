"""The stock router: the raw topic's stock movements, re-keyed by SKU (ADR 0014).

With ``LOOM_INVENTORY_ROUTING=by-sku`` every inventory worker runs two consumers: this router
(consumer group ``<app_id>-inventory-router`` on the raw topic) and the lane's applier (the
inventory lane's group on ``LOOM_TOPIC_STOCK_MOVEMENTS``, :mod:`streams.lane_runner` with the
routed lane). Per batch the router

1. consumes up to ``LOOM_BATCH_SIZE`` raw records (waiting at most :data:`ROUTER_WAIT_S`);
2. decodes and validates them exactly as the direct inventory lane does (``prepare`` with the
   inventory lane: stock types only; records it cannot decode are the profiles lane's to
   dead-letter, as today, and are counted ``invalid`` here) and turns each event into one
   record per SKU it moves (``resolvers.stock_routing``, from the movements ``prepare``
   computed), keyed by the SKU (the v1 contract's validation leaves no movement that cannot
   be built: SKU, location and event id non-empty, quantities in range, timestamps aware);
3. produces them and waits for the broker's acknowledgements (retried with capped backoff
   while Kafka is unavailable; nothing is committed meanwhile);
4. commits the raw offsets (asynchronously, at most every ``LOOM_COMMIT_INTERVAL_S``; again
   synchronously on revoke and close).

At least once: a crash between 3 and 4 routes the records again, and the applier's processed
markers (``<event id> <sku>``) make the copies no-ops. The router writes nothing to Redis but
the raw offsets it commits, kept in ``P:v1:offsets:inventory-router`` (ADR 0045): a partition
its group has no committed offset for any more (Kafka expired it) starts there, or at the
direct lane's offset if that is later (its group's, or where that group has none, the one
the direct lane kept in ``P:v1:offsets:inventory``), not at the topic's first record.

A router starts each partition at the later of its group's committed offset and the
inventory lane's group's on the raw topic (the direct lane's, which commits there only in
``direct`` mode): the first start after switching from ``direct`` has no offset of its own,
and a later switch back to ``by-sku`` has an old one, from before the direct lane applied
what followed (resumed from it, the router routed that again, and once the processed markers
had expired a movement the ledger had compacted was applied twice). So a switch neither
skips nor re-routes the past. A start taken from the lane's group is committed like a routed
batch's offsets.

It runs in a thread of its own (its consumer never waits behind the applier's); a failure it
cannot retry stops it, and the worker's ``/readyz`` then says ``router`` is not ready.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from prometheus_client import Counter as MetricCounter

from resolvers import stock_routing
from resolvers.pipeline import INVALID, INVENTORY, prepare
from resolvers.steps import RawRecord
from schemas.bounds import InputBounds
from schemas.normalize import DEFAULT as NORMALIZE_DEFAULT
from streams import kafka_clients
from streams.backoff import FIRST_BACKOFF_S, Backoff
from streams.batch_runner import span
from streams.dlq import Delivery
from streams.errors import FatalError, RetryableError, classify, kafka_error
from streams.generation import committed_offsets
from streams.kept_offsets import OffsetKeeper, kept_seeds, start_keeping, topic_id
from streams.lane_runner import (
    CONSUMER_CONFIG,
    commit_offsets,
    commit_reported,
    not_a_record,
    raw_record,
)
from streams.offsets import DueOffsets, ProcessedOffsets, next_offsets
from streams.runtime import Runtime
from streams.settings import LoomSettings

log = logging.getLogger(__name__)

#: At most how long the router waits to fill a batch (or ``LOOM_INVENTORY_BATCH_TIMEOUT_S``
#: if shorter): its batches only save produce calls, which the producer's linger batches
#: anyway, and each ms it waits is on the POS sale -> stock visible path. Measured at 1,000
#: events/s (ADR 0014): 2 ms against the lane's 10 ms, POS p50 36-39 against 42-45 ms, for
#: ~+25 µs of inventory worker CPU per event; a backlog fills its batches either way.
ROUTER_WAIT_S: Final = 0.002
#: Times a new assignment's committed offsets are asked for before the router gives up.
ASSIGN_ATTEMPTS: Final = 20
#: The name under which the router group's raw offsets are kept in Redis
#: (``P:v1:offsets:inventory-router``, ADR 0045): apart from the direct inventory lane's, whose
#: raw offsets say what was applied, not what was routed.
ROUTER_KEPT: Final = "inventory-router"


@dataclass
class RoutedBatch:
    """What the router made of one batch (values only)."""

    records: list[tuple[bytes | None, bytes | None, list[tuple[str, str | bytes | None]]]] = field(
        default_factory=list
    )
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (type, outcome)
    #: each record's create time: its raw record's, so the applier's event -> snapshot
    #: histogram measures from the event's arrival, not from the routing
    timestamps: list[int] = field(default_factory=list)


def route_batch(
    records: Sequence[RawRecord], *, max_bytes: int, now: datetime, bounds: InputBounds
) -> RoutedBatch:
    """The movement records of ``records`` (key = SKU) and their outcomes;
    ``now`` and ``bounds`` check the input bounds as the direct lane does."""
    events, invalid = prepare(
        records,
        max_bytes=max_bytes,
        config=NORMALIZE_DEFAULT,
        salt=b"",  # the inventory lane normalizes nothing
        lane=INVENTORY,
        now=now,
        bounds=bounds,
    )
    out = RoutedBatch()
    if invalid:  # the profiles lane dead-letters them (each bad record reaches the DLQ once)
        out.outcomes[("unknown", INVALID)] += len(invalid)
    for event in events:  # prepare kept the events that move stock, their movements computed
        tp = event.tp
        routed = stock_routing.route_per_sku(tp.event_id, tp.type.value, event.stock or {})
        out.records.extend(
            (r.sku.encode(), stock_routing.encode(r), [("loom.event_id", r.event_id)])
            for r in routed
        )
        out.timestamps.extend(event.record.timestamp_ms or 0 for _ in routed)
    return out


class StockRouter:
    """One member of the router group; :meth:`run` (blocking, in its own thread) until
    :meth:`stop`."""

    def __init__(self, rt: Runtime) -> None:
        self.rt, self.settings = rt, rt.settings
        s = self.settings
        self.group = s.router_group_id()
        self.stopping = threading.Event()
        self.failure: str | None = None  # why the router stopped, if it did on its own
        self.consumer = kafka_clients.consumer(
            s,
            self.group,
            **{
                **CONSUMER_CONFIG,
                "client.id": "loom-inventory-router",
                "on_commit": lambda err, tps: commit_reported(self.group, err, tps),
            },
        )
        # its own producer: a batch waits for its movements only; 1 ms linger (a hop on the
        # POS sale -> stock visible path)
        self.producer = kafka_clients.producer(s, **{"linger.ms": 1})
        self.assigned: set[tuple[str, int]] = set()
        self.processed = ProcessedOffsets()
        self._due = DueOffsets(s.commit_interval_s)
        self._seeds: dict[tuple[str, int], int] = {}
        #: the router group's own offsets kept in Redis, for the partitions it had no
        #: committed offset for at the start (``streams.kept_offsets``, ADR 0045), and the
        #: thread that keeps what it commits
        self._kept_seeds: dict[tuple[str, int], int] = {}
        #: the raw offsets the direct inventory lane kept in Redis where its group has none:
        #: a partition the router group has no committed offset for starts there if that is
        #: later than what the router kept (ADR 0045)
        self._direct_kept: dict[tuple[str, int], int] = {}
        self._keeper: OffsetKeeper | None = None
        self.routed = MetricCounter(
            "loom_routed_movements_total",
            "Stock-movement records the router produced (one per event and SKU; ADR 0014).",
            registry=rt.metrics.registry,
        )

    def ready(self) -> bool:
        return self.failure is None and bool(self.assigned)

    def stop(self) -> None:
        self.stopping.set()

    # --- offsets ---------------------------------------------------------------------------
    def _read_seeds(self) -> None:
        """The inventory lane group's committed raw offsets: where a router partition starts
        when its own offset is missing or earlier (module docstring); for the partitions
        the router group has no committed offset for (Kafka expired or deleted it), the ones
        it kept in Redis (ADR 0045), or the ones the direct lane kept where its group has
        none, whichever is later."""
        raw, s = self.settings.topics.raw, self.settings
        lane = kafka_clients.consumer(s, s.group_id("inventory"), **{"enable.auto.commit": False})
        try:
            meta = lane.list_topics(raw, timeout=10).topics[raw]
            if meta.error is not None:
                raise kafka_error(meta.error, "router start")
            got = lane.committed([TopicPartition(raw, p) for p in meta.partitions], timeout=10)
        finally:
            lane.close()
        self._seeds = {(tp.topic, tp.partition): tp.offset for tp in got if tp.offset >= 0}
        raw_id = topic_id(kafka_clients.admin(s), raw)
        # where the lane's group has none (Kafka expired or deleted them), the raw offsets the
        # direct lane kept beside its state (ADR 0045), for a partition the router has no
        # committed offset for (a replay resets the router group's and deletes the lane
        # group's: those kept ones must not hold it back)
        self._direct_kept = kept_seeds(
            s, self.rt.redis, "inventory", raw, topic_id=raw_id, committed=got
        )
        own = committed_offsets(self.consumer, raw, sorted(meta.partitions))
        self._kept_seeds, self._keeper = start_keeping(
            s, self.rt.redis, ROUTER_KEPT, raw, own,
            generation=None,  # the lane's, as Redis holds it at the first write
            keeper=self._keeper, known_id=raw_id,
        )  # fmt: skip

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        seeds, kept = self._seeds, self._kept_seeds
        own = (
            self._committed(consumer, partitions)
            if seeds or kept or self._direct_kept
            else partitions
        )
        start = []
        for tp in own:
            where = (tp.topic, tp.partition)
            # none of its own in Kafka: the one it kept in Redis (once), or the one the direct
            # lane kept if later (ADR 0045); a committed one (a replay's reset) stands
            mine = tp.offset
            if tp.offset < 0:
                mine = max(kept.pop(where, tp.offset), self._direct_kept.get(where, tp.offset))
            seed = seeds.get(where)
            if seed is not None and mine < seed:  # the later (none of its own: negative)
                start.append(TopicPartition(tp.topic, tp.partition, seed))
            elif mine != tp.offset:
                start.append(TopicPartition(tp.topic, tp.partition, mine))
            else:
                start.append(TopicPartition(tp.topic, tp.partition))
        consumer.assign(start)
        # a seeded start is committed as if routed to (the next due commit, or on revoke and
        # close): until a record arrived there it was not, so ``loom lag`` counted the
        # partition's whole history, and a router restarted after the direct group's offsets
        # were deleted began the partition at its earliest offset
        seeded = [tp for tp in start if tp.offset >= 0]
        self.processed.add(seeded)
        self._due.add(seeded)
        self.assigned |= {(p.topic, p.partition) for p in partitions}
        log.info("%s: assigned %s", self.group, sorted(p.partition for p in partitions))

    def _committed(
        self, consumer: Consumer, partitions: list[TopicPartition]
    ) -> list[TopicPartition]:
        """The group's committed offsets of ``partitions``, asked again while the coordinator
        moves (a fresh group's first minutes); the last failure is raised."""
        attempts = 0
        while True:
            try:
                return consumer.committed(partitions, timeout=10)
            except KafkaException as exc:
                attempts += 1
                if attempts >= ASSIGN_ATTEMPTS or self.stopping.wait(FIRST_BACKOFF_S):
                    raise
                log.warning("%s: %s; asking again", self.group, classify(exc).describe())

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(p.topic, p.partition) for p in partitions}
        self._due.forget(revoked)
        taken = self.processed.take(revoked)  # in the callback's thread (lane_runner's reason)
        commit_offsets(self.consumer, self.group, taken, asynchronous=False, in_callback=True)
        if self._keeper is not None:
            self._keeper.keep(taken)
        self.assigned -= revoked

    def _commit(self, offsets: list[TopicPartition], *, asynchronous: bool) -> bool:
        """Commit ``offsets`` to Kafka and keep them in Redis (ADR 0045)."""
        done = commit_offsets(self.consumer, self.group, offsets, asynchronous=asynchronous)
        if self._keeper is not None:
            self._keeper.keep(offsets)
        return done

    def _commit_due(self) -> None:
        self._commit(self._due.take(), asynchronous=True)

    # --- the loop --------------------------------------------------------------------------
    def run(self) -> None:
        s = self.settings
        try:
            self._until_done("start", [], self._read_seeds)
            self.consumer.subscribe(
                [s.topics.raw], on_assign=self._on_assign, on_revoke=self._on_revoke
            )
            wait = min(ROUTER_WAIT_S, s.batch_timeout_for("inventory"))
            while not self.stopping.is_set():
                messages = self.consumer.consume(s.batch_size, wait)
                records = [raw_record(m) for m in messages if not self._failed(m)]
                if not records:
                    self._commit_due()
                    continue
                if not self._route(records):
                    return  # stopping while retrying: nothing of the batch is committed
                offsets = next_offsets(records)
                self.processed.add(offsets)
                self._due.add(offsets)
                self._commit_due()
        except _Stopped as stopped:
            self._fail(stopped.reason)
        except Exception as exc:  # a bug: stop visibly (readiness), never die silently
            self._fail(classify(exc).describe())
        finally:
            self._close()

    def _fail(self, reason: str) -> None:
        self.failure = reason
        log.error("%s: router stopped, nothing more is routed: %s", self.group, reason)

    def _route(self, records: Sequence[RawRecord]) -> bool:
        """Route one batch; False if a stop was requested before it was delivered."""
        rt = self.rt
        routed = route_batch(
            records, max_bytes=self.settings.max_event_bytes, now=rt.clock(), bounds=rt.bounds
        )
        if routed.records:
            delivery = Delivery(
                self.producer,
                self.settings.topics.stock_movements,
                routed.records,
                what="route",
                timestamps=routed.timestamps,
            )
            if not self._until_done("route", records, delivery.attempt):
                return False
            self.routed.inc(len(routed.records))
        for (type_, outcome), n in routed.outcomes.items():
            rt.metrics.count_event(type_, outcome, n)
        return True

    def _until_done(
        self, step: str, records: Sequence[RawRecord], attempt: Callable[[], None]
    ) -> bool:
        """``attempt()`` until it succeeds (True), retryable errors backing off; False when a
        stop is requested meanwhile; anything else stops the router (:class:`_Stopped`)."""
        backoff = Backoff(self.settings.retry_backoff_max_s)
        while True:
            try:
                attempt()
                return True
            except Exception as exc:
                error = classify(exc)
            if not isinstance(error, RetryableError):
                raise _Stopped(f"{step} {span(records)}: {error.describe()}") from None
            delay = backoff.next()
            log.warning(
                "%s: %s %s failed (%s); retrying in %.1f s",
                self.group,
                step,
                span(records),
                error.describe(),
                delay,
            )
            self.rt.metrics.batch_retries.labels(
                lane="inventory", step=step, error=type(error).__name__
            ).inc()
            if self.stopping.wait(delay):
                return False

    def _failed(self, msg: Message) -> bool:
        try:
            return not_a_record(msg, self.group)
        except FatalError as error:
            raise _Stopped(error.describe()) from None

    def _close(self) -> None:
        """Commit what was routed, leave the group, deliver what the producer still holds."""
        if self._commit(self.processed.take(), asynchronous=False):
            self.consumer.close()  # (else it would wait on the commit still under way)
        self.producer.flush(10)
        if self._keeper is not None:
            self._keeper.stop(self.group)


def hand_over(
    settings: LoomSettings, lane: Consumer, generation: str, raw_ends: Mapping[int, int]
) -> list[TopicPartition]:
    """After ``loom rebuild --lane inventory`` (which computes from the raw topic directly)
    of a deployment routed by SKU: the router group continues where the rebuild stopped
    (``raw_ends``), and the inventory lane's group at the end of the stock-movement topic,
    stamped with the rebuild's ``generation`` (every movement there came from a raw record
    the rebuild replayed: the routers were stopped). ``lane``: a consumer of the inventory
    lane's group that never subscribed; no worker may run (the rebuild checked). The lane's
    group's offsets it committed."""
    ends = movement_ends(settings, lane, generation)
    lane.commit(offsets=ends, asynchronous=False)
    router = kafka_clients.consumer(settings, settings.router_group_id())
    try:
        raw = settings.topics.raw
        router.commit(
            offsets=[TopicPartition(raw, p, end) for p, end in sorted(raw_ends.items())],
            asynchronous=False,
        )
    finally:
        router.close()
    return ends


def movement_ends(settings: LoomSettings, lane: Consumer, metadata: str) -> list[TopicPartition]:
    """The stock-movement topic's end offsets, as the inventory lane's group's offsets with
    ``metadata`` (the generation, or a wiping rebuild's ``generation.wiping``: the routed
    lane's start check reads them there)."""
    topic = settings.topics.stock_movements
    meta = lane.list_topics(topic, timeout=10).topics[topic]
    if meta.error is not None:
        raise kafka_error(meta.error, "hand-over")
    return [
        TopicPartition(topic, p, lane.get_watermark_offsets(TopicPartition(topic, p))[1], metadata)
        for p in sorted(meta.partitions)
    ]


class _Stopped(Exception):  # noqa: N818 - a control-flow signal, not an error class
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
