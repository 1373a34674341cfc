"""The lane's state machine behind /readyz and loom_lane_state."""

from __future__ import annotations

from streams.lane_status import LaneState, LaneStatus, StopReason


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_ready_only_while_running_and_turning() -> None:
    clock = Clock()
    changes: list[tuple[LaneState, LaneState]] = []
    status = LaneStatus(
        stuck_after_s=60, clock=clock, on_change=lambda a, b: changes.append((a, b))
    )
    assert not status.ready()  # starting
    status.running()
    assert status.ready()
    status.retrying("RedisUnavailableError: down")
    assert not status.ready()
    status.running()
    clock.now = 61  # the loop has not turned for a minute: stuck
    assert not status.ready()
    assert status.stuck()
    status.turned()
    assert status.ready()
    assert changes == [
        (LaneState.STARTING, LaneState.RUNNING),
        (LaneState.RUNNING, LaneState.RETRYING),
        (LaneState.RETRYING, LaneState.RUNNING),
    ]


def test_stopped_is_final_and_keeps_its_first_reason() -> None:
    status = LaneStatus()
    status.running()
    status.stopped(StopReason.STATE_LOST, "generation gone")
    status.stopped(StopReason.FATAL, "later")
    status.running()
    status.retrying("x")
    assert status.state is LaneState.STOPPED
    assert (status.reason, status.detail) == (StopReason.STATE_LOST, "generation gone")
    assert not status.ready()
