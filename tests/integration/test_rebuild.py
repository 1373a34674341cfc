"""``loom rebuild`` against real Kafka and Redis: what it refuses, and how it says so."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition

from streams.cli.main import main

pytestmark = pytest.mark.integration


def test_resume_into_a_redis_that_lost_the_rebuilds_state_is_a_refusal_not_a_traceback(
    kafka_bootstrap: str,
    redis_url: str,
    redis_client: redis.Redis,
    redis_prefix: str,
    unique_topic: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A rebuild was interrupted (its offsets are stamped with its generation), then Redis lost
    everything (a restart without persistence) and the operator reruns it with --resume, as
    the interruption told them to. The resume cannot continue: one line saying to rebuild
    without --resume, exit 2 (refused), nothing written to Redis; it was a StateLostError
    traceback, exit 1."""
    raw = unique_topic(partitions=1)
    app_id = f"loomtest-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(4):
        producer.produce(raw, value=b"{}", partition=0, key=b"k%d" % i)
    assert producer.flush(30) == 0
    interrupted = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"{app_id}-profiles"})
    interrupted.commit(offsets=[TopicPartition(raw, 0, 2, "0" * 32)], asynchronous=False)
    interrupted.close()
    for name, value in {
        "LOOM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "LOOM_REDIS_URL": redis_url,
        "LOOM_REDIS_PREFIX": redis_prefix,
        "LOOM_APP_ID": app_id,
        "LOOM_TOPIC_RAW": raw,
        "LOOM_REPLICATION_FACTOR": "1",  # the test cluster's one broker
        "LOOM_MIN_INSYNC_REPLICAS": "1",
    }.items():
        monkeypatch.setenv(name, value)

    rc = main(["rebuild", "--lane", "profiles", "--resume"])

    err = capsys.readouterr().err
    assert rc == 2, err
    (line,) = err.splitlines()
    assert "--resume cannot continue" in line
    assert "loom rebuild --lane profiles" in line
    assert list(redis_client.scan_iter(match=f"{redis_prefix}*")) == []
