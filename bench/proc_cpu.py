"""CPU time of processes from the OS's accounting, for CPU-per-event figures.

The bench reports, per process of a run (each worker role, Redis, the Kafka broker, the raw
limit's consumer), the user + system CPU it used over a phase divided by the phase's events.
Unlike a wall-clock rate, that figure holds on a machine shared with other work: a process
that waits for a core accrues no CPU time meanwhile.

* :func:`~streams.procinfo.process_cpu_s`: ``utime + stime`` of ``/proc/<pid>/stat`` (fields
  14 and 15, every thread of the process, exited threads included) in seconds, with the clock
  tick from ``os.sysconf("SC_CLK_TCK")``;
* :func:`redis_pid`: Redis's own ``INFO server`` ``process_id``, if that process runs on this
  machine (a remote Redis, or one in another PID namespace, gives None);
* :func:`kafka_pid`: the process listening on the bootstrap port (the Kafka broker's JVM), from
  ``/proc/net/tcp{,6}`` and the processes' open sockets;
* :class:`CpuMeter`: named groups of pids, sampled before and after a phase.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.procinfo import listening_pid, process_cpu_s


def is_local(pid: int | None) -> bool:
    return pid is not None and pid > 0 and Path(f"/proc/{pid}/stat").exists()


def redis_pid(client: Any) -> int | None:
    """The pid of the Redis server ``client`` talks to, if it runs on this machine."""
    try:
        pid = int(client.info("server").get("process_id", 0))
    except Exception:  # no INFO for this user (ACL), or not answering: no figure
        return None
    return pid if is_local(pid) else None


def kafka_pid(bootstrap: str) -> int | None:
    """The broker process behind the first ``host:port`` of ``bootstrap``, if it is local."""
    host, _, port = bootstrap.split(",", maxsplit=1)[0].rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0"):
        return None
    return listening_pid(int(port))


@dataclass
class CpuMeter:
    """CPU seconds of named groups of processes between :meth:`start` and :meth:`stop`."""

    groups: dict[str, list[int]] = field(default_factory=dict)
    _before: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, pid: int | None) -> None:
        """Measure ``pid`` under ``name`` (several pids of one name are summed); a pid that is
        not a local process is left out (its group then reports None)."""
        self.groups.setdefault(name, [])
        if is_local(pid):
            assert pid is not None
            self.groups[name].append(pid)

    def sample(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for name, pids in self.groups.items():
            try:
                out[name] = sum(process_cpu_s(p) for p in pids) if pids else None
            except OSError:  # a process exited mid-phase: its figure would be wrong
                out[name] = None
        return out

    def start(self) -> None:
        self._before = {k: v for k, v in self.sample().items() if v is not None}

    def stop(self) -> dict[str, float | None]:
        """CPU seconds per group since :meth:`start` (None: not measurable)."""
        now = self.sample()
        return {
            name: (round(v - self._before[name], 3) if v is not None and name in self._before
                   else None)
            for name, v in now.items()
        }  # fmt: skip


def per_event_us(cpu_s: Mapping[str, float | None], events: int) -> dict[str, float | None]:
    """CPU seconds per group -> microseconds per event."""
    return {k: (round(v / events * 1e6, 1) if v is not None and events else None)
            for k, v in cpu_s.items()}  # fmt: skip
