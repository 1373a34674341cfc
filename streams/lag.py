"""Consumer lag of Kafka consumer groups, read with confluent-kafka's AdminClient.

For each group: per topic partition the committed offset, the log end offset, the lag in
messages (``end - committed``, as Kafka's ``ConsumerGroupCommand`` computes it), the lag in
seconds, and the member that owns the partition; group state and totals.

Lag in seconds is ``now - timestamp`` of the next unconsumed record (the record at the committed
offset), read by a short-lived consumer that ``assign``s the partitions at their committed
offsets and never joins, subscribes or commits. When that record cannot be read (deleted by
retention, only control records, timeout), :class:`OffsetTimeTable` interpolates the time at
which the end offset passed the committed offset from (end offset, time) points recorded by
earlier polls, as kafka-lag-exporter does. Record timestamps are producer ``CreateTime`` unless
the topic uses ``LogAppendTime``: producers that stamp records with event time make this an
"event age", not a residence time.

:class:`CommitLogTail` reads offset commits as they happen from ``__consumer_offsets`` (record
key versions 0/1 are offset commits; the value starts with its version and the int64 offset;
the record timestamp is the commit time). The status evaluator (:mod:`streams.lag_status`)
needs each commit, which periodic offset fetches cannot provide (a consumer re-committing the
same offset, Burrow's STALL, looks the same as one not committing at all, STOP).

:func:`uncommitted` is the one number the demo, the e2e harness and the benchmark wait on: how
many records of a topic a group has not committed yet, read with a plain consumer of the group.
"""

from __future__ import annotations

import bisect
import logging
import struct
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from confluent_kafka import (
    OFFSET_END,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]

from streams.errors import KafkaUnavailableError, classify
from streams.kafka_clients import base_config, new_admin, new_consumer

__all__ = [
    "CommitLogTail",
    "CommitRecord",
    "GroupLag",
    "GroupListing",
    "LagReader",
    "LagSnapshot",
    "Member",
    "OffsetTimeTable",
    "PartitionLag",
    "is_internal_topic",
    "parse_offset_commit",
    "uncommitted",
]

log = logging.getLogger(__name__)

OFFSETS_TOPIC = "__consumer_offsets"
TP = tuple[str, int]


def is_internal_topic(topic: str) -> bool:
    """Kafka's own topics (``__consumer_offsets``) and faust's (``<app>-__assignor-__leader``,
    left by profiles workers from before ADR 0006): not Loom's data, hidden unless asked for."""
    return topic.startswith("__") or "-__assignor-__" in topic


@dataclass(frozen=True, slots=True)
class Member:
    consumer_id: str
    client_id: str
    host: str
    assignment: tuple[TP, ...]


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # None: the group has no committed offset here
    end: int | None  # None: Kafka could not say now (the partition has no leader)
    lag: int | None  # end - committed; None when nothing is committed or the end is unknown
    lag_seconds: float | None  # None when not known
    consumer_id: str | None = None  # owning member, None when unassigned
    host: str | None = None
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class GroupLag:
    group: str
    state: str  # e.g. STABLE, EMPTY, PREPARING_REBALANCE (confluent_kafka ConsumerGroupState)
    is_simple: bool
    members: tuple[Member, ...]
    partitions: tuple[PartitionLag, ...]

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.partitions if p.lag is not None)

    @property
    def max_lag(self) -> int:
        return max((p.lag for p in self.partitions if p.lag is not None), default=0)

    @property
    def max_lag_seconds(self) -> float:
        """The largest known lag in seconds (0 when none is known; for metrics)."""
        return max((p.lag_seconds for p in self.partitions if p.lag_seconds is not None), default=0)

    @property
    def seconds_behind(self) -> float | None:
        """How far behind the group is, in seconds: the largest lag in seconds of its
        partitions, None when a partition with lag has no known lag in seconds."""
        lagging = [p for p in self.partitions if p.lag]
        if any(p.lag_seconds is None for p in lagging):
            return None
        return max((p.lag_seconds or 0.0 for p in lagging), default=0.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "state": self.state,
            "members": len(self.members),
            "total_lag": self.total_lag,
            "max_lag": self.max_lag,
            "max_lag_seconds": self.seconds_behind,
            "partitions": [
                {
                    "topic": p.topic,
                    "partition": p.partition,
                    "committed": p.committed,
                    "end": p.end,
                    "lag": p.lag,
                    "lag_seconds": p.lag_seconds,
                    "consumer_id": p.consumer_id,
                    "host": p.host,
                    "client_id": p.client_id,
                }
                for p in self.partitions
            ],
        }


@dataclass(frozen=True, slots=True)
class GroupListing:
    """The consumer groups Kafka listed, and the errors of the brokers that did not answer.

    Kafka lists groups broker by broker (each names the groups it coordinates), so with
    ``errors`` the listing is partial: a group missing from ``groups`` may exist all the same
    (not gone, not "never run"), and only a complete listing says a group is gone."""

    groups: tuple[str, ...]
    errors: tuple[str, ...] = ()  # one line per broker or coordinator that failed

    @property
    def complete(self) -> bool:
        return not self.errors

    def describe_errors(self) -> str:
        """One line: ``group listing incomplete (2 errors, first: ...)``."""
        n = len(self.errors)
        first = self.errors[0] if self.errors else ""
        return f"group listing incomplete ({n} error{'s' if n != 1 else ''}, first: {first})"


@dataclass(frozen=True, slots=True)
class LagSnapshot:
    taken_at: float
    groups: tuple[GroupLag, ...]

    def group(self, name: str) -> GroupLag | None:
        return next((g for g in self.groups if g.group == name), None)


@dataclass
class OffsetTimeTable:
    """Per partition (end offset, time) points, newest last; interpolates when an offset was
    the log end (kafka-lag-exporter's lookup table). Pure: times are given by the caller."""

    max_points: int = 60
    _points: dict[TP, deque[tuple[int, float]]] = field(default_factory=dict)

    def record(self, tp: TP, end_offset: int, at: float) -> None:
        points = self._points.setdefault(tp, deque(maxlen=self.max_points))
        if points and points[-1][0] == end_offset:
            # keep the first time an offset was seen: it is when the record arrived
            return
        if points and end_offset < points[-1][0]:
            points.clear()  # topic recreated or truncated
        points.append((end_offset, at))

    def time_of(self, tp: TP, offset: int) -> float | None:
        """Estimated time at which ``offset`` was produced, or None with < 2 points."""
        points = self._points.get(tp)
        if not points or len(points) < 2:
            return None
        offsets = [p[0] for p in points]
        i = bisect.bisect_left(offsets, offset)
        if i < len(points) and offsets[i] == offset:
            return points[i][1]
        # interpolate between neighbours, or extrapolate from the two nearest ends
        lo, hi = (i - 1, i) if 0 < i < len(points) else ((0, 1) if i == 0 else (-2, -1))
        (o1, t1), (o2, t2) = points[lo], points[hi]
        if o2 == o1:
            return t1
        return t1 + (offset - o1) * (t2 - t1) / (o2 - o1)


def _state_name(state: Any) -> str:
    name = getattr(state, "name", None)
    return str(name if name is not None else state)


def _result(future: Any, timeout_s: float) -> Any:
    """The future's result; no answer within ``timeout_s`` (Kafka unreachable) is a
    ``KafkaException`` (``_TIMED_OUT``) like any other Kafka failure, not a bare TimeoutError
    that the exporter's poll loop and the CLI's one-line errors do not expect."""
    try:
        return future.result(timeout=timeout_s)
    except TimeoutError:
        raise KafkaException(
            KafkaError(KafkaError._TIMED_OUT, f"no answer from Kafka within {timeout_s:g} s")
        ) from None


def _error_line(error: object) -> str:
    """A broker's error from a listing (a ``KafkaException`` or ``KafkaError``), one line."""
    inner = error.args[0] if isinstance(error, KafkaException) and error.args else error
    text = inner.str() if isinstance(inner, KafkaError) else str(inner)
    return " ".join(text.split())


def _latest() -> Any:
    return OffsetSpec.latest()  # type: ignore[no-untyped-call]


class LagReader:
    """Reads committed offsets, end offsets, members and lag of consumer groups."""

    def __init__(
        self,
        bootstrap: str,
        *,
        timeout_s: float = 10.0,
        probe_timeout_s: float = 3.0,
        clock: Callable[[], float] = time.time,
        extra_config: Mapping[str, Any] | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._timeout_s = timeout_s
        self._probe_timeout_s = probe_timeout_s
        self._clock = clock
        self._extra = dict(extra_config or {})
        self._admin = new_admin(base_config(bootstrap, **self._extra))

    def list_groups(self, prefix: str | None = None) -> GroupListing:
        """Consumer group ids, those starting with ``prefix`` only when given, and the errors
        of the brokers that did not answer (confluent-kafka returns those apart from the
        groups, and a listing without them is silently partial)."""
        result = _result(self._admin.list_consumer_groups(), self._timeout_s)
        ids = sorted(g.group_id for g in result.valid or ())
        errors = tuple(_error_line(e) for e in result.errors or ())
        return GroupListing(tuple(g for g in ids if prefix is None or g.startswith(prefix)), errors)

    def _committed(self, group: str, internal: bool) -> dict[TP, int | None]:
        req = [ConsumerGroupTopicPartitions(group)]
        futures = self._admin.list_consumer_group_offsets(req, request_timeout=self._timeout_s)
        res = _result(futures[group], self._timeout_s)
        out: dict[TP, int | None] = {}
        for tp in res.topic_partitions or ():
            if tp.error is not None:
                raise KafkaException(tp.error)
            if internal or not is_internal_topic(tp.topic):
                out[(tp.topic, tp.partition)] = None if tp.offset < 0 else tp.offset
        return out

    def end_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        """Log end offsets (read_uncommitted high watermark, like ConsumerGroupCommand) of the
        partitions Kafka can answer for now. One it cannot (no leader: its broker away, its
        topic being created or deleted) is left out, so one partition does not hide the
        others' lag; any other error raises."""
        wanted = {TopicPartition(t, p): _latest() for t, p in set(tps)}
        if not wanted:
            return {}
        futures = self._admin.list_offsets(wanted, request_timeout=self._timeout_s)
        ends: dict[TP, int] = {}
        for tp, f in futures.items():
            try:
                ends[(tp.topic, tp.partition)] = _result(f, self._timeout_s).offset
            except KafkaException as exc:
                if not unknown_for_now(exc):
                    raise
                log.info("end offset of %s [%d] unknown for now: %s", tp.topic, tp.partition, exc)
        return ends

    def next_record_times(self, positions: Mapping[TP, int]) -> dict[TP, float]:
        """Timestamp (s) of the first record at or after each offset, where one is readable.

        A throwaway consumer assigns the partitions (no group join, no commit)."""
        if not positions:
            return {}
        consumer = new_consumer(
            base_config(
                self._bootstrap,
                **{
                    "group.id": f"lag-probe-{uuid.uuid4().hex}",  # required, never joined
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "enable.partition.eof": True,
                    "auto.offset.reset": "earliest",
                    "fetch.max.bytes": 1 << 20,
                    "max.partition.fetch.bytes": 64 << 10,
                    **self._extra,
                },
            )
        )
        found: dict[TP, float] = {}
        try:
            consumer.assign([TopicPartition(t, p, o) for (t, p), o in positions.items()])
            deadline = time.monotonic() + self._probe_timeout_s
            pending = set(positions)
            while pending and time.monotonic() < deadline:
                for msg in consumer.consume(num_messages=len(pending) * 4, timeout=0.2):
                    topic, partition = msg.topic(), msg.partition()
                    if topic is None or partition is None:
                        continue
                    tp = (topic, partition)
                    if tp not in pending:
                        continue
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            pending.discard(tp)  # nothing to read after all
                        continue
                    ts_type, ts_ms = msg.timestamp()
                    if ts_type != TIMESTAMP_NOT_AVAILABLE:
                        found[tp] = ts_ms / 1000.0
                    pending.discard(tp)
                    consumer.pause([TopicPartition(topic, partition)])
        finally:
            consumer.close()
        return found

    def describe(self, groups: Sequence[str]) -> dict[str, Any]:
        if not groups:
            return {}
        futures = self._admin.describe_consumer_groups(
            list(groups), request_timeout=self._timeout_s
        )
        return {g: _result(f, self._timeout_s) for g, f in futures.items()}

    def read(
        self,
        groups: Sequence[str],
        *,
        lag_seconds: bool = True,
        table: OffsetTimeTable | None = None,
        internal: bool = False,
    ) -> LagSnapshot:
        """One consistent-enough reading of every group (committed offsets are fetched before
        end offsets, so a lag is never negative because of ordering). Internal topics
        (:func:`is_internal_topic`) only with ``internal``."""
        descriptions = self.describe(groups)
        committed = {g: self._committed(g, internal) for g in groups}
        assigned: dict[str, dict[TP, Member]] = {}
        members: dict[str, tuple[Member, ...]] = {}
        for g, desc in descriptions.items():
            ms = []
            for m in desc.members:
                tps = tuple(
                    (tp.topic, tp.partition)
                    for tp in (m.assignment.topic_partitions if m.assignment else ())
                    if internal or not is_internal_topic(tp.topic)
                )
                ms.append(Member(m.member_id, m.client_id, m.host, tps))
            members[g] = tuple(ms)
            assigned[g] = {tp: m for m in ms for tp in m.assignment}
        all_tps = {tp for g in groups for tp in (*committed[g], *assigned.get(g, {}))}
        ends = self.end_offsets(all_tps)
        now = self._clock()
        if table is not None:
            for tp, end in ends.items():
                table.record(tp, end, now)

        probe: dict[TP, int] = {}
        if lag_seconds:
            for g in groups:
                for tp, off in committed[g].items():
                    if off is not None and ends.get(tp, 0) > off:
                        probe[tp] = min(probe.get(tp, off), off)
        times = self.next_record_times(probe) if probe else {}

        out = []
        for g in groups:
            rows = []
            owners = assigned.get(g, {})
            for tp in sorted({*committed[g], *owners}):
                off = committed[g].get(tp)
                known_end = ends.get(tp)
                lag = None if off is None or known_end is None else max(known_end - off, 0)
                secs: float | None = None
                if lag == 0:
                    secs = 0.0
                elif lag is not None and off is not None:
                    ts = times.get(tp) if probe.get(tp) == off else None
                    if ts is None and table is not None:
                        ts = table.time_of(tp, off)
                    secs = None if ts is None else max(now - ts, 0.0)
                owner = owners.get(tp)
                rows.append(
                    PartitionLag(
                        topic=tp[0],
                        partition=tp[1],
                        committed=off,
                        end=known_end,
                        lag=lag,
                        lag_seconds=secs,
                        consumer_id=owner.consumer_id if owner else None,
                        host=owner.host if owner else None,
                        client_id=owner.client_id if owner else None,
                    )
                )
            desc = descriptions.get(g)
            out.append(
                GroupLag(
                    group=g,
                    state=_state_name(desc.state) if desc is not None else "UNKNOWN",
                    is_simple=bool(desc.is_simple_consumer_group) if desc is not None else False,
                    members=members.get(g, ()),
                    partitions=tuple(rows),
                )
            )
        return LagSnapshot(taken_at=now, groups=tuple(out))


def uncommitted(
    consumer: Consumer, topic: str, partitions: int | Sequence[int], *, timeout_s: float = 10.0
) -> int:
    """Records of ``topic`` not yet committed by the group of ``consumer`` (its ``group.id``).

    Summed over ``partitions`` (a count ``n`` means 0 .. n-1): log end offset minus committed
    offset, a partition without a commit counting from 0. Two calls whatever the number of
    partitions: the group's committed offsets, and every end offset at once
    (``offsets_for_times`` with timestamp -1, ListOffsets' LATEST). The consumer only reads
    offsets, it never subscribes, so a caller can keep one per group and ask again.
    """
    numbers = range(partitions) if isinstance(partitions, int) else partitions
    tps = [TopicPartition(topic, p) for p in numbers]
    if not tps:
        return 0
    committed: dict[int, int] = {}
    for tp in consumer.committed(tps, timeout=timeout_s):
        if tp.error is not None:
            raise KafkaException(tp.error)
        committed[tp.partition] = tp.offset
    latest = [TopicPartition(topic, p, OFFSET_END) for p in numbers]
    total = 0
    for tp in consumer.offsets_for_times(latest, timeout=timeout_s):
        if tp.error is not None:
            raise KafkaException(tp.error)
        end = tp.offset
        if end < 0:  # no answer for this partition: ask for its watermarks instead
            _low, end = consumer.get_watermark_offsets(tp, timeout=timeout_s)
        total += max(end - max(committed.get(tp.partition, 0), 0), 0)
    return total


#: librdkafka's answer to a list-offsets request for a partition whose leader it cannot find
_NO_LEADER: Final = KafkaError._NOENT


def unknown_for_now(exc: KafkaException) -> bool:
    """Whether ``exc`` says only that Kafka cannot answer for a partition now (no leader, a
    broker away, a topic changing), not that the request was wrong or refused."""
    err = exc.args[0] if exc.args else None
    if isinstance(err, KafkaError) and err.code() == _NO_LEADER:
        return True
    return isinstance(classify(exc), KafkaUnavailableError)


def uncommitted_or_unknown(
    consumer: Consumer, topic: str, partitions: int | Sequence[int], *, timeout_s: float = 10.0
) -> int | None:
    """:func:`uncommitted`, for a caller that asks again until the lag is 0: None when Kafka
    could not say this time for a passing reason (the group's coordinator moving or still
    loading, a broker away: a :class:`~streams.errors.KafkaUnavailableError`); any other
    error is raised."""
    try:
        return uncommitted(consumer, topic, partitions, timeout_s=timeout_s)
    except KafkaException as exc:
        if unknown_for_now(exc):
            return None
        raise


# --- __consumer_offsets ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommitRecord:
    group: str
    topic: str
    partition: int
    offset: int
    at: float  # commit time, seconds


def _read_str16(buf: bytes, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from(">h", buf, pos)
    pos += 2
    return buf[pos : pos + n].decode("utf-8"), pos + n


def parse_offset_commit(key: bytes | None, value: bytes | None) -> tuple[str, str, int, int] | None:
    """(group, topic, partition, offset) of an offset-commit record, None for anything else
    (group metadata records, tombstones, unknown versions)."""
    if not key or not value or len(key) < 2 or len(value) < 10:
        return None
    (key_version,) = struct.unpack_from(">h", key, 0)
    if key_version not in (0, 1):
        return None  # 2 = group metadata
    try:
        group, pos = _read_str16(key, 2)
        topic, pos = _read_str16(key, pos)
        (partition,) = struct.unpack_from(">i", key, pos)
        (value_version,) = struct.unpack_from(">h", value, 0)
        if not 0 <= value_version <= 4:
            return None
        (offset,) = struct.unpack_from(">q", value, 2)  # first field in every version
    except (struct.error, UnicodeDecodeError):
        return None
    return group, topic, partition, offset


class CommitLogTail:
    """Follows ``__consumer_offsets`` from its current end and yields offset commits.

    Assigns every partition of the topic at its end offset (no group join, no commit)."""

    def __init__(
        self,
        bootstrap: str,
        *,
        group_filter: Callable[[str], bool] = lambda _g: True,
        timeout_s: float = 10.0,
        extra_config: Mapping[str, Any] | None = None,
    ) -> None:
        self._filter = group_filter
        conf = base_config(bootstrap, **(extra_config or {}))
        admin = new_admin(conf)
        md = admin.list_topics(OFFSETS_TOPIC, timeout=timeout_s)
        topic_md = md.topics.get(OFFSETS_TOPIC)
        if topic_md is None or topic_md.error is not None or not topic_md.partitions:
            raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, OFFSETS_TOPIC))
        specs = {TopicPartition(OFFSETS_TOPIC, p): _latest() for p in topic_md.partitions}
        futures = admin.list_offsets(specs, request_timeout=timeout_s)
        starts = [
            TopicPartition(OFFSETS_TOPIC, tp.partition, f.result(timeout=timeout_s).offset)
            for tp, f in futures.items()
        ]
        self._consumer = new_consumer(
            {
                **conf,
                "group.id": f"lag-commit-tail-{uuid.uuid4().hex}",  # required, never joined
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "isolation.level": "read_committed",
            }
        )
        self._consumer.assign(starts)

    def poll(self, timeout_s: float = 0.2, max_records: int = 10_000) -> list[CommitRecord]:
        """Commits seen since the last call (waits at most ``timeout_s`` for the first)."""
        out: list[CommitRecord] = []
        wait = timeout_s
        while len(out) < max_records:
            msgs = self._consumer.consume(num_messages=500, timeout=wait)
            if not msgs:
                break
            wait = 0.0
            for msg in msgs:
                if msg.error() is not None:
                    continue
                parsed = parse_offset_commit(msg.key(), msg.value())
                if parsed is None or not self._filter(parsed[0]):
                    continue
                _ts_type, ts_ms = msg.timestamp()
                group, topic, partition, offset = parsed
                out.append(CommitRecord(group, topic, partition, offset, ts_ms / 1000.0))
        return out

    def close(self) -> None:
        self._consumer.close()
