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
    import sys
    from streams import allocator
    if sys.argv[1:] == ["hold"]:
        allocator.hold_freed_pages({})
    def rss():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 >> 20
    blocks = [bytes(3000) for _ in range(20_000)]  # ~57 MiB from malloc, pages touched
    kept = blocks[::16]  # one block in 16 stays: the free space is in the middle of the heap
    del blocks
    before = rss()
    released = allocator.trim()
    print(before, rss(), released, len(kept))
"""


@pytest.mark.parametrize("hold", [False, True], ids=["glibc-thresholds", "held"])
def test_trim_gives_free_pages_inside_the_heap_back(hold: bool) -> None:
    # held too: an idle worker still hands back what its last batches freed
    before, after, released, _ = child(TRIM, *(["hold"] if hold else [])).split()
    assert released == "True"
    assert int(before) - int(after) >= 30, (before, after)


#: A lane thread's batches: ~12 MiB of transient buffers (64 KiB each, under glibc's default
#: mmap threshold) and a 3 MiB join, freed at the end of each; the page faults of the thread
#: over five batches after the first, with the worker's start-up (``worker`` argument) or
#: glibc's defaults.
BATCHES = """
    import resource, sys, threading
    from streams import allocator
    allocator.cap_arenas({})
    if sys.argv[1] == "worker":
        allocator.hold_freed_pages({})
    faults = []
    def batches():
        for n in range(6):
            if n == 1:
                start = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
            buffers = [b"x" * (64 << 10) for _ in range(200)]
            joined = b"y" * (3 << 20)
            del buffers, joined
        faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - start)
    lane = threading.Thread(target=batches)
    lane.start()
    lane.join()
    print(faults[0])
"""


def test_a_workers_batches_reuse_the_pages_the_last_one_freed() -> None:
    # glibc's adaptive thresholds hand the buffers back when freed: every batch faults them in
    assert int(child(BATCHES, "defaults")) > 5000
    # the worker's malloc keeps them (issue 17.2: ~3 µs per fault, ~0.8 per event before)
    assert int(child(BATCHES, "worker")) < 500


HELD = """
    import sys
    from streams import allocator
    print(sorted(allocator.hold_freed_pages(eval(sys.argv[1]))))
"""


def test_an_operators_malloc_thresholds_win() -> None:
    both = ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"]
    assert child(HELD, "{}") == str(both)
    assert child(HELD, "{'MALLOC_TRIM_THRESHOLD_': '131072'}") == str(both[:1])
    tunable = "{'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=1'}"
    assert child(HELD, tunable) == str(both[1:])


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
