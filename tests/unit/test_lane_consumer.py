"""The inventory lane's consume loop: which offsets it commits after a batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.lane_consumer import next_offsets


@dataclass
class FakeMessage:  # the three accessors next_offsets reads
    t: str
    p: int
    o: int

    def topic(self) -> str:
        return self.t

    def partition(self) -> int:
        return self.p

    def offset(self) -> int:
        return self.o


def test_next_offsets_are_one_past_the_last_record_of_each_partition() -> None:
    batch: list[Any] = [
        FakeMessage("raw", 1, 7),
        FakeMessage("raw", 0, 41),
        FakeMessage("raw", 1, 8),
        FakeMessage("raw", 0, 42),
        FakeMessage("raw", 3, 0),
    ]
    got = [(tp.topic, tp.partition, tp.offset) for tp in next_offsets(batch)]
    assert got == [("raw", 0, 43), ("raw", 1, 9), ("raw", 3, 1)]


def test_nothing_processed_commits_nothing() -> None:
    assert next_offsets([]) == []
