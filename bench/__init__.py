"""Benchmarks (``python -m bench.<name>``).

Every bench's ``__main__`` block runs through :func:`run_main`, so that a SIGTERM (``timeout``,
a cancelled CI job, ``kill``) unwinds it as Ctrl-C does: its ``finally`` blocks stop the
workers and private ``redis-server`` processes it started and delete its topics, consumer
groups and Redis keys. Without it, a terminated bench left all of them behind, running (a
broker that had collected 1,300 such partitions is how it was found).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, NoReturn

#: seconds a child bench has to clean up after SIGTERM before it is killed
CHILD_GRACE_S = 60.0


def run_main(main: Callable[[], int]) -> NoReturn:
    """``sys.exit(main())``, with SIGTERM raising ``SystemExit(143)`` inside ``main``."""
    signal.signal(signal.SIGTERM, _terminated)
    sys.exit(main())


def _terminated(signum: int, frame: FrameType | None) -> None:
    # once: a second SIGTERM must not interrupt the cleanup the first one started
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def run_child(
    argv: Sequence[str], *, timeout: float, **popen: Any
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(argv, capture_output=True, text=True)``, but a child that times out (or
    whose parent is unwound) gets SIGTERM and :data:`CHILD_GRACE_S` to clean up before SIGKILL:
    ``subprocess.run`` kills at once, which leaves a bench's own servers and topics behind."""
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:
            proc.terminate()
            try:
                proc.communicate(timeout=CHILD_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)
