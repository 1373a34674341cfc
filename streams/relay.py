"""The outbox relay: Kafka records a batch committed into Redis, moved to Kafka, supervised.

A batch's Kafka side effects (profile changes, merges, consent audit, stock changes, alerts)
are written into the Redis outbox stream (``P:v1:outbox``) by the batch's own atomic commit,
so they are durable when the commit returns. The relay runs beside the lane's loop, off the
batch's path: :class:`OutboxRelay` produces outbox entries, waits for the broker's
acknowledgements, then acknowledges and deletes them in Redis. A crash in between re-sends
them: at least once, never lost (the outbox is never trimmed).

One relay at a time delivers an outbox (ADR 0043): it holds the lease ``P:v1:relay-lease``
(``streams.lease``, ``LOOM_RELAY_LEASE_S``), renewed as it works; every other relay of the
outbox (the other lanes' workers, more workers of a lane, more ``loom relay`` processes) stands
by, reads nothing and tries to take the lease about once a second. So each key's records reach
Kafka in the order the commits wrote them, and a compacted change topic ends on what Redis
holds. A relay that takes the lease first claims every entry the others read and did not
acknowledge, so they go out before anything newer; one that stops gives the lease up, one
that dies leaves it to expire. A holder that finds the lease taken by another (it stalled for
longer than the lease) purges what it still had on its way to Kafka and stands by.

:class:`RelaySupervisor` keeps it running, whatever fails:

* ``NOGROUP`` (the outbox stream or its consumer group vanished, e.g. Redis restarted without
  its data): the group is created again and the pass repeated at once;
* a retryable error (Redis or Kafka unavailable, OOM, READONLY ...): the next pass waits with
  capped exponential backoff (``LOOM_RETRY_BACKOFF_MAX_S``);
* a record Kafka refuses for good (too large for the topic...): the relay sends its entry
  alone, then record by record, parks the refused record alone at the end of the outbox (as
  committed: a snapshot stays a reference) and sends everything after it again, so each key's
  records still reach Kafka in commit order. The parked record is tried again alone every
  ``isolate_s`` (60 s) and skipped meanwhile; every pass counts as failed (the alert, the
  readiness) while one is parked, without backing off, since the pass delivered the rest;
  never dropped;
* anything else (a producer in a fatal state, a bug): the relay is restarted (a new producer)
  after the backoff; the old producer's queue is purged first, so nothing it held reaches
  Kafka after the new relay sent it again.

While passes fail, ``loom_relay_failing`` is 1, ``loom_relay_errors_total{error}`` counts them
and the worker's ``/readyz`` says ``relay`` once they have failed for ``LOOM_STUCK_AFTER_S``.
Every second the supervisor exports the outbox's length and the age of its oldest record
(``loom_outbox_length``, ``loom_outbox_oldest_age_seconds``), whoever's relay is behind; a
worker that runs no relay (``LOOM_WORKER_RELAY=false``) exports them all the same
(:class:`OutboxGauges`), so an outbox no ``loom relay`` delivers raises the outbox alerts.

A profile's snapshot record is held in the outbox as a reference to the snapshot its commit
stored (ADR 0033, ``streams.outbox``): a pass reads the referenced profiles' ``v`` and ``d`` in
one round trip and sends the snapshot if the profile still holds that version. If it moved on
(a later version, a merge, an erasure) the record is not sent (``loom_relay_superseded_total``):
a later outbox entry carries what the profile became, so ``profiles.changes`` still ends with
each profile's stored state, and a version superseded before its entry was sent is left out,
as compaction would leave it out.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import redis
from confluent_kafka import KafkaError, KafkaException, Producer

from streams import outbox
from streams.backoff import Backoff
from streams.errors import (
    KafkaUnavailableError,
    LaneError,
    RecordRefusedError,
    RetryableError,
    classify,
    kafka_error,
)
from streams.lease import Held, Lease
from streams.metrics import RelayMetrics
from streams.replies import Borrowed, round_trip
from streams.resp import Resp, hmget_head

log = logging.getLogger(__name__)

Entry = tuple[bytes, dict[bytes, bytes]]
T = TypeVar("T")
_V_D: Final = hmget_head("v", "d")

#: The relay's producer reports failures only (``delivery.report.only.error``): a delivery
#: report per record cost a call into Python and a ``Message`` each, ~1 µs per record, ~0.6
#: per profiles event in the relay's thread (issue 17.2). The successes are known once a flush
#: leaves nothing in librdkafka's queue (:meth:`OutboxRelay._all_reported`). A relay given
#: another producer settles entries by their reports, as before.
PRODUCER_CONFIG: Final = {"delivery.report.only.error": True}

#: ``LOOM_RELAY_LEASE_S``'s default: how long the outbox's lease outlives its holder's last
#: renewal (a relay that died is replaced after at most this long)
LEASE_S: Final = 10.0


@dataclass(slots=True)
class _Flight:
    """An outbox entry produced and not yet settled: its records, how many of them librdkafka
    has not reported yet, and the first failure it reported."""

    records: list[outbox.Triple]
    left: int
    #: its records' delivery report (:meth:`OutboxRelay._all_reported` makes the successes a
    #: producer with :data:`PRODUCER_CONFIG` does not report)
    report: Callable[[KafkaError | None, Any], None]
    error: KafkaError | None = None
    left_out: int = 0  # snapshot references superseded (ADR 0033), counted once acknowledged
    alone: bool = False  # produced with no other entry: a refusal is its own


class OutboxRelay:
    """Moves outbox records from Redis to Kafka through a Redis consumer group.

    Each worker reads entries as its own consumer of the group ``relay``, produces them and,
    once the broker acknowledged them, XACKs and XDELs them. Entries a dead worker left pending
    are claimed after ``min_idle_ms`` (looked for at most every ``claim_every_s``).

    A pass never produces an entry twice while its first delivery is outstanding: entries
    stay *in flight* until librdkafka reports them (delivered, or failed after its own
    retries), and a pass with records still in flight only waits for them. Failed ones stay
    pending in Redis and are produced again by a later pass; delivered ones whose XACK failed
    are acknowledged by the next pass.

    Order: one relay at a time holds the outbox's lease and delivers it (module docstring);
    every pass re-sends its own pending entries (oldest first) before new ones, and a relay
    that takes the lease over claims the others' pending entries first, so records reach Kafka
    in outbox order unless a holder stalled for longer than the lease: entries after one
    still in flight wait for it to be acknowledged, entries after one that failed are sent
    again after it even if Kafka took them (:meth:`_settle`), and a record refused for good
    is parked at the end of the outbox while its entry's other records keep their place
    (:meth:`_one_by_one`).
    """

    GROUP = "relay"

    def __init__(
        self,
        client: redis.Redis,
        producer: Producer,
        key: str,
        consumer: str,
        *,
        min_idle_ms: int = 30_000,
        claim_every_s: float = 5.0,
        flush_timeout_s: float = 5.0,
        isolate_s: float = 60.0,
        profiles: str | None = None,
        lease: str | None = None,
        lease_s: float = LEASE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client, self.producer, self.key = client, producer, key
        #: the key prefix of profile hashes (``P:v1:profile:``), where the snapshots the
        #: outbox references are read (default: beside ``key``, ``P:v1:outbox``)
        self.profiles = (
            profiles if profiles is not None else key.removesuffix("outbox") + "profile:"
        )
        #: snapshot records left out because their profile had moved on (ADR 0033), since
        #: the last :meth:`take_superseded`
        self.superseded = 0
        #: one relay at a time delivers the outbox (default: beside ``key``, ``P:v1:relay-lease``)
        self.lease = Lease(
            client,
            lease if lease is not None else key.removesuffix("outbox") + "relay-lease",
            consumer,
            lease_s,
            clock=clock,
        )
        #: the longest this relay goes without looking at the lease: a relay standing by tries
        #: to take it this often, one holding it blocks at most this long in a read for new
        #: entries (each read renews it, and a stop's release waits for the read under way)
        self.turn_s = min(1.0, lease_s / 3)
        self._try_at = float("-inf")
        self.consumer, self.min_idle_ms = consumer, min_idle_ms
        self.claim_every_s, self.flush_timeout_s = claim_every_s, flush_timeout_s
        self.isolate_s = isolate_s
        self._clock = clock
        self._claimed_at = float("-inf")
        self._isolate_until = float("-inf")
        self._group_ready = False
        self._inflight: dict[bytes, _Flight] = {}
        #: entry -> (its records sent, its snapshots left out), to acknowledge
        self._delivered: dict[bytes, tuple[int, int]] = {}
        self._failed: list[tuple[bytes, _Flight, KafkaError]] = []
        #: entries of one record Kafka refused for good -> when (clock) to try them again
        self._parked: dict[bytes, float] = {}
        self._piecemeal: set[bytes] = set()  # entries refused alone: sent record by record
        self._parked_error: RecordRefusedError | None = None
        #: records acknowledged since the last :meth:`take_sent` (a failed pass's too)
        self.sent = 0

    def ensure_group(self) -> None:
        """Create the outbox stream's consumer group (and the stream) unless it exists."""
        try:
            self.client.xgroup_create(self.key, self.GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:  # BUSYGROUP: exists already
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def relay(self, *, count: int = 8) -> int:
        """One pass: send what is pending and new, ``count`` entries per read (each holds a
        committed batch's records, hundreds: a backlog is read a few batches at a time, not in
        one reply of hundreds of megabytes); returns the records acknowledged."""
        if not self._group_ready:
            self.ensure_group()
        if self._holding() is Held.NO:
            return self._standing_by()
        done = self._settle()
        if time.monotonic() - self._claimed_at >= self.claim_every_s:
            self._claim(self.min_idle_ms)  # what a relay that died read: sent with our own
        done += self._drain("0", count)  # our own pending entries first (failed sends)
        done += self._drain(">", count)  # then new entries
        return done

    def refusing(self) -> RecordRefusedError | None:
        """Why Kafka refuses the records parked in the outbox, if any is: the supervisor
        counts each pass as failed while one is (the alert and ``/readyz`` say so), without
        backing off, since the pass delivered everything else."""
        return (self._parked_error or RecordRefusedError("refused")) if self._parked else None

    def take_sent(self) -> int:
        """The records acknowledged since the last call, by passes that failed too."""
        n, self.sent = self.sent, 0
        return n

    def active(self) -> bool:
        """Whether this relay holds the outbox's lease (as far as it knows: no round trip)."""
        return self.lease.held()

    def release(self) -> None:
        """Give the outbox's lease up (a relay stopping), unless records are still on their
        way to Kafka: then it expires, ``LOOM_RELAY_LEASE_S`` after its last renewal, and no
        other relay sends newer records before those."""
        if not self._inflight:
            self.lease.release()

    def close(self) -> None:
        """Drop what this relay's producer still holds, and serve the purge's reports: a relay
        the supervisor replaces (a new producer) must not send its queued records after the
        new relay re-sent them and newer ones (its entries stay pending: the new relay sends
        them first), and its producer, its threads and the relay its delivery callbacks hold
        are then freed (a review of the thirtieth pass: neither happened)."""
        self._purge()

    def _purge(self) -> None:
        """Forget the flights, then purge the producer's queue and serve the reports."""
        self._inflight.clear()  # first: the purged records' reports find no flight
        self.producer.purge(in_queue=True, in_flight=True)
        self.producer.poll(0)

    def _holding(self) -> Held:
        """Whether this relay holds the lease (taking or renewing it; standing by, it tries
        at most every ``turn_s``). One that has just taken it drops what an earlier hold of
        its left on its way to Kafka (:meth:`_drop_flights`) and claims every entry the others
        read and did not acknowledge: they are its own pending ones, to be sent first."""
        if not self.lease.held() and self.lease.clock() < self._try_at:
            return Held.NO
        held = self.lease.hold()
        if held is Held.NO:
            self._try_at = self.lease.clock() + self.turn_s
        elif held is Held.TAKEN:
            log.info("outbox relay %s: delivering the outbox (it holds %s)", self.consumer,
                     self.lease.key)  # fmt: skip
            self._drop_flights("its lease had lapsed")
            self._claim(0)
        return held

    def _claim(self, min_idle_ms: int) -> None:
        """Make entries other relays read and left idle for ``min_idle_ms`` this relay's."""
        start: Any = "0-0"
        while True:
            resp: Any = self.client.xautoclaim(
                self.key, self.GROUP, self.consumer, min_idle_ms, start, count=100
            )  # (not JUSTID: redis-py's reply of it leaves the cursor out)
            start = resp[0]
            if start in (b"0-0", "0-0"):
                break
        self._claimed_at = time.monotonic()

    def _standing_by(self) -> int:
        """Another relay holds the lease: what this one still had on its way is dropped
        (:meth:`_drop_flights`; the holder claims it). What was delivered is acknowledged;
        the records acknowledged are returned."""
        self._drop_flights("another relay took the outbox over")
        self._failed.clear()
        self._piecemeal.clear()  # the holder finds them again
        self._parked.clear()
        return self._settle()

    def _drop_flights(self, why: str) -> None:
        """Purge the records this relay still had on their way to Kafka from a hold of the
        lease that lapsed (it stalled for longer than the lease): another relay may have
        held it since and sent those entries and newer ones, so they are not sent after
        them. They stay pending in Redis, and whoever holds the lease sends them again first
        (at least once: a record already on the wire may go twice, never out of order)."""
        if self._inflight:
            log.warning("outbox relay %s: %s; %d entries it had not delivered are sent again "
                        "by the holder", self.consumer, why, len(self._inflight))  # fmt: skip
            self._forget_after(min(map(_position, self._inflight)))  # and those after them
            self._purge()

    def wait_new(self, timeout_s: float) -> bool:
        """Wait (``timeout_s`` at most, and :attr:`turn_s`: call it again to wait longer)
        until the outbox holds an entry no consumer has read; whether one came. A relay of
        its own process (``loom relay``, ADR 0039) is woken so, as a worker's is after each
        batch. The entry read is this consumer's pending one: the next pass sends it first.
        A relay that finds another holding the lease reads nothing: it waits until its next
        try at the lease is due."""
        if not self._group_ready:
            self.ensure_group()
        if self._holding() is Held.NO:
            time.sleep(min(timeout_s, max(0.0, self._try_at - self.lease.clock())))
            return False
        block_ms = max(1, round(min(timeout_s, self.turn_s) * 1000))
        resp: Any = self.client.xreadgroup(
            self.GROUP, self.consumer, {self.key: ">"}, count=1, block=block_ms
        )
        return bool(resp and resp[0][1])

    def _drain(self, start: str, count: int) -> int:
        """Send entries read from ``start`` (``0``: this consumer's pending, ``>``: new) page
        by page until none is left."""
        done = 0
        while True:
            held = self._holding()
            if held is Held.NO:  # another relay took the outbox over
                return done + self._standing_by()
            if held is Held.TAKEN:  # it had lapsed: what it claimed goes first
                if start == ">":
                    done += self._drain("0", count)
                else:
                    start = "0"
            resp: Any = self.client.xreadgroup(
                self.GROUP, self.consumer, {self.key: start}, count=count
            )
            entries: list[Entry] = resp[0][1] if resp else []
            if not entries:
                return done
            done += self._send(entries)
            if start != ">":
                start = entries[-1][0].decode()  # pending entries stay listed: page on

    def _send(self, entries: Sequence[Entry]) -> int:
        """Produce ``entries`` not in flight, delivered or parked (until their next try), wait,
        acknowledge.

        After Kafka refused a record (too large...), a whole batch of records sharing its
        produce request fails with it; so for ``isolate_s`` entries go one at a time. An entry
        of several records refused alone goes record by record (:meth:`_one_by_one`); one of a
        single record refused alone is parked: tried again alone every ``isolate_s`` (it stays
        pending) and skipped meanwhile."""
        busy = self._inflight.keys() | self._delivered.keys()
        if self._parked:
            now = self._clock()
            busy |= {i for i, at in self._parked.items() if at > now}
        todo = [e for e in entries if e[0] not in busy]
        if not todo:
            return 0
        whole = self._piecemeal.isdisjoint(e[0] for e in todo) and (
            not self._parked or self._parked.keys().isdisjoint(e[0] for e in todo)
        )
        together = whole and self._clock() >= self._isolate_until
        done = 0
        for group in [todo] if together else [[e] for e in todo]:
            if group[0][0] not in self._piecemeal:
                done += self._produce(group)
            for entry in group:  # refused alone, now or before: its records, before the next
                if entry[0] in self._piecemeal:
                    done += self._one_by_one(entry)
        return done

    def _produce(self, entries: Sequence[Entry]) -> int:
        read = [
            (entry_id, outbox.entry_triples(fields), outbox.may_reference(fields))
            for entry_id, fields in entries
        ]
        wanted = outbox.references(item for _, items, refs in read if refs for item in items)
        stored = self._stored(wanted) if wanted else {}
        for entry_id, items, refs in read:
            if refs:
                records, left_out = outbox.resolve(items, stored)
            else:  # no reference: the records as packed
                records, left_out = items, 0  # type: ignore[assignment]  # no int value there
            if not records:  # deleted while pending, or every record superseded: nothing to
                self._delivered[entry_id] = (0, left_out)  # send, only to acknowledge
                continue
            report = self._reporter(entry_id)
            self._inflight[entry_id] = _Flight(
                records, len(records), report, left_out=left_out, alone=len(read) == 1
            )
            produce = self.producer.produce
            for topic, key, value in records:
                try:
                    produce(topic, key=key, value=value, on_delivery=report)
                except BufferError:
                    self._produce_full(topic, key, value, report)
                except KafkaException as exc:  # refused at once (over message.max.bytes...)
                    report(_refusal(exc), None)  # as its delivery report would say
        return self._settle()

    def _stored(self, ids: set[bytes]) -> dict[bytes, outbox.Stored]:
        """The ``v`` and ``d`` of the profiles ``ids``, by id, in one round trip."""
        order = list(ids)
        reads = Resp()
        reads.keyed_all(_V_D[0], self.profiles, [i.decode() for i in order], _V_D[1])
        with Borrowed(self.client) as borrowed:
            replies = round_trip(borrowed.conn, reads.packed(), reads.count, decode=False)
        return {i: (v, d) for i, (v, d) in zip(order, replies, strict=True)}

    def take_superseded(self) -> int:
        """The snapshot records left out since the last call (ADR 0033)."""
        n, self.superseded = self.superseded, 0
        return n

    def _produce_full(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        report: Callable[[KafkaError | None, Any], None],
    ) -> None:
        """Produce while librdkafka's queue is full: serve delivery reports until it takes it."""
        while True:
            self.producer.poll(0.05)
            try:
                self.producer.produce(topic, key=key, value=value, on_delivery=report)
                return
            except BufferError:
                continue
            except KafkaException as exc:
                report(_refusal(exc), None)
                return

    def _reporter(self, entry_id: bytes) -> Callable[[KafkaError | None, Any], None]:
        """An entry is delivered when all its records are; failed if one of them failed."""

        def report(err: KafkaError | None, _msg: Any) -> None:
            flight = self._inflight.get(entry_id)
            if flight is None:  # purged (_drop_flights): another relay sends it
                return
            if flight.error is None:
                flight.error = err
            flight.left -= 1
            if flight.left:
                return
            del self._inflight[entry_id]
            if flight.error is None:
                self._delivered[entry_id] = (len(flight.records), flight.left_out)
            else:
                self._failed.append((entry_id, flight, flight.error))

        return report

    def _settle(self) -> int:
        """Wait (``flush_timeout_s`` at most) for what is in flight, acknowledge what was
        delivered; raise if a delivery failed or some are still outstanding.

        Entries after one still in flight are acknowledged once it is delivered; entries after
        a failed one are not acknowledged even if delivered: they stay pending and go again
        after it, so each key's last record on the topic is still its newest (at least once;
        before, a failed entry's records were sent again after newer ones)."""
        if self._inflight:
            self._flush()
        failed, self._failed = self._failed, []
        if failed:
            self._forget_after(min(_position(entry_id) for entry_id, _, _ in failed))
        ids = list(self._delivered)
        if self._inflight:  # acknowledged once those before them are
            first = min(map(_position, self._inflight))
            ids = [i for i in ids if _position(i) < first]
        done = 0
        if ids:
            pipe = self.client.pipeline(transaction=True)
            pipe.xack(self.key, self.GROUP, *ids)
            pipe.xdel(self.key, *ids)
            pipe.execute()  # if this fails, the next pass acknowledges them
            for i in ids:  # counted once acknowledged: an entry may be sent more than once
                sent, left_out = self._delivered.pop(i)
                done += sent
                self.superseded += left_out
            if self._parked:  # the topic takes them now
                for i in ids:
                    self._parked.pop(i, None)
            self.sent += done
        for entry_id, flight, err in failed:
            error = kafka_error(err, "outbox relay")
            if not isinstance(error, RecordRefusedError):
                raise error
            if not flight.alone:  # refused among others: each goes alone for a while
                self._isolate_until = self._clock() + self.isolate_s
                raise error
            if len(flight.records) > 1:  # refused alone: sent record by record (_send)
                self._piecemeal.add(entry_id)
                continue
            if entry_id not in self._parked:
                log.error(
                    "outbox relay: Kafka refuses a record for good (%s); it stays in the outbox, "
                    "tried again every %.0f s, until the topic accepts it "
                    "(docs/operating.md#loomoutboxnotdraining)",
                    error.describe(),
                    self.isolate_s,
                )
            self._parked[entry_id] = self._clock() + self.isolate_s
            self._parked_error = error
        if self._inflight:
            raise KafkaUnavailableError(
                f"outbox relay: {len(self._inflight)} record(s) still waiting for Kafka"
            )
        return done

    def _forget_after(self, position: tuple[int, int]) -> None:
        """Entries after ``position`` that Kafka took are not acknowledged: they stay pending,
        to go again after the entry at ``position``, which failed or was dropped."""
        for entry_id in [i for i in self._delivered if _position(i) > position]:
            del self._delivered[entry_id]

    def _flush(self) -> None:
        """Wait for what is in flight, ``flush_timeout_s`` at most, in slices of a third of
        the lease, renewing it between them: a holder waiting on a Kafka that does not answer
        keeps the outbox, so what it has on its way goes before what another relay would send
        (a 5 s flush, then a backoff, lapsed a 10 s lease: a review of the twenty-ninth pass)."""
        deadline = time.monotonic() + self.flush_timeout_s
        while True:  # at least once: a flush serves the delivery reports
            left = self.producer.flush(
                min(max(0.0, deadline - time.monotonic()), self.lease.lease_s / 3)
            )
            if left == 0 and self._inflight:
                self._all_reported()
            if not self._inflight or time.monotonic() >= deadline:
                return
            if self.lease.held():
                with contextlib.suppress(redis.RedisError):  # down: nobody can take it either
                    self.lease.hold()

    def _all_reported(self) -> None:
        """librdkafka holds none of the records any more (a flush returned 0: each was
        delivered, or its failure reported): an entry still in flight had every record
        delivered, unreported by a producer with :data:`PRODUCER_CONFIG` (it reports failures
        only), and is settled here as its last report would have (one call per entry)."""
        for flight in list(self._inflight.values()):
            flight.left = 1
            flight.report(None, None)

    def _one_by_one(self, entry: Entry) -> int:
        """Send an entry Kafka refused a record of (it was sent alone) record by record, each
        acknowledged by Kafka before the next is produced, in order; then, in one transaction,
        park each record Kafka refused as an entry of its own at the end of the outbox (packed
        as committed: a snapshot's reference stays one, so ADR 0033 still leaves it out once
        its profile moved on) and acknowledge the entry. The records delivered are the
        entry's, in place: the entries after it go again after them (:meth:`_settle`), so a
        key they share ends on its newest value. (Before, the entry was split into one entry
        per record at the end of the outbox, and those records reached Kafka after newer
        ones: a review of the twenty-ninth pass.)"""
        entry_id, fields = entry
        items = outbox.entry_triples(fields)
        stored = self._stored(outbox.references(items)) if outbox.may_reference(fields) else {}
        parked: list[outbox.Item] = []
        sent = left_out = 0
        for item in items:
            if self._holding() is not Held.KEPT:  # it lapsed (a stall): the pass starts over
                raise KafkaUnavailableError("outbox relay: the lease lapsed mid-entry")
            records, superseded = outbox.resolve((item,), stored)
            left_out += superseded
            if not records:
                continue
            if self._deliver(entry_id, records[0]):
                parked.append(item)
            else:
                sent += 1
        pipe = self.client.pipeline(transaction=True)
        for item in parked:
            pipe.xadd(self.key, {outbox.FIELD: outbox.pack_items([item])})
        pipe.xack(self.key, self.GROUP, entry_id)
        pipe.xdel(self.key, entry_id)
        pipe.execute()
        self._piecemeal.discard(entry_id)
        self.superseded += left_out
        self.sent += sent
        return sent

    def _deliver(self, entry_id: bytes, record: outbox.Triple) -> bool:
        """Produce one record of ``entry_id`` and wait for Kafka's answer; True if Kafka
        refused it for good; raise on any other failure, or if it is still on its way."""

        def report(err: KafkaError | None, _msg: Any) -> None:
            if self._inflight.get(entry_id) is flight:  # else purged (_drop_flights)
                del self._inflight[entry_id]
                flight.error, flight.left = err, 0

        flight = self._inflight[entry_id] = _Flight([record], 1, report)

        topic, key, value = record
        try:
            self.producer.produce(topic, key=key, value=value, on_delivery=report)
        except BufferError:
            self._produce_full(topic, key, value, report)
        except KafkaException as exc:
            report(_refusal(exc), None)
        self._flush()
        if flight.left:
            raise KafkaUnavailableError("outbox relay: a record still waiting for Kafka")
        if flight.error is None:
            return False
        error = kafka_error(flight.error, "outbox relay")
        if not isinstance(error, RecordRefusedError):
            raise error
        return True

    def outbox_stats(self) -> tuple[int, float]:
        """``(length, age in seconds of the oldest entry)`` of the outbox (one round trip)."""
        return outbox_stats(self.client, self.key)


def outbox_stats(client: redis.Redis, key: str) -> tuple[int, float]:
    """``(length, age in seconds of the oldest entry)`` of the outbox ``key`` (one round trip)."""
    pipe = client.pipeline(transaction=False)
    pipe.xlen(key)
    pipe.xrange(key, count=1)
    pipe.time()
    length, first, (secs, micros) = pipe.execute()
    if not first:
        return int(length), 0.0
    first_ms = int(first[0][0].split(b"-")[0])
    return int(length), max(0.0, secs + micros / 1e6 - first_ms / 1000)


class OutboxGauges:
    """Exports an outbox's length and the age of its oldest entry every ``every_s``, in a
    thread of its own (never on a batch's path), for a worker that runs no relay
    (``LOOM_WORKER_RELAY=false``, ADR 0039). Only a relay set the gauges before: a worker
    left them at 0, so with no ``loom relay`` running, an outbox nobody delivered never
    raised ``LoomOutboxNotDraining`` or ``LoomOutboxBacklog``."""

    def __init__(
        self, client: redis.Redis, key: str, metrics: RelayMetrics, *, every_s: float = 1.0
    ) -> None:
        self.client, self.key, self.metrics, self.every_s = client, key, metrics, every_s
        self.task: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loom-outbox")

    def start(self) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self.run())
        return self.task

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self._thread.shutdown(wait=False, cancel_futures=True)

    async def run(self) -> None:
        while True:
            await self._export()
            await asyncio.sleep(self.every_s)

    async def _export(self) -> None:
        read = functools.partial(outbox_stats, self.client, self.key)
        try:
            length, age = await asyncio.get_running_loop().run_in_executor(self._thread, read)
        except redis.RedisError:  # Redis down: the lane's own retries and alerts say so
            return
        self.metrics.outbox_length.set(length)
        self.metrics.outbox_oldest_age.set(age)


class RelaySupervisor:
    """Runs an :class:`OutboxRelay` until cancelled, whatever fails (module docstring).

    ``make_relay()`` builds a relay (with a new producer): called at start and to restart it.
    Passes start after ``wakeup`` (set after each batch) or every ``idle_s``, at most every
    ``min_interval_s`` (a worker's is ``LOOM_RELAY_INTERVAL_S``): a lane committing a small
    batch every few milliseconds would otherwise spend its CPU on relay round trips, and the
    broker a produce request per topic-partition per pass (librdkafka sends one per partition;
    at 0.1 s the relays made a fifth of the broker's requests at 1,000 events/s, issue 17),
    so the Kafka change topics trail Redis by up to that much (the Redis change streams are
    written in the commit itself)."""

    def __init__(
        self,
        make_relay: Callable[[], OutboxRelay],
        metrics: RelayMetrics,
        *,
        backoff_max_s: float,
        failing_after_s: float,
        idle_s: float = 0.25,
        min_interval_s: float = 0.1,
        stats_every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.make_relay, self.metrics = make_relay, metrics
        self.backoff_max_s, self.failing_after_s = backoff_max_s, failing_after_s
        self.idle_s, self.min_interval_s, self.stats_every_s = idle_s, min_interval_s, stats_every_s
        self._clock = clock
        self.relay = make_relay()
        self.failing_since: float | None = None
        self._warned_at = float("-inf")
        self.failures = 0
        self.restarts = 0
        self._stats_at = float("-inf")
        self.task: asyncio.Task[None] | None = None
        # one thread of its own: a flush waiting for Kafka never holds up the lane's batches
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loom-relay")

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    def healthy(self) -> bool:
        """Ready unless passes have failed for ``failing_after_s`` or the task is gone."""
        if self.task is not None and self.task.done():
            return False
        return self.failing_since is None or self._clock() - self.failing_since < (
            self.failing_after_s
        )

    def start(self, wakeup: asyncio.Event | None) -> asyncio.Task[None]:
        """Run passes in a task: after ``wakeup`` is set (a lane's worker sets it after each
        batch), or, without one, when the outbox holds a new entry (:meth:`OutboxRelay.
        wait_new`: the relay of a ``loom relay`` process); every ``idle_s`` anyway."""
        self.task = asyncio.create_task(self.run(wakeup))
        return self.task

    async def stop(self) -> None:
        """Stop the passes and give the outbox's lease up (after the pass under way: the
        relay's thread runs one thing at a time), so another relay takes over at once."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        with contextlib.suppress(Exception):  # not released: it expires
            await asyncio.wait_for(
                self._in_thread(self.relay.release), self.relay.flush_timeout_s + 1.0
            )
        self.metrics.active.set(0)
        self._thread.shutdown(wait=False, cancel_futures=True)

    async def run(self, wakeup: asyncio.Event | None) -> None:
        backoff = Backoff(self.backoff_max_s)  # after a failed pass
        while True:
            await self._woken(wakeup)
            started = self._clock()
            try:
                await self._in_thread(self.relay.relay)
            except Exception as exc:
                self._count()
                if await self._recover(exc, backoff):
                    continue
            else:
                self._count()
                if (refusing := self.relay.refusing()) is not None:
                    self._failed(refusing)  # failing (alerts) while a record is parked, but
                else:  # the pass delivered the rest: no backoff for it
                    self._recovered()
                backoff.reset()
                await asyncio.sleep(max(0.0, self.min_interval_s - (self._clock() - started)))
            self.metrics.active.set(1 if self.relay.active() else 0)
            await self._export_stats()

    def _count(self) -> None:
        """What the last pass acknowledged and left out, failed or not."""
        self.metrics.records.inc(self.relay.take_sent())
        self.metrics.superseded.inc(self.relay.take_superseded())

    async def _woken(self, wakeup: asyncio.Event | None) -> None:
        """Until the next pass is due (:meth:`start`)."""
        if wakeup is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), timeout=self.idle_s)
            wakeup.clear()
            return
        # wait_new blocks for at most the relay's turn_s a call: one read of the whole
        # ``idle_s`` let a shorter lease lapse, and held up a stop's release for as long
        until = time.monotonic() + self.idle_s
        try:
            while (left := until - time.monotonic()) > 0:
                if await self._in_thread(functools.partial(self.relay.wait_new, left)):
                    return
        except Exception:  # Redis down, the group gone...: the pass says why, and backs off
            return

    async def _recover(self, exc: Exception, backoff: Backoff) -> bool:
        """Handle a failed pass; True to repeat it at once (the group was recreated)."""
        if isinstance(exc, redis.ResponseError) and str(exc).startswith("NOGROUP"):
            log.warning("outbox relay: the outbox's consumer group is gone; creating it again")
            with contextlib.suppress(Exception):  # if this fails too, the next pass says why
                await self._in_thread(self.relay.ensure_group)
                return True
        error = classify(exc)
        self._failed(error)
        delay = backoff.next()
        if not isinstance(error, RetryableError | RecordRefusedError):
            self.restarts += 1
            log.error("outbox relay: %s; restarting it in %.1f s", error.describe(), delay)
            with contextlib.suppress(Exception):  # a producer in a fatal state: nothing to drop
                await self._in_thread(self.relay.close)
            await self._pause(delay)
            self.relay = await self._in_thread(self.make_relay)
            return False
        await self._pause(delay)
        return False

    async def _pause(self, delay: float) -> None:
        """Wait ``delay`` after a failed pass, keeping the outbox's lease if this relay holds
        it: what it has on its way to Kafka goes before what another relay would send."""
        loop = asyncio.get_running_loop()
        until = loop.time() + delay
        while True:  # renewed first: the failed pass may have used most of the lease
            if self.relay.active():
                with contextlib.suppress(Exception):  # Redis down: nobody can take it either
                    await self._in_thread(self.relay.lease.hold)
            if (left := until - loop.time()) <= 0:
                return
            await asyncio.sleep(min(left, self.relay.lease.lease_s / 3))

    def _failed(self, error: LaneError) -> None:
        self.failures += 1
        self.metrics.errors.labels(error=type(error).__name__).inc()
        self.metrics.failing.set(1)
        if self.failing_since is None:
            self.failing_since = self._warned_at = self._clock()
            log.warning("outbox relay failing (%s); retrying", error.describe())
        elif self.failures % 20 == 0 and self._clock() - self._warned_at >= 60.0:
            self._warned_at = self._clock()
            log.warning(
                "outbox relay still failing after %d passes, %.0f s (%s)",
                self.failures,
                self._clock() - self.failing_since,
                error.describe(),
            )

    def _recovered(self) -> None:
        if self.failing_since is not None:
            log.warning(
                "outbox relay recovered after %d failed passes, %.0f s",
                self.failures,
                self._clock() - self.failing_since,
            )
        self.failing_since, self.failures = None, 0
        self.metrics.failing.set(0)

    async def _export_stats(self) -> None:
        if self._clock() - self._stats_at < self.stats_every_s:
            return
        self._stats_at = self._clock()
        try:
            length, age = await self._in_thread(self.relay.outbox_stats)
        except Exception:  # Redis down: the relay's own failure says so
            return
        self.metrics.outbox_length.set(length)
        self.metrics.outbox_oldest_age.set(age)


def _position(entry_id: bytes) -> tuple[int, int]:
    """A stream entry's place in the outbox (its id ``<ms>-<seq>``, as Redis orders them)."""
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq)


def _refusal(exc: KafkaException) -> KafkaError:
    """The error of a record ``produce`` refused at once. Left uncounted, its entry's flight
    never ended and every later pass waited for it: the outbox stalled for good (a review of
    the twenty-ninth pass)."""
    error = exc.args[0] if exc.args else None
    return error if isinstance(error, KafkaError) else KafkaError(KafkaError._FAIL, str(exc))
