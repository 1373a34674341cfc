"""The outbox relay on real Redis and Kafka: it survives what used to kill it (NOGROUP after the
outbox vanished, OOM under maxmemory, a record Kafka refuses) and never loses a record. Its
producers report failures only, as a worker's (``PRODUCER_CONFIG``)."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from collections.abc import Callable

import pytest
import redis
from confluent_kafka import Consumer, Producer
from prometheus_client import CollectorRegistry

from resolvers.store import Commit, Kind, OutboxRecord, Write, profile_ref
from streams import outbox
from streams.backoff import Backoff
from streams.errors import KafkaUnavailableError, RecordRefusedError
from streams.metrics import RelayMetrics
from streams.redis_store import RedisStore
from streams.relay import PRODUCER_CONFIG, OutboxRelay, RelaySupervisor


def read_topic(bootstrap: str, topic: str, expect: int, timeout: float = 30) -> list[bytes]:
    return [value for _, value in read_keyed(bootstrap, topic, expect, timeout)]  # type: ignore[misc]


def read_keyed(
    bootstrap: str, topic: str, expect: int, timeout: float = 30
) -> list[tuple[bytes | None, bytes | None]]:
    """The first ``expect`` records of ``topic`` as (key, value), and any more (a duplicate)
    arriving within a second after them."""
    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"r-{topic}", "auto.offset.reset": "earliest"}
    )
    c.subscribe([topic])
    out: list[tuple[bytes | None, bytes | None]] = []
    deadline = time.monotonic() + timeout
    while len(out) < expect and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is not None and not msg.error():
            out.append((msg.key(), msg.value()))
    # anything beyond `expect` (a duplicate) shows up within a short extra wait
    extra_deadline = time.monotonic() + 1.0
    while time.monotonic() < extra_deadline:
        msg = c.poll(0.2)
        if msg is not None and not msg.error():
            out.append((msg.key(), msg.value()))
    c.close()
    return out


def add(client: redis.Redis, key: str, topic: str, values: list[bytes]) -> None:
    """One entry per record, in the format before batches packed theirs (still read)."""
    for v in values:
        client.xadd(key, {"topic": topic, "value": v})


def add_packed(client: redis.Redis, key: str, topic: str, values: list[bytes]) -> None:
    """One entry holding every record, as a batch's commit writes them."""
    client.xadd(key, {outbox.FIELD: outbox.pack([OutboxRecord(topic, None, v) for v in values])})


@pytest.fixture
def supervisor(
    redis_client: redis.Redis, redis_prefix: str, kafka_bootstrap: str
) -> Callable[..., RelaySupervisor]:
    def make(**kw: object) -> RelaySupervisor:
        def new_relay() -> OutboxRelay:
            producer = Producer(
                {
                    **PRODUCER_CONFIG,
                    "bootstrap.servers": kafka_bootstrap,
                    "enable.idempotence": True,
                    "acks": "all",
                }
            )
            return OutboxRelay(redis_client, producer, f"{redis_prefix}:v1:outbox", "c1")

        return RelaySupervisor(
            new_relay,
            RelayMetrics.create(CollectorRegistry()),
            backoff_max_s=kw.pop("backoff_max_s", 0.2),  # type: ignore[arg-type]
            failing_after_s=kw.pop("failing_after_s", 60.0),  # type: ignore[arg-type]
            idle_s=kw.pop("idle_s", 0.05),  # type: ignore[arg-type]
            min_interval_s=0.0,
            stats_every_s=0.0,
        )

    return make


async def until(predicate: Callable[[], bool], within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.05)


def run_relay(sup: RelaySupervisor, scenario: Callable[[], object], *, woken: bool = True) -> None:
    """Run ``sup`` (woken by an event, as a worker's; ``woken=False``: by new outbox entries,
    as a ``loom relay``'s) while ``scenario`` runs."""

    async def main() -> None:
        sup.start(asyncio.Event() if woken else None)
        try:
            result = scenario()
            if asyncio.iscoroutine(result):
                await result
        finally:
            await sup.stop()

    asyncio.run(main())


def test_a_producer_reporting_failures_only_has_its_entries_acknowledged_in_one_pass(
    redis_client: redis.Redis, redis_prefix: str, kafka_bootstrap: str
) -> None:
    """The worker's relay producer reports no delivery (issue 17.2: ~1 µs per record): the
    pass still acknowledges every entry once Kafka took its records, without waiting out
    the flush timeout (before: "N record(s) still waiting for Kafka" after 5 s)."""
    topic, key = f"{redis_prefix}-only-errors", f"{redis_prefix}:v1:outbox"
    add_packed(redis_client, key, topic, [b"a%d" % i for i in range(300)])
    add_packed(redis_client, key, topic, [b"b%d" % i for i in range(200)])
    producer = Producer({**PRODUCER_CONFIG, "bootstrap.servers": kafka_bootstrap, "acks": "all"})
    relay = OutboxRelay(redis_client, producer, key, "c1", flush_timeout_s=5.0)
    started = time.monotonic()
    assert relay.relay() == 500
    assert time.monotonic() - started < 4.0  # settled when the queue emptied, not timed out
    assert redis_client.xlen(key) == 0
    assert redis_client.xpending(key, OutboxRelay.GROUP)["pending"] == 0
    got = read_topic(kafka_bootstrap, topic, 500)
    assert got == [b"a%d" % i for i in range(300)] + [b"b%d" % i for i in range(200)]


def test_the_relay_recreates_a_vanished_outbox_group_and_delivers_everything(
    redis_client: redis.Redis, redis_prefix: str, kafka_bootstrap: str, unique_topic, supervisor
) -> None:
    topic = unique_topic()
    key = f"{redis_prefix}:v1:outbox"
    sup = supervisor()

    async def scenario() -> None:
        add(redis_client, key, topic, [b"a1", b"a2"])
        await until(lambda: redis_client.xlen(key) == 0)
        redis_client.delete(key)  # Redis lost the stream and its group (a restart, no AOF)
        add(redis_client, key, topic, [b"b1", b"b2", b"b3"])  # XADD recreates the stream only
        await until(lambda: redis_client.xlen(key) == 0)
        assert sup.healthy()

    run_relay(sup, scenario)
    assert sorted(read_topic(kafka_bootstrap, topic, 5)) == [b"a1", b"a2", b"b1", b"b2", b"b3"]
    assert sup.failures == 0  # NOGROUP is handled, not a failure


def test_the_relay_waits_out_redis_oom_and_reports_it(
    redis_client: redis.Redis, redis_prefix: str, kafka_bootstrap: str, unique_topic, supervisor
) -> None:
    topic = unique_topic()
    key = f"{redis_prefix}:v1:outbox"
    sup = supervisor(failing_after_s=0.3)
    add(redis_client, key, topic, [b"x0"])
    old = redis_client.config_get("maxmemory")["maxmemory"]

    async def scenario() -> None:
        await until(lambda: redis_client.xlen(key) == 0)  # the group exists, one record sent
        add(redis_client, key, topic, [f"x{i}".encode() for i in range(1, 50)])
        redis_client.config_set("maxmemory", "1")  # every write is refused with OOM now
        try:
            await until(lambda: sup.failures >= 3 and not sup.healthy())
            assert redis_client.xlen(key) == 49  # nothing acknowledged, nothing dropped
        finally:
            redis_client.config_set("maxmemory", old)
        await until(lambda: redis_client.xlen(key) == 0)
        await until(sup.healthy)

    run_relay(sup, scenario)
    got = read_topic(kafka_bootstrap, topic, 50)
    assert sorted(set(got)) == sorted(f"x{i}".encode() for i in range(50))
    assert sup.failing_since is None
    errors = {
        s.labels["error"]: s.value
        for f in sup.metrics.registry.collect()
        for s in f.samples
        if s.name == "loom_relay_errors_total"
    }
    assert errors.get("RedisUnavailableError", 0) >= 3


def test_a_record_kafka_refuses_does_not_hold_back_the_others_and_stays_pending(
    redis_client: redis.Redis, redis_prefix: str, kafka_bootstrap: str, unique_topic, supervisor
) -> None:
    topic = unique_topic(config={"max.message.bytes": "2000"})
    key = f"{redis_prefix}:v1:outbox"
    sup = supervisor()

    async def scenario() -> None:
        add(redis_client, key, topic, [b"ok-1", b"x" * 5000, b"ok-2"])
        await until(lambda: sup.failures >= 2)
        await until(lambda: redis_client.xlen(key) == 1)

    run_relay(sup, scenario)
    assert sorted(read_topic(kafka_bootstrap, topic, 2)) == [b"ok-1", b"ok-2"]
    (left,) = redis_client.xrange(key)
    assert left[1][b"value"] == b"x" * 5000  # kept for an operator, never dropped
    assert sup.restarts == 0  # a refused record is not the producer's fault
    assert sup.failing_since is not None  # still failing on it: /readyz and the alert say so


def test_a_parked_record_keeps_the_relay_failing_without_holding_up_what_comes_after_it(
    redis_client: redis.Redis, redis_prefix: str, kafka_bootstrap: str, unique_topic, supervisor
) -> None:
    """While a record Kafka refuses waits in the outbox, every pass counts as failed (the
    alert, ``/readyz``), but a pass that delivered everything else does not back off: newer
    records reach Kafka at the relay's pace, and are counted. (Before, each such pass raised
    at its end and the backoff grew to ``LOOM_RETRY_BACKOFF_MAX_S``, 30 s: every change waited
    that long; and the records the pass had delivered were not counted.)"""
    topic = unique_topic(config={"max.message.bytes": "2000"})
    key = f"{redis_prefix}:v1:outbox"
    sup = supervisor(backoff_max_s=30.0)
    records = sup.metrics.registry

    async def scenario() -> None:
        add(redis_client, key, topic, [b"x" * 5000, b"ok-1"])
        await until(lambda: sup.failures >= 8)  # backoff 0.1 + 0.2 + ... + 12.8 s before
        add(redis_client, key, topic, [b"ok-2"])
        await until(lambda: redis_client.xlen(key) == 1, within_s=3.0)
        assert sup.failing_since is not None

    run_relay(sup, scenario)
    assert sorted(read_topic(kafka_bootstrap, topic, 2)) == [b"ok-1", b"ok-2"]
    assert records.get_sample_value("loom_relay_records_total") == 2
    assert sup.restarts == 0


def test_a_batch_entry_is_delivered_whole_and_a_refused_record_in_it_is_held_alone(
    redis_client: redis.Redis, redis_prefix: str, kafka_bootstrap: str, unique_topic, supervisor
) -> None:
    """A batch's records travel as one outbox entry; when Kafka refuses one of them for good,
    the entry is split (in one transaction) so that the others are delivered and only the
    refused record stays in the outbox."""
    topic = unique_topic(config={"max.message.bytes": "2000"})
    key = f"{redis_prefix}:v1:outbox"
    sup = supervisor()
    batch = [f"b{i}".encode() for i in range(300)]

    async def scenario() -> None:
        add_packed(redis_client, key, topic, batch)
        await until(lambda: redis_client.xlen(key) == 0)
        add_packed(redis_client, key, topic, [b"ok-1", b"x" * 5000, b"ok-2"])
        await until(lambda: sup.failures >= 2)
        await until(lambda: redis_client.xlen(key) == 1)

    run_relay(sup, scenario)
    got = read_topic(kafka_bootstrap, topic, len(batch) + 2)
    assert set(got) == {*batch, b"ok-1", b"ok-2"}  # nothing lost (the split may repeat one)
    assert got[: len(batch)] == batch  # a batch's records in their order
    ((_id, fields),) = redis_client.xrange(key)
    assert outbox.records(fields) == [OutboxRecord(topic, None, b"x" * 5000)]
    assert sup.failing_since is not None


def test_a_record_the_client_refuses_at_once_is_held_alone_and_the_rest_delivered(
    redis_client: redis.Redis, redis_prefix: str, kafka_bootstrap: str, unique_topic, supervisor
) -> None:
    """A record over the client's own size limit (librdkafka's ``message.max.bytes``, 1,000,000
    by default; the topic would take it) is refused inside ``produce``, not by a delivery
    report: its entry's flight never ended and every later pass waited for it, so nothing else
    of the outbox was ever delivered (a review of the twenty-ninth pass). It is held alone as a
    record the broker refused is."""
    topic = unique_topic(config={"max.message.bytes": "5000000"})
    key = f"{redis_prefix}:v1:outbox"
    sup = supervisor()
    big = b"x" * 1_100_000

    async def scenario() -> None:
        add_packed(redis_client, key, topic, [b"ok-1", big])
        add_packed(redis_client, key, topic, [b"ok-2"])
        await until(lambda: sup.failures >= 1)
        await until(lambda: redis_client.xlen(key) == 1)

    run_relay(sup, scenario)
    got = read_topic(kafka_bootstrap, topic, 2)
    assert set(got) == {b"ok-1", b"ok-2"}
    ((_id, fields),) = redis_client.xrange(key)
    assert outbox.records(fields) == [OutboxRecord(topic, None, big)]


def test_a_refused_record_is_parked_and_its_entrys_others_keep_their_place_before_newer_ones(
    redis_client: redis.Redis, redis_prefix: str, kafka_bootstrap: str, unique_topic
) -> None:
    """An entry holds ``SKU-0`` -> 1 and a profile's snapshot too large for the topic; the
    next entry moves ``SKU-0`` to 2. The compacted topic ends on 2, and the refused snapshot
    waits in the outbox as the commit wrote it: a reference, still checked against the
    profile when it is sent (ADR 0033). Before, the entry was split into one entry per record
    at the end of the outbox: ``SKU-0`` -> 1 reached Kafka after 2 (a review of the
    twenty-ninth pass), and the snapshot was parked as a copy."""
    topic = unique_topic(config={"max.message.bytes": "2000"})
    key = f"{redis_prefix}:v1:outbox"
    redis_client.hset(f"{redis_prefix}:v1:profile:p_1", mapping={"v": 3, "d": b"x" * 5000})
    snapshot = OutboxRecord(topic, b"p_1", None, 3)
    first = [OutboxRecord(topic, b"SKU-0", b"1"), snapshot, OutboxRecord(topic, b"SKU-1", b"1")]
    redis_client.xadd(key, {outbox.FIELD: outbox.pack(first)})
    redis_client.xadd(key, {outbox.FIELD: outbox.pack([OutboxRecord(topic, b"SKU-0", b"2")])})
    producer = Producer(
        {
            **PRODUCER_CONFIG,
            "bootstrap.servers": kafka_bootstrap,
            "enable.idempotence": True,
            "acks": "all",
        }
    )
    relay = OutboxRelay(redis_client, producer, key, "c1")
    with pytest.raises(RecordRefusedError):  # refused among the next entry's records
        relay.relay()
    assert relay.refusing() is None
    relay.relay()  # alone, so record by record: the snapshot parked, the rest delivered
    assert relay.refusing() is not None  # the supervisor counts the pass failed, no backoff
    assert redis_client.xlen(key) == 1
    got = read_keyed(kafka_bootstrap, topic, 3, timeout=15)
    assert {k: v for k, v in got} == {b"SKU-0": b"2", b"SKU-1": b"1"}  # the last of each key
    ((_id, fields),) = redis_client.xrange(key)
    assert outbox.records(fields) == [snapshot]  # parked as committed
    relay.relay()  # still refused: kept, tried again alone every isolate_s
    assert relay.refusing() is not None
    assert redis_client.xlen(key) == 1


def test_a_restarted_relay_drops_what_its_producer_still_held_and_is_freed(
    redis_client: redis.Redis, redis_prefix: str, kafka_bootstrap: str
) -> None:
    """A pass that fails with something not retryable (a bug, a producer in a fatal state)
    makes the supervisor build a new relay, with a new producer, which sends the pending
    entries again. The old producer's queued records must not follow them (they did, from
    librdkafka's own threads, once its metadata showed the topic: a review of the thirtieth
    pass saw ``SKU-0`` end on 1 after 2), and the old relay, its producer and threads must be
    freed (three restarts left three alive, their delivery callbacks holding them)."""
    topic = f"{redis_prefix}-not-created"  # records wait for its metadata, as for a dead leader
    key = f"{redis_prefix}:v1:outbox"
    made: list[OutboxRelay] = []

    def new_relay() -> OutboxRelay:
        producer = Producer(
            {"bootstrap.servers": kafka_bootstrap, "allow.auto.create.topics": False}
        )
        made.append(OutboxRelay(redis_client, producer, key, "c1", flush_timeout_s=0.5))
        return made[-1]

    sup = RelaySupervisor(
        new_relay, RelayMetrics.create(CollectorRegistry()), backoff_max_s=0.01,
        failing_after_s=60.0,
    )  # fmt: skip
    queued: list[int] = []
    for n in range(3):
        add_packed(redis_client, key, topic, [str(n).encode()])
        with pytest.raises(KafkaUnavailableError):  # still waiting for Kafka
            sup.relay.relay()
        old = sup.relay
        asyncio.run(sup._recover(RuntimeError("a bug"), Backoff(0.01)))  # as its run() does
        assert sup.relay is not old
        queued.append(len(old.producer))
    assert queued == [0, 0, 0]  # nothing left to reach Kafka after the new relay's records
    replaced = [weakref.ref(r) for r in made[:-1]]
    made.clear()
    del old
    gc.collect()
    assert [r for r in replaced if r() is not None] == []
    assert redis_client.xlen(key) == 3  # still pending: the current relay sends them


@pytest.mark.parametrize("commit", ["script", "watch"])
def test_a_snapshot_is_sent_from_the_profile_and_left_out_once_the_profile_moved_on(
    redis_client: redis.Redis, redis_prefix: str, kafka_bootstrap: str, unique_topic, commit: str
) -> None:
    """ADR 0033 with both commits: the outbox holds a reference to the snapshot the commit
    stored; the relay sends the profile's d while it holds that version, and leaves out a
    snapshot superseded (a later version, an erasure) before its entry was sent, so each
    profile's records still end on its stored state."""
    topic = unique_topic()
    store = RedisStore(
        redis_client,
        prefix=redis_prefix,
        seen_ttl_s=3600,
        commit=commit,  # type: ignore[arg-type]
    )
    producer = Producer(
        {**PRODUCER_CONFIG, "bootstrap.servers": kafka_bootstrap, "enable.idempotence": True}
    )
    relay = OutboxRelay(
        redis_client, producer, store.keys.outbox, "c1", profiles=store.keys.kinds[Kind.PROFILE]
    )

    def write(pid: str, version: int, event: str, doc: bytes | None) -> None:
        ref = profile_ref(pid)
        fields = {"d": doc, "s": b"{}"} if doc is not None else {}  # none: erased
        record = OutboxRecord(topic, pid.encode(), doc, version if doc is not None else None)
        written = Commit(
            {ref: version - 1}, (event,), (Write(ref, version, fields),), outbox=(record,)
        )
        assert store.commit(written).ok

    def drain() -> None:
        while redis_client.xlen(store.keys.outbox):
            relay.relay()

    write("p_1", 1, "e1", b'{"p_1":1}')
    write("p_1", 2, "e2", b'{"p_1":2}')  # before the relay's pass: version 1 is superseded
    write("p_2", 1, "e3", b'{"p_2":1}')
    (entry,) = redis_client.xrange(store.keys.outbox, count=1)
    assert b'{"p_1":1}' not in entry[1][outbox.FIELD.encode()]  # a reference, not a copy
    drain()
    assert relay.take_superseded() == 1
    write("p_1", 3, "e4", b'{"p_1":3}')
    write("p_1", 4, "e5", None)  # erased before the relay's pass
    write("p_2", 2, "e6", b'{"p_2":2}')
    drain()
    assert relay.take_superseded() == 1
    assert read_keyed(kafka_bootstrap, topic, 4) == [
        (b"p_1", b'{"p_1":2}'),
        (b"p_2", b'{"p_2":1}'),
        (b"p_1", None),
        (b"p_2", b'{"p_2":2}'),
    ]
    assert redis_client.hget(store.keys.profile("p_2"), "d") == b'{"p_2":2}'


def test_the_supervisor_counts_superseded_snapshots(
    redis_client: redis.Redis, redis_prefix: str, kafka_bootstrap: str, unique_topic, supervisor
) -> None:
    topic = unique_topic()
    key = f"{redis_prefix}:v1:outbox"
    profile = f"{redis_prefix}:v1:profile:p_1"
    redis_client.hset(profile, mapping={"v": 2, "d": b"two"})
    old, new = OutboxRecord(topic, b"p_1", b"one", 1), OutboxRecord(topic, b"p_1", b"two", 2)
    redis_client.xadd(key, {outbox.FIELD: outbox.pack([old, new])})
    sup = supervisor()
    run_relay(sup, lambda: until(lambda: redis_client.xlen(key) == 0))
    assert read_keyed(kafka_bootstrap, topic, 1) == [(b"p_1", b"two")]
    counted = sup.metrics.registry.get_sample_value("loom_relay_superseded_total")
    assert counted == 1


def test_wait_new_returns_once_an_entry_arrives_and_the_next_pass_sends_it(
    redis_client: redis.Redis, redis_prefix: str, kafka_bootstrap: str, unique_topic
) -> None:
    """ADR 0039: a ``loom relay`` blocks on the outbox until a batch's commit adds an entry;
    the entry it read is its pending one, sent first by the pass that follows."""
    topic = unique_topic()
    key = f"{redis_prefix}:v1:outbox"
    producer = Producer(
        {**PRODUCER_CONFIG, "bootstrap.servers": kafka_bootstrap, "enable.idempotence": True}
    )
    relay = OutboxRelay(redis_client, producer, key, "c1")
    assert relay.wait_new(0.2) is False  # nothing new: the wait times out
    later = threading.Timer(0.3, add_packed, (redis_client, key, topic, [b"x1", b"x2"]))
    later.start()
    try:
        assert relay.wait_new(20.0) is True
    finally:
        later.join()
    assert redis_client.xpending(key, OutboxRelay.GROUP)["pending"] == 1  # read, not yet sent
    assert relay.relay() == 2
    assert redis_client.xlen(key) == 0
    assert sorted(read_topic(kafka_bootstrap, topic, 2)) == [b"x1", b"x2"]


def test_a_supervisor_without_a_wakeup_passes_as_soon_as_the_outbox_grows(
    redis_client: redis.Redis, redis_prefix: str, kafka_bootstrap: str, unique_topic, supervisor
) -> None:
    """Its idle pass is 8 s away: a delivery within 5 s came from the blocking read."""
    topic = unique_topic()
    key = f"{redis_prefix}:v1:outbox"
    sup = supervisor(idle_s=8.0)

    async def scenario() -> None:
        for values in ([b"a1"], [b"b1", b"b2"]):
            add_packed(redis_client, key, topic, values)
            await until(lambda: redis_client.xlen(key) == 0, within_s=5)

    run_relay(sup, scenario, woken=False)
    assert sorted(read_topic(kafka_bootstrap, topic, 3)) == [b"a1", b"b1", b"b2"]
    assert sup.metrics.registry.get_sample_value("loom_relay_records_total") == 3
