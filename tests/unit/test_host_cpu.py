"""bench.proc_cpu.HostCpu: how the host's CPU time went over a phase, from /proc/stat."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def proc_cpu(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(ROOT))  # `python -m bench...` runs from the checkout
    import bench.proc_cpu as module

    return module


def stat_line(user: int, system: int, idle: int, iowait: int, steal: int) -> str:
    # user nice system idle iowait irq softirq steal guest guest_nice
    return f"cpu  {user} 0 {system} {idle} {iowait} 0 0 {steal} 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"


def test_the_shares_of_the_phase_only(proc_cpu: Any, tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text(stat_line(1000, 500, 9000, 100, 50))
    host = proc_cpu.HostCpu(stat)
    host.start()
    # over the phase: 120 user + 30 system busy, 20 idle, 10 iowait, 20 steal = 200 ticks
    stat.write_text(stat_line(1120, 530, 9020, 110, 70))
    assert host.stop() == {"busy": 75.0, "idle": 10.0, "iowait": 5.0, "steal": 10.0}


def test_this_hosts_counters_grow(proc_cpu: Any) -> None:
    before = proc_cpu.host_ticks()
    sum(range(2_000_000))  # some CPU
    after = proc_cpu.host_ticks()
    assert sum(after.values()) > sum(before.values())
    assert set(after) >= {"user", "idle", "steal"}
