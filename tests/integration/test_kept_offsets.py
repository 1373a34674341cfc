"""The offsets a lane keeps beside its state in Redis (``streams.kept_offsets``), on real Kafka
and Redis: a partition without a committed offset is seeded from them, one with a committed
offset is not, offsets kept for a topic since deleted and created again under the same name
seed nothing (they say nothing of the new topic's records), and nothing is written into a
Redis that no longer holds the lane's generation (it restarted empty)."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable

import pytest
import redis
from confluent_kafka import OFFSET_INVALID, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from loom_servers import Servers

from resolvers.pipeline import INVENTORY
from streams import kafka_clients
from streams.kept_offsets import KeptOffsets, topic_id
from streams.lane_runner import LaneRunner
from streams.redis_clients import acl_rules
from streams.redis_keys import Keys
from streams.testing import fake_runtime

pytestmark = pytest.mark.integration


def kept_offsets(
    client: redis.Redis, prefix: str, topic: str, topic_id: str, generation: str | None
) -> KeptOffsets:
    keys = Keys(prefix)
    return KeptOffsets(
        client, keys.offsets("inventory"), topic, topic_id,
        generation_key=keys.generation, generation=generation,
    )  # fmt: skip


def _create_again(admin: AdminClient, name: str, partitions: int, timeout: float = 60) -> None:
    """Delete ``name`` and create it again (the broker refuses the creation while the
    deletion is under way: asked again until it takes it), and wait until it is described
    (just created, ``DescribeTopics`` may still answer UNKNOWN_TOPIC_OR_PART)."""
    for future in admin.delete_topics([name], operation_timeout=30).values():
        future.result(timeout=30)
    deadline = time.monotonic() + timeout
    while True:
        topic = NewTopic(name, num_partitions=partitions, replication_factor=1)
        try:
            for future in admin.create_topics([topic], operation_timeout=30).values():
                future.result(timeout=60)
            break
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    while True:
        try:
            topic_id(admin, name)
            return
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_kept_offsets_seed_only_partitions_without_a_committed_offset_of_the_same_topic(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    redis_client: redis.Redis,
    redis_prefix: str,
) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    name = unique_topic(partitions=2)
    redis_client.set(Keys(redis_prefix).generation, "g1")
    first_id = topic_id(admin, name)
    kept = kept_offsets(redis_client, redis_prefix, name, first_id, "g1")
    kept.keep([TopicPartition(name, 0, 120), TopicPartition(name, 1, 80)])
    kept.keep([TopicPartition(name, 1, 95), TopicPartition("another", 0, 7)])  # later; not ours

    none = [TopicPartition(name, 0, OFFSET_INVALID), TopicPartition(name, 1, OFFSET_INVALID)]
    assert kept.seeds(none) == {(name, 0): 120, (name, 1): 95}
    # the group's own committed offset wins (a replay reset with Kafka's tool stands)
    assert kept.seeds([TopicPartition(name, 0, 5), none[1]]) == {(name, 1): 95}
    assert (
        kept_offsets(redis_client, redis_prefix, "another", first_id, "g1").seeds(
            [TopicPartition("another", 0, OFFSET_INVALID)]
        )
        == {}
    )  # never kept: its offsets were not the lane's topic's

    _create_again(admin, name, 2)
    second_id = topic_id(admin, name)
    assert second_id != first_id
    assert kept_offsets(redis_client, redis_prefix, name, second_id, "g1").seeds(none) == {}


def test_a_write_redis_refuses_is_logged_and_the_next_one_keeps_them(
    redis_client: redis.Redis, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    keys = Keys(redis_prefix)
    key = keys.offsets("inventory")
    redis_client.set(keys.generation, "g1")
    redis_client.set(key, "not a hash")  # a write Redis refuses (WRONGTYPE)
    kept = kept_offsets(redis_client, redis_prefix, "raw", "id-1", "g1")
    kept.keep([TopicPartition("raw", 0, 10)])  # logged, not raised: the lane goes on
    assert "offsets of raw not kept in Redis (ResponseError)" in caplog.text
    redis_client.delete(key)
    kept.keep([TopicPartition("raw", 0, 11)])
    assert kept.seeds([TopicPartition("raw", 0, OFFSET_INVALID)]) == {("raw", 0): 11}


def test_a_redis_that_lost_the_lanes_generation_gets_no_offsets(
    redis_client: redis.Redis, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    keys = Keys(redis_prefix)
    kept = kept_offsets(redis_client, redis_prefix, "raw", "id-1", "g1")
    kept.keep([TopicPartition("raw", 0, 10)])  # restarted empty: no generation at all
    redis_client.set(keys.generation, "g2")
    kept.keep([TopicPartition("raw", 0, 11)])  # another state: not the lane's
    assert redis_client.exists(keys.offsets("inventory")) == 0
    assert "it holds generation None, not the lane's g1" in caplog.text
    assert "it holds generation g2, not the lane's g1" in caplog.text

    # a keeper without a generation of its own (the stock router) takes the one Redis holds
    # at its first write, and keeps to it
    router = kept_offsets(redis_client, redis_prefix, "raw", "id-1", None)
    router.keep([TopicPartition("raw", 0, 12)])
    redis_client.set(keys.generation, "g3")
    router.keep([TopicPartition("raw", 0, 13)])
    assert redis_client.hget(keys.offsets("inventory"), "raw:0") == b"12"
    assert router.generation == "g2"


def test_a_seed_read_at_the_start_gives_way_to_an_offset_the_group_committed_since(
    servers: Servers, unique_topic: Callable[..., str]
) -> None:
    """A worker reads its seeds once, at its start, for every partition the group had no
    committed offset for then; it may be given one of them only later (another worker had it
    first, applied records there and committed). Its seed then is older than the group's
    offset: seeded there, it read again, and committed over the group's later offset, what the
    other worker had applied (once the processed markers had expired, applied twice)."""
    topic = unique_topic(partitions=2)
    tag = uuid.uuid4().hex[:8]
    settings = servers.settings(f"it{tag}", app_id=f"loom-it-{tag}")
    producer = kafka_clients.producer(settings)
    for p in (0, 1):
        for i in range(10):
            producer.produce(topic, b"{}", key=f"{p}-{i}".encode(), partition=p)
    assert producer.flush(30) == 0
    runner = LaneRunner(fake_runtime(lane=INVENTORY, settings=settings), topic=topic)
    # what its start check found: neither partition committed, both kept at offset 2
    runner.generation = "g1"
    runner._seeds = {(topic, 0): 2, (topic, 1): 2}
    # meanwhile another worker applied partition 1 up to offset 8 and committed
    other = kafka_clients.consumer(settings, runner.group)
    other.commit(offsets=[TopicPartition(topic, 1, 8, "g1")], asynchronous=False)
    other.close()

    consumer = runner.consumer
    consumer.subscribe([topic], on_assign=runner._on_assign, on_revoke=runner._on_revoke)
    first: dict[int, int] = {}
    deadline = time.monotonic() + 60
    try:
        while len(first) < 2 and time.monotonic() < deadline:
            for msg in consumer.consume(20, 0.5):
                if msg.error() is None:
                    first.setdefault(msg.partition() or 0, msg.offset() or 0)
        assert first == {0: 2, 1: 8}  # the group's own offset wins
        # and only the seeded partition is committed as if processed there
        assert [(tp.partition, tp.offset) for tp in runner.processed.take()] == [(0, 2)]
    finally:
        consumer.close()


def test_offsets_are_kept_and_read_as_looms_redis_user(
    redis_client: redis.Redis, redis_url: str, redis_prefix: str
) -> None:
    """A secured Redis gives the workers a user with exactly ``acl_rules`` (README's ``ACL
    SETUSER`` line). The keeper's transaction (WATCH, GET, MULTI, HSET, EXEC) and the start's
    HMGET must run as it: a refusal is only a warning line, so a missing command would leave
    the lane keeping nothing, silently."""
    user, password = f"{redis_prefix}-kept", secrets.token_hex(16)
    rules = acl_rules(redis_prefix).split()
    redis_client.execute_command("ACL", "SETUSER", user, "reset", "on", f">{password}", *rules)
    redis_client.set(Keys(redis_prefix).generation, "g1")
    loom = redis.Redis.from_url(redis_url, username=user, password=password)
    try:
        kept = kept_offsets(loom, redis_prefix, "raw", "id-1", "g1")
        kept.keep([TopicPartition("raw", 0, 10), TopicPartition("raw", 3, 4)])
        none = [TopicPartition("raw", p, OFFSET_INVALID) for p in (0, 3)]
        assert kept.seeds(none) == {("raw", 0): 10, ("raw", 3): 4}
    finally:
        loom.close()
        redis_client.execute_command("ACL", "DELUSER", user)
