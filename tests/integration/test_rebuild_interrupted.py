"""``loom rebuild`` interrupted, or raced by a worker of its lane, on real Kafka and Redis: what
``--resume`` then continues from must give the profiles a clean rebuild gives.

The interruptions are injected at the rebuild's offset commits (``Rebuild._commit``): a crash
after a batch's atomic Redis commit and before its offsets are saved, and a worker joining the
lane's group just before the rebuild resets the group's offsets."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Literal

import pytest
import redis
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from deployment import deployment_settings, rebuild
from test_lookup import live_snapshots

from resolvers.store import Commit, Write, profile_ref
from schemas.touchpoint import dump_touchpoint
from streams.errors import StateLostError
from streams.generation import Committed, committed_offsets, establish
from streams.rebuild import Rebuild, RebuildRefusedError
from streams.redis_store import RedisStore
from streams.settings import LoomSettings
from streams.simulate import Simulator

pytestmark = pytest.mark.integration

EVENTS = 120


class CrashError(Exception):
    """The rebuild's process dying at the injected point."""


@pytest.fixture
def deployment(
    kafka_bootstrap: str,
    redis_url: str,
    redis_client: redis.Redis,
    unique_topic: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[str], LoomSettings]]:
    """A raw topic (one partition: a deterministic order) holding EVENTS simulator
    touchpoints, and ``settings(name)``: a deployment of its own on it (Redis prefix, app id,
    output topics) in batches of 7."""
    raw = unique_topic(partitions=1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    sim = Simulator(seed=11, customers=25, stores=2, skus=10)
    for tp in itertools.islice(sim.events(), EVENTS):
        producer.produce(raw, value=dump_touchpoint(tp), partition=0)
    assert producer.flush(30) == 0
    # a fresh cluster creates its offsets topic at the first group's first ask: the rebuild
    # would wait for it (test_rebuild_fresh_cluster), up to 15 s per unanswered ask
    warm = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"warm-{raw}"})
    committed_offsets(warm, raw, [0], timeout_s=60)
    warm.close()
    prefixes: list[str] = []

    def settings(name: str) -> LoomSettings:
        tag = f"{name}-{uuid.uuid4().hex[:8]}"
        prefixes.append(tag)
        return deployment_settings(
            monkeypatch,
            kafka_bootstrap=kafka_bootstrap,
            redis_url=redis_url,
            tag=tag,
            raw=raw,
            LOOM_BATCH_SIZE="7",
        )

    yield settings
    for prefix in prefixes:
        keys = list(redis_client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            redis_client.unlink(*keys)


def crashing_at_the_third_batch() -> type[Rebuild]:
    """A rebuild that crashes after its third batch's atomic Redis commit, before the batch's
    offsets are committed."""

    class CrashAtThirdBatch(Rebuild):
        commits = 0  # the offsets' reset, then one per batch

        def _commit(self, offsets: list[TopicPartition], *, then: str = "") -> None:
            type(self).commits += 1
            if type(self).commits == 4:
                raise CrashError
            super()._commit(offsets, then=then)

    return CrashAtThirdBatch


def snapshots(client: redis.Redis, settings: LoomSettings) -> dict[str, Any]:
    found = live_snapshots(client, settings.redis_prefix)
    assert found  # the simulator's events make profiles
    return found


def test_a_resume_after_a_crash_between_a_batch_s_commit_and_its_offsets_is_exact(
    deployment: Callable[[str], LoomSettings], redis_client: redis.Redis
) -> None:
    """The crash leaves a batch applied to Redis whose offsets the group does not have: the
    resume reads it again, and the lane's processed markers skip it (ADR 0006), so no event
    counts twice and none is lost. Ruled out as a fault; this guards it."""
    clean = deployment("clean")
    rebuild(clean)
    expected = snapshots(redis_client, clean)

    resumed = deployment("resumed")
    with pytest.raises(CrashError):
        rebuild(resumed, crashing_at_the_third_batch())
    partial = live_snapshots(redis_client, resumed.redis_prefix)
    assert partial  # interrupted mid-way, not at an end
    assert partial != expected

    report = rebuild(resumed, resume=True)
    assert report.records == EVENTS - 2 * 7  # the third batch is read again
    assert snapshots(redis_client, resumed) == expected


class CoordinatorMovesAfterItsFirstAnswer:
    """The rebuild's consumer, whose group coordinator moves after answering once: the next
    ``committed`` answer carries NOT_COORDINATOR on every partition and no offset, as
    librdkafka reports a partition whose fetch failed; later ones are answered again."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer, self.answers = consumer, 0

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[Any]:
        self.answers += 1
        if self.answers == 2:
            return [FailedFetch(tp.topic, tp.partition) for tp in partitions]
        return self.consumer.committed(partitions, timeout=timeout)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.consumer, name)


class FailedFetch:
    """A partition of ``committed``'s answer whose fetch failed (``TopicPartition.error``
    cannot be set from Python)."""

    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition, self.offset, self.metadata = topic, partition, -1001, None
        self.error = KafkaError(KafkaError.NOT_COORDINATOR)


def test_a_resume_whose_coordinator_moves_continues_from_the_committed_offsets(
    deployment: Callable[[str], LoomSettings], redis_client: redis.Redis
) -> None:
    """``--resume`` read the group's committed offsets twice: once for the generation check
    (asked again while the coordinator moves), once more for its start offsets with a bare
    ``committed()``, whose failed partitions (no offset) were read as "never committed": the
    resume replayed from the earliest offsets, 120 records for the 106 left. One read now
    serves both."""
    clean = deployment("clean")
    rebuild(clean)
    expected = snapshots(redis_client, clean)

    class ResumeAsTheCoordinatorMoves(Rebuild):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.consumer = CoordinatorMovesAfterItsFirstAnswer(self.consumer)  # type: ignore[assignment]

    resumed = deployment("resumed")
    with pytest.raises(CrashError):
        rebuild(resumed, crashing_at_the_third_batch())

    report = rebuild(resumed, ResumeAsTheCoordinatorMoves, resume=True)
    assert report.records == EVENTS - 2 * 7  # from the committed offsets, not the earliest
    assert snapshots(redis_client, resumed) == expected


def test_a_worker_starting_as_a_wiping_rebuild_resets_the_offsets_loses_no_state(
    deployment: Callable[[str], LoomSettings], redis_client: redis.Redis, kafka_bootstrap: str
) -> None:
    """A worker of the lane joins its group after the rebuild's check that none runs, just
    before the rebuild resets the group's offsets. The reset is refused (a group with members
    takes no commit from outside: the fence), and the rebuild said to stop the worker and
    rerun with --resume. It had already wiped the lane's keys, and the group's offsets were
    still the old ones, stamped with the generation Redis keeps across a wipe (both lanes
    share it): the worker passed its start check, and --resume continued from the old end
    offsets into the empty lane and said it rebuilt 0 records, every profile gone. Now the
    wipe comes after the reset: nothing was changed, and the refusal says to rerun."""
    settings = deployment("raced")
    rebuild(settings)  # the deployment as it was: state, and offsets at the end
    expected = snapshots(redis_client, settings)
    raw, group = settings.topics.raw, settings.group_id("profiles")

    class WorkerStartsAtTheReset(Rebuild):
        worker: Consumer | None = None

        def _commit(self, offsets: list[TopicPartition], *, then: str = "") -> None:
            if type(self).worker is None:  # the reset: a worker joins the group first
                type(self).worker = joined_worker(kafka_bootstrap, group, raw)
            super()._commit(offsets, then=then)

    with pytest.raises(RebuildRefusedError, match="did a profiles worker start"):
        rebuild(settings, WorkerStartsAtTheReset, wipe=True)
    assert snapshots(redis_client, settings) == expected
    worker = WorkerStartsAtTheReset.worker
    assert worker is not None
    try:  # the worker's start check, as the worker makes it
        committed = Committed.read(worker, raw, [0])
        establish(redis_client, settings.redis_prefix, "profiles", committed)
    finally:
        worker.close()  # the operator stops it, as told

    rebuild(settings, resume=True)
    assert snapshots(redis_client, settings) == expected


def joined_worker(bootstrap: str, group: str, raw: str) -> Consumer:
    """A worker of the lane's group, once the group has assigned it its partition."""
    worker = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    worker.subscribe([raw])
    for _ in range(600):  # until the group has assigned it its partition
        if worker.assignment():
            break
        worker.poll(0.1)
    assert worker.assignment(), "the worker never joined the group"
    return worker


def test_a_worker_starting_while_a_rebuild_wipes_refuses_to_process(
    deployment: Callable[[str], LoomSettings], redis_client: redis.Redis, kafka_bootstrap: str
) -> None:
    """A worker of the lane joins its group after the wiping rebuild reset the offsets, while
    the rebuild deletes the lane's keys. Its start check passed (the reset offsets carry the
    generation Redis keeps across a wipe), so it would process into the lane being wiped:
    keys it writes deleted under it, or kept beside markers deleted. Now the reset offsets say
    "a rebuild wipes": the worker refuses and leaves, and the rebuild goes on."""
    settings = deployment("wiped-under")
    rebuild(settings)
    expected = snapshots(redis_client, settings)
    raw, group = settings.topics.raw, settings.group_id("profiles")

    class WorkerStartsDuringTheWipe(Rebuild):
        refused: Exception | None = None

        def _wipe(self) -> int:
            worker = joined_worker(kafka_bootstrap, group, raw)
            try:  # the worker's start check, as the worker makes it
                committed = Committed.read(worker, raw, [0])
                establish(redis_client, settings.redis_prefix, "profiles", committed)
            except StateLostError as exc:
                type(self).refused = exc
            finally:
                deleted = super()._wipe()
                worker.close()  # the worker stops on the refusal (or the operator stops it)
            return deleted

    rebuild(settings, WorkerStartsDuringTheWipe, wipe=True)
    refused = WorkerStartsDuringTheWipe.refused
    assert refused is not None, "the worker passed its start check while the rebuild wiped"
    assert "loom rebuild --lane profiles --resume" in str(refused)
    assert snapshots(redis_client, settings) == expected


class UnlinkCrashes:
    """The rebuild's Redis client, whose process dies at its ``crash_at``-th UNLINK."""

    def __init__(self, client: redis.Redis, crash_at: int) -> None:
        self.client, self.crash_at, self.unlinks = client, crash_at, 0

    def unlink(self, *keys: Any) -> Any:
        self.unlinks += 1
        if self.unlinks == self.crash_at:
            raise CrashError
        return self.client.unlink(*keys)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_a_resume_after_a_crash_during_the_wipe_wipes_again(
    deployment: Callable[[str], LoomSettings], redis_client: redis.Redis
) -> None:
    """The wiping rebuild dies half-way through the wipe: the lane's profiles are gone but
    some of its keys (the processed markers) are not. The resume it says to run continued
    from the reset offsets over that half-wiped lane. Now it wipes again first."""
    settings = deployment("half-wiped")
    rebuild(settings)
    expected = snapshots(redis_client, settings)

    class CrashMidWipe(Rebuild):
        def _wipe(self) -> int:
            self.rt.redis = UnlinkCrashes(self.rt.redis, crash_at=4)  # type: ignore[assignment]
            return super()._wipe()

    with pytest.raises(CrashError):
        rebuild(settings, CrashMidWipe, wipe=True)

    rebuild(settings, resume=True)
    assert snapshots(redis_client, settings) == expected


def test_a_wiping_rebuild_refused_for_a_partial_history_leaves_the_lane_as_it_was(
    deployment: Callable[[str], LoomSettings], redis_client: redis.Redis, kafka_bootstrap: str
) -> None:
    """``--wipe`` on a raw topic retention has shortened: the rebuild refuses (it would be
    partial), and must not have wiped first. It wiped, then refused, leaving the group's old
    offsets stamped with the generation Redis keeps: the workers started again over an empty
    lane without noticing."""
    settings = deployment("partial")
    rebuild(settings)
    expected = snapshots(redis_client, settings)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.delete_records([TopicPartition(settings.topics.raw, 0, 3)]).values():
        future.result(timeout=30)  # the first three records: gone with retention

    with pytest.raises(RebuildRefusedError, match="would be partial"):
        rebuild(settings, wipe=True)
    assert snapshots(redis_client, settings) == expected


@pytest.mark.parametrize("commit", ["script", "watch"])
def test_a_worker_that_passed_its_start_check_before_a_rebuild_writes_nothing_during_it(
    deployment: Callable[[str], LoomSettings],
    redis_client: redis.Redis,
    kafka_bootstrap: str,
    commit: Literal["script", "watch"],
) -> None:
    """The race the group's "no members" check cannot close: a worker's start check read the
    group's old offsets (stamped with the generation a wipe keeps), and its JoinGroup reached
    the coordinator only after the rebuild's check. Its batches passed the commit's generation
    check and landed in the lane while the rebuild replayed into it: a profile no replayed
    record wrote. Now the rebuild holds its lane's lease in Redis, and a commit of that lane
    by anyone else is refused in the same atomic call: nothing written, a clear error."""
    settings = deployment(f"fenced-{commit}")
    rebuild(settings)
    expected = snapshots(redis_client, settings)
    raw, prefix = settings.topics.raw, settings.redis_prefix
    starting = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": settings.group_id("profiles")}
    )
    try:  # the worker's start check, as the worker makes it, before the rebuild starts
        committed = Committed.read(starting, raw, [0])
    finally:
        starting.close()
    worker = RedisStore(redis_client, prefix=prefix, commit=commit)
    worker.generation = establish(redis_client, prefix, "profiles", committed)  # as it sets it
    intruder = profile_ref("written-during-the-rebuild")

    def worker_batch(event_id: str) -> None:
        worker.commit(
            Commit(
                expect={intruder: 0},
                event_ids=(event_id,),
                writes=[Write(intruder, 1, {"d": b"{}"})],
            )
        )

    class WorkerCommitsMidReplay(Rebuild):
        commits = 0  # the offsets' reset, after the wipe, then one per batch
        refused: Exception | None = None

        def _commit(self, offsets: list[TopicPartition], *, then: str = "") -> None:
            type(self).commits += 1
            if type(self).commits == 3:  # the first batch was replayed: the worker's batch
                try:
                    worker_batch("racing-worker-1")
                except StateLostError as exc:
                    type(self).refused = exc
            super()._commit(offsets, then=then)

    rebuild(settings, WorkerCommitsMidReplay, wipe=True)
    refused = WorkerCommitsMidReplay.refused
    assert refused is not None, "the worker's batch was committed during the rebuild"
    assert "loom rebuild --lane profiles" in str(refused)
    assert "nothing of this batch was written" in str(refused)
    assert not redis_client.exists(worker.keys.entity(intruder))
    assert snapshots(redis_client, settings) == expected
    # the rebuild done, its lease is gone: the lane's commits are taken again
    worker_batch("worker-after-the-rebuild")
    assert redis_client.hget(worker.keys.entity(intruder), "v") == b"1"


def test_a_rebuild_keeps_its_lease_past_its_expiry_and_a_second_rebuild_is_refused(
    deployment: Callable[[str], LoomSettings], redis_client: redis.Redis
) -> None:
    """The lease expires after ``lease_s`` unless renewed: a rebuild that outlived it would
    leave its lane unfenced. Held here for three times its expiry (0.6 s) mid-replay, it is
    still the rebuild's; a second rebuild of the lane meanwhile is refused; at the end it is
    gone."""
    settings = deployment("leased")
    key = f"{settings.redis_prefix}:v1:rebuild-lease:profiles"
    second: list[BaseException] = []

    class SlowFirstBatch(Rebuild):
        commits = 0

        def _commit(self, offsets: list[TopicPartition], *, then: str = "") -> None:
            type(self).commits += 1
            if type(self).commits == 2:  # the first batch's offsets (no wipe: one reset)
                held_since = time.monotonic()
                while time.monotonic() - held_since < 3 * 0.6:
                    assert redis_client.get(key) == self.lease.owner.encode()
                    time.sleep(0.05)
                other = Rebuild(self.rt, progress=lambda _: None)
                try:
                    with pytest.raises(RebuildRefusedError) as refused:
                        other._prepare()
                finally:
                    other.consumer.close()
                second.append(refused.value)
            super()._commit(offsets, then=then)

    rebuild(settings, SlowFirstBatch, lease_s=0.6)
    assert "another `loom rebuild --lane profiles` holds the lane's lease" in str(second[0])
    assert redis_client.get(key) is None
    assert snapshots(redis_client, settings)


def test_a_resume_that_wipes_again_keeps_the_interrupted_runs_allow_partial(
    deployment: Callable[[str], LoomSettings], redis_client: redis.Redis, kafka_bootstrap: str
) -> None:
    """Retention shortened the raw topic, and a ``--wipe --allow-partial`` rebuild died during
    its wipe. The ``--resume`` its refusal says to run wipes again and replays from the
    earliest offsets, so it checks the history again: it refused as partial, and the operator
    had to know to pass --allow-partial once more. The reset offsets' stamp remembers it now:
    the resume gives the profiles a clean partial rebuild gives."""
    settings = deployment("partial-resumed")
    rebuild(settings)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.delete_records([TopicPartition(settings.topics.raw, 0, 3)]).values():
        future.result(timeout=30)  # the first three records: gone with retention
    clean = deployment("partial-clean")
    rebuild(clean, allow_partial=True)
    expected = snapshots(redis_client, clean)

    class CrashMidWipe(Rebuild):
        def _wipe(self) -> int:
            self.rt.redis = UnlinkCrashes(self.rt.redis, crash_at=2)  # type: ignore[assignment]
            return super()._wipe()

    with pytest.raises(CrashError):
        rebuild(settings, CrashMidWipe, wipe=True, allow_partial=True)

    rebuild(settings, resume=True)
    assert snapshots(redis_client, settings) == expected


def test_a_routed_worker_starting_after_a_crash_during_an_inventory_wipe_refuses(
    deployment: Callable[[str], LoomSettings],
    redis_client: redis.Redis,
    kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Routed by SKU (ADR 0014), the inventory lane's applier consumes the stock-movement
    topic and makes its start check on its group's offsets THERE; a wiping rebuild stamped
    only the raw topic's `wiping:`. After a rebuild died during its wipe, a worker started:
    its applier passed the start check (the movements' offsets still carried the generation a
    wipe keeps) and would apply movements into the half-wiped lane. Now the reset stamps the
    movements' offsets `wiping:` too, until the wipe is done: the applier refuses, and after
    the --resume it says to run it starts again."""
    monkeypatch.setenv("LOOM_INVENTORY_ROUTING", "by-sku")
    settings = deployment("routed-wipe")
    movements, group = settings.topics.stock_movements, settings.group_id("inventory")
    led(kafka_bootstrap, movements)
    rebuild(settings, lane="inventory")

    def applier_start_check() -> str:  # as the routed lane's runner makes it
        applier = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
        try:
            partitions = sorted(
                applier.list_topics(movements, timeout=10).topics[movements].partitions
            )
            committed = Committed.read(applier, movements, partitions)
        finally:
            applier.close()
        return establish(redis_client, settings.redis_prefix, "inventory", committed)

    generation = applier_start_check()

    class CrashMidWipe(Rebuild):
        def _wipe(self) -> int:
            self.rt.redis = UnlinkCrashes(self.rt.redis, crash_at=2)  # type: ignore[assignment]
            return super()._wipe()

    with pytest.raises(CrashError):
        rebuild(settings, CrashMidWipe, lane="inventory", wipe=True)
    with pytest.raises(StateLostError, match="loom rebuild --lane inventory --resume"):
        applier_start_check()

    rebuild(settings, lane="inventory", resume=True)
    assert applier_start_check() == generation


def led(bootstrap: str, topic: str) -> None:
    """Until every partition of ``topic`` (just created) has a leader that answers for its
    offsets (the rebuild's hand-over reads them once, without asking again)."""
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"led-{topic}"})
    try:
        for _ in range(300):
            partitions = reader.list_topics(topic, timeout=10).topics[topic].partitions
            try:
                for p in partitions:
                    reader.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
            except KafkaException:
                reader.poll(0.1)
                continue
            if partitions:
                return
        raise AssertionError(f"{topic} has no leader for every partition")
    finally:
        reader.close()
