"""A worker splits its batches only while it conflicts, and remembers what conflicted."""

from __future__ import annotations

from resolvers.pipeline import BatchResult
from streams.contention import Contention


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def conflicted(*keys: str) -> BatchResult:
    return BatchResult(contested=list(keys))


def test_a_worker_alone_commits_whole_batches_until_it_conflicts() -> None:
    clock = Clock()
    c = Contention(16, window_s=60, clock=clock)
    assert c.max_parts() == 1
    c.observe(BatchResult())  # batches without conflicts change nothing
    assert c.max_parts() == 1
    c.observe(conflicted("stock:SKU-1"))
    assert c.max_parts() == 16
    clock.now += 59
    assert c.max_parts() == 16
    clock.now += 2  # a minute without conflicts: whole batches again
    assert c.max_parts() == 1


def test_hot_keys_expire_and_are_bounded() -> None:
    clock = Clock()
    c = Contention(16, window_s=60, max_hot=3, clock=clock)
    c.observe(conflicted("stock:A", "stock:B"))
    clock.now += 30
    c.observe(conflicted("stock:C", "stock:A"))  # A conflicts again: kept from now on
    assert set(c.hot()) == {"stock:A", "stock:B", "stock:C"}
    clock.now += 31  # B's conflict is 61 s old
    assert set(c.hot()) == {"stock:A", "stock:C"}
    c.observe(conflicted("stock:D", "stock:E"))  # over max_hot: the oldest go first
    assert set(c.hot()) == {"stock:A", "stock:D", "stock:E"}
