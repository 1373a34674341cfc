"""``loom dlq replay`` on the real broker: filters, headers, remembered progress."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def _drain(bootstrap: str, topic: str, expect: int) -> list[tuple[bytes | None, dict[str, bytes]]]:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{topic}",
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe([topic])
    out: list[tuple[bytes | None, dict[str, bytes]]] = []
    for _ in range(60):
        msg = c.poll(0.5)
        if msg is not None and not msg.error():
            out.append((msg.value(), {k: v or b"" for k, v in (msg.headers() or [])}))
        if len(out) >= expect:
            break
    c.close()
    return out


def with_dead_letters(
    monkeypatch: pytest.MonkeyPatch,
    bootstrap: str,
    dlq: str,
    raw: str,
    letters: list[tuple[bytes, bytes, bytes]],
) -> None:
    """The replay's settings (its topics, a group of its own) and ``letters`` (value, stage,
    reason) on the DLQ topic."""
    for key, value in {
        "LOOM_KAFKA_BOOTSTRAP": bootstrap,
        "LOOM_TOPIC_DLQ": dlq,
        "LOOM_TOPIC_RAW": raw,
        "LOOM_APP_ID": f"app-{dlq}",
    }.items():
        monkeypatch.setenv(key, value)
    p = Producer({"bootstrap.servers": bootstrap})
    for value, stage, reason in letters:
        p.produce(dlq, value=value, headers=[("loom.stage", stage), ("loom.reason", reason)])
    assert p.flush(10) == 0


def test_replay_sends_matching_dead_letters_back_once(
    kafka_bootstrap: str,
    unique_topic,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dlq, raw = unique_topic(partitions=1), unique_topic(partitions=1)
    reasons = (b"malformed_json", b"schema_violation")
    with_dead_letters(
        monkeypatch,
        kafka_bootstrap,
        dlq,
        raw,
        [(f"bad-{i}".encode(), b"parse", reasons[i % 2]) for i in range(6)],
    )

    assert main(["dlq", "replay", "--reason", "schema_violation", "--dry-run"]) == 0
    assert "would replay 3 of 6" in capsys.readouterr().out

    assert main(["dlq", "replay", "--reason", "schema_violation"]) == 0
    assert "replayed 3 of 6" in capsys.readouterr().out
    replayed = _drain(kafka_bootstrap, raw, expect=3)
    assert sorted(v for v, _ in replayed) == [b"bad-1", b"bad-3", b"bad-5"]
    assert all(h["loom.replayed_from"].startswith(f"{dlq}[0]@".encode()) for _, h in replayed)

    # progress is remembered: a second run finds nothing new
    assert main(["dlq", "replay"]) == 0
    assert "replayed 0 of 0" in capsys.readouterr().out


def test_the_gateway_s_dead_letters_are_never_replayed_to_the_raw_topic(
    kafka_bootstrap: str,
    unique_topic,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from streams.cli.privacy import GATEWAY_STAGE
    from streams.gateway.records import STAGE

    assert GATEWAY_STAGE == STAGE
    dlq, raw = unique_topic(partitions=1), unique_topic(partitions=1)
    with_dead_letters(
        monkeypatch,
        kafka_bootstrap,
        dlq,
        raw,
        [
            (b'{"type": "track"}', b"gateway", b"schema_violation"),
            (b"bad", b"parse", b"schema_violation"),
        ],
    )
    assert main(["dlq", "replay", "--stage", "gateway"]) == 0
    out = capsys.readouterr().out
    assert "1  gateway/schema_violation" in out
    assert "replayed 0 of 2" in out


def test_replay_stops_at_the_end_offsets_it_found_at_start(
    kafka_bootstrap: str, unique_topic, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/operating.md: the replay reads "up to the end offsets seen at start". It stopped
    reading a partition only on its record at end - 1, and meanwhile replayed whatever came
    on partitions it had finished. Partition 0 of this DLQ was emptied by retention (its low
    watermark is its end, the group has no offset there), so its end never came: the replay
    read on until a record arrived there, replaying every newer record. Here the replayed
    records fail again at once (the raw topic is the DLQ): it said "replayed 7 of 7", its
    own replays among them, and committed past them."""
    dlq = unique_topic(partitions=2)
    with_dead_letters(monkeypatch, kafka_bootstrap, dlq, dlq, [])
    p = Producer({"bootstrap.servers": kafka_bootstrap})
    headers = [("loom.stage", b"parse"), ("loom.reason", b"malformed_json")]
    for partition in (0, 1):
        for i in range(3):
            p.produce(
                dlq, value=f"bad-{partition}-{i}".encode(), partition=partition, headers=headers
            )
    assert p.flush(10) == 0
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.delete_records([TopicPartition(dlq, 0, 3)]).values():
        future.result(timeout=30)  # partition 0: three records, all gone with retention

    run = subprocess.run(
        [sys.executable, "-m", "streams.cli.main", "dlq", "replay"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "replayed 3 of 3 DLQ records" in run.stdout
    assert "3  parse/malformed_json" in run.stdout
    # the three replays failed again and are back on the DLQ: the group did not commit past
    # them, so the next run (the cause fixed) finds exactly those
    again = subprocess.run(
        [sys.executable, "-m", "streams.cli.main", "dlq", "replay", "--dry-run"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "would replay 3 of 3 DLQ records" in again.stdout


class _Watched:
    """A real Kafka client that notes in ``closed`` when it is closed."""

    def __init__(self, client: Any, kind: str, closed: list[str]) -> None:
        self._client, self._kind, self._closed = client, kind, closed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def close(self, *args: Any) -> Any:
        self._closed.append(self._kind)
        return self._client.close(*args)


def test_a_missing_dlq_topic_is_one_loom_line_and_closes_the_clients_it_made(
    kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every other one-line error of the CLI starts with the command (``loom erase: ...``,
    ``loom rebuild: ...``); the missing DLQ topic was ``no DLQ topic X``, and the replay
    returned with its consumer and producer never closed (its other exits close them)."""
    from streams import kafka_clients

    missing = f"missing-dlq-{uuid.uuid4().hex[:8]}"
    with_dead_letters(monkeypatch, kafka_bootstrap, missing, f"raw-{missing}", [])
    made: list[str] = []
    closed: list[str] = []

    def watched(kind: str) -> Any:
        make = getattr(kafka_clients, kind)

        def making(*args: Any, **kwargs: Any) -> _Watched:
            made.append(kind)
            return _Watched(make(*args, **kwargs), kind, closed)

        return making

    for kind in ("consumer", "producer"):
        monkeypatch.setattr(kafka_clients, kind, watched(kind))

    assert main(["dlq", "replay"]) == 1
    assert capsys.readouterr().err == f"loom dlq replay: no DLQ topic {missing}\n"
    assert made
    assert sorted(closed) == sorted(made)


def test_a_replayed_dead_letter_lands_on_the_partition_the_sdk_sends_its_key_to(
    kafka_bootstrap: str,
    unique_topic,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The raw topic's key is an identifier, and the SDK and the gateway send each key to one
    partition (murmur2, as the Java client): a replayed dead letter goes there too, not where
    librdkafka's default partitioner (CRC32) puts its key."""
    from streams.producer import DeliveryReport, TouchpointProducer

    dlq, raw = unique_topic(partitions=1), unique_topic(partitions=8)
    with_dead_letters(monkeypatch, kafka_bootstrap, dlq, raw, [])
    keys = [f"email:c{i}@example.com".encode() for i in range(8)]
    p = Producer({"bootstrap.servers": kafka_bootstrap})
    letter = [("loom.stage", b"parse"), ("loom.reason", b"malformed_json")]
    for key in keys:
        p.produce(dlq, key=key, value=b"{", headers=letter)
    assert p.flush(10) == 0
    assert main(["dlq", "replay"]) == 0
    assert "replayed 8 of 8" in capsys.readouterr().out
    sdk_reports: list[DeliveryReport] = []
    with TouchpointProducer(topic=raw) as sdk:
        for key in keys:
            sdk.send_raw(b"{", key=key, on_delivery=sdk_reports.append)
    sdk_partitions = {r.key: r.partition for r in sdk_reports}

    c = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": f"check-{raw}",
         "auto.offset.reset": "earliest"}
    )  # fmt: skip
    c.subscribe([raw])
    replayed: dict[bytes | None, int | None] = {}
    seen = 0
    for _ in range(60):
        msg = c.poll(0.5)
        if msg is not None and not msg.error():
            seen += 1
            if any(k == "loom.replayed_from" for k, _ in msg.headers() or []):
                replayed[msg.key()] = msg.partition()
        if seen >= 16:
            break
    c.close()
    assert len(sdk_partitions) == len(replayed) == 8
    assert replayed == sdk_partitions
