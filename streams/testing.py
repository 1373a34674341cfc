"""Fakes of the IO boundary, shipped beside the code they stand in for (for unit tests).

* :class:`FakeProducer`: confluent-kafka's ``Producer`` as the DLQ and the relay use it
  (``produce`` with ``on_delivery``, ``flush``); records what was sent; can fail deliveries.
* :class:`FakeConsumer`: the consumer calls a lane makes (``commit``, ``close``), recording
  commits with their metadata.
* :class:`FlakyStore`: an :class:`~resolvers.store.InMemoryStore` whose ``load`` raises the
  exceptions it is given first, one per call.
* :class:`Racing`: a worker's view of a store it shares with another, whose whole batch runs
  between this worker's first load and its commit (conflicts and claims, ADR 0013, 0040).
* :func:`fake_runtime`: a :class:`~streams.runtime.Runtime` over those, with a movable clock.

Integration and e2e tests use the real clients and servers; these are for the pure logic of
the lane (retry, bisect, the commit protocol's bookkeeping).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry

from resolvers.consent import ConsentPolicy
from resolvers.identity.rules import IdentityRules
from resolvers.pipeline import PROFILES, Lane
from resolvers.store import (
    Commit,
    CommitResult,
    InMemoryStore,
    Loaded,
    LoadRequest,
    StateStore,
)
from streams.metrics import WorkerMetrics
from streams.relay import OutboxRelay
from streams.runtime import Runtime, with_blocklist
from streams.settings import LoomSettings


@dataclass
class Sent:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, Any]]


@dataclass
class FakeProducer:
    """Records ``produce`` calls; ``flush`` reports deliveries. ``fail_next`` holds
    ``KafkaError`` codes: the next deliveries fail with them, one each."""

    sent: list[Sent] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)
    _pending: list[tuple[Sent, Callable[[KafkaError | None, Any], None] | None]] = field(
        default_factory=list
    )

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, Any]] | None = None,
        on_delivery: Callable[[KafkaError | None, Any], None] | None = None,
    ) -> None:
        self._pending.append((Sent(topic, key, value, list(headers or [])), on_delivery))

    def flush(self, timeout: float = -1) -> int:
        pending, self._pending = self._pending, []
        for record, report in pending:
            err = KafkaError(self.fail_next.pop(0)) if self.fail_next else None
            if err is None:
                self.sent.append(record)
            if report is not None:
                report(err, None)
        return 0

    def list_topics(self, timeout: float = -1) -> None:
        return None


@dataclass
class FakeConsumer:
    """Records commits as ``(asynchronous, [(topic, partition, offset, metadata)])``; serves
    the assignments in ``pending`` to ``subscribe``'s ``on_assign`` inside ``consume``, as
    librdkafka does, and refuses what confluent-kafka cannot do there (a blocking call from
    inside a rebalance callback: the process aborts at the next callback)."""

    config: dict[str, Any] = field(default_factory=dict)
    commits: list[tuple[bool, list[tuple[str, int, int, str]]]] = field(default_factory=list)
    closed: bool = False
    #: what ``list_topics`` says of any topic: its partitions (None: the broker does not answer)
    partitions: int | None = 6
    #: assignments the next ``consume`` serves
    pending: list[list[TopicPartition]] = field(default_factory=list)
    on_assign: Callable[[Any, list[TopicPartition]], object] | None = None
    _in_callback: bool = False

    def subscribe(
        self, topics: list[str], on_assign: Callable[[Any, list[TopicPartition]], object], **_: Any
    ) -> None:
        self.on_assign = on_assign

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
        while self.pending and self.on_assign is not None:
            self._in_callback = True
            try:
                self.on_assign(self, self.pending.pop(0))
            finally:
                self._in_callback = False
        return []

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        if self._in_callback:
            raise AssertionError("list_topics in a rebalance callback (confluent-kafka aborts)")
        if self.partitions is None:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))
        meta = SimpleNamespace(error=None, partitions=dict.fromkeys(range(self.partitions)))
        return SimpleNamespace(topics={topic: meta})

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> Any:
        self.commits.append(
            (asynchronous, [(t.topic, t.partition, t.offset, t.metadata or "") for t in offsets])
        )
        return None if asynchronous else offsets

    def close(self) -> None:
        self.consume()  # librdkafka serves what is queued: an assignment it never revokes
        self.closed = True


class FlakyStore(InMemoryStore):
    """An in-memory store whose next ``load`` calls raise ``failures``, one per call;
    ``poison(event_ids, exc)`` makes every load of a batch holding one of them raise ``exc``."""

    def __init__(self, failures: Iterable[BaseException] = ()) -> None:
        super().__init__()
        self.failures = list(failures)
        self.poisoned: dict[str, BaseException] = {}
        self.loads = 0

    def poison(self, event_ids: Iterable[str], exc: BaseException) -> None:
        self.poisoned.update(dict.fromkeys(event_ids, exc))

    def load(self, request: LoadRequest) -> Loaded:
        self.loads += 1
        if self.failures:
            raise self.failures.pop(0)
        for event_id in request.event_ids:
            if event_id in self.poisoned:
                raise self.poisoned[event_id]
        return super().load(request)


def fake_runtime(
    *,
    store: InMemoryStore | None = None,
    lane: Lane = PROFILES,
    settings: LoomSettings | None = None,
    producer: FakeProducer | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Runtime:
    """A :class:`Runtime` on fakes: no Redis, no Kafka."""
    return Runtime(
        settings=settings or LoomSettings(retry_backoff_max_s=0.05),
        store=store if store is not None else InMemoryStore(),
        redis=None,  # type: ignore[arg-type]
        producer=producer or FakeProducer(),  # type: ignore[arg-type]
        new_relay=lambda: OutboxRelay(
            None,  # type: ignore[arg-type]  # the relay's passes are not part of these tests
            FakeProducer(),  # type: ignore[arg-type]
            "outbox",
            "test",
        ),
        metrics=WorkerMetrics.create(CollectorRegistry(), lane=lane.name),
        rules=with_blocklist(IdentityRules()),
        policy=ConsentPolicy(),
        clock=clock or (lambda: datetime(2026, 12, 1, tzinfo=UTC)),
        lane=lane,
    )


@dataclass
class Racing:
    """The store as the worker that commits second sees it: the other worker's whole batch
    (``other``) runs between this one's first load and its commit. ``inner``: the store both
    share (also a Redis store, in tests); ``loaded_at``: an in-memory store's commit sequence
    at the last load."""

    inner: StateStore
    other: Callable[[], object]
    loads: int = 0
    loaded_at: int = 0

    def load(self, request: LoadRequest) -> Loaded:
        loaded = self.inner.load(request)
        if isinstance(self.inner, InMemoryStore):
            self.loaded_at = self.inner.sequence
        self.loads += 1
        if self.loads == 1:
            self.other()
        return loaded

    def commit(self, commit: Commit) -> CommitResult:
        return self.inner.commit(commit)

    def commit_parts(self, parts: Sequence[Commit]) -> list[CommitResult]:
        return self.inner.commit_parts(parts)
