"""Consumer group status from a sliding window of offset commits (Burrow's rules). Pure.

No Kafka here: callers feed observations (one per offset commit: committed offset, the partition's
end offset when the commit was seen, and the commit time) and the current lag; the clock is
injected, so tests drive time by hand.

The rules follow LinkedIn Burrow's evaluator (wiki "Consumer Lag Evaluation Rules",
https://github.com/linkedin/Burrow/wiki/Consumer-Lag-Evaluation-Rules, and
``core/internal/evaluator/caching.go: calculatePartitionStatus``), checked in this order for
each partition, the first match wins:

1. **OK** if the current lag is zero, or the lag was zero at any commit in the window
   (Burrow rule 1: "if over the stored period the lag is ever zero, the period is OK").
2. **REWIND** if the committed offset decreased from one commit to the next (Burrow rule 2).
3. **STOP** if the time since the last commit is longer than the window (Burrow rule 3: "the
   difference between now and the last offset timestamp is greater than the difference between
   the last and first offset timestamps"). Burrow's window is a count of commits; ours is a
   duration, so the span of a full window is the window itself and we use it directly (this
   also keeps a window that holds a single commit from reporting STOP a moment after it).
   A partition with lag for which no commit was ever seen stops once it has been watched for
   longer than the window.
4. **STALL** if the consumer keeps committing the same offset (Burrow rule 4); needs two
   commits in the window.
5. **WARN** if offsets advance but the lag never decreases between commits (Burrow rule 5,
   "consumer is slow"); needs two commits in the window.
6. otherwise **OK**.

Group status as in Burrow: OK, WARN if the worst partition is WARN, ERR if any partition is
STOP, STALL or REWIND. :attr:`GroupStatus.worst` keeps the worst partition status itself, with
Burrow's severity order OK < WARN < ERR < STOP < STALL < REWIND.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "SEVERITY",
    "Commit",
    "GroupStatus",
    "LagStatusEvaluator",
    "PartitionStatus",
    "Status",
    "evaluate_partition",
    "group_status",
]


class Status(StrEnum):
    OK = "OK"
    WARN = "WARN"
    ERR = "ERR"
    STOP = "STOP"
    STALL = "STALL"
    REWIND = "REWIND"


#: Burrow's order of severity (``protocol.StatusConstant``), worst last.
SEVERITY: dict[Status, int] = {
    Status.OK: 1,
    Status.WARN: 2,
    Status.ERR: 3,
    Status.STOP: 4,
    Status.STALL: 5,
    Status.REWIND: 6,
}


@dataclass(frozen=True, slots=True)
class Commit:
    """One offset commit: the committed offset, its lag when seen, and the commit time (s)."""

    offset: int
    lag: int
    at: float


@dataclass(frozen=True, slots=True)
class PartitionStatus:
    topic: str
    partition: int
    status: Status
    current_lag: int
    commits_in_window: int


@dataclass(frozen=True, slots=True)
class GroupStatus:
    group: str
    status: Status  # OK, WARN or ERR (Burrow's group status)
    worst: Status  # the worst partition status
    partitions: tuple[PartitionStatus, ...]

    @property
    def total_lag(self) -> int:
        return sum(p.current_lag for p in self.partitions)


def evaluate_partition(
    window: Sequence[Commit],
    current_lag: int,
    now: float,
    window_s: float,
    watched_since: float | None = None,
) -> Status:
    """Status of one partition from its commits in the window (oldest first). See module doc."""
    if current_lag <= 0:
        return Status.OK
    if not window:
        if watched_since is not None and now - watched_since > window_s:
            return Status.STOP
        return Status.OK
    if any(c.lag == 0 for c in window):
        return Status.OK
    pairs = list(itertools.pairwise(window))
    if any(b.offset < a.offset for a, b in pairs):
        return Status.REWIND
    if now - window[-1].at > window_s:
        return Status.STOP
    if not pairs:
        return Status.OK
    if all(b.offset == a.offset for a, b in pairs):
        return Status.STALL
    if all(b.lag >= a.lag for a, b in pairs):
        return Status.WARN
    return Status.OK


def group_status(group: str, partitions: Iterable[PartitionStatus]) -> GroupStatus:
    parts = tuple(sorted(partitions, key=lambda p: (p.topic, p.partition)))
    worst = max((p.status for p in parts), key=SEVERITY.__getitem__, default=Status.OK)
    overall = Status.ERR if SEVERITY[worst] >= SEVERITY[Status.ERR] else worst
    return GroupStatus(group=group, status=overall, worst=worst, partitions=parts)


@dataclass
class _PartitionHistory:
    commits: deque[Commit] = field(default_factory=deque)
    current_lag: int = 0
    watched_since: float | None = None


class LagStatusEvaluator:
    """Keeps a sliding window of commits per (group, topic, partition) and evaluates it.

    ``observe_commit`` is called once per offset commit seen (e.g. read from
    ``__consumer_offsets``), ``observe_lag`` once per poll with the current lag. The window keeps
    the commits of the last ``window_s`` seconds plus always the latest commit (which rule 3
    needs to tell how long ago it was).
    """

    def __init__(self, window_s: float, clock: Callable[[], float]) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        self._window_s = window_s
        self._clock = clock
        self._history: dict[str, dict[tuple[str, int], _PartitionHistory]] = {}

    def _partition(self, group: str, topic: str, partition: int) -> _PartitionHistory:
        parts = self._history.setdefault(group, {})
        hist = parts.get((topic, partition))
        if hist is None:
            hist = parts[(topic, partition)] = _PartitionHistory(watched_since=self._clock())
        return hist

    def observe_commit(
        self, group: str, topic: str, partition: int, *, offset: int, end_offset: int, at: float
    ) -> None:
        hist = self._partition(group, topic, partition)
        hist.commits.append(Commit(offset=offset, lag=max(end_offset - offset, 0), at=at))

    def observe_lag(self, group: str, topic: str, partition: int, current_lag: int) -> None:
        self._partition(group, topic, partition).current_lag = max(current_lag, 0)

    def forget(self, group: str) -> None:
        self._history.pop(group, None)

    def groups(self) -> list[str]:
        return sorted(self._history)

    def _trim(self, hist: _PartitionHistory, now: float) -> None:
        horizon = now - self._window_s
        while len(hist.commits) > 1 and hist.commits[0].at < horizon:
            hist.commits.popleft()

    def evaluate(self, group: str) -> GroupStatus:
        now = self._clock()
        statuses = []
        for (topic, partition), hist in self._history.get(group, {}).items():
            self._trim(hist, now)
            status = evaluate_partition(
                list(hist.commits), hist.current_lag, now, self._window_s, hist.watched_since
            )
            statuses.append(
                PartitionStatus(
                    topic=topic,
                    partition=partition,
                    status=status,
                    current_lag=hist.current_lag,
                    commits_in_window=len(hist.commits),
                )
            )
        return group_status(group, statuses)
