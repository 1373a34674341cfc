"""Lag exporter: polls consumer lag, feeds the Burrow-style evaluator, serves ``/metrics``.

Every ``interval`` seconds one :meth:`LagExporter.poll_once` (blocking Kafka calls, run in a
worker thread by :func:`run_exporter`):

1. list the monitored groups (prefix = app id, or all groups); when a broker does not answer
   the listing, the groups of the last reading are read too (a partial listing is no
   evidence that a group is gone, and would drop its series and status history),
2. read lag (:class:`streams.lag.LagReader`, with the (end offset, time) table for
   interpolation),
3. drain new offset commits from ``__consumer_offsets`` (:class:`streams.lag.CommitLogTail`) and
   give each one of a group in this reading to the evaluator with the end offset just read (one
   admin call fetches those of partitions the reading lacks); the current lag too,
4. evaluate every group and publish snapshot + statuses to the collector.

``/livez``, ``/readyz`` (ready once a poll has succeeded recently) and ``/metrics`` are served by
:class:`streams.health.HealthServer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException

from streams.health import HealthServer
from streams.lag import CommitLogTail, LagReader, LagSnapshot, OffsetTimeTable
from streams.lag_status import GroupStatus, LagStatusEvaluator
from streams.metrics import ExporterMetrics

__all__ = ["ExporterConfig", "LagExporter", "run_exporter"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ExporterConfig:
    bootstrap: str
    group_prefix: str | None  # None: every group
    groups: tuple[str, ...] | None = None  # only these (those that exist); wins over the prefix
    window_s: float = 300.0
    interval_s: float = 15.0
    cluster_name: str = "loom"
    use_commit_log: bool = True
    #: librdkafka settings on top of the bootstrap servers: the connection's security and
    #: the operator's overrides (``kafka_clients.connection_config``).
    kafka_config: Mapping[str, Any] = field(default_factory=dict)


class LagExporter:
    def __init__(
        self,
        config: ExporterConfig,
        metrics: ExporterMetrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self._clock = clock
        self.reader = LagReader(config.bootstrap, clock=clock, extra_config=config.kafka_config)
        self.table = OffsetTimeTable()
        self.evaluator = LagStatusEvaluator(config.window_s, clock)
        self._tail: CommitLogTail | None = None
        if config.use_commit_log:
            self._tail = CommitLogTail(
                config.bootstrap, group_filter=self._watched, extra_config=config.kafka_config
            )
        self.last_success: float | None = None
        self._known: dict[tuple[str, str, int], int] = {}  # last committed, without commit log
        self._watching: set[str] = set()  # the groups of the last reading

    def _watched(self, group: str) -> bool:
        if self.config.groups is not None:
            return group in self.config.groups
        prefix = self.config.group_prefix
        return prefix is None or group.startswith(prefix)

    def poll_once(self) -> tuple[LagSnapshot, list[GroupStatus]]:
        started = time.perf_counter()
        try:
            listing = self.reader.list_groups(self.config.group_prefix)
            groups = [g for g in listing.groups if self._watched(g)]
            if not listing.complete:
                # a broker did not answer: the groups it coordinates are not listed, not gone;
                # read them as before (a reading that fails is a failed poll, whose metrics
                # stay as they were) rather than drop their series and history
                self.metrics.incomplete_listings.inc()
                log.warning("%s: keeping the groups of the last reading", listing.describe_errors())
                groups = sorted({*groups, *self._watching})
            snapshot = self.reader.read(groups, table=self.table)
            self._observe(snapshot)
            statuses = [self.evaluator.evaluate(g) for g in groups]
            current = set(groups)
            for gone in set(self.evaluator.groups()) - current:
                self.evaluator.forget(gone)
            # --all watches throwaway groups too: keep nothing of one that is gone
            self._known = {k: v for k, v in self._known.items() if k[0] in current}
            self._watching = current
        except KafkaException:
            self.metrics.polls.labels(result="error").inc()
            raise
        finally:
            self.metrics.poll_seconds.observe(time.perf_counter() - started)
        self.metrics.lag.update(snapshot, statuses)
        self.metrics.polls.labels(result="ok").inc()
        self.last_success = self._clock()
        return snapshot, statuses

    def _observe(self, snapshot: LagSnapshot) -> None:
        ends = {
            (p.topic, p.partition): p.end
            for g in snapshot.groups
            for p in g.partitions
            if p.end is not None
        }
        if self._tail is not None:
            # only the groups of this reading: poll_once forgets the others' history anyway
            reported = {g.group for g in snapshot.groups}
            commits = [c for c in self._tail.poll(timeout_s=0.0) if c.group in reported]
            missing = {(c.topic, c.partition) for c in commits} - ends.keys()
            if missing:  # e.g. a partition first committed after the reading: one admin call
                ends.update(self.reader.end_offsets(missing))
            for c in commits:
                self.evaluator.observe_commit(
                    c.group,
                    c.topic,
                    c.partition,
                    offset=c.offset,
                    end_offset=ends.get((c.topic, c.partition), c.offset),
                    at=c.at,
                )
        for g in snapshot.groups:
            for p in g.partitions:
                if p.committed is None or p.end is None:  # nothing to judge it by, this poll
                    continue
                if self._tail is None:
                    # without the commit log only changes are visible (no STALL, only STOP)
                    key = (g.group, p.topic, p.partition)
                    if self._known.get(key) != p.committed:
                        self._known[key] = p.committed
                        self.evaluator.observe_commit(
                            g.group,
                            p.topic,
                            p.partition,
                            offset=p.committed,
                            end_offset=p.end,
                            at=snapshot.taken_at,
                        )
                self.evaluator.observe_lag(g.group, p.topic, p.partition, p.lag or 0)

    def healthy(self) -> bool:
        """A poll succeeded within three intervals."""
        if self.last_success is None:
            return False
        return self._clock() - self.last_success <= 3 * self.config.interval_s + 5

    def close(self) -> None:
        if self._tail is not None:
            self._tail.close()


async def run_exporter(
    exporter: LagExporter,
    host: str,
    port: int,
    *,
    stop: asyncio.Event | None = None,
    on_started: Callable[[int], None] | None = None,
) -> None:
    """Serve and poll until ``stop`` is set (or forever)."""
    stop = stop or asyncio.Event()
    server = HealthServer(
        host, port, exporter.metrics.registry, {"kafka": exporter.healthy}, check_timeout_s=2.0
    )
    await server.start()
    if on_started is not None:
        on_started(server.port)
    try:
        while not stop.is_set():
            try:
                await asyncio.to_thread(exporter.poll_once)
            except KafkaException as err:
                log.warning("lag poll failed: %s", err)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), exporter.config.interval_s)
    finally:
        await server.stop()
        exporter.close()
