"""The work ahead (``streams.ahead``, ADR 0038): the next batch consumed once and prepared in
chunks while a reply is awaited, only when armed and in the lane's thread, its errors kept for
the loop, its records of a partition taken away dropped."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import pytest

from resolvers.pipeline import Prepared
from resolvers.steps import DeadLetter, Event, RawRecord
from streams.ahead import WorkAhead


def rec(partition: int, offset: int) -> RawRecord:
    return RawRecord(value=b"{}", topic="raw", partition=partition, offset=offset)


class Source:
    """A consumer's batches in turn, and a PREPARE that notes the records it was given."""

    def __init__(self, *batches: list[RawRecord]) -> None:
        self.batches = list(batches)
        self.consumed = 0
        self.prepared: list[list[RawRecord]] = []

    def consume(self) -> list[RawRecord]:
        self.consumed += 1
        return self.batches.pop(0) if self.batches else []

    def prepare(self, records: Sequence[RawRecord]) -> tuple[list[Event], list[DeadLetter]]:
        self.prepared.append(list(records))
        return [Event(r) for r in records], []


def armed(source: Source, chunk: int = 2) -> WorkAhead:
    ahead = WorkAhead(source.consume, source.prepare, chunk=chunk)
    ahead.thread, ahead.armed = threading.get_ident(), True
    return ahead


def never() -> bool:
    return False


def after(n: int) -> Callable[[], bool]:
    """A ``ready`` that says the reply is there at its ``n + 1``-th poll."""
    polls = iter(range(n + 1))
    return lambda: next(polls, n) >= n


def test_it_consumes_once_then_prepares_chunk_by_chunk_until_the_reply_is_there() -> None:
    batch = [rec(0, i) for i in range(5)]
    source = Source(batch, [rec(0, 99)])
    ahead = armed(source, chunk=2)
    ahead(after(2))  # two steps: the consume, one chunk
    assert source.consumed == 1
    assert source.prepared == [batch[:2]]
    ahead(never)  # a longer wait: the rest, and no second consume
    assert source.consumed == 1
    assert source.prepared == [batch[:2], batch[2:4], batch[4:]]
    taken = ahead.take()
    assert taken is not None
    assert taken.records == batch
    assert taken.count == 5
    prepared = taken.prepared(batch)
    assert isinstance(prepared, Prepared)
    assert [e.record for e in prepared.events] == batch
    assert ahead.take() is None  # taken: afresh
    ahead(after(1))
    assert source.consumed == 2  # the next batch ahead


def test_nothing_is_done_when_the_reply_is_there_at_once() -> None:
    source = Source([rec(0, 0)])
    ahead = armed(source)
    ahead(lambda: True)
    assert source.consumed == 0
    assert ahead.take() is None


def test_it_works_only_while_armed_and_in_the_lanes_thread() -> None:
    source = Source([rec(0, 0)])
    ahead = armed(source)
    ahead.armed = False  # between batches: the loop consumes itself
    ahead(never)
    assert source.consumed == 0
    ahead.armed = True
    other = threading.Thread(target=ahead, args=(never,))  # e.g. the audience pass's commit
    other.start()
    other.join()
    assert source.consumed == 0
    ahead(never)
    assert source.consumed == 1


def test_nothing_queued_is_tried_again_at_the_next_wait() -> None:
    source = Source([], [rec(0, 0)])
    ahead = armed(source)
    ahead(never)
    assert source.consumed == 1
    assert ahead.take() is None
    ahead(never)
    ahead(never)  # consumed once, prepared: nothing more to do
    assert source.consumed == 2
    taken = ahead.take()
    assert taken is not None
    assert taken.records == [rec(0, 0)]
    assert taken.count == 1


def test_a_consume_error_is_raised_by_take_not_in_the_round_trip() -> None:
    def consume() -> list[RawRecord]:
        raise RuntimeError("broker gone")

    ahead = WorkAhead(consume, Source().prepare)
    ahead.thread, ahead.armed = threading.get_ident(), True
    ahead(never)  # does not raise: the round trip it runs in is not at fault
    ahead(never)  # nor tries again
    with pytest.raises(RuntimeError, match="broker gone"):
        ahead.take()
    assert ahead.take() is None  # raised once


def test_records_that_prepare_fails_on_are_handed_over_unprepared() -> None:
    batch = [rec(0, i) for i in range(4)]
    source = Source(batch)
    calls = 0

    def prepare(records: Sequence[RawRecord]) -> tuple[list[Event], list[DeadLetter]]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ValueError("a bug in a stage")
        return source.prepare(records)

    ahead = WorkAhead(source.consume, prepare, chunk=2)
    ahead.thread, ahead.armed = threading.get_ident(), True
    ahead(never)
    ahead(never)
    assert calls == 2  # stopped at the failure
    taken = ahead.take()
    assert taken is not None
    assert taken.records == batch
    assert taken.count == 0  # run_batch prepares them all and meets the error there
    assert taken.prepared(batch) is None


def test_a_rebalance_drops_the_records_ahead_of_the_partitions_taken_away() -> None:
    batch = [rec(0, 0), rec(1, 0), rec(0, 1), rec(1, 1)]
    source = Source(batch)
    ahead = armed(source, chunk=2)
    ahead(never)
    ahead.forget({("raw", 2)})  # none of theirs: as it was
    assert ahead.records == batch
    ahead.forget({("raw", 1)})
    assert ahead.records == [rec(0, 0), rec(0, 1)]
    ahead(never)  # what is kept is prepared again, on its own
    taken = ahead.take()
    assert taken is not None
    assert taken.records == [rec(0, 0), rec(0, 1)]
    assert taken.count == 2
    prepared = taken.prepared(taken.records)
    assert prepared is not None
    assert [e.record for e in prepared.events] == taken.records
    ahead(never)
    ahead.forget({("raw", 0)})  # every record ahead: nothing left
    assert ahead.take() is None


def test_prepared_of_chunks_is_their_concatenation_in_order() -> None:
    records = [rec(0, i) for i in range(5)]
    e = [Event(r) for r in records]
    d = [DeadLetter(records[1], "parse", "invalid_json", "JSONDecodeError", "x")]
    got = Prepared.of(records, 3, [(e[:1], []), ([], d), (e[2:3], [])])
    assert got.records is records
    assert got.count == 3
    assert got.events == [e[0], e[2]]
    assert got.dead == d
