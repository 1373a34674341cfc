"""Kafka offsets of processed records: what a lane commits, and keeps for a rebalance.

Every offset a lane commits carries the Redis generation it was processed against as its
commit metadata (:mod:`streams.generation`), so a later start can tell whether Redis still
holds the state those offsets imply.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from resolvers.steps import RawRecord


def next_offsets(records: Sequence[RawRecord], metadata: str = "") -> list[TopicPartition]:
    """Per partition, the offset after the last record: what to commit once they are done."""
    last: dict[tuple[str, int], int] = {}
    for r in records:
        last[(r.topic, r.partition)] = r.offset + 1
    return [TopicPartition(t, p, o, metadata=metadata) for (t, p), o in sorted(last.items())]


def commit_within(
    consumer: Consumer, offsets: Sequence[TopicPartition], timeout_s: float
) -> list[TopicPartition]:
    """``consumer``'s synchronous commit of ``offsets``, waited for ``timeout_s`` at most
    (:class:`TimeoutError` then). librdkafka's has no bound: one under way while the broker
    stalled for a minute and more never returned, though the broker answered again at once
    (measured with librdkafka 2.16: over 200 s after it resumed). It runs on a daemon thread
    of its own, left behind if it never returns (the process can still exit). ``loom rebuild``
    commits through it after every batch, a worker on close (``streams.lane_runner.
    commit_offsets``; not in a rebalance callback: made from another thread then, it did not
    return)."""
    box: dict[str, Any] = {}

    def commit() -> None:
        try:
            box["done"] = consumer.commit(offsets=list(offsets), asynchronous=False)
        except BaseException as exc:  # raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=commit, name="loom-offsets-commit", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"the commit did not return within {timeout_s:g} s")
    if "error" in box:
        raise box["error"]
    return list(box.get("done") or [])


class ProcessedOffsets:
    """Per partition, the next offset after the records processed (committed in Redis).

    :meth:`add` after each batch; :meth:`take` the offsets of revoked partitions (which it
    forgets: another member owns them now) or, with no argument, all of them (on close). The
    offsets stay until then, so the synchronous commit on revoke/close re-commits what an
    asynchronous commit may have failed to."""

    def __init__(self) -> None:
        self._next: dict[tuple[str, int], TopicPartition] = {}

    def add(self, offsets: Iterable[TopicPartition]) -> None:
        for tp in offsets:
            self._next[(tp.topic, tp.partition)] = tp

    def take(self, partitions: Iterable[tuple[str, int]] | None = None) -> list[TopicPartition]:
        keys = sorted(self._next) if partitions is None else sorted(set(partitions))
        return [self._next.pop(k) for k in keys if k in self._next]

    def __len__(self) -> int:
        return len(self._next)


class DueOffsets:
    """Offsets processed but not committed yet, handed out for a commit at most every
    ``interval_s`` (``LOOM_COMMIT_INTERVAL_S``): each commit is a write to
    ``__consumer_offsets``, and a lane turning a small batch every few milliseconds made more
    of them than of any other request but fetches (issue 17). What waits is taken on a later
    turn; a crash meanwhile redelivers it (a no-op)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._due: dict[tuple[str, int], TopicPartition] = {}
        self._taken_at = float("-inf")

    def add(self, offsets: Iterable[TopicPartition]) -> None:
        self._due.update(((tp.topic, tp.partition), tp) for tp in offsets)

    def forget(self, partitions: Iterable[tuple[str, int]]) -> None:
        for key in partitions:
            self._due.pop(key, None)

    def take(self) -> list[TopicPartition]:
        """What to commit now: every due offset, or nothing if the last take was too recent."""
        now = time.monotonic()
        if not self._due or now - self._taken_at < self.interval_s:
            return []
        offsets, self._due = list(self._due.values()), {}
        self._taken_at = now
        return offsets
