"""The worker: a faust app (built by a factory) whose one agent runs one pipeline lane per batch.

A worker has a role, the lane it runs (``resolvers.pipeline``): ``profiles`` (identity,
consent, profile snapshots, the DLQ) or ``inventory`` (stock ledgers). Each lane is its own
Kafka consumer group (``<app_id>-<lane>``) reading the same raw topic, so stock never waits
behind identity work and each lane scales and lags on its own (ADR 0002). The profiles lane
runs as this faust agent; the inventory lane, which reads every record to act on a quarter of
them, consumes with librdkafka's batch consumer instead (``streams.lane_consumer``: faust's
per-record cost was most of its CPU) and shares everything else here: :class:`Runtime`, the
retry loop and the outbox relay.

Per batch, in this order (the commit order that makes at-least-once safe):

1. ``run_batch``     pure pipeline + one atomic Redis commit (idempotent by event id within
                     the lane); the commit also appends the batch's Kafka records to the Redis
                     outbox;
2. dead letters      produced to the DLQ and flushed (profiles lane);
3. offsets           faust acks the batch's events only after both returned.

Beside the agent, the outbox relay (a task with its own producer) moves outbox records to
Kafka: it produces them, waits for delivery, then acknowledges them in Redis, so a crash in
between re-sends them (at least once, never lost). It runs off the batch path because the
records are already durable in Redis once the commit returned; the agent wakes it after each
batch.

Redis or Kafka being unavailable raises inside steps 1-2: the batch is retried with capped
exponential backoff and its offsets are not committed meanwhile. A cancellation (shutdown,
rebalance) waits for the in-flight batch to finish, because faust acks the events of a
``take_events`` batch as soon as the agent leaves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import faust
import redis
from confluent_kafka import KafkaException, Producer

from resolvers.batch import Context, DecodeCache, TopicNames
from resolvers.consent import ConsentPolicy, load_policy
from resolvers.identity_rules import IdentityRules, load_rules
from resolvers.pipeline import PROFILES, BatchResult, CommitConflictError, Lane, run_batch
from resolvers.steps import DeadLetter, RawRecord
from schemas.normalize import DEFAULT as NORMALIZE_DEFAULT
from schemas.normalize import is_blocked
from streams import kafka_clients, redis_clients
from streams.health import Check, HealthServer
from streams.metrics import WorkerMetrics
from streams.redis_store import RedisStore
from streams.settings import LoomSettings

log = logging.getLogger(__name__)

#: Errors a batch is retried on. ``READONLY`` (a demoted primary during a Sentinel failover)
#: is retried like a lost connection: the next connection asks the sentinels for the primary.
RETRYABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.ReadOnlyError,
    KafkaException,
    CommitConflictError,
)


def dlq_headers(dead: DeadLetter, now: datetime) -> list[tuple[str, str | bytes | None]]:
    """Headers of a DLQ record: where it came from and why it failed (no payload values)."""
    r = dead.record
    original: list[tuple[str, str | bytes | None]] = [
        (f"original.{k}", v) for k, v in r.headers.items()
    ]
    return [
        ("loom.stage", dead.stage.encode()),
        ("loom.reason", dead.reason.encode()),
        ("loom.error_class", dead.error_class.encode()),
        ("loom.error_message", dead.message.encode()[:1024]),
        ("loom.source_topic", r.topic.encode()),
        ("loom.source_partition", str(r.partition).encode()),
        ("loom.source_offset", str(r.offset).encode()),
        ("loom.failed_at", now.isoformat().encode()),
        *original,
    ]


class OutboxRelay:
    """Moves outbox records from Redis to Kafka through a Redis consumer group.

    Each worker reads new entries as its own consumer, produces them, waits for delivery, then
    XACKs and XDELs them. Entries a dead worker left pending are claimed after ``min_idle_ms``
    (looked for at most every ``claim_every_s``: it only matters when a worker died).

    Order: a failed send leaves its entries pending for this consumer, so every pass first
    re-sends this consumer's own pending entries (``XREADGROUP`` from id ``0``, oldest first)
    and only then reads new ones (``>``): within one relay, records reach Kafka in outbox order.
    Across relays it is not so: each worker's relay reads its own share of the stream, and
    entries claimed from a dead worker are sent after newer ones another relay already sent
    (a known limit; downstream orders ``profiles.changes`` by the version each record carries).
    """

    GROUP = "relay"

    def __init__(
        self,
        client: redis.Redis,
        producer: Producer,
        key: str,
        consumer: str,
        *,
        min_idle_ms: int = 30_000,
        claim_every_s: float = 5.0,
    ) -> None:
        self.client, self.producer, self.key = client, producer, key
        self.consumer, self.min_idle_ms = consumer, min_idle_ms
        self.claim_every_s = claim_every_s
        self._claimed_at = float("-inf")
        try:
            client.xgroup_create(key, self.GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:  # BUSYGROUP: exists already
            if "BUSYGROUP" not in str(exc):
                raise

    def _send(self, entries: Sequence[tuple[bytes, dict[bytes, bytes]]]) -> int:
        if not entries:
            return 0
        errors: list[str] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        for _id, fields in entries:
            if not fields:  # deleted while pending (XREADGROUP returns it without fields)
                continue
            self.producer.produce(
                fields[b"topic"].decode(),
                key=fields.get(b"key"),
                value=fields.get(b"value"),
                on_delivery=on_delivery,
            )
        remaining = self.producer.flush(30)
        if remaining or errors:
            raise KafkaException(f"outbox relay: {remaining} undelivered, errors: {errors[:3]}")
        ids = [entry_id for entry_id, _ in entries]
        pipe = self.client.pipeline(transaction=True)
        pipe.xack(self.key, self.GROUP, *ids)
        pipe.xdel(self.key, *ids)
        pipe.execute()
        return len(ids)

    def relay(self, *, count: int = 5000) -> int:
        sent = 0
        if time.monotonic() - self._claimed_at >= self.claim_every_s:
            claimed: Any = self.client.xautoclaim(
                self.key, self.GROUP, self.consumer, self.min_idle_ms, "0-0", count=count
            )
            self._claimed_at = time.monotonic()
            sent += self._send(claimed[1])
        sent += self._drain("0", count)  # our own pending entries first: a failed send's
        return sent + self._drain(">", count)  # then new entries

    def _drain(self, start: str, count: int) -> int:
        """Send entries read from ``start`` (``0``: this consumer's pending, ``>``: new) until
        none is left. A sent entry leaves the pending list, so rereading ``0`` moves on."""
        sent = 0
        while True:
            resp: Any = self.client.xreadgroup(
                self.GROUP, self.consumer, {self.key: start}, count=count
            )
            entries = resp[0][1] if resp else []
            if not entries:
                return sent
            sent += self._send(entries)


@dataclass
class Runtime:
    """Everything a running worker holds; built once, shared by the agent's batches."""

    settings: LoomSettings
    store: RedisStore
    redis: redis.Redis
    producer: Producer
    relay: OutboxRelay
    metrics: WorkerMetrics
    rules: IdentityRules
    policy: ConsentPolicy
    clock: Callable[[], datetime]
    lane: Lane = PROFILES
    decode_cache: DecodeCache = field(default_factory=DecodeCache)

    @cached_property
    def _base_context(self) -> Context:
        """The parts of :meth:`context` that never change, built once."""
        t = self.settings.topics
        return Context(
            rules=self.rules,
            policy=self.policy,
            topics=TopicNames(
                merges=t.merges,
                profile_changes=t.profile_changes,
                erasures=t.erasures,
                consent_audit=t.consent_audit,
                inventory_changes=t.inventory_changes,
                inventory_alerts=t.inventory_alerts,
            ),
            salt=self.settings.suppression_salt.get_secret_value().encode(),
            now=datetime.fromtimestamp(0, UTC),  # replaced per batch
            default_region=self.settings.default_region,
            cache=self.decode_cache,
        )

    def context(self) -> Context:
        """The context of one batch (attempt): the constant parts and the current time."""
        return replace(self._base_context, now=self.clock())

    def health_checks(self, partitions: Callable[[], bool]) -> dict[str, Check]:
        """Readiness checks of a worker: Kafka and Redis answer, and ``partitions()`` (this
        member has partitions assigned). The blocking calls run in threads."""

        async def kafka_ok() -> bool:
            await asyncio.to_thread(self.producer.list_topics, timeout=2)
            return True

        async def redis_ok() -> bool:
            return bool(await asyncio.to_thread(self.redis.ping))

        return {"kafka": kafka_ok, "redis": redis_ok, "partitions": partitions}

    def process(self, records: Sequence[RawRecord]) -> BatchResult:
        """One batch, synchronously: pipeline + commit, then DLQ. Raises if retryable."""
        m = self.metrics
        result = run_batch(
            records,
            self.store,
            self.context,
            max_bytes=self.settings.max_event_bytes,
            config=NORMALIZE_DEFAULT,
            lane=self.lane,
        )
        if result.dead_letters:
            now = self.clock()
            for dead in result.dead_letters:
                self.producer.produce(
                    self.settings.topics.dlq,
                    key=dead.record.key,
                    value=dead.record.value,
                    headers=dlq_headers(dead, now),
                )
                _count(m.count_dlq, dead.stage, dead.reason)
                log.warning(
                    "dead letter stage=%s reason=%s at %s: %s",
                    dead.stage,
                    dead.reason,
                    dead.record.where,
                    dead.message,
                )
            if self.producer.flush(30):
                raise KafkaException("DLQ records not delivered")
        self._observe(records, result)
        return result

    def _observe(self, records: Sequence[RawRecord], result: BatchResult) -> None:
        m = self.metrics
        m.batch_size.observe(len(records))
        if result.attempts > 1:
            m.commit_conflicts.inc(result.attempts - 1)
        for (event_type, outcome), n in result.outcomes.items():
            _count(m.count_event, event_type, outcome, n)
        m.merges.inc(result.counters.get("merges", 0))
        m.quarantined.inc(result.counters.get("quarantined", 0))
        m.oversold.inc(result.counters.get("oversold", 0))
        for name, n in result.counters.items():
            kind, _, rest = name.partition(":")
            if kind == "merges_blocked" and rest:
                m.merges_blocked.labels(rule=rest).inc(n)
            elif kind == "consent_denied":
                purpose, _, reason = rest.partition(":")
                _count(m.count_consent, purpose, "denied", reason, n)
        now_ms = time.time() * 1000
        latency = m.event_to_snapshot.labels(lane=m.lane)
        for r in records:
            if r.timestamp_ms:
                latency.observe(max(0.0, (now_ms - r.timestamp_ms) / 1000))


def _count(count: Callable[..., None], *labels: Any) -> None:
    """Count with one of :class:`WorkerMetrics`' validating helpers. A label it refuses (free
    text, or an outcome missing from ``EVENT_OUTCOMES``) is logged, never raised: the batch is
    committed in Redis by then, and failing it would only stop the worker."""
    try:
        count(*labels)
    except ValueError:
        log.error("metric %s: refused label values, not counted", count.__name__, exc_info=True)


def build_runtime(settings: LoomSettings, lane: Lane = PROFILES) -> Runtime:
    from prometheus_client import CollectorRegistry

    client = redis_clients.client(settings)
    producer = kafka_clients.producer(settings)  # DLQ; the relay has its own
    base_rules = load_rules(settings.identity_rules_file) if settings.identity_rules_file else None
    rules = _with_blocklist(base_rules)
    policy = load_policy(settings.consent_config_file) if settings.consent_config_file else None
    consumer_name = f"{socket.gethostname()}-{os.getpid()}"
    metrics = WorkerMetrics.create(CollectorRegistry(), lane=lane.name)
    store = RedisStore(
        client,
        prefix=settings.redis_prefix,
        seen_ttl_s=settings.dedupe_ttl_s,
        wait_replicas=settings.redis_wait_replicas,
        on_call=lambda op, seconds: metrics.redis_call_seconds.labels(op=op).observe(seconds),
    )
    return Runtime(
        settings=settings,
        store=store,
        redis=client,
        producer=producer,
        relay=OutboxRelay(
            client, kafka_clients.producer(settings), store.keys.outbox, consumer_name
        ),
        metrics=metrics,
        rules=rules,
        policy=policy or ConsentPolicy(),
        clock=lambda: datetime.now(UTC),
        lane=lane,
    )


def _with_blocklist(rules: IdentityRules | None) -> IdentityRules:
    base = rules or IdentityRules()
    return replace(base, is_blocked=lambda t, v: is_blocked(t, v, NORMALIZE_DEFAULT))


def _raw_record(event: Any) -> RawRecord:
    msg = event.message
    headers = {k: (v or b"") for k, v in (msg.headers or [])}
    return RawRecord(
        value=event.value if isinstance(event.value, bytes | type(None)) else bytes(event.value),
        key=event.key,
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        timestamp_ms=int(msg.timestamp * 1000) if msg.timestamp else None,
        headers=headers,
    )


async def process_with_retry(runtime: Runtime, records: Sequence[RawRecord]) -> BatchResult:
    """Run a batch until it succeeds; back off on infrastructure errors. Cancellation waits.

    The whole retry loop runs in one shielded task: a cancellation (shutdown, rebalance) in an
    attempt or in the backoff between two waits until the batch is committed, then propagates,
    because faust acks the events of a ``take_events`` batch as soon as the agent leaves it.
    """
    task = asyncio.ensure_future(_retry(runtime, records))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():  # a second cancellation does not cut the wait short either
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([task])
        error = task.exception()
        if error is not None:  # not retryable: report it rather than the cancellation
            raise error from None
        raise


async def _retry(runtime: Runtime, records: Sequence[RawRecord]) -> BatchResult:
    delay = 0.1
    while True:
        try:
            return await asyncio.to_thread(runtime.process, records)
        except RETRYABLE as exc:
            where = f"{records[0].where}..{records[-1].offset}" if records else "-"
            log.warning(
                "batch %s failed (%s: %s); retrying in %.1fs", where, type(exc).__name__, exc, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, runtime.settings.retry_backoff_max_s)


async def relay_forever(
    rt: Runtime, wakeup: asyncio.Event, *, idle_s: float = 0.25, min_interval_s: float = 0.1
) -> None:
    """Relay the outbox to Kafka until cancelled: after a commit, or every ``idle_s``.

    Passes start at most every ``min_interval_s``: a lane committing a small batch every few
    milliseconds would otherwise spend its CPU on relay round trips. So the Kafka change topics
    trail Redis by up to that much; the Redis change streams are written in the commit itself.
    """
    delay = 0.1
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wakeup.wait(), timeout=idle_s)
        wakeup.clear()
        started = time.monotonic()
        try:
            await asyncio.to_thread(rt.relay.relay)
            delay = 0.1
            await asyncio.sleep(max(0.0, min_interval_s - (time.monotonic() - started)))
        except RETRYABLE as exc:
            log.warning(
                "outbox relay failed (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, rt.settings.retry_backoff_max_s)


def create_app(settings: LoomSettings, rt: Runtime) -> faust.App:
    """Build the faust app and its agent for ``rt``'s lane. Nothing happens at import.

    faust's data directory (``<app id>-data``, default: in the current directory) goes under
    the system temp directory: the app keeps no tables and uses the in-memory store.
    """
    datadir = os.path.join(tempfile.gettempdir(), "loom-faust")
    os.makedirs(datadir, exist_ok=True)  # faust creates only the last level
    app = faust.App(
        settings.group_id(rt.lane.name),
        **kafka_clients.faust_settings(settings),  # broker, credentials, replication
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        datadir=os.path.join(datadir, "{conf.name}-data"),  # faust formats {conf.name}
        processing_guarantee="at_least_once",
        topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=settings.batch_size,
        broker_commit_interval=1.0,
        web_enabled=False,
    )
    raw = app.topic(settings.topics.raw, value_serializer="raw", key_serializer="raw")

    committed = asyncio.Event()

    @app.agent(raw, concurrency=1)
    async def touchpoints(stream: Any) -> None:
        async for events in stream.take_events(
            settings.batch_size, within=settings.batch_timeout_s
        ):
            await process_with_retry(rt, [_raw_record(e) for e in events])
            committed.set()

    @app.task  # type: ignore[untyped-decorator]
    async def relay_outbox() -> None:
        await relay_forever(rt, committed)

    return app


def run_worker(settings: LoomSettings, lane: Lane = PROFILES, *, loglevel: str = "info") -> None:
    """Run a worker of ``lane`` until stopped (``loom worker --role``)."""
    runtime = build_runtime(settings, lane)
    if lane is not PROFILES:
        from streams.lane_consumer import run_lane_consumer

        logging.basicConfig(
            level=loglevel.upper(), format="[%(asctime)s] %(levelname)s %(name)s: %(message)s"
        )
        logging.getLogger().setLevel(loglevel.upper())  # also when the CLI configured it
        run_lane_consumer(settings, runtime)
        return
    app = create_app(settings, runtime)
    _serve_health(app, runtime, settings)
    worker = faust.Worker(app, loglevel=loglevel)
    if not sys.stdout.isatty():  # the progress spinner writes cursor escapes into log files
        worker.spinner = None
    worker.execute_from_commandline()


def _serve_health(app: faust.App, rt: Runtime, settings: LoomSettings) -> None:
    """/livez, /readyz and /metrics on ``LOOM_WEB_PORT``, on the worker's own event loop.

    Ready only when Kafka and Redis answer and this worker has partitions assigned.
    """
    server = HealthServer(
        settings.web_host,
        settings.web_port,
        rt.metrics.registry,
        rt.health_checks(lambda: bool(app.consumer.assignment())),
    )

    @app.task  # type: ignore[untyped-decorator]
    async def health() -> None:
        await server.start()
        log.info("health and metrics on port %d", server.port)
