"""deploy/infra.sh on free loopback ports with a temporary data dir: the servers of a test
session (tests/conftest.py) or of a test that needs a broker of its own (one it may kill);
:class:`RedisServer`, a bare ``redis-server`` of one test (the ``redis_server`` fixture)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis

REPO_ROOT = Path(__file__).resolve().parents[1]
INFRA_SCRIPT = REPO_ROOT / "deploy" / "infra.sh"


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap: str
    redis_url: str


def free_ports(count: int) -> list[int]:
    """Ports the kernel reports free on 127.0.0.1 (all held open together, so distinct).

    Tests get it as the ``free_ports`` fixture (tests/conftest.py)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (signal 0)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} not readable)"


class LocalInfra:
    """deploy/infra.sh on its own ports and data dir; ``down`` at session end.

    ``secured``: the script's secured mode; ``endpoints.kafka_bootstrap`` is then its SASL_SSL
    listener, ``ssl_bootstrap`` the mTLS one, and the Redis port speaks TLS only."""

    def __init__(self, *, secured: bool = False) -> None:
        kafka_port, controller_port, redis_port, sasl_port, ssl_port = free_ports(5)
        self.secured = secured
        self.data_dir = Path(tempfile.mkdtemp(prefix="loom-test-infra-"))
        self.tls_dir = self.data_dir / "tls"
        self.redis_port = redis_port
        self.env = {
            **os.environ,
            "LOOM_KAFKA_PORT": str(kafka_port),
            "LOOM_KAFKA_CONTROLLER_PORT": str(controller_port),
            "LOOM_REDIS_PORT": str(redis_port),
            "LOOM_DATA_DIR": str(self.data_dir),
            "LOOM_INFRA_SECURED": "yes" if secured else "no",
            "LOOM_KAFKA_SASL_SSL_PORT": str(sasl_port),
            "LOOM_KAFKA_SSL_PORT": str(ssl_port),
        }
        self.ssl_bootstrap = f"127.0.0.1:{ssl_port}"
        self.endpoints = Endpoints(
            kafka_bootstrap=f"127.0.0.1:{sasl_port if secured else kafka_port}",
            redis_url=f"redis{'s' if secured else ''}://127.0.0.1:{redis_port}/0",
        )

    def run(self, action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(INFRA_SCRIPT), action],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )

    def up(self) -> None:
        result = self.run("up")
        if result.returncode != 0:
            self.down()
            kafka_log = self.data_dir / "kafka" / "logs" / "server.log"
            raise RuntimeError(
                f"deploy/infra.sh up failed (exit {result.returncode}):\n{result.stderr}\n"
                f"--- tail of {kafka_log} ---\n{_tail(kafka_log)}"
            )

    def down(self) -> None:
        result = self.run("down")
        if result.returncode != 0:  # pragma: no cover - only on a broken machine
            print(f"deploy/infra.sh down failed:\n{result.stderr}")
        if os.environ.get("LOOM_TEST_KEEP_DATA") != "1":
            shutil.rmtree(self.data_dir, ignore_errors=True)


class RedisServer:
    """A ``redis-server`` of one test: ``start``, ``kill`` (SIGKILL), ``restart``, ``stop``."""

    def __init__(self, port: int, data_dir: Path, *, appendonly: bool) -> None:
        self.port, self.data_dir, self.appendonly = port, data_dir, appendonly
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{port}/0"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--dir", str(self.data_dir), "--appendonly", "yes" if self.appendonly else "no"]
        # Loom's default: Redis writes the AOF before it replies, so a killed process loses
        # nothing acknowledged (only a host crash can lose the last second)
        args += ["--appendfsync", "everysec"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                pass
            except redis.exceptions.BusyLoadingError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("redis-server did not start")
            time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def restart(self, down_s: float = 1.0) -> None:
        self.kill()
        time.sleep(down_s)  # the outage itself: workers see connection errors meanwhile
        self.start()

    def stop(self) -> None:
        self.kill()
