"""A terminated bench cleans up (``bench.run_main``, ``bench.run_child``): SIGTERM unwinds its
``main`` through its ``finally`` blocks, which stop the workers and servers it started and
delete its topics. Before, a bench stopped by ``timeout`` or a cancelled job left them running.

Each case runs a small bench-shaped script in a child process, as ``python -m bench...`` would.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: a bench's shape: announce it runs, wait to be stopped; its ``finally`` is the cleanup, which
#: announces itself and then waits for one line on stdin before it records that it finished
BENCH = """
import signal, sys
from pathlib import Path
from bench import run_main

def main() -> int:
    try:
        print("running", flush=True)
        signal.pause()
        return 0
    finally:
        print("cleaning", flush=True)
        if sys.argv[2] == "wait":
            sys.stdin.readline()
        Path(sys.argv[1]).write_text("cleaned up")

run_main(main)
"""


def start(done: Path, mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", BENCH, str(done), mode],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline() == "running\n"
    return proc


def test_sigterm_runs_the_cleanup_and_exits_143(tmp_path: Path) -> None:
    done = tmp_path / "done"
    with start(done, "go") as proc:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 128 + signal.SIGTERM
    assert done.read_text() == "cleaned up"


def test_a_second_sigterm_does_not_cut_the_cleanup_short(tmp_path: Path) -> None:
    done = tmp_path / "done"
    with start(done, "wait") as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout.readline() == "cleaning\n"
        proc.send_signal(signal.SIGTERM)  # impatient: the cleanup still waits for its line
        proc.stdin.write("go on\n")
        proc.stdin.flush()
        assert proc.wait(30) == 128 + signal.SIGTERM
    assert done.read_text() == "cleaned up"


def test_a_child_bench_that_times_out_gets_to_clean_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))  # `python -m bench` runs from the checkout
    from bench import run_child

    done = tmp_path / "done"
    with pytest.raises(subprocess.TimeoutExpired):
        # the child is waiting for SIGTERM: the timeout is what ends it
        run_child([sys.executable, "-c", BENCH, str(done), "go"], timeout=5, cwd=ROOT)
    assert done.read_text() == "cleaned up"


def test_a_child_bench_that_finishes_is_returned_like_subprocess_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from bench import run_child

    code = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
    proc = run_child([sys.executable, "-c", code], timeout=30)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")
