"""``loom produce`` / ``loom simulate`` end to end against the real broker."""

from __future__ import annotations

import io
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer

from streams.cli.main import main

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

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


def test_a_line_the_topic_refuses_as_too_large_is_named_by_its_number(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A line within LOOM_MAX_EVENT_BYTES but over the topic's ``max.message.bytes`` is
    refused by the broker, not by the client: the summary names every line not delivered, as
    it names the rejected ones (it gave only a count, and the exit code 3)."""
    topic = unique_topic(config={"max.message.bytes": "2048"})
    noise = random.Random(7)  # 8 KiB of hex that lz4 leaves well above 2 KiB
    notes = {f"note{i}": noise.randbytes(1000).hex() for i in range(4)}
    events = [
        GOOD,
        {**GOOD, "event_id": "cli-big", "properties": notes},
        {**GOOD, "event_id": "cli-3"},
    ]
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"\n".join(map(orjson.dumps, events)) + b"\n")
    rc = main(["produce", str(path), "--topic", topic, "--bootstrap", kafka_bootstrap, "--json"])
    captured = capsys.readouterr()
    summary = orjson.loads(captured.out)
    assert rc == 3  # a delivery failed
    on_topic = count_records(kafka_bootstrap, topic, unique_group, summary["delivered"])
    delivered = {orjson.loads(m.value())["event_id"] for m in on_topic}
    # batches are kept under the topic's limit: the big line fails alone
    not_delivered = [n for n, e in enumerate(events, 1) if e["event_id"] not in delivered]
    assert not_delivered == [2]
    reason = "Broker: Message size too large"
    assert summary["failed_first_lines"] == {reason: not_delivered}
    lines = ", ".join(map(str, not_delivered))
    assert f"delivery failed: {reason}: {len(not_delivered)} (lines {lines})" in captured.err


def test_records_failing_delivery_are_summed_up_not_logged_one_line_each(
    kafka_bootstrap: str, unique_topic: Callable[..., str], tmp_path: Path
) -> None:
    """Every record the topic refuses is in the summary (counted, its first lines named): the
    SDK's warning per failed record made as many stderr lines as records (here 50 more)."""
    topic = unique_topic(config={"max.message.bytes": "2048"})
    noise = random.Random(11)
    path = tmp_path / "big.jsonl"
    path.write_bytes(
        b"".join(
            orjson.dumps({**GOOD, "event_id": f"big-{n}", "properties": {
                f"note{i}": noise.randbytes(1000).hex() for i in range(4)}}) + b"\n"
            for n in range(50)
        )
    )  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-m", "streams.cli.main", "produce", str(path), "--topic", topic,
         "--bootstrap", kafka_bootstrap],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 3
    assert run.stderr.splitlines() == [
        f"produce to {topic}: lines 50 (blank 0), sent 50, delivered 0, failed 50, "
        "undelivered 0, rejected 0",
        run.stderr.splitlines()[1],  # the time and rate
        "  delivery failed: Broker: Message size too large: 50 (lines 1, 2, 3, 4, 5, ...)",
    ]


def test_an_interrupted_produce_flushes_what_it_read_and_says_what_became_of_it(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ctrl-C while reading stdin: the lines read are flushed and the summary says what was
    delivered or failed, by line, with 130. It returned 130 and said nothing: what was still
    queued after a 1 s close was dropped silently, and failures were never reported."""
    topic = unique_topic(config={"max.message.bytes": "2048"})
    noise = random.Random(5)
    big = {**GOOD, "event_id": "cli-big", "properties": {
        f"note{i}": noise.randbytes(1000).hex() for i in range(4)}}  # fmt: skip

    class Typed(io.BytesIO):
        """Two lines typed, then Ctrl-C."""

        def __iter__(self) -> Iterator[bytes]:
            yield orjson.dumps(GOOD) + b"\n"
            yield orjson.dumps(big) + b"\n"
            raise KeyboardInterrupt

    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=Typed()))
    rc = main(["produce", "-", "--topic", topic, "--bootstrap", kafka_bootstrap, "--json"])
    captured = capsys.readouterr()
    assert rc == 130
    summary = orjson.loads(captured.out)
    assert (summary["lines"], summary["sent"], summary["undelivered"]) == (2, 2, 0)
    assert summary["delivered"] + summary["failed"] == 2
    assert 2 in summary["failed_first_lines"]["Broker: Message size too large"]
    assert "interrupted after line 2" in captured.err
