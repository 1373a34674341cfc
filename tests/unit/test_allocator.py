"""streams.allocator: the arena cap and malloc_trim do what the worker relies on (glibc only).

The arena and trim checks run in a fresh interpreter: an arena limit only holds for threads
started after it, and RSS is only readable for a process of known history."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from streams import allocator

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(allocator._LIBC is None, reason="glibc's malloc only")


def child(code: str, *args: str) -> str:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"  # glibc's defaults
    }
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


ARENAS = """
    import sys, threading
    from streams import allocator
    if sys.argv[1] == "cap":
        allocator.cap_arenas({})
    ready = threading.Barrier(7)
    held = []
    def work():
        held.append([bytes(2000) for _ in range(500)])  # malloc'd by this thread
        ready.wait()
        ready.wait()
    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    ready.wait()  # all six threads alive, each has allocated
    # glibc maps a thread arena's heap at a multiple of 64 MiB, the rest of it PROT_NONE
    lines = [line.split() for line in open("/proc/self/maps")]
    arenas = 0
    for here, after in zip(lines, lines[1:]):
        lo, hi = (int(x, 16) for x in here[0].split("-"))
        if len(here) == 5 and here[1] == "rw-p" and lo % (64 << 20) == 0:
            rest = after[1] == "---p" and after[0].startswith(f"{hi:x}-")
            arenas += hi - lo == 64 << 20 or rest
    ready.wait()
    for t in threads:
        t.join()
    print(arenas)
"""


def test_cap_arenas_keeps_six_threads_in_one_arena_besides_the_main_one() -> None:
    assert int(child(ARENAS, "default")) >= 4  # glibc's default: an arena per thread
    assert int(child(ARENAS, "cap")) <= allocator.ARENA_MAX - 1


def test_an_operators_malloc_arena_max_wins() -> None:
    assert allocator.cap_arenas({"MALLOC_ARENA_MAX": "4"}) == 4
    assert allocator.cap_arenas({"GLIBC_TUNABLES": "glibc.malloc.arena_max=3"}) == 3
    # capping changes the process for good (later tests' threads): in a child of its own
    capped = "from streams import allocator; print(allocator.cap_arenas({'MALLOC_ARENA_MAX': ''}))"
    assert int(child(capped)) == allocator.ARENA_MAX


TRIM = """
    from streams import allocator
    def rss():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 >> 20
    blocks = [bytes(3000) for _ in range(20_000)]  # ~57 MiB from malloc, pages touched
    kept = blocks[::16]  # one block in 16 stays: the free space is in the middle of the heap
    del blocks
    before = rss()
    released = allocator.trim()
    print(before, rss(), released, len(kept))
"""


def test_trim_gives_free_pages_inside_the_heap_back() -> None:
    before, after, released, _ = child(TRIM).split()
    assert released == "True"
    assert int(before) - int(after) >= 30, (before, after)


def test_trimmer_trims_every_interval_until_stopped() -> None:
    trimmer = allocator.Trimmer(0.01).start()
    deadline = time.monotonic() + 30
    while trimmer.trims < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    trimmer.stop()
    assert trimmer.trims >= 3
    stopped_at = trimmer.trims
    assert not trimmer._thread.is_alive()
    assert trimmer.trims == stopped_at
