"""``loom demo``'s clean slate on a real broker: an earlier run's consumer group and its
committed offsets are deleted (a group left behind would stop the new run's workers on
``state_lost``), and a group that never existed is fine."""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.cli import demo


def committed(admin: AdminClient, group: str) -> list[int]:
    request = [ConsumerGroupTopicPartitions(group)]
    (future,) = admin.list_consumer_group_offsets(request).values()
    return [tp.offset for tp in future.result().topic_partitions]


def test_an_earlier_runs_group_and_offsets_are_deleted(
    kafka_bootstrap: str, unique_topic: Callable[..., str], unique_group: str
) -> None:
    topic = unique_topic(partitions=2)
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": unique_group})
    consumer.commit(offsets=[TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 7)],
                    asynchronous=False)  # fmt: skip
    consumer.close()
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    assert sorted(committed(admin, unique_group)) == [5, 7]

    never = unique_group + "-never"
    demo.delete_groups(admin, [unique_group, never], time.monotonic() + 30)

    assert committed(admin, unique_group) == []
