"""Reading a Kafka topic from the beginning to its current end (integration and e2e tiers)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from streams import kafka_clients
from streams.settings import LoomSettings


def read_topic(kafka: str | LoomSettings, topic: str, *, timeout: float = 10.0) -> list[Any]:
    """Every record on ``topic`` up to the end it has now, read with a group of its own.

    ``kafka``: the bootstrap servers, or the settings of a deployment (its security too)."""
    settings = kafka if isinstance(kafka, LoomSettings) else LoomSettings(kafka_bootstrap=kafka)
    c = kafka_clients.consumer(
        settings,
        f"reader-{uuid.uuid4().hex}",
        **{"auto.offset.reset": "earliest", "enable.auto.commit": False},
    )
    try:
        meta = c.list_topics(topic, timeout=10).topics[topic]
        ends = {}
        for p in meta.partitions:
            _, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends[p] = high
        c.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        done = {p for p, h in ends.items() if h == 0}
        while len(done) < len(ends) and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None or msg.error():
                continue
            out.append(msg)
            if msg.offset() + 1 >= ends[msg.partition()]:
                done.add(msg.partition())
        return out
    finally:
        c.close()


def end_offsets(bootstrap: str, topic: str, *, timeout: float = 30.0) -> int:
    """Records on ``topic`` right now (sum of high watermarks), without waiting for more
    (retried only while a new topic's partitions are still electing a leader)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex}"})
    deadline = time.monotonic() + timeout
    try:
        while True:
            parts = c.list_topics(topic, timeout=10).topics[topic].partitions
            try:
                return sum(
                    c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts
                )
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        c.close()
