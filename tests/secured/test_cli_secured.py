"""The ``loom`` commands on the secured servers, as an operator runs them: configured by
``LOOM_*`` variables with secrets in files; working when the credentials are right, and one
line (no traceback, no librdkafka lines, no secret) with a non-zero exit when they are not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
from loom_servers import Servers

ROOT = Path(__file__).resolve().parents[2]
WRONG = "wrong-password-7f3a9c"


def loom(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli.main", *args],
        env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        check=False,
    )  # fmt: skip


@pytest.fixture
def env(secured_servers: Servers) -> dict[str, str]:
    prefix = f"cli{uuid.uuid4().hex[:10]}"
    return {
        **secured_servers.environ(prefix),
        "LOOM_APP_ID": f"loom-cli-{prefix}",
        "LOOM_TOPIC_RAW": f"{prefix}.raw",
    }


@pytest.fixture
def wrong_file(tmp_path: Path) -> str:
    path = tmp_path / "wrong"
    path.write_text(WRONG + "\n")
    return str(path)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exactly one line on stderr and nothing else."""
    assert result.returncode == 3, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert WRONG not in result.stderr
    return lines[0]


def test_produce_lag_and_readers_work_over_sasl_ssl_and_tls(
    env: dict[str, str], tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    event = {
        "event_id": f"cli-{uuid.uuid4().hex}",
        "type": "page_view",
        "channel": "web",
        "occurred_at": "2026-11-01T09:00:00+01:00",
        "identifiers": {"anonymous_id": "dev-1"},
    }
    events.write_bytes(orjson.dumps(event) + b"\n")
    produced = loom(env, "produce", str(events), "--json")
    assert produced.returncode == 0, produced.stderr
    assert orjson.loads(produced.stdout)["delivered"] == 1
    lag = loom(env, "lag", "--all", "--json")
    assert lag.returncode == 0, lag.stderr
    assert "groups" in orjson.loads(lag.stdout)
    # Redis as the ACL user of this prefix: a lookup that finds nothing is exit 1, not an error
    missing = loom(env, "profile", "get", "email:nobody@example.com")
    assert (missing.returncode, missing.stderr.strip()) == (
        1,
        "loom profile get: no profile for that email identifier",
    )
    exported = loom(env, "inventory", "export")
    assert exported.returncode == 0, exported.stderr


def test_wrong_kafka_credentials_are_one_line(env: dict[str, str], wrong_file: str) -> None:
    bad = {**env, "LOOM_KAFKA_SASL_PASSWORD_FILE": wrong_file}
    line = one_line(loom(bad, "lag"))
    assert line.startswith(f"loom lag: Kafka {env['LOOM_KAFKA_BOOTSTRAP']}: authentication failed:")
    assert "SCRAM-SHA-512" in line


def test_wrong_redis_credentials_are_one_line(env: dict[str, str], wrong_file: str) -> None:
    bad = {**env, "LOOM_REDIS_PASSWORD_FILE": wrong_file}
    line = one_line(loom(bad, "profile", "get", "email:a@example.com"))
    port = urlsplit(env["LOOM_REDIS_URL"]).port
    assert line == (
        f"loom profile get: Redis 127.0.0.1:{port} (TLS): "
        "authentication failed: invalid username-password pair or user is disabled."
    )


def test_a_worker_with_wrong_credentials_stops_at_once_with_one_line(
    env: dict[str, str], wrong_file: str
) -> None:
    bad = {**env, "LOOM_KAFKA_SASL_PASSWORD_FILE": wrong_file}
    started = time.monotonic()
    line = one_line(loom(bad, "worker", "--role", "inventory"))
    assert time.monotonic() - started < 30
    assert line.startswith("loom worker: Kafka ")
    assert "authentication failed" in line


@pytest.mark.secured_full
def test_no_secret_appears_even_in_verbose_output(env: dict[str, str], tmp_path: Path) -> None:
    """With -v librdkafka's own lines are shown; the password is in none of them."""
    secret = f"{WRONG}-{uuid.uuid4().hex}"
    path = tmp_path / "secret"
    path.write_text(secret)
    bad = {**env, "LOOM_KAFKA_SASL_PASSWORD_FILE": str(path), "LOOM_REDIS_PASSWORD_FILE": str(path)}
    kafka = loom(bad, "-v", "lag")
    redis = loom(bad, "-v", "profile", "get", "email:a@example.com")
    for result in (kafka, redis):
        assert result.returncode == 3
        assert secret not in result.stdout + result.stderr
    assert "librdkafka" in kafka.stderr  # verbose really was verbose


@pytest.mark.secured_full
def test_a_worker_waits_for_an_unreachable_kafka_one_line_per_attempt(
    env: dict[str, str], free_ports: object
) -> None:
    (port,) = free_ports(1)  # type: ignore[operator]
    waiting = {**env, "LOOM_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}", "LOOM_RETRY_BACKOFF_MAX_S": "1"}
    lines: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-m", "streams.cli.main", "worker", "--role", "inventory"],
        env={**os.environ, **waiting}, cwd=ROOT, stderr=subprocess.PIPE, text=True,
    ) as proc:  # fmt: skip
        try:
            assert proc.stderr is not None
            while len(lines) < 3:
                line = proc.stderr.readline()
                assert line, f"worker exited early: {lines}"
                lines.append(line.rstrip("\n"))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    for n, line in enumerate(lines, start=1):
        assert (
            f"waiting for Kafka 127.0.0.1:{port}: Connect to ipv4#127.0.0.1:{port} failed" in line
        )
        assert f"(attempt {n};" in line
