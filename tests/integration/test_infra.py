"""deploy/infra.sh lifecycle on its own ports and data dir (never the session's servers)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from local_infra import pid_alive

from streams.cli import demo

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA_SCRIPT = REPO_ROOT / "deploy" / "infra.sh"

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Infra:
    data_dir: Path
    env: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(INFRA_SCRIPT), *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=240,
        )

    def status(self) -> tuple[int, dict[str, object]]:
        result = self.run("status", "--json")
        return result.returncode, json.loads(result.stdout)


@pytest.fixture
def infra(tmp_path: Path, free_ports: Callable[[int], list[int]]) -> Iterator[Infra]:
    kafka_port, controller_port, redis_port = free_ports(3)
    env = {
        **os.environ,
        "LOOM_KAFKA_PORT": str(kafka_port),
        "LOOM_KAFKA_CONTROLLER_PORT": str(controller_port),
        "LOOM_REDIS_PORT": str(redis_port),
        "LOOM_DATA_DIR": str(tmp_path / "run"),
        "LOOM_STOP_TIMEOUT": "20",
    }
    handle = Infra(tmp_path / "run", env)
    yield handle
    handle.run("down")  # whatever the test did, leave nothing running


def _java_processes_for(data_dir: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            cmdline
            and cmdline[0].endswith(b"java")
            and str(data_dir).encode() in b" ".join(cmdline)
        ):
            pids.append(int(proc.name))
    return pids


def _produce_one(bootstrap: str, topic: str) -> None:
    """One record to ``topic``, delivered (the producer is gone when this returns)."""
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, b"a record")
    assert producer.flush(10) == 0


def _kafka(status: dict[str, object]) -> dict[str, object]:
    value = status["kafka"]
    assert isinstance(value, dict)
    return value


def _redis(status: dict[str, object]) -> dict[str, object]:
    value = status["redis"]
    assert isinstance(value, dict)
    return value


def test_up_is_idempotent_status_tracks_state_and_down_stops_both(infra: Infra) -> None:
    rc, before = infra.status()
    assert rc == 1
    assert _kafka(before)["state"] == "stopped"
    assert _redis(before)["state"] == "stopped"
    assert not demo.infra_running(infra.env)  # `loom demo` would start, and stop, its own

    first = infra.run("up")
    assert first.returncode == 0, first.stderr
    assert "broker started in" in first.stderr
    assert str(infra.data_dir / "kafka" / "logs" / "server.log") in first.stderr
    rc, running = infra.status()
    assert rc == 0
    assert demo.infra_running(infra.env)  # `loom demo` would leave these running
    kafka_pid, redis_pid = _kafka(running)["pid"], _redis(running)["pid"]
    assert isinstance(kafka_pid, int)
    assert isinstance(redis_pid, int)
    assert _kafka(running)["bootstrap"] == f"127.0.0.1:{infra.env['LOOM_KAFKA_PORT']}"

    second = infra.run("up")
    assert second.returncode == 0, second.stderr
    assert "already running" in second.stderr
    rc, again = infra.status()
    assert rc == 0
    assert (_kafka(again)["pid"], _redis(again)["pid"]) == (kafka_pid, redis_pid)
    assert _java_processes_for(infra.data_dir) == [kafka_pid]

    # The broker answers real clients, and listens on loopback only.
    admin = AdminClient({"bootstrap.servers": str(_kafka(again)["bootstrap"])})
    assert admin.list_topics(timeout=10).brokers
    config = (infra.data_dir / "kafka" / "server.properties").read_text()
    assert "listeners=PLAINTEXT://127.0.0.1:" in config
    assert "CONTROLLER://127.0.0.1:" in config

    # A new partition's index files are created at 1 MiB, not Kafka's 10 (ADR 0042).
    admin.create_topics([NewTopic("index-size", num_partitions=1)])["index-size"].result(10)
    _produce_one(str(_kafka(again)["bootstrap"]), "index-size")
    segment = infra.data_dir / "kafka" / "data" / "index-size-0"
    sizes = {p.suffix: p.stat().st_size for p in segment.glob("*index")}
    assert sizes.keys() == {".index", ".timeindex"}
    assert all(0 < size <= 1 << 20 for size in sizes.values()), sizes

    # `loom infra status --json` wraps the same script.
    cli = subprocess.run(
        [sys.executable, "-m", "streams.cli.main", "infra", "status", "--json"],
        env=infra.env,
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
    )
    assert cli.returncode == 0, cli.stderr
    assert _kafka(json.loads(cli.stdout))["pid"] == kafka_pid

    down = infra.run("down")
    assert down.returncode == 0, down.stderr
    deadline = time.monotonic() + 5
    while (pid_alive(kafka_pid) or pid_alive(redis_pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(kafka_pid)
    assert not pid_alive(redis_pid)
    rc, after = infra.status()
    assert rc == 1
    assert (_kafka(after)["state"], _redis(after)["state"]) == ("stopped", "stopped")

    again_down = infra.run("down")
    assert again_down.returncode == 0, again_down.stderr
    assert "kafka not running" in again_down.stderr


def test_stale_pid_files_count_as_stopped_and_are_not_signalled(infra: Infra) -> None:
    # A live process that is not ours (this pytest) and a pid that does not exist.
    for name, pid in (("kafka/kafka.pid", os.getpid()), ("redis/redis.pid", 2**22 + 1)):
        path = infra.data_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{pid}\n")
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        rc, status = infra.status()
        assert rc == 1
        assert (_kafka(status)["state"], _redis(status)["state"]) == ("stopped", "stopped")
        down = infra.run("down")  # must not SIGTERM this pytest process
        assert down.returncode == 0, down.stderr
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not (infra.data_dir / "kafka" / "kafka.pid").exists()


def test_cli_rejects_json_for_up() -> None:
    cli = subprocess.run(
        [sys.executable, "-m", "streams.cli.main", "infra", "up", "--json"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
    )
    assert cli.returncode == 2
    assert "--json only applies" in cli.stderr


def test_classpath_names_the_cached_kafka_jars(infra: Infra) -> None:
    result = infra.run("classpath")
    assert result.returncode == 0, result.stderr
    classpath = result.stdout.strip()
    assert classpath.endswith("/*")
    jars = {p.name for p in Path(classpath[:-2]).glob("*.jar")}
    assert {"kafka_2.13-3.9.1.jar", "kafka-tools-3.9.1.jar"} <= jars
    assert any(name.startswith("slf4j-reload4j") for name in jars)
