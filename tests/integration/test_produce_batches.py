"""A produce request carries several records of a partition in one batch, and Kafka checks the
topic's ``max.message.bytes`` against the whole (compressed) batch, not each record: librdkafka
fills batches up to ``batch.size`` (the SDK's 512 KiB) and fails every record of a refused
batch with MSG_SIZE_TOO_LARGE."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from topic_reader import read_topic

from streams.cli.main import main

pytestmark = pytest.mark.integration

GOOD = {
    "event_id": "batch-0",
    "type": "page_view",
    "channel": "web",
    "occurred_at": "2024-05-01T12:00:00Z",
    "identifiers": {"anonymous_id": "a-1"},
}


def test_lines_each_under_the_topic_limit_are_delivered_though_they_are_batched(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """60 lines of under 1000 bytes to a topic whose ``max.message.bytes`` is 2048, sent
    within one linger: every line fits alone, and they failed as "Broker: Message size too
    large" (lines 1-5 first named; without line 30, 40 such lines all failed), librdkafka
    having batched them up to its 512 KiB ``batch.size``. Line 30 is over the limit by itself:
    now it alone fails, not the lines batched around it."""
    topic = unique_topic(config={"max.message.bytes": "2048"})
    noise = random.Random(3)
    events: list[dict[str, Any]] = [
        {**GOOD, "event_id": f"batch-{n}", "properties": {"note": noise.randbytes(400).hex()}}
        for n in range(1, 61)
    ]
    # line 30: 8 KiB of hex, which lz4 leaves well above 2 KiB (as in test_cli_produce)
    events[29]["properties"] = {f"note{i}": noise.randbytes(1000).hex() for i in range(4)}
    assert [n for n, e in enumerate(events, 1) if len(orjson.dumps(e)) > 2048] == [30]
    assert all(len(orjson.dumps(e)) < 1000 for n, e in enumerate(events, 1) if n != 30)
    path = tmp_path / "many.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    rc = main(["produce", str(path), "--topic", topic, "--bootstrap", kafka_bootstrap, "--json"])
    summary = orjson.loads(capsys.readouterr().out)
    assert summary["failed_first_lines"] == {"Broker: Message size too large": [30]}
    assert (summary["delivered"], summary["failed"], rc) == (59, 1, 3)
    on_topic = read_topic(kafka_bootstrap, topic)
    assert sorted(orjson.loads(m.value())["event_id"] for m in on_topic) == sorted(
        e["event_id"] for n, e in enumerate(events, 1) if n != 30
    )
