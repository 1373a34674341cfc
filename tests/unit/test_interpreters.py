"""bench.interpreters: which CPython a bench ran on, and the paired comparison of two (ADR 0041)."""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def interpreters(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(ROOT))  # `python -m bench...` runs from the checkout
    import bench.interpreters as module

    return module


MAPS_SHARED = (
    "55d0c0a00000-55d0c0a01000 r--p 00000000 fd:01 123 "
    "/root/.pyenv/versions/3.11.7/bin/python3.11\n"
    "7f1d8ac00000-7f1d8ac85000 r--p 00000000 fd:01 456 "
    "/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0\n"
    "7f1d8b000000-7f1d8b022000 r--p 00000000 fd:01 789 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
)
MAPS_LINKED_IN = (
    "55d0c0a00000-55d0c0a01000 r--p 00000000 fd:01 123 /usr/bin/python3.11\n"
    "7f1d8b000000-7f1d8b022000 r--p 00000000 fd:01 789 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
)


def test_a_shared_libpython_is_named(interpreters: Any, tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text(MAPS_SHARED)
    found = interpreters.facts(maps)
    assert found["libpython"] == "/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0"
    assert found["version"] == platform.python_version()


def test_a_libpython_linked_into_the_executable(interpreters: Any, tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text(MAPS_LINKED_IN)
    assert interpreters.facts(maps)["libpython"] == "linked in"


def test_no_maps_says_unknown(interpreters: Any, tmp_path: Path) -> None:
    assert interpreters.facts(tmp_path / "absent")["libpython"] == "unknown"


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="Linux /proc only")
def test_this_process_is_described(interpreters: Any) -> None:
    found = interpreters.facts()
    assert Path(found["executable"]) == Path(sys.executable).resolve()
    shared = any("libpython3" in line for line in Path("/proc/self/maps").read_text().splitlines())
    assert (found["libpython"] != "linked in") is shared


def test_cpu_per_event_read_from_the_bench_json(interpreters: Any) -> None:
    out = '{"machine": {"nproc": 2}, "in_process": {"events": 30200, "cpu_us_per_event": 88.1}}'
    assert interpreters.cpu_per_event(out) == 88.1
    with pytest.raises(ValueError, match="no cpu_us_per_event"):
        interpreters.cpu_per_event("Traceback (most recent call last): ...")
    with pytest.raises(ValueError, match="no cpu_us_per_event"):
        interpreters.cpu_per_event('{"machine": {"nproc": 2}}')


def test_summary_pairs_the_runs(interpreters: Any) -> None:
    result = interpreters.summary([100.0, 120.0, 90.0], [85.0, 126.0, 72.0])
    assert result["median_us_per_event"] == [100.0, 85.0]
    assert result["paired_ratio_median"] == 0.85  # 0.85, 1.05, 0.8
    assert result["paired_ratio_range"] == [0.8, 1.05]
    assert result["second_cheaper_in"] == 2
    assert result["pairs"] == 3


def test_summary_needs_equal_pairs(interpreters: Any) -> None:
    with pytest.raises(ValueError, match="as many runs"):
        interpreters.summary([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="at least one"):
        interpreters.summary([], [])
