"""A worker's garbage collection between batches (streams.gc_policy): what survives a batch is
frozen, so no collection walks it, and cyclic garbage is collected in full every interval."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from streams.gc_policy import GcPolicy


class Node:
    """A tracked object that can be part of a cycle and be watched with a weak reference."""

    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture(autouse=True)
def _restore_gc() -> Iterator[None]:
    """Leave the collector as the test found it: nothing frozen by the test, same state."""
    frozen_before = gc.get_freeze_count()
    enabled = gc.isenabled()
    gc.unfreeze()
    yield
    gc.unfreeze()
    if frozen_before:
        gc.freeze()
    if enabled:
        gc.enable()


def garbage_cycle() -> weakref.ref[Node]:
    """A two-object cycle nothing else refers to: garbage that only a collection frees."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_what_survives_a_batch_is_frozen_and_the_young_generation_starts_empty() -> None:
    policy = GcPolicy(600, clock=Clock())
    gc.disable()  # no automatic collection may empty the young generation first
    kept = [Node() for _ in range(100)]  # alive after the batch, like the decode cache's
    assert gc.get_count()[0] >= len(kept)
    policy.after_batch()
    assert gc.get_count()[0] == 0  # no young collection is due: nothing to walk
    assert gc.get_freeze_count() >= len(kept)


def test_cyclic_garbage_waits_for_the_full_collection_of_its_interval() -> None:
    clock = Clock()
    full: list[tuple[int, float]] = []
    policy = GcPolicy(600, clock=clock, on_full=lambda n, s: full.append((n, s)))
    cycle = garbage_cycle()
    policy.after_batch()  # frozen with the rest
    gc.collect()
    assert cycle() is not None  # no collection walks the frozen generation
    clock.now = 599.0
    policy.after_batch()
    assert cycle() is not None
    assert full == []
    clock.now = 600.0
    policy.after_batch()  # the interval has passed: a full collection, between batches
    assert cycle() is None
    [(collected, seconds)] = full
    assert collected >= 2
    assert seconds >= 0
    assert gc.get_freeze_count() > 0  # and what is alive frozen again
    clock.now = 1199.0
    policy.after_batch()
    assert len(full) == 1  # the next one an interval after it


def test_frozen_objects_are_still_freed_by_reference_counting() -> None:
    policy = GcPolicy(600, clock=Clock())
    node = Node()
    ref = weakref.ref(node)
    policy.after_batch()
    del node
    assert ref() is None


def test_interval_zero_leaves_the_collector_alone() -> None:
    policy = GcPolicy(0, clock=Clock())
    Node()
    count = gc.get_count()[0]
    policy.after_batch()
    assert gc.get_freeze_count() == 0
    assert gc.get_count()[0] >= count
