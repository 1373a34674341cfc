"""``loom produce`` / ``loom simulate`` end to end against the real broker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer

from streams.cli.main import main

pytestmark = pytest.mark.integration

GOOD = {
    "event_id": "cli-1",
    "type": "page_view",
    "channel": "web",
    "occurred_at": "2024-05-01T12:00:00Z",
    "identifiers": {"anonymous_id": "a-1"},
}


def count_records(bootstrap: str, topic: str, group: str, expected: int) -> list[Any]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    out: list[Any] = []
    try:
        for _ in range(40):
            out += [m for m in consumer.consume(500, timeout=0.5) if m.error() is None]
            if len(out) >= expected:
                # one more short poll to catch unexpected extras
                out += [m for m in consumer.consume(500, timeout=1.0) if m.error() is None]
                break
    finally:
        consumer.close()
    return out


def write_mixed(path: Path) -> None:
    lines = [
        orjson.dumps(GOOD),
        b"{not json",
        b"",
        orjson.dumps({**GOOD, "event_id": "cli-2", "type": "page_viewed"}),
        orjson.dumps({**GOOD, "event_id": "cli-3", "occurred_at": "2024-05-01T12:00:00"}),
        orjson.dumps({**GOOD, "event_id": "cli-4", "identifiers": {"email": "secret@x.no"}}),
        b'{"event_id": "\xff"}',
        orjson.dumps({**GOOD, "event_id": "cli-5", "channel": "fax"}),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_produce_mixed_file_summary_and_exit_code(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = unique_topic()
    path = tmp_path / "mixed.jsonl"
    write_mixed(path)
    rc = main(["produce", str(path), "--topic", topic, "--bootstrap", kafka_bootstrap, "--json"])
    captured = capsys.readouterr()
    assert rc == 1  # rejected lines -> 1
    summary = orjson.loads(captured.out)
    assert summary["lines"] == 8
    assert summary["blank"] == 1
    assert summary["sent"] == 2
    assert summary["delivered"] == 2
    assert summary["rejected"] == {
        "malformed_json": 1,
        "unknown_type": 1,
        "schema_violation": 2,
        "invalid_utf8": 1,
    }
    assert summary["rejected_first_lines"]["schema_violation"] == [5, 8]
    assert "rejected unknown_type: 1 (lines 4)" in captured.err
    assert "secret" not in captured.err + captured.out  # no PII in the summary
    records = count_records(kafka_bootstrap, topic, unique_group, 2)
    assert sorted(orjson.loads(m.value())["event_id"] for m in records) == ["cli-1", "cli-4"]
    keys = {m.key() for m in records}
    assert keys == {b"anonymous_id:a-1", b"email:secret@x.no"}


def test_produce_raw_sends_every_nonblank_line(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = unique_topic()
    path = tmp_path / "mixed.jsonl"
    write_mixed(path)
    rc = main(["produce", str(path), "--raw", "--topic", topic, "--bootstrap", kafka_bootstrap])
    assert rc == 0
    assert "sent 7, delivered 7" in capsys.readouterr().err
    records = count_records(kafka_bootstrap, topic, unique_group, 7)
    assert len(records) == 7
    assert b"{not json" in {m.value() for m in records}


def test_produce_unreachable_broker_exit_3_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "one.jsonl"
    path.write_bytes(orjson.dumps(GOOD) + b"\n")
    rc = main(
        ["produce", str(path), "--topic", "nowhere", "--bootstrap-server", "127.0.0.1:1",
         "-X", "message.timeout.ms=1500", "--flush-timeout", "10"]
    )  # fmt: skip
    assert rc == 3
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "loom produce: Kafka 127.0.0.1:1: Connect to ipv4#127.0.0.1:1 failed: Connection refused"
    ]


def test_a_malformed_client_override_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "one.jsonl"
    path.write_bytes(orjson.dumps(GOOD) + b"\n")
    assert main(["produce", str(path), "-X", "linger.ms"]) == 2
    assert capsys.readouterr().err == "loom produce: -X expects KEY=VALUE, got 'linger.ms'\n"


def test_produce_missing_file_exit_2(tmp_path: Path) -> None:
    assert main(["produce", str(tmp_path / "absent.jsonl")]) == 2


def test_simulate_to_file_then_produce(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "sim.jsonl"
    args = ["simulate", "--count", "500", "--seed", "11", "--customers", "50"]
    assert main([*args, "--out", str(out)]) == 0
    assert len(out.read_bytes().splitlines()) == 500
    topic = unique_topic(partitions=2)
    rc = main(["produce", str(out), "--topic", topic, "--bootstrap", kafka_bootstrap, "--json"])
    summary = orjson.loads(capsys.readouterr().out)
    assert rc == 0
    assert summary["delivered"] == 500
    # straight to Kafka with bad records mixed in (sent raw)
    topic2 = unique_topic()
    rc = main([*args, "--bad-fraction", "0.1", "--topic", topic2, "--bootstrap", kafka_bootstrap])
    assert rc == 0
    records = count_records(kafka_bootstrap, topic2, unique_group, 500)
    assert len(records) == 500
