"""A private ``redis-server`` for a bench, as ``deploy/infra.sh`` runs it (AOF on, fsync every
second) but without forks (no RDB save points, no automatic AOF rewrite), optionally under
``valgrind --tool=callgrind`` with instrumentation switched on only when asked; its CPU from
``/proc``. Used by ``bench.redis_floor`` (issue 17.2, ADR 0021)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from streams import redis_clients
from streams.settings import LoomSettings


@dataclass
class Server:
    """A private ``redis-server`` as ``deploy/infra.sh`` runs it (AOF, fsync every second),
    without forks (no RDB save points, no automatic AOF rewrite); optionally under callgrind."""

    port: int
    data_dir: Path
    callgrind_out: Path | None = None
    keep: bool = False  # keep callgrind's output file (for callgrind_annotate)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir.mkdir(parents=True)
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
               "--dir", str(self.data_dir), "--appendonly", "yes", "--appendfsync", "everysec",
               "--save", "", "--auto-aof-rewrite-percentage", "0", "--daemonize", "no",
               "--logfile", str(self.data_dir / "redis.log")]  # fmt: skip
        if self.callgrind_out is not None:
            cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                   f"--callgrind-out-file={self.callgrind_out}", *cmd]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        with contextlib.closing(self.client()) as client:
            while True:  # until it answers PING
                try:
                    if client.ping():
                        break
                except redis.ConnectionError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server on {self.port} did not start") from None
                    time.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def client(self) -> redis.Redis:
        return redis_clients.client(LoomSettings(redis_url=f"redis://127.0.0.1:{self.port}/0"))

    def instrument(self, on: bool) -> None:
        if self.callgrind_out is not None:
            switch = ["callgrind_control", "-i", "on" if on else "off", str(self.pid)]
            subprocess.run(switch, check=True, capture_output=True)

    def stop(self) -> int | None:
        """Stop it; the instructions counted (callgrind), if under callgrind."""
        if self.proc is None:
            return None
        self.proc.terminate()
        self.proc.wait(300)
        self.proc = None
        shutil.rmtree(self.data_dir, ignore_errors=True)
        if self.callgrind_out is None:
            return None
        total = None
        for line in self.callgrind_out.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                total = int(line.split()[1])
        if not self.keep:
            self.callgrind_out.unlink()
        return total


def main_thread_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    server.start()
    try:
        yield server
    finally:
        server.instrument(False)
        server.stop()


def redis_version() -> str:
    found = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=True
    )
    return found.stdout.split()[2]
