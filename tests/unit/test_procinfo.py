"""streams.procinfo: CPU time and listening sockets of local processes, read from /proc."""

from __future__ import annotations

import os
import socket
import time

from streams.procinfo import listening_pid, process_cpu_s


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
