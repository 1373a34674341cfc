"""``loom rebuild``: Kafka is the source of truth, operationally. Replay a lane from the raw
topic's earliest offsets into Redis, then hand over to the lane's workers.

Preconditions (checked; each refusal says what to do; a group coordinator that moves or is
still loading, as on a cluster just started, is asked again for ``coordinator_timeout_s``,
then :class:`~streams.startup.InfraError` says so in one line):

1. no worker of the lane runs (its consumer group has no members): offsets of a group with
   members cannot be set, and a worker would race the rebuild. Then the rebuild takes the
   lane's lease in Redis (``P:v1:rebuild-lease:{lane}``: its token, expiring after
   ``lease_s``, renewed every third of that while it runs, deleted when it ends; another
   rebuild of the lane holding it is a refusal) and asks again: from then on every commit of
   the lane by anyone but this rebuild is refused in the commit's atomic call, with the
   generation check (``streams.generation.rebuild_running``). That closes what the members
   check alone cannot: a worker whose start check read the group's old offsets, and whose
   JoinGroup reaches the coordinator just after the check, writes nothing into the lane;
2. Redis holds none of the lane's state under the prefix (``--wipe`` deletes it first);
3. the raw topic still holds its whole history (every partition's earliest offset is 0):
   records retention deleted cannot be replayed (``--allow-partial`` goes on anyway).

``--wipe`` deletes the lane's keys only after every check passed and the group's offsets were
reset: before, the group's old offsets (stamped with the generation, which a wipe keeps: both
lanes share it) would still say the wiped state was there, to a worker and to ``--resume``.
The reset offsets are stamped ``wiping:<generation>`` (``generation.wiping``) until the wipe is
done: a worker starting meanwhile refuses, and ``--resume`` wipes again (as allowed a partial
history as the interrupted run was: the stamp says so, ``wiping:partial:<generation>``).
Routed by SKU (ADR 0014), the group's offsets on the stock-movement topic, where the routed
lane's workers make their start check, are stamped ``wiping:`` too, until the hand-over.

Then: the generation marker is read or created (``streams.generation``); every partition is
read from its earliest offset up to the end offset seen at the start, through the same batch
runner the workers use (one atomic commit per batch, bisecting poison, the DLQ, retry with
backoff), committing the lane group's offsets after every batch, stamped with the generation,
exactly as a worker does. A partition is done once the consumer's position in it is its end
offset, whether or not a record was at the last one (a transaction marker takes an offset). Progress
(records, rate, ETA) every ``progress_every_s``; a replay that reads no record for
``stall_after_s`` says which partitions it waits for, at which offsets, and their last fetch
error (records retention deleted under the replay are one: the consumer does not reset its
offsets past them). The outbox relay runs alongside, and the rebuild waits for the outbox to
drain at the end, saying how many records wait and which relay delivers them.

Audiences (profiles lane, ``LOOM_AUDIENCES_FILE``): the replay evaluates none. Replayed at
today's clock, a customer's history passes through states that are not theirs today (after a
first pair of running shoes 170 days ago and before the second, 10 days ago, they look due
for the reminder): evaluated per batch, each such moment went out on ``audiences.changes`` as
an ``enter`` a marketing tool acts on, then an ``exit``. Once the replay is complete, the
audience pass (``streams.audience_refresh``) decides the rebuilt profiles' memberships at the
clock: one ``enter`` per membership they have, and no other record. It runs twice: the
second time with the category medians the first computed (a membership that needs them is
decided then; a true expression stays true with more known, so the first pass enters
nothing the second would take out).

Switch-over: the lane group's committed offsets are where the rebuild stopped, stamped with
the generation Redis now holds, so the lane's workers, started afterwards, continue from there
with every later record (``docs/operating.md#rebuilding-a-lane``); kept beside the state too
(``P:v1:offsets:{lane}``, ADR 0045), where they start should Kafka expire the group's
offsets. ``--resume`` continues an interrupted rebuild from those offsets (read once, for
the generation check and the start offsets both: ``generation.committed_offsets``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from resolvers.audiences import NO_AUDIENCES
from streams import kafka_clients
from streams.audience_refresh import AudienceRefresh
from streams.batch_runner import BatchRunner
from streams.errors import StateLostError
from streams.generation import (
    ASK_AGAIN,
    LANE_KEYS,
    Committed,
    ask_coordinator,
    committed_offsets,
    establish,
    lane_has_state,
    wiping,
)
from streams.kept_offsets import KeptOffsets, topic_id
from streams.lane_runner import raw_record
from streams.lane_status import LaneStatus
from streams.lease import Held, Lease
from streams.offsets import commit_within, next_offsets
from streams.redis_keys import Keys
from streams.redis_store import RedisStore
from streams.relay import RelaySupervisor
from streams.runtime import Runtime
from streams.startup import InfraError
from streams.stock_router import ROUTER_KEPT, hand_over, movement_ends

log = logging.getLogger(__name__)


class RebuildRefusedError(Exception):
    """A precondition does not hold; the message says what to do."""


@dataclass
class Report:
    lane: str
    generation: str = ""
    records: int = 0
    total: int = 0
    dead_letters: int = 0
    seconds: float = 0.0
    outbox_left: int = 0
    wiped_keys: int = 0
    end_offsets: dict[int, int] = field(default_factory=dict)
    audience_entries: int = 0  # memberships the closing audience pass entered


def group_members(
    admin: AdminClient,
    group: str,
    *,
    timeout_s: float,
    sleep: Callable[[float], object] = time.sleep,
) -> int:
    """How many members ``group`` has; a coordinator that moves or is still loading (a cluster
    just started) is asked again until ``timeout_s`` (``generation.ask_coordinator``)."""

    def ask(timeout: float) -> int:
        wait = min(15.0, timeout)
        (future,) = admin.describe_consumer_groups([group], request_timeout=wait).values()
        try:
            return len(future.result(timeout=wait + 1).members)  # librdkafka's timeout first
        except TimeoutError:  # no answer at all: as librdkafka's own request timeout says it
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT)) from None

    return ask_coordinator(ask, timeout_s=timeout_s, sleep=sleep)


@contextlib.contextmanager
def _no_coordinator(group: str, timeout_s: float) -> Iterator[None]:
    """A coordinator still moving or loading after ``timeout_s``: one line saying so
    (:class:`~streams.startup.InfraError`); any other error as it is."""
    try:
        yield
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if not isinstance(error, KafkaError) or error.code() not in ASK_AGAIN:
            raise
        raise InfraError(
            f"Kafka's coordinator of consumer group {group} did not answer within "
            f"{timeout_s:g} s ({error.name()}: {error.str()}); a cluster that has just started "
            f"may still be loading its offsets topic: run the same rebuild again once "
            f"`loom lag --group {group}` answers"
        ) from exc


@dataclass
class _Stall:
    """When the replay last moved (a record applied, a partition's end reached), when it last
    said it waits, and each partition's last fetch error (the replay reads past errors: they
    are librdkafka's reports, and it fetches again)."""

    moved_at: float
    said_at: float = float("-inf")
    last_error: dict[int, str] = field(default_factory=dict)

    def moved(self, now: float) -> None:
        self.moved_at = now

    def idle_s(self, now: float) -> float:
        return now - self.moved_at

    def due(self, now: float, after_s: float) -> bool:
        """Whether to say where the replay waits: idle for ``after_s``, and not said within."""
        if self.idle_s(now) < after_s or now - self.said_at < after_s:
            return False
        self.said_at = now
        return True

    def errors(self, messages: list[Message]) -> None:
        for m in messages:
            error = m.error()
            if error is not None:
                partition = m.partition()
                log.warning("rebuild: fetching %s [%s]: %s", m.topic(), partition, error)
                if partition is not None:
                    self.last_error[partition] = str(error)


class Rebuild:
    """One lane's rebuild (see the module docstring); ``await run()``."""

    def __init__(
        self,
        rt: Runtime,
        *,
        wipe: bool = False,
        resume: bool = False,
        allow_partial: bool = False,
        progress: Callable[[str], None] = print,
        progress_every_s: float = 2.0,
        drain_timeout_s: float = 120.0,
        coordinator_timeout_s: float = 60.0,
        lease_s: float = 30.0,
        stall_after_s: float = 60.0,
        commit_timeout_s: float = 60.0,
    ) -> None:
        self.rt, self.settings = rt, rt.settings
        self.lane = rt.lane.name
        self.group = self.settings.group_id(self.lane)
        self.wipe, self.resume, self.allow_partial = wipe, resume, allow_partial
        self.say, self.progress_every_s = progress, progress_every_s
        self.drain_timeout_s, self.coordinator_timeout_s = drain_timeout_s, coordinator_timeout_s
        #: a replay that reads no record and reaches no partition's end for this long says
        #: where it waits (``_stalled``), again every as long while it does
        self.stall_after_s = stall_after_s
        #: how long a commit of the group's offsets may take (:func:`commit_within`)
        self.commit_timeout_s = commit_timeout_s
        self._commit_stuck = False
        self.report = Report(self.lane)
        self.stopping = asyncio.Event()
        #: the lane's rebuild lease (module docstring), held from the members check to the end
        self.lease = Lease(
            rt.redis,
            Keys(self.settings.redis_prefix).rebuild_lease(self.lane),
            uuid.uuid4().hex,
            lease_s,
        )
        self._leased = False  # taken once: renewed from then on, given up at the end
        self.consumer = kafka_clients.consumer(
            self.settings,
            self.group,
            **{
                "client.id": f"loom-rebuild-{self.lane}",
                "enable.auto.commit": False,
                # an offset no longer held (retention deleted records under the replay) is an
                # error the replay says (``_stalled``), not a jump past them
                "auto.offset.reset": "error",
            },
        )

    def stop(self) -> None:
        self.stopping.set()

    # --- preconditions -------------------------------------------------------------------
    def _members(self) -> int:
        admin = kafka_clients.admin(self.settings)
        with _no_coordinator(self.group, self.coordinator_timeout_s):
            return group_members(admin, self.group, timeout_s=self.coordinator_timeout_s)

    def _no_members(self) -> None:
        members = self._members()
        if members:
            raise RebuildRefusedError(
                f"{members} member(s) of {self.group} are running: stop every {self.lane} "
                f"worker first (their offsets cannot be set while they run)"
            )

    def _take_lease(self) -> None:
        if self.lease.hold() is Held.NO:
            raise RebuildRefusedError(
                f"another `loom rebuild --lane {self.lane}` holds the lane's lease "
                f"{self.lease.key} (it runs, or it died and the lease expires within "
                f"{self.lease.lease_s:g} s): let it finish, or run this again then"
            )
        self._leased = True

    async def _keep_lease(self) -> None:
        """Renew the lease while the rebuild runs, once it is taken (``Lease.hold`` asks
        Redis once per third of a lease). A renewal Redis does not answer is tried again; a
        lease lost meanwhile makes the rebuild's own commits refused."""
        while True:
            await asyncio.sleep(self.lease.lease_s / 6)
            if not self._leased:
                continue
            try:
                if await asyncio.to_thread(self.lease.hold) is Held.NO:
                    log.error("rebuild %s: lost the lease %s", self.lane, self.lease.key)
            except Exception as exc:  # kept trying until the rebuild ends
                log.warning("rebuild %s: renewing its lease failed (%s)", self.lane, exc)

    def _give_up_lease(self) -> None:
        if not self._leased:
            return
        try:
            self.lease.release()
        except Exception as exc:  # it expires on its own within lease_s
            log.warning(
                "rebuild %s: deleting its lease %s failed (%s); it expires within %g s",
                self.lane,
                self.lease.key,
                exc,
                self.lease.lease_s,
            )

    def _wipe(self) -> int:
        root = Keys(self.settings.redis_prefix).root
        deleted = 0
        for pattern in LANE_KEYS[self.lane]:
            batch: list[bytes] = []
            for key in self.rt.redis.scan_iter(match=f"{root}:{pattern}", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += int(self.rt.redis.unlink(*batch))
                    batch.clear()
            if batch:
                deleted += int(self.rt.redis.unlink(*batch))
        return deleted

    def _prepare(self) -> dict[int, tuple[int, int]]:
        """Check the preconditions; per partition ``(start offset, end offset)``."""
        prefix, raw = self.settings.redis_prefix, self.settings.topics.raw
        self._no_members()
        self._take_lease()
        self._no_members()  # a worker that joined just after the first ask is running now
        meta = self.consumer.list_topics(raw, timeout=15).topics[raw]
        partitions = sorted(meta.partitions)
        with _no_coordinator(self.group, self.coordinator_timeout_s):  # one read, for the
            offsets = committed_offsets(  # generation check and for --resume's start offsets
                self.consumer, raw, partitions, timeout_s=self.coordinator_timeout_s
            )
        committed = Committed.of(offsets)
        if committed.wiping and self.resume:  # what it replayed into may be half wiped
            self.say(
                f"the interrupted rebuild had not finished its wipe: wiping the {self.lane} "
                f"lane again and replaying from the earliest offsets"
            )
            self.resume = False
            # as the interrupted run would have replayed (its stamp says if it was allowed a
            # partial history): the operator ran the --resume its interruption said to run
            self.allow_partial = self.allow_partial or committed.wiping_partial
        wipe = not self.resume and lane_has_state(self.rt.redis, prefix, self.lane)
        if wipe and not self.wipe and not committed.wiping:
            raise RebuildRefusedError(
                f"Redis prefix {prefix!r} holds {self.lane} state: a rebuild replays into "
                f"an empty prefix. Pass --wipe to delete it first (it deletes the keys "
                f"{', '.join(LANE_KEYS[self.lane])} under {prefix}:v1), or use a new "
                f"LOOM_REDIS_PREFIX and LOOM_APP_ID (docs/operating.md#rebuilding-a-lane)"
            )
        if self.resume:
            try:
                generation = establish(self.rt.redis, prefix, self.lane, committed)
            except StateLostError as exc:  # Redis no longer holds what the offsets imply
                raise RebuildRefusedError(f"--resume cannot continue: {exc}") from exc
        else:  # the old offsets are what is being replaced
            generation = establish(self.rt.redis, prefix, self.lane, Committed(0, frozenset()))
        self.report.generation = generation
        if isinstance(self.rt.store, RedisStore):
            self.rt.store.generation = generation
            self.rt.store.rebuild_token = self.lease.owner  # its commits pass the lease
        bounds: dict[int, tuple[int, int]] = {}
        starts = {tp.partition: tp.offset for tp in offsets if self.resume and tp.offset >= 0}
        deleted = 0
        for p in partitions:
            low, high = self.consumer.get_watermark_offsets(TopicPartition(raw, p), timeout=10)
            deleted += low
            bounds[p] = (max(low, starts.get(p, low)), high)
        if deleted and not self.resume and not self.allow_partial:
            raise RebuildRefusedError(
                f"{raw} no longer holds its first {deleted} records (retention deleted them): "
                f"a rebuild from what is left would be partial. Keep the raw topic's history "
                f"(LOOM_RAW_RETENTION_MS=-1), or pass --allow-partial"
            )
        self.report.end_offsets = {p: high for p, (_, high) in bounds.items()}
        self.report.total = sum(max(0, high - low) for low, high in bounds.values())
        if not self.resume:  # every partition restarts here, stamped with the generation
            stamp = wiping(generation, partial=self.allow_partial) if wipe else generation
            self._commit(  # (said to be wiping, while it wipes: workers refuse to start then)
                [TopicPartition(raw, p, low, stamp) for p, (low, _) in bounds.items()]
                + self._routed(stamp if wipe else None),
                then="run the rebuild again (nothing was changed)",
            )
        if wipe:  # only now: the group's old offsets no longer say this state is there
            self.report.wiped_keys = self._wipe()
            self.say(f"wiped {self.report.wiped_keys} {self.lane} keys under {prefix}:v1")
            self._commit(
                [TopicPartition(raw, p, low, generation) for p, (low, _) in bounds.items()],
                then=f"run `loom rebuild --lane {self.lane} --resume` (it wipes again)",
            )
        return bounds

    def _routed(self, stamp: str | None) -> list[TopicPartition]:
        """Routed by SKU (ADR 0014), the inventory lane's workers make their start check on
        the group's offsets on the stock-movement topic: a wiping rebuild stamps them too
        (``stamp``: ``wiping:``, at the topic's end offsets), and only the hand-over at its
        end stamps them with the generation (the routed workers cannot continue a replay
        left half done: their router's offsets are set there too). Nothing otherwise, or
        without ``stamp``."""
        routed = self.lane == "inventory" and self.settings.inventory_routing == "by-sku"
        if stamp is None or not routed:
            return []
        return movement_ends(self.settings, self.consumer, stamp)

    # --- the replay ----------------------------------------------------------------------
    async def run(self) -> Report:
        keeper = asyncio.create_task(self._keep_lease())
        try:
            return await self._run()
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            await asyncio.to_thread(self._give_up_lease)

    async def _run(self) -> Report:
        started = time.monotonic()
        bounds = await asyncio.to_thread(self._prepare)
        raw = self.settings.topics.raw
        todo = {p for p, (low, high) in bounds.items() if high > low}
        self.say(
            f"rebuilding the {self.lane} lane: {self.report.total} records of {raw} from "
            f"{'the committed' if self.resume else 'the earliest'} offsets, generation "
            f"{self.report.generation}"
        )
        self.consumer.assign([TopicPartition(raw, p, bounds[p][0]) for p in sorted(todo)])
        status = LaneStatus()
        batches = BatchRunner(self._replay_runtime(), status, self.stopping)
        relay = RelaySupervisor(
            self.rt.new_relay,
            self.rt.metrics.relay,
            backoff_max_s=self.settings.retry_backoff_max_s,
            failing_after_s=self.settings.stuck_after_s,
        )
        wakeup = asyncio.Event()
        relay.start(wakeup)
        last_said = time.monotonic()
        try:
            stall = _Stall(time.monotonic())
            while todo and not self.stopping.is_set():
                messages = await asyncio.to_thread(
                    self.consumer.consume, self.settings.batch_size, 0.5
                )
                records = [raw_record(m) for m in messages if m.error() is None]
                stall.errors(messages)
                if records:
                    applied = await batches.run(records)
                    self.report.records += len(records)
                    self.report.dead_letters += len(applied.dead_letters)
                    done = next_offsets(records, self.report.generation)
                    await asyncio.to_thread(self._commit, done)
                    wakeup.set()
                    stall.moved(time.monotonic())
                if self._reached(todo, bounds):
                    stall.moved(time.monotonic())
                if time.monotonic() - last_said >= self.progress_every_s:
                    last_said = time.monotonic()
                    self._progress(started)
                if todo and stall.due(time.monotonic(), self.stall_after_s):
                    self._stalled(todo, bounds, stall)
            routed: list[TopicPartition] = []
            if (
                not todo
                and self.lane == "inventory"
                and self.settings.inventory_routing == "by-sku"
            ):
                routed = await asyncio.to_thread(  # the routed workers continue from here
                    hand_over,  # (ADR 0014)
                    self.settings,
                    self.consumer,
                    self.report.generation,
                    self.report.end_offsets,
                )
            if not todo:
                await asyncio.to_thread(self._keep_ends, routed)
            if not todo and self._audiences_after_replay():
                await asyncio.to_thread(self._decide_audiences)
                wakeup.set()
            self.report.outbox_left = await self._drain(relay)
        finally:
            await relay.stop()
            if not self._commit_stuck:
                self.consumer.close()
        self.report.seconds = time.monotonic() - started
        return self.report

    def _keep_ends(self, routed: list[TopicPartition]) -> None:
        """Keep where the replay left the groups beside the state (ADR 0045), as the workers
        keep what they commit: the wipe deleted what they kept, and a partition no worker
        commits again (nothing new there, or the lane stopped) had nothing kept, so once Kafka
        expired the group's offsets the lane read it all again. The raw topic's end offsets
        under the lane's name (and the router's, ``routed``: the stock-movement offsets the
        hand-over committed, under the lane's name too)."""
        s, raw, redis = self.settings, self.settings.topics.raw, self.rt.redis
        keys, admin = Keys(s.redis_prefix), kafka_clients.admin(s)
        ends = [TopicPartition(raw, p, end) for p, end in sorted(self.report.end_offsets.items())]
        kept = [(self.lane, raw, ends)]
        if routed:
            kept += [(ROUTER_KEPT, raw, ends), (self.lane, s.topics.stock_movements, routed)]
        for name, topic, offsets in kept:
            try:
                tid = topic_id(admin, topic)
            except KafkaException as exc:  # best effort, as the workers' (the groups' stand)
                log.warning("rebuild %s: offsets of %s not kept in Redis (%s)", self.lane,
                            topic, exc)  # fmt: skip
                continue
            KeptOffsets(
                redis, keys.offsets(name), topic, tid,
                generation_key=keys.generation, generation=self.report.generation,
            ).keep(offsets)  # fmt: skip

    def _reached(self, todo: set[int], bounds: dict[int, tuple[int, int]]) -> bool:
        """Take out of ``todo`` the partitions whose next offset to read is their end offset
        (whether any was): read up to it, whether or not a record came at their last offset.
        A transaction's commit or abort marker and an aborted transaction's records take
        offsets no record is handed out at: a partition ending on one (a raw topic written by
        a transactional producer) was waited for for ever. Whether any was taken out."""
        raw = self.settings.topics.raw
        reached = {
            tp.partition
            for tp in self.consumer.position([TopicPartition(raw, p) for p in sorted(todo)])
            if tp.offset >= bounds[tp.partition][1]
        }
        todo -= reached
        return bool(reached)

    def _stalled(self, todo: set[int], bounds: dict[int, tuple[int, int]], stall: _Stall) -> None:
        """Say which partitions the replay waits for, at which offset, and why it may."""
        raw = self.settings.topics.raw
        where = []
        for tp in self.consumer.position([TopicPartition(raw, p) for p in sorted(todo)]):
            low, high = bounds[tp.partition]
            at = tp.offset if tp.offset >= 0 else low
            error = stall.last_error.get(tp.partition)
            where.append(
                f"{raw} [{tp.partition}] at offset {at} of end {high}"
                + (f" (last fetch error: {error})" if error else "")
            )
        self.say(
            f"rebuild {self.lane} waits: no record for {stall.idle_s(time.monotonic()):.0f} s "
            f"from {'; '.join(where)}. Stop it (SIGTERM) and, once the error's cause is fixed, "
            f"run `loom rebuild --lane {self.lane} --resume` (records deleted under the "
            f"replay: it goes on from the earliest left)"
        )

    def _audiences_after_replay(self) -> bool:
        return (
            self.lane == "profiles"
            and bool(self.rt.audiences.by_name)
            and isinstance(self.rt.store, RedisStore)
        )

    def _replay_runtime(self) -> Runtime:
        """The runtime the replay's batches run with: without audiences when the closing pass
        decides them (module docstring)."""
        if not self._audiences_after_replay():
            return self.rt
        return replace(self.rt, audiences=NO_AUDIENCES)

    def _decide_audiences(self) -> None:
        """The rebuilt profiles' memberships at the clock (module docstring)."""
        store = self.rt.store
        assert isinstance(store, RedisStore)
        first = AudienceRefresh(store, self.rt.redis, self.rt.context).run()
        medians = first.medians
        second = AudienceRefresh(
            store, self.rt.redis, lambda: replace(self.rt.context(), medians=medians)
        ).run()
        entered = sum(first.entered.values()) + sum(second.entered.values())
        self.report.audience_entries = entered
        self.say(f"audiences decided on {first.profiles:,} rebuilt profiles: {entered:,} entries")

    def _commit(self, offsets: list[TopicPartition], *, then: str = "") -> None:
        """Synchronously, so that a worker started by mistake meanwhile is noticed at once (a
        group with members takes no commit from outside it), for ``commit_timeout_s`` at most
        (:func:`commit_within`; then :class:`~streams.startup.InfraError`). ``then``: what
        to do after stopping the worker (default: resume)."""
        error: object = None
        try:
            done = commit_within(self.consumer, offsets, self.commit_timeout_s)
            error = next((tp.error for tp in done if tp.error is not None), None)
        except KafkaException as exc:
            error = exc
        except TimeoutError:
            self._commit_stuck = True  # the consumer is not closed: that would wait on it
            raise InfraError(
                f"Kafka did not answer the commit of {self.group}'s offsets within "
                f"{self.commit_timeout_s:g} s (a broker that stalled: librdkafka's commit "
                f"may then never return); once `loom lag --group {self.group}` answers, "
                f"run `loom rebuild --lane {self.lane} --resume`"
            ) from None
        if error is not None:
            raise RebuildRefusedError(
                f"committing {self.group}'s offsets failed ({error}): did a {self.lane} "
                f"worker start during the rebuild? Stop it and "
                f"{then or f'run `loom rebuild --lane {self.lane} --resume`'}"
            )

    def _progress(self, started: float) -> None:
        r, elapsed = self.report, max(1e-9, time.monotonic() - started)
        rate = r.records / elapsed
        left = max(0, r.total - r.records)
        eta = f", ETA {left / rate:.0f} s" if rate > 0 else ""
        share = r.records / r.total if r.total else 1.0
        self.say(
            f"rebuild {self.lane}: {r.records:,} / {r.total:,} records ({share:.0%}), "
            f"{rate:,.0f} records/s{eta}"
        )

    async def _drain(self, relay: RelaySupervisor) -> int:
        """Wait for the relay to deliver the outbox (at most ``drain_timeout_s``), saying every
        ``progress_every_s`` how many records wait and which relay delivers them."""
        started = time.monotonic()
        deadline = started + self.drain_timeout_s
        key = Keys(self.settings.redis_prefix).outbox
        said = started
        while True:
            left = int(await asyncio.to_thread(self.rt.redis.xlen, key))
            if not left or time.monotonic() > deadline or self.stopping.is_set():
                return left
            if time.monotonic() - said >= self.progress_every_s:
                said = time.monotonic()
                who = await asyncio.to_thread(self._outbox_holder, relay)
                self.say(
                    f"rebuild {self.lane}: {left:,} outbox records wait for Kafka after "
                    f"{said - started:.0f} s ({who}; the rebuild waits "
                    f"{self.drain_timeout_s:g} s at most)"
                )
            await asyncio.sleep(0.2)

    def _outbox_holder(self, relay: RelaySupervisor) -> str:
        """Which relay delivers the outbox: this rebuild's, or the holder of its lease."""
        lease = relay.relay.lease
        if relay.relay.active():
            return "this rebuild's relay delivers them"
        holder = self.rt.redis.get(lease.key)
        if holder is None:
            return f"no relay holds the outbox's lease {lease.key}"
        owner = holder.decode(errors="replace") if isinstance(holder, bytes) else str(holder)
        return (
            f"the outbox's lease {lease.key} is held by {owner}: that relay delivers them; "
            f"one that fails keeps the lease while it retries, and its loom_relay_failing "
            f"and /readyz say why"
        )
