"""The inventory lane's consume loop: confluent-kafka's consumer instead of faust's (ADR 0002).

Why not faust here: measured on the 2-core machine (bench/README.md), a faust agent spends
~400 µs of CPU per record on consumption alone (aiokafka fetch, per-event stream machinery,
acks), and the inventory lane reads every record of the raw topic to act on a quarter of them.
librdkafka's batch ``consume`` costs a tenth of that, which is what lets a POS sale reach the
snapshot within the latency budget while the profiles lane, still a faust agent, uses the rest
of the machine. Everything after consumption is shared with the faust worker: the same
:class:`~streams.worker.Runtime` (pipeline lane, Redis store, metrics), the same retry with
backoff, the same outbox relay and the same health server.

The loop, per batch (at least once, like the faust agent):

1. ``consume``       up to ``LOOM_BATCH_SIZE`` records, waiting at most
                     ``LOOM_INVENTORY_BATCH_TIMEOUT_S`` (librdkafka returns as soon as the
                     batch is full);
2. ``process``       ``Runtime.process`` in a thread: the lane's pipeline and one atomic Redis
                     commit, retried with capped backoff while Redis or Kafka is down;
3. offsets           committed (asynchronously) only after the batch committed in Redis; on a
                     rebalance the revoked partitions' offsets are committed synchronously
                     first (the callback runs inside ``consume``, between batches), and on
                     shutdown all of them. An asynchronous commit that fails is reported to
                     ``on_commit`` and logged; the next commit or the synchronous one on
                     revoke/close covers the partition again (:class:`ProcessedOffsets` keeps
                     the next offset of every partition processed until it is revoked).

A crash between 2 and 3 redelivers the batch; the lane's event-id markers make that a no-op.
SIGTERM/SIGINT finish the batch in flight, commit, leave the group and exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterable, Sequence

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from resolvers.steps import RawRecord
from streams import kafka_clients
from streams.health import HealthServer
from streams.settings import LoomSettings
from streams.worker import Runtime, process_with_retry, relay_forever

log = logging.getLogger(__name__)


def raw_record(msg: Message) -> RawRecord:
    _kind, ts = msg.timestamp()
    raw_headers = msg.headers() or []  # consumed records carry a list of (name, bytes)
    pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
    headers = {k: v.encode() if isinstance(v, str) else (v or b"") for k, v in pairs}
    return RawRecord(
        value=msg.value(),
        key=msg.key(),
        topic=msg.topic() or "",
        partition=msg.partition() or 0,
        offset=msg.offset() or 0,
        timestamp_ms=ts if ts > 0 else None,
        headers=headers,
    )


def next_offsets(messages: Sequence[Message]) -> list[TopicPartition]:
    """Per partition, the offset after the last message: what to commit once they are done."""
    last: dict[tuple[str, int], int] = {}
    for msg in messages:
        last[(msg.topic() or "", msg.partition() or 0)] = (msg.offset() or 0) + 1
    return [TopicPartition(t, p, o) for (t, p), o in sorted(last.items())]


class ProcessedOffsets:
    """Per partition, the next offset after the records processed (committed in Redis).

    :meth:`add` after each batch; :meth:`take` the offsets of revoked partitions (which it
    forgets: another member owns them now) or, with no argument, all of them (on close). The
    offsets stay until then, so the synchronous commit on revoke/close re-commits what an
    asynchronous commit may have failed to."""

    def __init__(self) -> None:
        self._next: dict[tuple[str, int], int] = {}

    def add(self, offsets: Iterable[TopicPartition]) -> None:
        for tp in offsets:
            self._next[(tp.topic, tp.partition)] = tp.offset

    def take(self, partitions: Iterable[tuple[str, int]] | None = None) -> list[TopicPartition]:
        keys = sorted(self._next) if partitions is None else sorted(set(partitions))
        return [
            TopicPartition(t, p, self._next.pop((t, p))) for t, p in keys if (t, p) in self._next
        ]

    def __len__(self) -> int:
        return len(self._next)


class LaneConsumer:
    """One lane's member of its consumer group; ``await run()`` until :meth:`stop`."""

    def __init__(self, settings: LoomSettings, runtime: Runtime) -> None:
        self.settings, self.rt = settings, runtime
        self.group = settings.group_id(runtime.lane.name)
        self.consumer = kafka_clients.consumer(
            settings,
            self.group,
            **{
                "client.id": f"loom-{runtime.lane.name}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
                "on_commit": self._on_commit,
            },
        )
        self.assigned: set[tuple[str, int]] = set()
        self._stopping = asyncio.Event()
        self.processed = ProcessedOffsets()

    # --- rebalance callbacks (run inside consume(), in the consuming thread) ---------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned |= {(p.topic, p.partition) for p in partitions}
        log.info("%s: assigned %s", self.group, sorted(p.partition for p in partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(p.topic, p.partition) for p in partitions}
        self._commit(self.processed.take(revoked), asynchronous=False)
        self.assigned -= revoked
        log.info("%s: revoked %s", self.group, sorted(p.partition for p in partitions))

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's report of a commit (asynchronous ones fail only here, not by raising)."""
        failed = sorted(p.partition for p in partitions if p.error is not None)
        if err is not None or failed:
            log.warning(
                "%s: offset commit failed (%s, partitions %s); the records will be redelivered "
                "unless a later commit succeeds",
                self.group,
                err,
                failed,
            )

    def _batch_done(self, messages: Sequence[Message]) -> None:
        """After ``messages`` committed in Redis: remember and commit their next offsets."""
        offsets = next_offsets(messages)
        self.processed.add(offsets)
        self._commit(offsets, asynchronous=True)

    def _commit(self, offsets: list[TopicPartition], *, asynchronous: bool) -> None:
        if not offsets:
            return
        try:
            if asynchronous:
                self.consumer.commit(offsets=offsets, asynchronous=True)
            else:
                done = self.consumer.commit(offsets=offsets, asynchronous=False)
                self._on_commit(None, list(done or []))  # per-partition errors, if any
        except Exception as exc:  # the records are in Redis; a redelivery is a no-op
            log.warning(
                "%s: offset commit failed (%s); records will be redelivered", self.group, exc
            )

    # --- the loop --------------------------------------------------------------------------
    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        s = self.settings
        self.consumer.subscribe(
            [s.topics.raw], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        wakeup = asyncio.Event()
        relay = asyncio.create_task(relay_forever(self.rt, wakeup))
        try:
            while not self._stopping.is_set():
                messages = await asyncio.to_thread(
                    self.consumer.consume, s.batch_size, s.inventory_batch_timeout_s
                )
                good = [m for m in messages if not self._failed(m)]
                if good:
                    await process_with_retry(self.rt, [raw_record(m) for m in good])
                    self._batch_done(good)
                    wakeup.set()
        finally:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay
            await asyncio.to_thread(self._close)

    def _failed(self, msg: Message) -> bool:
        err = msg.error()
        if err is None:
            return False
        if err.code() != KafkaError._PARTITION_EOF:
            log.warning("%s: consume error: %s", self.group, err)
        return True

    def _close(self) -> None:
        self._commit(self.processed.take(), asynchronous=False)
        self.consumer.close()  # leaves the group: its partitions move at once


def run_lane_consumer(settings: LoomSettings, runtime: Runtime) -> None:
    """Run a lane consumer with its health server until SIGTERM/SIGINT."""
    asyncio.run(_main(settings, runtime))


async def _main(settings: LoomSettings, rt: Runtime) -> None:
    lane = LaneConsumer(settings, rt)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lane.stop)

    server = HealthServer(
        settings.web_host,
        settings.inventory_web_port,
        rt.metrics.registry,
        rt.health_checks(lambda: bool(lane.assigned)),
    )
    await server.start()
    log.info("%s: health and metrics on port %d", lane.group, server.port)
    try:
        await lane.run()
    finally:
        await server.stop()
