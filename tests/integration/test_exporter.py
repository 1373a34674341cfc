"""`loom exporter` against the real broker: scrape /metrics, parse it with Prometheus' text
parser, and check the values against lag we created."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from streams.exporter import ExporterConfig, LagExporter, run_exporter
from streams.lag import LagReader
from streams.metrics import ExporterMetrics

pytestmark = pytest.mark.integration

Samples = dict[str, list[tuple[dict[str, str], float]]]


def setup_lag(bootstrap: str, prefix: str, suffix: str = "g1") -> tuple[str, str]:
    """A new topic (2 partitions, 6 records each) and group ``<prefix>-<suffix>`` committed at
    offsets 2 and 6: lag 4 on partition 0, none on partition 1."""
    topic = f"exptest-{uuid.uuid4().hex[:10]}"
    group = f"{prefix}-{suffix}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(timeout=30)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(12):
        producer.produce(topic, value=b"x", partition=i % 2)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    consumer.commit(
        offsets=[TopicPartition(topic, 0, 2), TopicPartition(topic, 1, 6)], asynchronous=False
    )
    consumer.close()
    return topic, group


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def check_lag(samples: Samples, topic: str, group: str) -> None:
    lag = {
        lbl["partition"]: v
        for lbl, v in samples["kafka_consumergroup_group_lag"]
        if lbl["group"] == group and lbl["topic"] == topic
    }
    assert lag == {"0": 4.0, "1": 0.0}
    (max_lag,) = [
        v for lbl, v in samples["kafka_consumergroup_group_max_lag"] if lbl["group"] == group
    ]
    assert max_lag == 4.0
    (sum_lag,) = [
        v for lbl, v in samples["kafka_consumergroup_group_sum_lag"] if lbl["group"] == group
    ]
    assert sum_lag == 4.0
    latest = {
        lbl["partition"]: v
        for lbl, v in samples["kafka_partition_latest_offset"]
        if lbl["topic"] == topic
    }
    assert latest == {"0": 6.0, "1": 6.0}
    secs = {
        lbl["partition"]: v
        for lbl, v in samples["kafka_consumergroup_group_lag_seconds"]
        if lbl["group"] == group
    }
    assert secs["1"] == 0.0
    assert 0.0 <= secs["0"] < 120.0
    status = {
        lbl["status"]: v for lbl, v in samples["loom_consumergroup_status"] if lbl["group"] == group
    }
    assert sum(status.values()) == 1.0
    assert set(status) == {"OK", "WARN", "STOP", "STALL", "REWIND"}


def test_exporter_serves_known_lag(kafka_bootstrap: str) -> None:
    prefix = f"loom-exptest-{uuid.uuid4().hex[:8]}"
    topic, group = setup_lag(kafka_bootstrap, prefix)
    exporter = LagExporter(
        ExporterConfig(
            bootstrap=kafka_bootstrap, group_prefix=prefix, window_s=1.0, interval_s=0.5
        ),
        ExporterMetrics.create(CollectorRegistry(), cluster_name="test"),
    )

    async def main() -> Samples:
        async with serving(exporter) as (_, port_box):
            # the group committed once before the exporter started and never again: after
            # more than one window of watching with lag on partition 0 it is STOP
            deadline = time.monotonic() + 30
            while True:
                await asyncio.sleep(0.5)
                samples = await asyncio.to_thread(scrape, port_box[0])
                status = {
                    lbl["status"]: v
                    for lbl, v in samples.get("loom_consumergroup_status", [])
                    if lbl["group"] == group
                }
                if status.get("STOP") == 1.0 or time.monotonic() > deadline:
                    break
            ready, _ = await asyncio.to_thread(readyz, port_box[0])
            assert ready == 200
            return samples

    samples = asyncio.run(main())
    check_lag(samples, topic, group)
    status = {
        lbl["status"]: v for lbl, v in samples["loom_consumergroup_status"] if lbl["group"] == group
    }
    assert status["STOP"] == 1.0
    assert all(lbl["cluster_name"] == "test" for lbl, _ in samples["kafka_consumergroup_group_lag"])
    # only groups with the prefix are exported
    assert {lbl["group"] for lbl, _ in samples["kafka_consumergroup_group_sum_lag"]} == {group}


def test_exporter_cli_process_serves_metrics(
    kafka_bootstrap: str, free_ports: Callable[[int], list[int]]
) -> None:
    """By default the CLI exports the lane groups only: the app's DLQ replay group, which has
    lag and no commits between replays, is left out."""
    prefix = f"loom-expcli-{uuid.uuid4().hex[:8]}"
    topic, group = setup_lag(kafka_bootstrap, prefix, "profiles")
    _, replay_group = setup_lag(kafka_bootstrap, prefix, "dlq-replay")
    (port,) = free_ports(1)
    code = (
        "import argparse, sys; from streams.cli import exporter as e; "
        "p = argparse.ArgumentParser(); e.register(p.add_subparsers()); "
        "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"
    )
    env = {**os.environ, "LOOM_APP_ID": prefix, "LOOM_KAFKA_BOOTSTRAP": kafka_bootstrap}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "exporter", "--host", "127.0.0.1", "--port", str(port),
         "--interval", "0.5"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        samples: Samples = {}
        while time.monotonic() < deadline:
            try:
                samples = scrape(port)
            except OSError:
                time.sleep(0.3)
                continue
            if any(
                lbl["group"] == group for lbl, _ in samples.get("kafka_consumergroup_group_lag", [])
            ):
                break
            time.sleep(0.3)
        check_lag(samples, topic, group)
        # the lane groups that exist, i.e. not <prefix>-dlq-replay (nor any other app's group)
        exported = {lbl["group"] for lbl, _ in samples["kafka_consumergroup_group_sum_lag"]}
        assert exported == {group}, (exported, replay_group)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_exporter_keeps_polling_and_is_not_ready_while_kafka_is_unreachable(
    free_ports: Callable[[int], list[int]],
) -> None:
    """Kafka away: a poll's admin call times out. The exporter counts a failed poll, answers
    /readyz 503 and polls again; it does not die with the TimeoutError (its poll loop caught
    KafkaException only)."""
    (dead,) = free_ports(1)
    bootstrap = f"127.0.0.1:{dead}"
    exporter = LagExporter(
        ExporterConfig(
            bootstrap=bootstrap, group_prefix=None, interval_s=0.2, use_commit_log=False
        ),
        ExporterMetrics.create(CollectorRegistry()),
    )
    exporter.reader = LagReader(bootstrap, timeout_s=0.5)  # fail fast: no broker answers

    def failed_polls() -> float:
        return (
            exporter.metrics.registry.get_sample_value(
                "loom_lag_exporter_polls_total", {"result": "error"}
            )
            or 0.0
        )

    async def main() -> tuple[int, dict[str, object]]:
        async with serving(exporter) as (task, port_box):
            deadline = time.monotonic() + 30
            while failed_polls() < 2 and not task.done() and time.monotonic() < deadline:
                await asyncio.wait({task}, timeout=0.1)  # returns early if the task ends
            assert not task.done(), f"the exporter stopped: {task.exception()!r}"
            assert failed_polls() >= 2
            return await asyncio.to_thread(readyz, port_box[0])

    status, body = asyncio.run(main())
    assert status == 503
    assert body["failing"] == ["kafka"]


def readyz(port: int) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, orjson.loads(err.read())


@contextlib.asynccontextmanager
async def serving(exporter: LagExporter) -> AsyncIterator[tuple[asyncio.Task[None], list[int]]]:
    """``exporter`` run on a free loopback port for the block: its task, and a box holding the
    port once it serves. Stopped after the block; its error raised unless the block's is."""
    stop = asyncio.Event()
    port_box: list[int] = []
    task = asyncio.create_task(
        run_exporter(exporter, "127.0.0.1", 0, stop=stop, on_started=port_box.append)
    )
    try:
        yield task, port_box
    except BaseException:
        stop.set()
        with contextlib.suppress(Exception):
            await task
        raise
    stop.set()
    await task
