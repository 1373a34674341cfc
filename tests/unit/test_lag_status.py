"""Burrow's rules, one test per rule, plus the pure helpers of streams.lag."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.lag import OffsetTimeTable, parse_offset_commit
from streams.lag_status import (
    SEVERITY,
    Commit,
    LagStatusEvaluator,
    PartitionStatus,
    Status,
    evaluate_partition,
    group_status,
)

W = 60.0


def commits(*rows: tuple[int, int, float]) -> list[Commit]:
    return [Commit(offset=o, lag=lag, at=t) for o, lag, t in rows]


def test_zero_current_lag_is_ok_whatever_the_history() -> None:
    window = commits((10, 5, 0), (5, 9, 10))  # even a rewind
    assert evaluate_partition(window, current_lag=0, now=20, window_s=W) is Status.OK


def test_rule1_lag_zero_at_any_commit_in_the_window_is_ok() -> None:
    window = commits((10, 3, 0), (12, 0, 10), (12, 4, 20))
    assert evaluate_partition(window, current_lag=4, now=25, window_s=W) is Status.OK


def test_rule2_offset_going_backwards_is_rewind() -> None:
    window = commits((10, 3, 0), (20, 3, 10), (15, 8, 20))
    assert evaluate_partition(window, current_lag=8, now=25, window_s=W) is Status.REWIND


def test_rewind_wins_over_stop() -> None:
    window = commits((10, 3, 0), (5, 8, 10))
    assert evaluate_partition(window, current_lag=8, now=500, window_s=W) is Status.REWIND


def test_rule3_no_commit_for_longer_than_the_window_is_stop() -> None:
    window = commits((10, 3, 0), (20, 2, 10))
    assert evaluate_partition(window, current_lag=5, now=10 + W + 0.1, window_s=W) is Status.STOP
    assert evaluate_partition(window, current_lag=5, now=10 + W - 0.1, window_s=W) is Status.OK


def test_rule3_partition_never_committed_with_lag_stops_after_a_window_of_watching() -> None:
    assert evaluate_partition([], 7, now=30, window_s=W, watched_since=0) is Status.OK
    assert evaluate_partition([], 7, now=W + 1, window_s=W, watched_since=0) is Status.STOP


def test_rule4_committing_the_same_offset_with_lag_is_stall() -> None:
    window = commits((10, 3, 0), (10, 5, 10), (10, 9, 20))
    assert evaluate_partition(window, current_lag=9, now=25, window_s=W) is Status.STALL


def test_single_commit_is_neither_stall_nor_warn() -> None:
    window = commits((10, 3, 0))
    assert evaluate_partition(window, current_lag=3, now=5, window_s=W) is Status.OK


def test_rule5_offsets_advancing_but_lag_never_decreasing_is_warn() -> None:
    window = commits((10, 3, 0), (12, 3, 10), (15, 7, 20))
    assert evaluate_partition(window, current_lag=7, now=25, window_s=W) is Status.WARN


def test_lag_decreasing_somewhere_is_ok() -> None:
    window = commits((10, 5, 0), (12, 4, 10), (15, 7, 20))
    assert evaluate_partition(window, current_lag=7, now=25, window_s=W) is Status.OK


def test_group_status_is_err_for_stop_stall_rewind_and_keeps_the_worst() -> None:
    def ps(i: int, s: Status) -> PartitionStatus:
        return PartitionStatus("t", i, s, current_lag=1, commits_in_window=2)

    assert group_status("g", [ps(0, Status.OK)]).status is Status.OK
    warn = group_status("g", [ps(0, Status.OK), ps(1, Status.WARN)])
    assert (warn.status, warn.worst) == (Status.WARN, Status.WARN)
    for bad in (Status.STOP, Status.STALL, Status.REWIND):
        g = group_status("g", [ps(0, Status.WARN), ps(1, bad), ps(2, Status.OK)])
        assert (g.status, g.worst) == (Status.ERR, bad)
    g = group_status("g", [ps(0, Status.STOP), ps(1, Status.REWIND), ps(2, Status.STALL)])
    assert g.worst is Status.REWIND
    assert group_status("g", []).status is Status.OK


def test_severity_follows_burrow_order() -> None:
    order = sorted(Status, key=SEVERITY.__getitem__)
    assert order == [Status.OK, Status.WARN, Status.ERR, Status.STOP, Status.STALL, Status.REWIND]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_evaluator_slides_the_window_and_keeps_the_latest_commit() -> None:
    clock = Clock()
    ev = LagStatusEvaluator(window_s=10, clock=clock)
    # an old rewind leaves the window, so it stops counting
    ev.observe_commit("g", "t", 0, offset=20, end_offset=30, at=1_000)
    ev.observe_commit("g", "t", 0, offset=15, end_offset=30, at=1_001)
    ev.observe_lag("g", "t", 0, 15)
    assert ev.evaluate("g").worst is Status.REWIND
    clock.now = 1_009
    ev.observe_commit("g", "t", 0, offset=18, end_offset=40, at=1_009)
    ev.observe_commit("g", "t", 0, offset=21, end_offset=50, at=1_010)
    clock.now = 1_012
    ev.observe_lag("g", "t", 0, 29)
    res = ev.evaluate("g")
    assert res.worst is Status.WARN  # lag 22 -> 29, offsets advancing
    assert res.partitions[0].commits_in_window == 2
    # silence: the latest commit is kept past the window and rule 3 fires
    clock.now = 1_030
    res = ev.evaluate("g")
    assert (res.worst, res.status) == (Status.STOP, Status.ERR)
    assert res.partitions[0].commits_in_window == 1
    assert res.total_lag == 29


def test_evaluator_rejects_a_non_positive_window() -> None:
    with pytest.raises(ValueError, match="window_s"):
        LagStatusEvaluator(window_s=0, clock=Clock())


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 100), st.integers(0, 100), st.floats(0, 50)),
        max_size=8,
    ),
    st.integers(0, 100),
    st.floats(0, 200),
)
def test_status_is_total_and_zero_lag_is_always_ok(
    rows: list[tuple[int, int, float]], current_lag: int, now: float
) -> None:
    window = commits(*sorted(rows, key=lambda r: r[2]))
    status = evaluate_partition(window, current_lag, now, W)
    assert status in SEVERITY
    assert status is not Status.ERR  # ERR is a group status only
    if current_lag == 0 or any(c.lag == 0 for c in window):
        assert status is Status.OK


# --- streams.lag pure helpers ----------------------------------------------------------------


def str16(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def test_parse_offset_commit_reads_key_v1_and_every_value_version() -> None:
    key = struct.pack(">h", 1) + str16("loom") + str16("touchpoints.raw") + struct.pack(">i", 3)
    for version in range(5):
        value = struct.pack(">hq", version, 1234) + b"\x00\x00rest"
        assert parse_offset_commit(key, value) == ("loom", "touchpoints.raw", 3, 1234)


def test_parse_offset_commit_ignores_group_metadata_tombstones_and_garbage() -> None:
    meta_key = struct.pack(">h", 2) + str16("loom")
    assert parse_offset_commit(meta_key, b"\x00" * 20) is None
    key = struct.pack(">h", 1) + str16("g") + str16("t") + struct.pack(">i", 0)
    assert parse_offset_commit(key, None) is None
    assert parse_offset_commit(key, struct.pack(">hq", 9, 1)) is None
    assert parse_offset_commit(b"\x00\x01\x00\x09g", struct.pack(">hq", 3, 1)) is None


def test_offset_time_table_interpolates_and_extrapolates() -> None:
    table = OffsetTimeTable()
    tp = ("t", 0)
    assert table.time_of(tp, 5) is None
    table.record(tp, 100, 10.0)
    table.record(tp, 100, 12.0)  # same end: first sighting kept
    assert table.time_of(tp, 100) is None  # one point only
    table.record(tp, 200, 20.0)
    table.record(tp, 400, 30.0)
    assert table.time_of(tp, 100) == 10.0
    assert table.time_of(tp, 150) == pytest.approx(15.0)
    assert table.time_of(tp, 300) == pytest.approx(25.0)
    assert table.time_of(tp, 0) == pytest.approx(0.0)  # before the first point
    assert table.time_of(tp, 500) == pytest.approx(35.0)  # after the last point
    table.record(tp, 50, 40.0)  # truncated / recreated topic: start over
    assert table.time_of(tp, 50) is None
