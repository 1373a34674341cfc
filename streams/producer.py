"""Producer SDK for channel teams: validated, keyed, idempotent touchpoint delivery.

    from streams.producer import TouchpointProducer

    with TouchpointProducer(settings) as producer:          # flushes on exit
        producer.send({"event_id": ..., "type": "pos_sale", ...}, on_delivery=print)
        future = producer.submit(touchpoint)                   # concurrent.futures.Future
        producer.send_raw(b"...")                              # unvalidated (tests, replays)

Guarantees and settings:

* validation before send: ``send``/``submit``/``send_json`` raise :class:`InvalidEvent` naming
  the field (nothing is enqueued);
* key = :func:`schemas.touchpoint.record_key` (the most stable normalized identifier);
* ``enable.idempotence=true`` + ``acks=all``: no duplicates or reordering from producer
  retries; ``partitioner=murmur2_random`` so keys land on the same partition as with the Java
  client, i.e. one identifier always maps to one partition;
* ``compression.type=lz4`` (cheapest CPU per byte saved for small JSON), ``linger.ms=20`` and
  ``batch.size=512 KiB`` for throughput; a full local queue makes ``send`` wait (serving
  delivery callbacks) instead of failing;
* every record carries the header ``loom-schema: touchpoint-v1``;
* Kafka checks a topic's ``max.message.bytes`` against a whole batch, not each record, and
  refuses every record of a batch over it: given the topic's limit (``topic_max_bytes``, read
  with :func:`topic_max_message_bytes`; ``loom produce`` and ``loom simulate`` do), batches
  are kept under it (:func:`batch_size_for`), so only a record over the limit by itself fails.

Delivery callbacks run on the caller's thread inside ``send``/``poll``/``flush``; they receive a
:class:`DeliveryReport`. A failed delivery no callback hears is logged (a warning); the producer
never logs identifier values.

Leaving the ``with`` block flushes (up to 30 s) and raises :class:`DeliveryError` when a record
is not on Kafka: still queued (an outage), or failed with no ``on_delivery`` to hear it. A caller
that calls :meth:`close` itself gets the count instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

from confluent_kafka import KafkaError, KafkaException, Message
from confluent_kafka.admin import ConfigResource, ResourceType  # type: ignore[attr-defined]

from schemas.errors import OVERSIZE, InvalidEvent, LoomError
from schemas.normalize import DEFAULT, NormalizeConfig
from schemas.touchpoint import (
    Touchpoint,
    dump_touchpoint,
    parse_touchpoint,
    record_key,
    validate_touchpoint,
)
from streams import kafka_clients
from streams.settings import LoomSettings

log = logging.getLogger(__name__)

SCHEMA_HEADER: Final = ("loom-schema", b"touchpoint-v1")

#: librdkafka settings the SDK applies before caller overrides.
DEFAULT_CONFIG: Final[Mapping[str, Any]] = {
    "enable.idempotence": True,
    "acks": "all",
    "compression.type": "lz4",
    "linger.ms": 20,
    "batch.size": 512 * 1024,
    "queue.buffering.max.messages": 200_000,
    "queue.buffering.max.kbytes": 256 * 1024,
    "message.timeout.ms": 120_000,
    "partitioner": "murmur2_random",
    "client.id": "loom-producer",
}


#: librdkafka's ``batch.size`` when nothing sets it
LIBRDKAFKA_BATCH_SIZE: Final = 1_000_000


def batch_size_for(topic_max_bytes: int, batch_size: int) -> int:
    """The ``batch.size`` that keeps a batch within a topic's ``max.message.bytes``.

    librdkafka counts ``batch.size`` on the uncompressed records with their framing, and a
    batch compressed with lz4 may grow a little when its records do not compress (LZ4's bound
    is n + n/255 + 16, plus the frame): the headroom of 1/32 and 64 bytes covers both. A
    single record still goes alone in its batch whatever its size (librdkafka's rule)."""
    return max(min(batch_size, topic_max_bytes - topic_max_bytes // 32 - 64), 1)


def topic_max_message_bytes(
    settings: LoomSettings, topic: str, *, timeout_s: float = 5.0
) -> int | None:
    """The topic's ``max.message.bytes`` (the largest record batch Kafka takes on it), or
    None when Kafka does not say (the topic does not exist yet, no right to describe its
    configuration, no answer within ``timeout_s``)."""
    admin = kafka_clients.admin(settings)
    resource = ConfigResource(ResourceType.TOPIC, topic)
    try:
        future = admin.describe_configs([resource], request_timeout=timeout_s)[resource]
        entries = future.result(timeout=timeout_s)
        return int(entries["max.message.bytes"].value)
    except (KafkaException, KeyError, ValueError, TypeError, TimeoutError) as exc:
        log.info("max.message.bytes of %s unknown: %s", topic, exc)
        return None


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """Outcome of one record: where it landed, or why it did not."""

    topic: str
    partition: int | None
    offset: int | None
    key: bytes | None
    error: str | None = None
    retriable: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


DeliveryCallback = Callable[[DeliveryReport], None]


class DeliveryError(LoomError, RuntimeError):
    """Records the SDK accepted are not on Kafka (raised when a ``with`` block ends)."""


@dataclass(slots=True)
class ProducerStats:
    """Counters since construction (updated on the caller's thread)."""

    enqueued: int = 0
    delivered: int = 0
    failed: int = 0

    @property
    def in_flight(self) -> int:
        return self.enqueued - self.delivered - self.failed


class TouchpointProducer:
    """Validating, idempotent Kafka producer of touchpoint v1 records. Not thread-safe."""

    def __init__(
        self,
        settings: LoomSettings | None = None,
        *,
        topic: str | None = None,
        bootstrap: str | None = None,
        config: Mapping[str, Any] | None = None,
        max_event_bytes: int | None = None,
        normalize_config: NormalizeConfig = DEFAULT,
        topic_max_bytes: int | None = None,
    ) -> None:
        """``topic_max_bytes``: the topic's ``max.message.bytes`` when known
        (:func:`topic_max_message_bytes`); batches are then kept under it."""
        settings = settings or LoomSettings()
        self.topic: str = topic or settings.topics.raw
        self.max_event_bytes: int = max_event_bytes or settings.max_event_bytes
        self._normalize_config = normalize_config
        if bootstrap:
            settings = settings.model_copy(update={"kafka_bootstrap": bootstrap})
        conf = kafka_clients.client_config(settings, **{**DEFAULT_CONFIG, **(config or {})})
        if topic_max_bytes is not None:
            batch = int(conf.get("batch.size", LIBRDKAFKA_BATCH_SIZE))
            conf["batch.size"] = batch_size_for(topic_max_bytes, batch)
        self._producer = kafka_clients.new_producer(conf)
        self.stats = ProducerStats()
        self._closed = False
        self._unheard: int = 0  # failures no on_delivery callback was given for
        self._last_error: str | None = None

    # --- sending ---------------------------------------------------------------------------

    def send(
        self,
        event: Touchpoint | Mapping[str, Any],
        *,
        on_delivery: DeliveryCallback | None = None,
    ) -> bytes | None:
        """Validate ``event`` (a model or a dict), enqueue it; returns the record key.

        Raises :class:`InvalidEvent` (nothing sent) when the event violates the contract or its
        serialized size exceeds ``max_event_bytes``.
        """
        tp = event if isinstance(event, Touchpoint) else validate_touchpoint(event)
        value = dump_touchpoint(tp)
        if len(value) > self.max_event_bytes:
            raise InvalidEvent(
                OVERSIZE, f"record is {len(value)} bytes, limit {self.max_event_bytes}"
            )
        key = record_key(tp, config=self._normalize_config)
        self._produce(value, key, on_delivery)
        return key

    def send_json(self, raw: bytes, *, on_delivery: DeliveryCallback | None = None) -> Touchpoint:
        """Validate one JSON record and send its ORIGINAL bytes (keyed); returns the model.

        Cheaper than ``send`` for JSONL input (no re-serialization) and keeps the producer's
        bytes exactly, including top-level keys this contract version ignores.
        """
        tp = parse_touchpoint(raw, max_bytes=self.max_event_bytes)
        self._produce(raw, record_key(tp, config=self._normalize_config), on_delivery)
        return tp

    def send_raw(
        self,
        raw: bytes,
        *,
        key: bytes | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """Send bytes as they are, unvalidated (``loom produce --raw``, DLQ tests, replays)."""
        self._produce(raw, key, on_delivery)

    def submit(self, event: Touchpoint | Mapping[str, Any]) -> Future[DeliveryReport]:
        """Like :meth:`send`, returning a future resolved (by ``poll``/``flush``) with the report.

        The future is resolved with the report even when delivery failed; check ``.ok``.
        """
        future: Future[DeliveryReport] = Future()
        future.set_running_or_notify_cancel()
        self.send(event, on_delivery=future.set_result)
        return future

    def _produce(
        self, value: bytes, key: bytes | None, on_delivery: DeliveryCallback | None
    ) -> None:
        if self._closed:
            raise RuntimeError("producer is closed")

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                self.stats.delivered += 1
                report = DeliveryReport(
                    msg.topic() or self.topic, msg.partition(), msg.offset(), msg.key()
                )
            else:
                self.stats.failed += 1
                self._last_error = err.str()
                if on_delivery is None:  # a caller's callback hears it: that caller says it
                    self._unheard += 1  # (one line per record flooded `loom produce`'s stderr)
                    log.warning("delivery to %s failed: %s", self.topic, err.str())
                report = DeliveryReport(
                    self.topic, None, None, key, err.str(), bool(err.retriable())
                )
            if on_delivery is not None:
                on_delivery(report)

        while True:
            try:
                self._producer.produce(
                    self.topic, value, key, on_delivery=delivered, headers=[SCHEMA_HEADER]
                )
                break
            except BufferError:  # local queue full: serve callbacks until there is room
                self._producer.poll(0.05)
        self.stats.enqueued += 1
        self._producer.poll(0)

    # --- lifecycle -------------------------------------------------------------------------

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery callbacks; returns how many ran."""
        served: int = self._producer.poll(timeout)
        return served

    def flush(self, timeout: float | None = None) -> int:
        """Wait until every record is delivered or failed; returns how many are still queued."""
        remaining: int = (
            self._producer.flush() if timeout is None else self._producer.flush(timeout)
        )
        return remaining

    def close(self, timeout: float = 30.0) -> int:
        """Flush (up to ``timeout`` s) and stop accepting records; returns records left."""
        if self._closed:
            return len(self._producer)
        remaining = self.flush(timeout)
        self._closed = True
        if remaining:
            log.error("producer closed with %d records undelivered", remaining)
        return remaining

    def __len__(self) -> int:
        """Records waiting in the local queue or in flight."""
        return len(self._producer)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._closed:  # the caller closed it and has the count
            return
        remaining = self.close()
        if exc_type is None and (remaining or self._unheard):
            reason = f" (last error: {self._last_error})" if self._last_error else ""
            raise DeliveryError(
                f"{remaining + self._unheard} record(s) not delivered to {self.topic}: "
                f"{self._unheard} failed, {remaining} still queued after the flush{reason}"
            )
