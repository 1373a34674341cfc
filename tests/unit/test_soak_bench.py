"""bench.soak_bench's figures: where a process's memory is, and how fast it grows."""

from __future__ import annotations

import importlib
import math
import os
import threading
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def soak(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT))  # `python -m bench...` runs from the checkout
    return importlib.import_module("bench.soak_bench")


def samples(rss: dict[str, list[float]], cache: list[float]) -> list[dict[str, float]]:
    n = len(cache)
    return [
        {
            "events": 10_000 * (i + 1),
            **{role: values[i] for role, values in rss.items()},
            **{f"{role}_cache": cache[i] for role in rss},
        }
        for i in range(n)
    ]


def test_slope_is_the_least_squares_line(soak: ModuleType) -> None:
    slope = soak.slope
    assert slope([(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]) == 2.0
    assert slope([(0.0, 1.0), (1.0, 2.0), (2.0, 1.0), (3.0, 2.0)]) == pytest.approx(0.2)
    assert slope([(1.0, 5.0)]) == 0.0


def test_a_steady_leak_does_not_level_and_growth_that_slows_does(soak: ModuleType) -> None:
    leak = [100 + 0.5 * i for i in range(24)]  # +0.5 MiB per 10,000 events, all along
    slowing = [100 + 10 * math.sqrt(i) for i in range(24)]
    cache = [min(32.0, 4.0 * i) for i in range(24)]  # fills its budget: not counted
    result = soak.growth_rates(
        samples(
            {"profiles": [r + c for r, c in zip(leak, cache, strict=True)], "inventory": slowing},
            cache,
        ),
        240_000,
    )
    assert result["growth_mib_per_100k_events"]["last"]["profiles"] == 5.0
    assert result["growth_mib_per_100k_events"]["middle"]["profiles"] == 5.0
    assert result["levelling"] == {"profiles": False, "inventory": True}


def test_memory_map_adds_up_to_rss_and_finds_a_threads_arena(soak: ModuleType) -> None:
    held: list[list[bytes]] = []
    allocated, release = threading.Event(), threading.Event()

    def work() -> None:
        held.append([bytes(2000) for _ in range(10_000)])  # ~20 MiB malloc'd by this thread
        allocated.set()
        release.wait()

    thread = threading.Thread(target=work)
    thread.start()
    try:
        assert allocated.wait(30)
        before = soak.rss_mib(os.getpid())
        kinds = soak.memory_map(os.getpid())
        after = soak.rss_mib(os.getpid())
    finally:
        release.set()
        thread.join()
    # the same pages, sorted by kind: within the RSS read just before and just after (the
    # test process's other threads allocate and free meanwhile: compared with one read, on
    # a loaded machine the sum was off by up to 3.2 MiB)
    assert min(before, after) - 2 < sum(kinds.values()) < max(before, after) + 2
    assert kinds["thread_arenas"] >= 18
