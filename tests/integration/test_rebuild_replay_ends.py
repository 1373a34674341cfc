"""A rebuild's replay ends at the end offsets it saw at its start, whatever the raw topic's last
offsets hold, and one that cannot get there says so.

Records a consumer is never handed take offsets too: a transaction's commit or abort marker
(a raw topic written by a transactional producer: Kafka Connect, Kafka Streams, Flink with
exactly-once), the records of an aborted transaction. A replay that counted a partition done
only once a record at its last offset came waited for ever when the partition ended on one of
those. And records deleted under a replay are not skipped: the replay waits, and says which
partition waits where, and the fetch error. A drain of the outbox that waits on another
relay's lease says whose.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from deployment import deployment_settings

from resolvers.pipeline import LANES
from schemas.touchpoint import dump_touchpoint
from streams.rebuild import Rebuild, Report
from streams.redis_keys import Keys
from streams.runtime import build_runtime
from streams.settings import LoomSettings
from streams.simulate import Simulator

pytestmark = pytest.mark.integration

EVENTS = 40
#: how long a rebuild of EVENTS records may take before the test stops it (it takes ~1 s)
WITHIN_S = 45.0


def _events(n: int) -> list[bytes]:
    sim = Simulator(seed=5, customers=10, stores=2, skus=5)
    return [dump_touchpoint(tp) for tp in itertools.islice(sim.events(), n)]


def _transactional(kafka_bootstrap: str, **config: Any) -> Producer:
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "transactional.id": uuid.uuid4().hex, **config}
    )
    producer.init_transactions(30)
    return producer


@pytest.fixture
def settings(
    kafka_bootstrap: str,
    redis_url: str,
    redis_client: redis.Redis,
    unique_topic: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[LoomSettings]:
    """A deployment of its own whose raw topic has one partition (still empty)."""
    tag = f"ends-{uuid.uuid4().hex[:8]}"
    yield deployment_settings(
        monkeypatch,
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        tag=tag,
        raw=unique_topic(partitions=1),
        LOOM_BATCH_SIZE="10",
    )
    keys = list(redis_client.scan_iter(match=f"{tag}:*", count=1000))
    if keys:
        redis_client.unlink(*keys)


def _rebuild(
    settings: LoomSettings, *, on_line: Callable[[Rebuild, str], None] | None = None, **opts: Any
) -> tuple[Report, Rebuild, list[str]]:
    """A profiles rebuild of ``settings``, stopped (as SIGTERM would) if it has not ended within
    WITHIN_S; its report, itself and its progress lines (``on_line`` sees each)."""
    lines: list[str] = []
    rt = build_runtime(settings, LANES["profiles"])
    rebuild: Rebuild

    def say(line: str) -> None:
        lines.append(line)
        if on_line is not None:
            on_line(rebuild, line)

    rebuild = Rebuild(rt, progress=say, **opts)

    async def bounded() -> Report:
        stop = asyncio.get_running_loop().call_later(WITHIN_S, rebuild.stop)
        try:
            return await rebuild.run()
        finally:
            stop.cancel()

    try:
        return asyncio.run(bounded()), rebuild, lines
    finally:
        rt.redis.close()


def test_a_partition_ending_on_a_transaction_marker_is_replayed_to_its_end(
    settings: LoomSettings, kafka_bootstrap: str
) -> None:
    """Before: the replay never ended (the partition's last offset is the commit marker, no
    record comes at it); stopped after 45 s with every record applied."""
    producer = _transactional(kafka_bootstrap)
    producer.begin_transaction()
    for value in _events(EVENTS):
        producer.produce(settings.topics.raw, value=value, partition=0)
    producer.commit_transaction(30)

    report, rebuild, lines = _rebuild(settings)

    assert not rebuild.stopping.is_set(), f"not ended within {WITHIN_S:g} s: {lines[-3:]}"
    assert report.records == EVENTS
    assert report.end_offsets == {0: EVENTS + 1}  # the marker's offset counted too


def test_records_deleted_under_a_replay_are_not_skipped_the_replay_says_where_it_waits(
    settings: LoomSettings, kafka_bootstrap: str
) -> None:
    """Retention (or ``kafka-delete-records``) deletes the raw topic's first records after the
    rebuild read its end offsets, before it fetched them. Before: the replay waited for ever
    (0 of 40 records, stopped after 45 s), its progress lines the same count every 2 s, and
    nothing said which partition waited, where, or why (the fetch error was dropped, and the
    consumer, whose offsets reset to its default, never surfaced one)."""
    plain = Producer({"bootstrap.servers": kafka_bootstrap})
    for value in _events(EVENTS):
        plain.produce(settings.topics.raw, value=value, partition=0)
    assert plain.flush(30) == 0
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})

    def on_line(rebuild: Rebuild, line: str) -> None:
        if line.startswith("rebuilding"):  # the end offsets read, nothing fetched yet
            (deleted,) = admin.delete_records(
                [TopicPartition(settings.topics.raw, 0, 5)], request_timeout=30
            ).values()
            deleted.result(timeout=30)
        elif "waits" in line:
            rebuild.stop()

    report, rebuild, lines = _rebuild(settings, on_line=on_line, stall_after_s=2.0)

    stalled = [line for line in lines if "waits" in line]
    assert stalled, f"nothing said where the replay waits: {lines[-3:]}"
    assert report.records == 0  # none skipped
    assert f"{settings.topics.raw} [0] at offset 0 of end {EVENTS}" in stalled[0]
    assert "last fetch error" in stalled[0]
    assert "out of range" in stalled[0].lower()
    assert rebuild.stopping.is_set()  # stopped by the test on that line: --resume continues


def test_a_drain_waiting_on_another_relay_s_lease_says_whose(
    settings: LoomSettings, kafka_bootstrap: str, redis_client: redis.Redis
) -> None:
    """Another relay holds the outbox's lease and does not deliver (one whose passes fail keeps
    the lease while it retries): the rebuild's own relay stands by and the rebuild waits out
    its drain. Before: nothing said, for the drain's two minutes, what it waited for (here
    3 s, then ``outbox_left``)."""
    plain = Producer({"bootstrap.servers": kafka_bootstrap})
    for value in _events(EVENTS):
        plain.produce(settings.topics.raw, value=value, partition=0)
    assert plain.flush(30) == 0
    lease = Keys(settings.redis_prefix).relay_lease
    redis_client.set(lease, "stalled-relay", px=60_000)

    report, _, lines = _rebuild(settings, drain_timeout_s=3.0, progress_every_s=0.5)

    assert report.outbox_left > 0
    waiting = [line for line in lines if "outbox records wait" in line]
    assert waiting, f"nothing said what the drain waits for: {lines[-3:]}"
    assert f"{lease} is held by stalled-relay" in waiting[-1]
