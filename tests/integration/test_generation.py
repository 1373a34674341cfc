"""The generation marker on real Redis and Kafka: offsets carry it, a start compares it with
Redis, and a commit into a Redis that lost it writes nothing."""

from __future__ import annotations

import pytest
import redis
from confluent_kafka import Consumer, TopicPartition

from resolvers.store import Commit, Write, stock_ref
from streams.errors import StateLostError
from streams.generation import Committed, establish, lane_has_state
from streams.redis_keys import Keys
from streams.redis_store import RedisStore

NONE = Committed(0, frozenset())


def test_a_new_lane_on_an_empty_prefix_creates_the_marker_once(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    first = establish(redis_client, redis_prefix, "profiles", NONE)
    assert len(first) == 32
    assert establish(redis_client, redis_prefix, "inventory", NONE) == first  # one per prefix
    stamped = Committed(6, frozenset({first}))
    assert establish(redis_client, redis_prefix, "profiles", stamped) == first


def test_offsets_stamped_with_a_generation_redis_no_longer_holds_are_refused(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    gen = establish(redis_client, redis_prefix, "profiles", NONE)
    stamped = Committed(6, frozenset({gen}))
    redis_client.delete(Keys(redis_prefix).generation)  # what a restart without AOF leaves
    with pytest.raises(StateLostError, match="loom rebuild --lane profiles"):
        establish(redis_client, redis_prefix, "profiles", stamped)
    assert redis_client.get(Keys(redis_prefix).generation) is None  # not papered over

    redis_client.set(Keys(redis_prefix).generation, "another")  # a different Redis state
    with pytest.raises(StateLostError, match="holds generation another"):
        establish(redis_client, redis_prefix, "profiles", stamped)


def test_offsets_from_before_markers_are_adopted_only_if_redis_holds_the_lanes_state(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    legacy = Committed(6, frozenset({""}))
    with pytest.raises(StateLostError, match="holds none of this lane's state"):
        establish(redis_client, redis_prefix, "inventory", legacy)
    redis_client.sadd(f"{Keys(redis_prefix).root}:stock-index", "SKU-1")
    assert lane_has_state(redis_client, redis_prefix, "inventory")
    assert not lane_has_state(redis_client, redis_prefix, "profiles")
    gen = establish(redis_client, redis_prefix, "inventory", legacy)
    assert redis_client.get(Keys(redis_prefix).generation) == gen.encode()


def test_committed_offsets_carry_the_generation_as_metadata(
    kafka_bootstrap: str, unique_topic, unique_group: str
) -> None:
    topic = unique_topic(partitions=3)
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": unique_group})
    try:
        assert Committed.read(consumer, topic, [0, 1, 2]) == NONE
        consumer.commit(
            offsets=[TopicPartition(topic, 0, 5, metadata="g1"), TopicPartition(topic, 2, 1, "g1")],
            asynchronous=False,
        )
        assert Committed.read(consumer, topic, [0, 1, 2]) == Committed(2, frozenset({"g1"}))
    finally:
        consumer.close()


def test_a_commit_into_a_redis_that_lost_its_generation_writes_nothing(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    store = RedisStore(redis_client, prefix=redis_prefix)
    store.generation = establish(redis_client, redis_prefix, "inventory", NONE)
    ref = stock_ref("SKU-9")

    def commit(event_id: str, version: int) -> None:
        store.commit(
            Commit(
                expect={ref: version - 1},
                event_ids=(event_id,),
                writes=[Write(ref, version, {"s": b"{}"})],
                scope="inventory",
            )
        )

    commit("e1", 1)
    assert redis_client.hget(store.keys.entity(ref), "v") == b"1"
    redis_client.delete(*redis_client.keys(f"{redis_prefix}*"))  # the prefix's state is gone
    with pytest.raises(StateLostError, match="no longer holds generation"):
        commit("e2", 1)
    assert redis_client.keys(f"{redis_prefix}*") == []  # nothing written into the empty Redis
