"""The one back-off schedule of Loom's retry loops (streams.backoff)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.backoff import FIRST_BACKOFF_S, Backoff


def test_doubles_up_to_the_cap_and_starts_again_after_a_success() -> None:
    backoff = Backoff(max_s=1.0)
    assert [backoff.next() for _ in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    backoff.reset()
    assert backoff.next() == FIRST_BACKOFF_S


def test_a_cap_below_the_first_delay_is_every_delay() -> None:
    backoff = Backoff(max_s=0.05)
    assert [backoff.next() for _ in range(3)] == [0.05, 0.05, 0.05]


@given(
    first=st.floats(0.001, 10.0),
    cap=st.floats(0.001, 100.0),
    failures=st.integers(1, 40),
)
def test_never_above_the_cap_and_never_shrinking_while_failing(
    first: float, cap: float, failures: int
) -> None:
    backoff = Backoff(max_s=cap, first_s=first)
    delays = [backoff.next() for _ in range(failures)]
    assert all(0 < d <= cap for d in delays)
    assert delays == sorted(delays)
    assert delays[0] == min(first, cap)
