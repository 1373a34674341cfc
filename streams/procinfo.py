"""Facts about local processes from ``/proc`` (Linux): CPU time used, who listens on a port.

For measuring and fault-injecting Loom's processes from outside: the bench's CPU per event
(``bench.proc_cpu``) and the chaos tier's broker pauses (``tests/chaos``). A worker reads one
thing of its own here: its lane thread's time waiting for a CPU (:func:`thread_runnable_s`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

#: TCP state LISTEN in ``/proc/net/tcp``.
LISTEN: Final = "0A"


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far, every thread (exited ones too)."""
    return stat_cpu_s(Path(f"/proc/{pid}/stat"))


def stat_cpu_s(stat: Path) -> float:
    """User + system CPU seconds of a ``/proc`` ``stat`` file (a process's, or a thread's
    ``/proc/<pid>/task/<tid>/stat``): fields 14 and 15 over the clock tick
    ``os.sysconf("SC_CLK_TCK")``."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: The calling thread's scheduler statistics: ns on a CPU, ns waiting on a run queue, slices.
THREAD_SCHEDSTAT: Final = "/proc/thread-self/schedstat"


def thread_runnable_s() -> float | None:
    """Seconds the calling thread has spent ready to run while no CPU was free (its run-queue
    wait, the second field of :data:`THREAD_SCHEDSTAT`); None where the kernel does not say
    (another OS, or Linux without ``CONFIG_SCHEDSTATS``). A thread waiting for a lock, a
    socket or a sleep is not on a run queue: this is the time other processes, or other
    threads, held the CPUs it could have used."""
    try:
        with open(THREAD_SCHEDSTAT, "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == LISTEN and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    return inodes


def listening_pid(port: int) -> int | None:
    """The local process listening on TCP ``port`` (None if none this user can see)."""
    sockets = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not sockets:
        return None
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            for fd in fd_dir.iterdir():
                if os.readlink(fd) in sockets:
                    return int(fd_dir.parent.name)
        except OSError:  # gone, or not ours to read
            continue
    return None
