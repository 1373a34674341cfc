"""The development broker's index files, and the facts the bench records of them (ADR 0042)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "kafka" / "server.properties.tmpl"


@pytest.fixture
def facts(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(ROOT))  # `python -m bench...` runs from the checkout
    return importlib.import_module("bench.broker_facts")


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.lstrip().startswith("#")}


def test_the_templates_index_files_are_small_and_hold_a_whole_segment(facts: Any) -> None:
    props = _properties(TEMPLATE.read_text())
    index = int(props["log.index.size.max.bytes"])
    segment = int(props["log.segment.bytes"])
    interval = int(props.get("log.index.interval.bytes", "4096"))  # Kafka's default
    assert index <= 1 << 20  # not Kafka's 10 MiB: a fresh index file pulls in at most this
    assert facts.index_holds_segment(index, segment, interval)


@pytest.mark.parametrize(
    ("index", "segment", "holds"),
    [
        (1 << 20, 100 << 20, True),  # the template's: 87,381 entries, a segment needs 25,600
        (10 << 20, 1 << 30, True),  # Kafka's defaults
        (1 << 20, 1 << 30, False),  # 262,144 entries needed: segments would roll at ~341 MiB
        (12 * 25_600, 100 << 20, True),  # exactly enough time index entries
        (12 * 25_600 - 1, 100 << 20, False),
    ],
)
def test_index_holds_segment_counts_the_larger_time_index_entries(
    facts: Any, index: int, segment: int, holds: bool
) -> None:
    assert facts.index_holds_segment(index, segment, 4096) is holds


def _fake_sys(tmp_path: Path, path: Path, *, partition: bool, value: str) -> Path:
    """A /sys where ``path``'s device is a disk (or a partition of one) reading ahead ``value``."""
    dev = os.stat(path).st_dev
    disk = tmp_path / "sys" / "devices" / "vdb"
    (disk / "queue").mkdir(parents=True)
    (disk / "queue" / "read_ahead_kb").write_text(value + "\n")
    node = disk / "vdb1" if partition else disk
    node.mkdir(exist_ok=True)
    block = tmp_path / "sys" / "dev" / "block"
    block.mkdir(parents=True)
    (block / f"{os.major(dev)}:{os.minor(dev)}").symlink_to(node)
    return tmp_path / "sys"


@pytest.mark.parametrize("partition", [False, True])
def test_read_ahead_is_the_disks_for_a_disk_or_its_partition(
    facts: Any, tmp_path: Path, partition: bool
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    root = _fake_sys(tmp_path, data, partition=partition, value="8192")
    assert facts.read_ahead_kb(data, sys_root=root) == 8192


def test_read_ahead_is_unknown_without_a_block_device_or_a_path(facts: Any, tmp_path: Path) -> None:
    empty = tmp_path / "sys"
    empty.mkdir()
    assert facts.read_ahead_kb(tmp_path, sys_root=empty) is None
    assert facts.read_ahead_kb(tmp_path / "missing", sys_root=empty) is None
    root = _fake_sys(tmp_path, tmp_path, partition=False, value="not a number")
    assert facts.read_ahead_kb(tmp_path, sys_root=root) is None


def test_describe_names_both_figures_or_why_not(facts: Any) -> None:
    local = {"index_bytes": 1 << 20, "segment_bytes": 100 << 20, "log_dir_read_ahead_kb": 8192}
    assert facts.describe(local) == "index files 1,024 KiB, log disk read-ahead 8,192 KiB"
    remote = {**local, "index_bytes": 10 << 20, "log_dir_read_ahead_kb": None}
    assert facts.describe(remote) == "index files 10,240 KiB, log dir not on this machine"
    assert facts.describe({"error": "cannot describe the broker: timed out"}).startswith("cannot")


class _Entry:
    def __init__(self, value: str | None) -> None:
        self.value = value


class _Done:
    def __init__(self, value: Any) -> None:
        self._value = value

    def result(self, timeout: float | None = None) -> Any:
        if isinstance(self._value, Exception):
            raise self._value
        return self._value


class _Admin:
    """What ``broker_facts`` asks of an ``AdminClient``: brokers, then one broker's configs."""

    def __init__(self, brokers: dict[int, object], configs: Any) -> None:
        self.brokers, self.configs = brokers, configs
        self.asked: list[str] = []

    def list_topics(self, timeout: float) -> Any:
        return type("Metadata", (), {"brokers": self.brokers})()

    def describe_configs(self, resources: list[Any]) -> dict[Any, _Done]:
        self.asked += [r.name for r in resources]
        return {r: _Done(self.configs) for r in resources}


def test_broker_facts_reads_the_lowest_brokers_configs(
    facts: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    configs = {
        "log.index.size.max.bytes": _Entry("1048576"),
        "log.segment.bytes": _Entry("104857600"),
        "log.dirs": _Entry("/no/such/dir"),  # not on this machine
        "log.dir": _Entry("/tmp/kafka-logs"),
    }
    admin = _Admin({3: object(), 1: object()}, configs)
    monkeypatch.setattr(facts.kafka_clients, "admin", lambda settings: admin)
    assert facts.broker_facts("127.0.0.1:1") == {
        "index_bytes": 1 << 20,
        "segment_bytes": 100 << 20,
        "log_dir_read_ahead_kb": None,
    }
    assert admin.asked == ["1"]


@pytest.mark.parametrize(
    ("brokers", "configs"),
    [
        ({}, {}),  # no broker answered
        ({1: object()}, {"log.segment.bytes": _Entry("1")}),  # a setting not shown
        ({1: object()}, {"log.index.size.max.bytes": _Entry(None)}),
    ],
)
def test_broker_facts_says_why_it_cannot_tell(
    facts: Any, monkeypatch: pytest.MonkeyPatch, brokers: dict[int, object], configs: Any
) -> None:
    monkeypatch.setattr(facts.kafka_clients, "admin", lambda settings: _Admin(brokers, configs))
    found = facts.broker_facts("127.0.0.1:1")
    assert list(found) == ["error"]
    assert found["error"].startswith("cannot describe the broker: ")


def test_broker_facts_says_why_when_the_describe_fails(
    facts: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from confluent_kafka import KafkaError, KafkaException

    denied = KafkaException(KafkaError(KafkaError.CLUSTER_AUTHORIZATION_FAILED))
    monkeypatch.setattr(facts.kafka_clients, "admin", lambda settings: _Admin({1: 0}, denied))
    assert "CLUSTER_AUTHORIZATION_FAILED" in facts.broker_facts("127.0.0.1:1")["error"]
