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
* :class:`CpuMeter`: named groups of pids, sampled before and after a phase, and named groups
  of threads of one process (:meth:`CpuMeter.add_threads`): the broker JVM's JIT compiler
  threads (:data:`JIT_THREADS`), a large share of a freshly started broker's CPU, and its
  garbage collector's (:data:`GC_THREADS`);
* :class:`HostCpu`: how the whole host's CPU time went over a phase (busy, idle, waiting for
  I/O, stolen by the hypervisor): whether a run had the machine's CPUs to itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.procinfo import listening_pid, process_cpu_s, stat_cpu_s

#: The names (``/proc/<pid>/task/<tid>/comm``, cut to 15 characters) of a HotSpot JVM's JIT
#: compiler threads. A broker started minutes before compiled for ~1 s of CPU in a 20,000-event
#: run (``jstat -compiler``: ~300 methods), as much as all its other work for the run; one
#: that had served ~50 bench runs, 0.07 s (twenty-first pass, bench/README.md).
JIT_THREADS: tuple[str, ...] = ("C1 CompilerThre", "C2 CompilerThre")

#: A HotSpot JVM's garbage collector threads (G1's: parallel workers, concurrent marking,
#: refinement, service).
GC_THREADS: tuple[str, ...] = ("GC Thread#", "G1 ")


def threads_cpu_s(pid: int, names: tuple[str, ...]) -> dict[int, float]:
    """User + system CPU seconds so far of each live thread of ``pid`` whose name starts with
    one of ``names``, by thread id (:func:`~streams.procinfo.stat_cpu_s` of its ``stat``)."""
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if task.joinpath("comm").read_text().startswith(names):
                out[int(task.name)] = stat_cpu_s(task / "stat")
        except OSError:  # the thread exited meanwhile
            continue
    return out


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
    #: name -> (pid, thread name prefixes): :meth:`add_threads`
    thread_groups: dict[str, tuple[int, tuple[str, ...]]] = field(default_factory=dict)
    _before: dict[str, float] = field(default_factory=dict)
    _threads_before: dict[str, dict[int, float]] = field(default_factory=dict)

    def add(self, name: str, pid: int | None) -> None:
        """Measure ``pid`` under ``name`` (several pids of one name are summed); a pid that is
        not a local process is left out (its group then reports None)."""
        self.groups.setdefault(name, [])
        if is_local(pid):
            assert pid is not None
            self.groups[name].append(pid)

    def add_threads(self, name: str, pid: int | None, names: tuple[str, ...]) -> None:
        """Measure the threads of ``pid`` named ``names*`` under ``name`` (None if ``pid`` is
        not a local process). Threads started during the phase count whole; one that exited
        during it is missed, so the figure is a lower bound (the JVM stops idle compiler
        threads)."""
        if is_local(pid):
            assert pid is not None
            self.thread_groups[name] = (pid, names)
        else:
            self.groups.setdefault(name, [])  # reported as None

    def _threads(self) -> dict[str, dict[int, float]]:
        out = {}
        for name, (pid, names) in self.thread_groups.items():
            try:
                out[name] = threads_cpu_s(pid, names)
            except OSError:  # the process exited
                continue
        return out

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
        self._threads_before = self._threads()

    def stop(self) -> dict[str, float | None]:
        """CPU seconds per group since :meth:`start` (None: not measurable)."""
        now = self.sample()
        threads = self._threads()
        out: dict[str, float | None] = {
            name: (round(v - self._before[name], 3) if v is not None and name in self._before
                   else None)
            for name, v in now.items()
        }  # fmt: skip
        for name in self.thread_groups:
            before, after = self._threads_before.get(name), threads.get(name)
            out[name] = (
                None
                if before is None or after is None
                else round(sum(v - before.get(tid, 0.0) for tid, v in after.items()), 3)
            )
        return out


#: The columns of ``/proc/stat``'s ``cpu`` line (every CPU, in clock ticks), in order.
HOST_COLUMNS: tuple[str, ...] = (
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"
)  # fmt: skip


def host_ticks(stat: Path = Path("/proc/stat")) -> dict[str, int]:
    """The host's CPU time so far, by :data:`HOST_COLUMNS`."""
    first = stat.read_text().split("\n", 1)[0].split()
    return dict(zip(HOST_COLUMNS, map(int, first[1 : 1 + len(HOST_COLUMNS)]), strict=True))


@dataclass
class HostCpu:
    """Shares (%) of the host's CPU time between :meth:`start` and :meth:`stop`: ``busy``
    (user, system, interrupts), ``idle``, ``iowait`` and ``steal`` (the hypervisor ran another
    guest while this one wanted a CPU: a run that lost a share of its CPUs so)."""

    stat: Path = Path("/proc/stat")
    _before: dict[str, int] = field(default_factory=dict)

    def start(self) -> None:
        self._before = host_ticks(self.stat)

    def stop(self) -> dict[str, float]:
        after = host_ticks(self.stat)
        d = {k: after[k] - self._before.get(k, 0) for k in HOST_COLUMNS}
        total = sum(d.values()) or 1
        busy = d["user"] + d["nice"] + d["system"] + d["irq"] + d["softirq"]
        shares = {"busy": busy, "idle": d["idle"], "iowait": d["iowait"], "steal": d["steal"]}
        return {k: round(100 * v / total, 1) for k, v in shares.items()}


def per_event_us(cpu_s: Mapping[str, float | None], events: int) -> dict[str, float | None]:
    """CPU seconds per group -> microseconds per event."""
    return {k: (round(v / events * 1e6, 1) if v is not None and events else None)
            for k, v in cpu_s.items()}  # fmt: skip
