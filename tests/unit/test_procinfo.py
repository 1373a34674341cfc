"""streams.procinfo: CPU time and listening sockets of local processes, read from /proc."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from streams import procinfo
from streams.procinfo import listening_pid, process_cpu_s, stat_cpu_s, thread_runnable_s


def test_cpu_time_grows_with_work_and_not_with_sleep() -> None:
    start = process_cpu_s(os.getpid())
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:  # burn 0.2 s of CPU
        pass
    busy = process_cpu_s(os.getpid()) - start
    assert 0.1 <= busy <= 1.0
    before_sleep = process_cpu_s(os.getpid())
    time.sleep(0.2)
    assert process_cpu_s(os.getpid()) - before_sleep < 0.1


def test_listening_pid_finds_this_process_and_nothing_on_a_closed_port() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert listening_pid(port) == os.getpid()
        with socket.create_connection(("127.0.0.1", port)):
            assert listening_pid(port) == os.getpid()  # a connected socket is no listener
    assert listening_pid(port) is None


def test_a_thread_s_cpu_time_is_its_own() -> None:
    """``stat_cpu_s`` of a thread's ``/proc/<pid>/task/<tid>/stat``: the work of that thread
    only, not of the process's other threads."""
    tid: list[int] = []
    started, done = threading.Event(), threading.Event()

    def idle() -> None:
        tid.append(threading.get_native_id())
        started.set()
        done.wait(5)

    thread = threading.Thread(target=idle)
    thread.start()
    try:
        assert started.wait(5)
        stat = Path(f"/proc/{os.getpid()}/task/{tid[0]}/stat")
        before, own = stat_cpu_s(stat), process_cpu_s(os.getpid())
        deadline = time.process_time() + 0.2
        while time.process_time() < deadline:  # burn 0.2 s of CPU in this thread
            pass
        assert process_cpu_s(os.getpid()) - own >= 0.1
        assert stat_cpu_s(stat) - before < 0.05  # the idle thread accrued none of it
    finally:
        done.set()
        thread.join()


def test_a_threads_run_queue_wait_grows_while_another_process_holds_its_cpu() -> None:
    """``thread_runnable_s``: this thread, pinned to one CPU beside a process that spins on
    it, waits on the run queue about as long as it computes; asleep, it does not wait."""
    if thread_runnable_s() is None:
        pytest.skip("this kernel reports no schedstat")
    cpu = min(os.sched_getaffinity(0))
    before_sleep = thread_runnable_s() or 0.0
    time.sleep(0.2)
    assert (thread_runnable_s() or 0.0) - before_sleep < 0.05
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    allowed = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(spinner.pid, {cpu})
        os.sched_setaffinity(0, {cpu})  # this thread only
        start = thread_runnable_s() or 0.0
        deadline = time.thread_time() + 0.2
        while time.thread_time() < deadline:  # 0.2 s of CPU, sharing the CPU with the spinner
            pass
        queued = (thread_runnable_s() or 0.0) - start
    finally:
        os.sched_setaffinity(0, allowed)
        spinner.kill()
        spinner.wait()
    assert queued >= 0.05


def test_no_run_queue_figure_where_the_kernel_gives_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stat = tmp_path / "schedstat"
    monkeypatch.setattr(procinfo, "THREAD_SCHEDSTAT", str(stat))
    assert thread_runnable_s() is None  # no such file
    stat.write_text("104574 2500000000 2\n")
    assert thread_runnable_s() == 2.5
    stat.write_text("garbled\n")
    assert thread_runnable_s() is None
