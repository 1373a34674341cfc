"""A lane's worker: librdkafka's batch consumer, one commit protocol, health, SIGTERM.

Both lanes (profiles and inventory, two consumer groups on the raw topic; ADR 0002) run this
loop; ADR 0006 records why it is librdkafka's consumer and not a faust agent. The commit
protocol, per batch:

1. ``consume``    up to ``LOOM_BATCH_SIZE`` records, waiting at most the lane's batch timeout
                  (``LOOM_BATCH_TIMEOUT_S`` profiles, ``LOOM_INVENTORY_BATCH_TIMEOUT_S``
                  inventory), or not at all when the previous batch took longer than that
                  to apply (:func:`fill_wait`); librdkafka returns as soon as the batch is
                  full. With ``LOOM_WORK_AHEAD`` (the default) the next batch's records are
                  consumed, and prepared, while Redis answers this batch's round trips
                  (:mod:`streams.ahead`, ADR 0038): the loop takes them, topped up to a
                  batch by a ``consume`` that waits as above.
2. apply          ``run_batch``: the lane's pure pipeline and ONE atomic Redis commit (every
                  effect, the event-id markers and the outbox records; idempotent by event id,
                  so a redelivered batch changes nothing).
3. dead letters   the batch's dead letters produced to the DLQ and acknowledged (flush).
4. offsets        committed, asynchronously, with the Redis generation as commit metadata, at
                  most every ``LOOM_COMMIT_INTERVAL_S`` (a later turn commits what waits);
                  remembered per partition and committed again synchronously when partitions
                  are revoked (a rebalance, inside ``consume``, between batches) and on close.

Failures (:mod:`streams.batch_runner`, :mod:`streams.errors`): a retryable error repeats the
failed step with backoff and commits nothing meanwhile; any other error stops the lane
without committing the batch: the consumer leaves the group, committing only the offsets of
batches that completed, the lane reports ``stopped`` on ``/readyz`` and in
``loom_lane_state``, and the process stays up until it is told to stop, so the reason stays
visible. A crash anywhere redelivers from the last committed offset: nothing is lost, and the
event-id markers make the replayed part a no-op.

SIGTERM/SIGINT: the loop stops taking batches; a batch being applied finishes (a batch waiting
to retry is abandoned, uncommitted), the completed batches' offsets are committed, the consumer
leaves the group and the process exits 0.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from resolvers.pipeline import Prepared
from resolvers.steps import RawRecord
from resolvers.tuples import new_tuple
from streams import audience_schedule, kafka_clients
from streams.ahead import STEPS, WorkAhead
from streams.batch_runner import BatchAbandoned, BatchRunner, LaneStopped
from streams.errors import FatalError, RebuildRunningError, classify, kafka_error
from streams.gc_policy import GcPolicy
from streams.generation import (
    Committed,
    committed_offsets,
    establish,
    recovery_hint,
    refuse_during_rebuild,
)
from streams.health import Check, HealthServer
from streams.kept_offsets import OffsetKeeper, start_keeping
from streams.lane_status import LaneState, LaneStatus, StopReason
from streams.offsets import DueOffsets, ProcessedOffsets, commit_within, next_offsets
from streams.redis_keys import Keys
from streams.redis_store import RedisStore
from streams.relay import OutboxGauges, RelaySupervisor
from streams.runtime import Runtime

if TYPE_CHECKING:
    from streams.stock_router import StockRouter

log = logging.getLogger(__name__)


def raw_record(msg: Message) -> RawRecord:
    """Once per consumed record (:func:`raw_records` of one)."""
    return raw_records((msg,))[0]


def raw_records(messages: Iterable[Message]) -> list[RawRecord]:
    """Once per batch: each consumed record (not an error event) as a :class:`RawRecord`,
    its fields positional (value, key, topic, partition, offset, timestamp_ms, headers), its
    headers a dict of bytes (issue 17: a loop without a call per record, and the headers'
    conversion remembered per distinct list: every touchpoint carries the same schema header)."""
    out: list[RawRecord] = []
    add = out.append
    known = _known_headers
    for msg in messages:
        _kind, ts = msg.timestamp()
        raw_headers = msg.headers()  # consumed records carry a list of (name, bytes), or None
        headers: dict[str, bytes] = {}
        if raw_headers:
            if type(raw_headers) is list:  # a dict of its own per record, as before
                headers = known(tuple(raw_headers)).copy()
            else:
                headers = _header_bytes(raw_headers)
        # ``RawRecord(value, key, topic, partition, offset, timestamp_ms, headers)``: every
        # field, in order, in one C call (``resolvers.tuples``)
        add(
            new_tuple(
                RawRecord,
                (
                    msg.value(),
                    msg.key(),
                    msg.topic() or "",
                    msg.partition() or 0,
                    msg.offset() or 0,
                    ts if ts > 0 else None,
                    headers,
                ),
            )
        )
    return out


#: How many distinct header lists :func:`raw_records` remembers.
_HEADERS_MAX: Final = 256


@functools.lru_cache(maxsize=_HEADERS_MAX)
def _known_headers(pairs: tuple[tuple[str, Any], ...]) -> dict[str, bytes]:
    """Headers as consumed (a tuple of the list's pairs) -> as a RawRecord holds them (shared:
    callers copy it)."""
    return _header_bytes(pairs)


def _header_bytes(raw: Iterable[tuple[str, Any]] | dict[str, Any]) -> dict[str, bytes]:
    """Header values as bytes (a ``str`` encoded, ``None`` empty)."""
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {k: v.encode() if isinstance(v, str) else (v or b"") for k, v in pairs}


def fill_wait(batch_timeout_s: float, since_last_s: float) -> float:
    """How long ``consume`` may wait for a batch to fill, ``since_last_s`` after the previous
    ``consume`` returned: the lane's batch timeout, or nothing when the lane is behind (the
    previous batch took at least the timeout to apply: the records that arrived meanwhile have
    waited that long already). librdkafka's ``consume`` waits its whole timeout unless the batch
    fills, so a lane that always waited made the records of its slowest batches wait a batch
    timeout more on top (issue 17.4: at 1,000 events/s the profiles lane's batches took 50 ms
    to consume plus 25-95 ms to apply, and the events of the slowest waited both). A lane that
    keeps up still takes one batch per batch timeout plus its apply (as many batches as
    before, so no more CPU per event); a full batch (a backlog, saturation) returns at once
    either way."""
    return 0.0 if since_last_s >= batch_timeout_s else batch_timeout_s


#: How a lane (and the stock router, ADR 0014) consumes: commits by itself, from the earliest.
CONSUMER_CONFIG: Final = {
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "enable.partition.eof": False,
    # a crashed member's partitions move after 10 s, not librdkafka's default 45 s
    "session.timeout.ms": 10_000,
    "heartbeat.interval.ms": 3_000,
    # prefetch at most 16 MiB (librdkafka's default 64 MiB is RSS for nothing)
    "queued.max.messages.kbytes": 16_384,
}


def not_a_record(msg: Message, group: str) -> bool:
    """Whether ``msg`` is an error event rather than a record (logged: librdkafka retries by
    itself); raises the :class:`FatalError` of a fatal one."""
    err = msg.error()
    if err is None:
        return False
    if err.code() == KafkaError._PARTITION_EOF:
        return True
    error = kafka_error(err, "consume")
    if isinstance(error, FatalError):
        raise error
    log.warning("%s: %s", group, error.describe())
    return True


def commit_reported(group: str, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
    """Log a failed commit librdkafka reports (asynchronous ones fail only there)."""
    failed = sorted(p.partition for p in partitions if p.error is not None)
    if err is not None or failed:
        log.warning(
            "%s: offset commit failed (%s, partitions %s); the records will be redelivered "
            "unless a later commit succeeds",
            group,
            err,
            failed,
        )


#: How long the synchronous offsets commit on close is waited for: librdkafka's has no
#: bound, and one under way while a broker stalled never returned (``commit_within``). Under
#: ``LOOM_SHUTDOWN_TIMEOUT_S``'s default (25 s), so a close says why it gave up. The commit in
#: a revoke callback is not bounded so: made from another thread while the consuming thread is
#: inside the callback, librdkafka's commit did not return (CI, ``test_rebalance_e2e``: 20 s
#: and the partitions' offsets never committed); it runs in the callback, as librdkafka asks.
#: A broker frozen for 70 s as the callback starts holds it that long, not for good: the lane
#: goes on once the broker answers (the chaos tier's
#: ``test_a_broker_frozen_during_a_rebalance_callback_holds_the_lane_only_while_it_is_frozen``).
SYNC_COMMIT_TIMEOUT_S: Final = 20.0


def commit_offsets(
    consumer: Consumer,
    group: str,
    offsets: list[TopicPartition],
    *,
    asynchronous: bool,
    in_callback: bool = False,
) -> bool:
    """Commit ``offsets`` of records already applied: a failure is logged, never raised (a
    redelivery of them is a no-op). A synchronous commit outside a rebalance callback is
    waited for :data:`SYNC_COMMIT_TIMEOUT_S` at most; False if it had not returned by then
    (it may still be under way: the consumer's ``close`` would wait on it), else True.
    ``in_callback``: made in a rebalance callback, in its thread, unbounded."""
    if not offsets:
        return True
    timeout_s = SYNC_COMMIT_TIMEOUT_S  # read at the call (tests lower it)
    try:
        if asynchronous:
            consumer.commit(offsets=offsets, asynchronous=True)
        elif in_callback:
            done = consumer.commit(offsets=offsets, asynchronous=False)
            commit_reported(group, None, list(done or []))  # per-partition errors, if any
        else:
            done = commit_within(consumer, offsets, timeout_s)
            commit_reported(group, None, done)  # per-partition errors, if any
    except TimeoutError:
        log.warning(
            "%s: offset commit of partitions %s did not return within %g s (a broker that "
            "stalled); going on without it: their records after the last commit will be "
            "redelivered, a no-op for those already applied",
            group,
            sorted(tp.partition for tp in offsets),
            timeout_s,
        )
        return False
    except Exception as exc:
        log.warning(
            "%s: offset commit failed (%s); records will be redelivered",
            group,
            classify(exc).describe(),
        )
    return True


class LaneRunner:
    """One lane's member of its consumer group; ``await run()`` until :meth:`stop`."""

    def __init__(
        self, rt: Runtime, *, status: LaneStatus | None = None, topic: str | None = None
    ) -> None:
        self.rt, self.settings = rt, rt.settings
        self.lane = rt.lane.name
        #: what the lane consumes: the raw topic, or the stock-movement topic (ADR 0014)
        self.topic = topic or rt.settings.topics.raw
        self.group = self.settings.group_id(self.lane)
        self.batch_timeout_s = self.settings.batch_timeout_for(self.lane)
        self.status = status or LaneStatus(
            stuck_after_s=self.settings.stuck_after_s, on_change=self._state_changed
        )
        self.stopping = asyncio.Event()
        self.generation = ""  # commit metadata: the Redis generation (streams.generation)
        self.consumer = kafka_clients.consumer(
            self.settings,
            self.group,
            **{
                **CONSUMER_CONFIG,
                "client.id": f"loom-{self.lane}",
                "on_commit": self._on_commit,
                **self._fetch_config(),
            },
        )
        self.assigned: set[tuple[str, int]] = set()
        self.processed = ProcessedOffsets()
        self.batches = BatchRunner(rt, self.status, self.stopping)
        #: the topic's partitions (read at start and after each assignment: a topic that grows
        #: rebalances its groups): fewer assigned = other workers share the lane
        self.partitions = 0
        self._recount = False  # an assignment since the count (counted after its consume)
        self.batches.shared = lambda: 0 < len(self.assigned) < self.partitions
        #: the next batch, consumed and prepared while the store waits for Redis (ADR 0038);
        #: the store runs it in the waits of its round trips (``streams.ahead``)
        self.ahead: WorkAhead | None = None
        if self.settings.work_ahead:
            self.ahead = WorkAhead(self._consume_ahead, self.batches.prepare)
            if isinstance(rt.store, RedisStore):  # a store without round trips has no waits
                rt.store.work_meanwhile(self.ahead)
        #: partitions revoked or lost while the batch was in flight (a rebalance in a
        #: ``consume`` ahead): its offsets of them are not committed (``streams.ahead``)
        self._gone: set[tuple[str, int]] = set()
        consumed, prepared = (rt.metrics.lane_ahead.labels(lane=self.lane, step=s) for s in STEPS)
        self._ahead_consumed, self._ahead_prepared = consumed, prepared
        self._returned = time.monotonic()  # when the loop's last consume returned
        self._busy = rt.metrics.lane_busy.labels(lane=self.lane)
        #: the decode cache's hits and misses the metrics have counted
        self._cache_counted = (rt.decode_cache.hits, rt.decode_cache.misses)
        #: the outbox relay, woken after each batch; None with ``LOOM_WORKER_RELAY=false``:
        #: ``loom relay`` processes deliver the outbox (ADR 0039)
        self.relay: RelaySupervisor | None = None
        if self.settings.worker_relay:
            self.relay = RelaySupervisor(
                rt.new_relay,
                rt.metrics.relay,
                backoff_max_s=self.settings.retry_backoff_max_s,
                failing_after_s=self.settings.stuck_after_s,
                min_interval_s=self.settings.relay_interval_s,
            )
        #: without a relay, the outbox's backlog is still exported (its alerts), every second
        self.outbox_gauges: OutboxGauges | None = None
        if self.relay is None:
            outbox_key = Keys(self.settings.redis_prefix).outbox
            self.outbox_gauges = OutboxGauges(rt.redis, outbox_key, rt.metrics.relay)
        self._relay_wakeup = asyncio.Event()
        #: offsets processed but not committed yet
        self._due = DueOffsets(self.settings.commit_interval_s)
        #: the committed offsets kept beside the lane's state, and where the partitions the
        #: group had no committed offset for at the start begin (``streams.kept_offsets``);
        #: both known once the start check passed
        self._kept: OffsetKeeper | None = None
        self._seeds: dict[tuple[str, int], int] = {}
        self.gc = GcPolicy(
            self.settings.gc_full_interval_s,
            on_full=lambda _collected, seconds: rt.metrics.gc_full_collection.observe(seconds),
        )

    def _fetch_config(self) -> dict[str, int]:
        """With ``LOOM_FETCH_MIN_BYTES`` > 1 the broker holds a fetch until it has that many
        bytes or the lane's batch timeout passed (fewer, fuller fetches: ADR 0012); at the
        default (1) it answers as soon as a record arrives, which the latency targets need
        (the hold added ~10 ms to the POS sale p50 and doubled its p99)."""
        min_bytes = self.settings.fetch_min_bytes
        if min_bytes <= 1:
            return {"fetch.min.bytes": 1}
        return {
            "fetch.min.bytes": min_bytes,
            "fetch.wait.max.ms": max(1, round(self.batch_timeout_s * 1000)),
        }

    def _state_changed(self, old: LaneState, new: LaneState) -> None:
        gauge = self.rt.metrics.lane_state
        gauge.labels(lane=self.lane, state=old.value).set(0)
        gauge.labels(lane=self.lane, state=new.value).set(1)

    # --- rebalance callbacks (run inside consume() or close(), in the consuming thread) ----
    # They never call the consumer's blocking methods (list_topics, poll, consume...):
    # confluent-kafka clears its per-thread call state when such a call returns, and the next
    # callback librdkafka serves in the same outer call (a log line, an error) then aborts the
    # process (CallState_get's assert; tests/e2e/test_rebalance_e2e.py). commit() is safe: it
    # releases the GIL without that state.
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._seeds:
            self._seed(consumer, partitions)
        self.assigned |= {(p.topic, p.partition) for p in partitions}
        self._recount = True  # the topic's partitions: asked once consume() returned
        log.info("%s: assigned %s", self.group, sorted(p.partition for p in partitions))

    def _consume_messages(self, n: int, wait: float) -> list[Message]:
        """``consume``, then what its rebalance callbacks left to do (the consuming thread)."""
        messages = self.consumer.consume(n, wait)
        if self._recount:
            self._recount = False
            self.partitions = self._partition_count()
        return messages

    def _partition_count(self) -> int:
        """The topic's partitions now; without an answer from the broker (2 s), what was known,
        and at least one more than the highest assigned."""
        known = max(self.partitions, 1 + max((p for _, p in self.assigned), default=-1))
        try:
            meta = self.consumer.list_topics(self.topic, timeout=2).topics.get(self.topic)
        except KafkaException:
            return known
        return known if meta is None or meta.error is not None else len(meta.partitions)

    def _seed(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Start each of ``partitions`` the group had no committed offset for at this worker's
        start, and still has none, at the offset kept in Redis (once: a later assignment finds
        the group's own), and commit it as if processed there (``streams.kept_offsets``). The
        group is asked again here: another worker may have been given the partition first and
        committed a later offset since (``committed`` is safe in a callback: no call state)."""
        seeds, start, seeded = self._seeds, [], []
        mine = [tp for tp in partitions if (tp.topic, tp.partition) in seeds]
        if not mine:
            return
        try:
            now = consumer.committed([TopicPartition(tp.topic, tp.partition) for tp in mine], 10)
        except KafkaException as exc:  # seeded as read at the start: read again at most
            log.warning("%s: committed offsets not read (%s); seeding as found at the start",
                        self.group, classify(exc).describe())  # fmt: skip
            now = []
        for tp in now:
            if tp.error is None and tp.offset >= 0:  # the group's own offset wins
                seeds.pop((tp.topic, tp.partition), None)
        for tp in partitions:
            offset = seeds.pop((tp.topic, tp.partition), None)
            if offset is None:
                start.append(TopicPartition(tp.topic, tp.partition))
            else:
                tp_at = TopicPartition(tp.topic, tp.partition, offset, metadata=self.generation)
                start.append(tp_at)
                seeded.append(tp_at)
        if not seeded:
            return
        consumer.assign(start)
        self.processed.add(seeded)
        self._due.add(seeded)
        log.warning(
            "%s: no committed offset for partitions %s (expired or deleted): they start at "
            "the offsets kept with the lane's state in Redis, %s",
            self.group,
            [tp.partition for tp in seeded],
            [tp.offset for tp in seeded],
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(p.topic, p.partition) for p in partitions}
        self._taken_away(revoked)
        self._due.forget(revoked)
        taken = self.processed.take(revoked)  # in the callback's thread (SYNC_COMMIT_TIMEOUT_S)
        commit_offsets(self.consumer, self.group, taken, asynchronous=False, in_callback=True)
        self._keep(taken)
        self.assigned -= revoked
        log.info("%s: revoked %s", self.group, sorted(p.partition for p in partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = {(p.topic, p.partition) for p in partitions}
        self._taken_away(lost)
        self._due.forget(lost)
        self.processed.take(lost)  # another member owns them: committing would fail
        self.assigned -= lost
        log.warning("%s: lost %s (session expired)", self.group, sorted(p for _, p in lost))

    def _taken_away(self, partitions: set[tuple[str, int]]) -> None:
        """A rebalance took ``partitions`` away: no record of theirs ahead is run, and the batch
        in flight commits none of their offsets (their records are read again from the
        committed offset: a no-op for those already applied)."""
        self._gone |= partitions
        if self.ahead is not None:
            self.ahead.forget(partitions)

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's report of a commit (asynchronous ones fail only here, not by raising)."""
        commit_reported(self.group, err, partitions)

    def _batch_done(self, records: Sequence[RawRecord]) -> None:
        """After ``records`` were applied and dead-lettered: their next offsets are due for
        the next commit (:meth:`_commit_due`)."""
        offsets = next_offsets(records, self.generation)
        if self._gone:  # taken away while the batch was in flight: read again from the last commit
            offsets = [tp for tp in offsets if (tp.topic, tp.partition) not in self._gone]
        self.processed.add(offsets)
        self._due.add(offsets)
        self._commit_due()

    def _commit_due(self) -> None:
        """Commit the due offsets, asynchronously, at most every ``LOOM_COMMIT_INTERVAL_S``
        (:class:`~streams.offsets.DueOffsets`); what waits is committed on a later turn of
        the loop, on revoke and on close."""
        self._commit(self._due.take(), asynchronous=True)

    def _commit(self, offsets: list[TopicPartition], *, asynchronous: bool) -> bool:
        """Commit ``offsets`` to Kafka and keep them in Redis (``streams.kept_offsets``)."""
        done = commit_offsets(self.consumer, self.group, offsets, asynchronous=asynchronous)
        self._keep(offsets)
        return done

    def _keep(self, offsets: list[TopicPartition]) -> None:
        if self._kept is not None:
            self._kept.keep(offsets)

    # --- the loop --------------------------------------------------------------------------
    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        """Consume and process until :meth:`stop`; a lane that must stop closes its consumer
        and then waits for :meth:`stop` too (its reason stays on ``/readyz``)."""
        if self.relay is None:
            log.info("%s: LOOM_WORKER_RELAY=false: `loom relay --role %s` delivers the outbox",
                     self.group, self.lane)  # fmt: skip
        if self.ahead is not None:  # the lane's thread: the executor's one (``_main``)
            self.ahead.thread = await asyncio.to_thread(threading.get_ident)
        try:
            await self._establish_generation()
            # only now a member of the group: a worker refused at its start check is never
            # assigned partitions (a rebuild's would be, and its offset commits fail meanwhile)
            self.consumer.subscribe(
                [self.topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            # The relay delivers what this lane's Redis holds: only once Redis was found to
            # hold the lane's state (a Redis that lost it gets no outbox stream from us).
            if self.relay is not None:
                self.relay.start(self._relay_wakeup)
            if self.outbox_gauges is not None:
                self.outbox_gauges.start()
            self.status.running()
            await self._loop()
        except LaneStopped as stop:
            lost = stop.reason is StopReason.STATE_LOST
            # refused while a rebuild runs: its message says what to do, a rebuild is no remedy
            rebuilding = isinstance(stop.error, RebuildRunningError)
            hint = recovery_hint(self.lane) if lost and not rebuilding else ""
            detail = stop.error.describe()
            # The line first, then readiness: whoever sees /readyz fail finds the reason logged.
            log.error(
                "%s: lane stopped, nothing more is committed (%s): %s%s",
                self.group,
                stop.reason,
                detail,
                f". To recover, {hint}." if hint and hint not in detail else "",
            )
            self.rt.metrics.lane_stops.labels(lane=self.lane, reason=stop.reason.value).inc()
            if stop.reason is StopReason.STATE_LOST and self.relay is not None:
                await self.relay.stop()  # its outbox went with the state: nothing to deliver
            self.status.stopped(stop.reason, detail)
        except BatchAbandoned:  # stopped while waiting for Redis or Kafka at start
            pass
        finally:
            await asyncio.to_thread(self._close)
        await self.stopping.wait()
        if self.relay is not None:
            await self.relay.stop()
        if self.outbox_gauges is not None:
            await self.outbox_gauges.stop()

    async def _establish_generation(self) -> None:
        """Check no ``loom rebuild`` of the lane runs and Redis holds the state the group's
        committed offsets imply (and remember the generation for the commit metadata and every
        batch's commit); retried while Redis or Kafka is unavailable, a stop for good when the
        state is lost or a rebuild runs (streams.generation)."""
        raw, rt = self.topic, self.rt

        def check() -> str:
            s = self.settings
            refuse_during_rebuild(rt.redis, s.redis_prefix, self.lane)
            meta = self.consumer.list_topics(raw, timeout=10).topics[raw]
            if meta.error is not None:
                raise KafkaException(meta.error)
            offsets = committed_offsets(self.consumer, raw, sorted(meta.partitions))
            self.partitions = len(meta.partitions)
            generation = establish(rt.redis, s.redis_prefix, self.lane, Committed.of(offsets))
            self._seeds, self._kept = start_keeping(
                s, rt.redis, self.lane, raw, offsets, generation=generation, keeper=self._kept
            )
            return generation

        self.generation = await self.batches.until_done("start", [], check, bisect=False)
        if isinstance(rt.store, RedisStore):
            rt.store.generation = self.generation

    async def _loop(self) -> None:
        self._returned = time.monotonic()
        while not self.stopping.is_set():
            records, prepared = await self._next_batch()
            if not records:
                self._commit_due()
                continue
            started = time.monotonic()
            if self.ahead is not None:
                self.ahead.armed = True
            try:
                await self.batches.run(records, prepared)
            except BatchAbandoned as abandoned:
                log.warning("%s: %s", self.group, abandoned)
                return
            finally:
                if self.ahead is not None:
                    self.ahead.armed = False
                self._busy.inc(time.monotonic() - started)
            self._batch_done(records)
            self._relay_wakeup.set()
            self._decode_cache_metrics()
            self.gc.after_batch()  # what survived the batch frozen (streams.gc_policy)

    def _decode_cache_metrics(self) -> None:
        """The decode cache's charge, and its hits and misses since the last batch."""
        cache, metrics = self.rt.decode_cache, self.rt.metrics
        metrics.decode_cache_bytes.set(cache.bytes)
        hits, misses = self._cache_counted
        lookups = metrics.decode_cache_lookups
        lookups.labels(result="hit").inc(cache.hits - hits)
        lookups.labels(result="miss").inc(cache.misses - misses)
        self._cache_counted = (cache.hits, cache.misses)

    async def _next_batch(self) -> tuple[list[RawRecord], Prepared | None]:
        """The next batch: the records consumed ahead (topped up to a batch by a ``consume``
        that waits as the loop's does) with what of them was prepared, else a ``consume``'s."""
        size = self.settings.batch_size
        self._gone.clear()
        ahead = self.ahead.take() if self.ahead is not None else None  # raises consume's error
        if ahead is None:
            return await self._consume(size), None
        records = ahead.records
        self._ahead_consumed.inc(len(records))
        self._ahead_prepared.inc(ahead.count)
        if len(records) >= size:
            return records, ahead.prepared(records)
        more = await self._consume(size - len(records))
        if self._gone:  # a rebalance in that consume: its partitions' records are read again
            records = [r for r in records if (r.topic, r.partition) not in self._gone]
            self._gone.clear()
            return records + more, None
        records = records + more
        return records, ahead.prepared(records)

    async def _consume(self, n: int) -> list[RawRecord]:
        """Up to ``n`` records, waiting as :func:`fill_wait` says."""
        wait = fill_wait(self.batch_timeout_s, time.monotonic() - self._returned)
        messages = await asyncio.to_thread(self._consume_messages, n, wait)
        self._returned = time.monotonic()
        self.status.turned()
        return self._records(messages)

    def _consume_ahead(self) -> list[RawRecord]:
        """The records queued now, up to a batch (:class:`~streams.ahead.WorkAhead`'s)."""
        messages = self._consume_messages(self.settings.batch_size, 0)
        self.status.turned()
        return self._records(messages)

    def _records(self, messages: list[Message]) -> list[RawRecord]:
        # error events are rare: msg.error() first, the check's calls only for them
        return raw_records([m for m in messages if m.error() is None or not self._failed(m)])

    def _failed(self, msg: Message) -> bool:
        """Whether ``msg`` is an error event rather than a record; fatal ones stop the lane."""
        try:
            return not_a_record(msg, self.group)
        except FatalError as error:
            raise LaneStopped(StopReason.FATAL, error) from None

    def _close(self) -> None:
        """Commit what completed, leave the group (its partitions move at once), remove this
        worker's claims entry (others stop waiting for it)."""
        if self._commit(self.processed.take(), asynchronous=False):
            self.consumer.close()
        else:  # close would wait on the commit still under way: the group drops this member
            log.warning("%s: leaving without closing the consumer: the group reassigns its "
                        "partitions after session.timeout.ms", self.group)  # fmt: skip
        self.assigned.clear()  # close may serve an assignment it never revokes
        if self.batches.claims is not None:
            self.batches.claims.close()
        if self._kept is not None:
            self._kept.stop(self.group)


#: Exit codes of ``loom worker``.
EXIT_OK: Final = 0  # stopped on request (SIGTERM/SIGINT)
EXIT_FORCED: Final = 1  # did not finish within LOOM_SHUTDOWN_TIMEOUT_S: exited anyway
EXIT_LANE_STOPPED: Final = 3  # the lane had stopped on an error before it was asked to


#: The cyclic garbage collector's thresholds in a worker (Python's default: 700, 10, 10). A
#: worker keeps a large heap of long-lived objects (the decode cache: up to
#: ``LOOM_DECODE_CACHE_BYTES`` of decoded profiles and ledgers) and allocates hundreds of
#: short-lived objects per event, nearly all freed by reference counting; with the defaults the
#: full collections that walk the whole heap took a third of the profiles lane's CPU (issue 17:
#: ``run_batch`` 316 -> 209 µs per event in process). Between batches what survived is frozen
#: (:mod:`streams.gc_policy`); inside a batch, young cycles are still collected every 50,000 net
#: allocations.
GC_THRESHOLDS: Final = (50_000, 20, 100)


def tune_gc() -> None:
    """Leave what start-up built (modules, clients, settings) out of every collection and
    collect less often (:data:`GC_THRESHOLDS`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run_lane(rt: Runtime) -> int:
    """Run ``rt``'s lane with its health server until SIGTERM/SIGINT; the exit code."""
    tune_gc()
    return asyncio.run(_main(rt))


async def _main(rt: Runtime) -> int:
    loop = asyncio.get_running_loop()
    # The lane's blocking work (consume, batches, commits) runs in one thread: one malloc arena
    # instead of one per pool thread (fragmentation grew RSS), and calls into the consumer
    # never overlap. The relay and the health probes have a thread each.
    loop.set_default_executor(ThreadPoolExecutor(max_workers=1, thread_name_prefix="loom-lane"))
    routed = rt.lane.decode is not None  # the routed inventory lane (ADR 0014)
    runner = LaneRunner(rt, topic=rt.settings.topics.stock_movements if routed else None)
    router = _router(rt) if routed else None
    deadline = rt.settings.shutdown_timeout_s

    def on_signal() -> None:
        if not runner.stopping.is_set():
            log.info("%s: stopping (at most %.0f s)", runner.group, deadline)
            watchdog = threading.Timer(deadline, _force_exit, args=(runner.group, deadline))
            watchdog.daemon = True
            watchdog.start()
        runner.stop()
        if router is not None:
            router.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    checks: dict[str, Check] = {
        **rt.infra_checks(),
        "partitions": lambda: bool(runner.assigned),
        "lane": runner.status.ready,
    }
    if runner.relay is not None:
        checks["relay"] = runner.relay.healthy
    if router is not None:  # its own thread: its consumer never waits behind the lane's
        checks["router"] = router.ready
        router_thread = threading.Thread(target=router.run, name="loom-router", daemon=True)
        router_thread.start()
    server = HealthServer(
        rt.settings.web_host, rt.settings.web_port_for(runner.lane), rt.metrics.registry, checks
    )
    await server.start()
    log.info("%s: health and metrics on port %d", runner.group, server.port)
    schedule = (
        asyncio.create_task(audience_schedule.run(rt, runner.stopping))
        if audience_schedule.enabled(rt)
        else None
    )
    try:
        await runner.run()
    finally:
        if router is not None:
            router.stop()
            await asyncio.to_thread(router_thread.join)
        if schedule is not None:
            await schedule
        await server.stop()
    stopped = runner.status.state is LaneState.STOPPED or (router and router.failure)
    return EXIT_LANE_STOPPED if stopped else EXIT_OK


def _router(rt: Runtime) -> StockRouter:
    from streams.stock_router import StockRouter  # it uses this module's raw_record

    return StockRouter(rt)


def _force_exit(group: str, deadline: float) -> None:
    """The shutdown deadline passed (a call that does not return: a broker or Redis that
    hangs). Exiting is safe: offsets are committed only after their batch was applied."""
    log.error("%s: not stopped within %.0f s; exiting without finishing", group, deadline)
    logging.shutdown()
    os._exit(EXIT_FORCED)
