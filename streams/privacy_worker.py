"""``loom privacy-worker``: acts on the privacy requests the gateway recorded (ADR 0007).

The gateway answers Shopify within seconds and never does slow work inline: it records each
compliance webhook on ``privacy.requests`` (and, for ``customers/redact``, produces the erasure
itself). This worker consumes that topic (consumer group ``<app_id>-privacy``) and, per request:

* ``customers/data_request``: reads the customer's profile as Loom holds it
  (:class:`~streams.reader.ProfileReader`, by customer id: the snapshot and every transaction,
  behavioural event and consent statement the profile keeps, those consent hides from the
  snapshot included) and writes an export
  record to ``privacy.exports`` (keyed by shop), for the retailer to send to the customer;
* ``shop/redact``: requests the erasure of every customer the gateway remembers for the shop,
  and of every e-mail and phone of its guest checkouts (orders without a customer) that Loom
  holds under the salted hashes the gateway remembers (found by hashing the profiles' identifier
  records of those types, :meth:`~streams.reader.ProfileReader.held_under`: a SCAN of the
  keyspace per shop redact), one ``erasure_requested`` touchpoint each, on the raw topic,
  through the same pipeline as ``loom erase``; then forgets the shop
  (:mod:`streams.shopify_memory`);
* ``customers/redact``: nothing more (the erasure went with the request);

and records what it did on ``privacy.audit`` (ids and counts only; the customer by salted
digest, never by id: :mod:`schemas.inbound.shopify_privacy`). A record that is no
privacy request goes to the DLQ (stage ``privacy``).

It also consumes ``privacy.erasures`` (the lane's announcement of each erasure, however it was
requested: ``loom erase``, an ``erasure_requested`` from any channel, a Shopify redact) and
forgets the erased profile's customer ids (``customer_digests``: salted digests, never the ids;
on the record of a request that erased no profile, the customer ids the batch erased that no
erased profile held and those the request named)
in the memory of every shop the gateway remembers, as ``customers/redact`` does: the customer
and, through them, the customer of each of their order memos
(:meth:`~streams.shopify_memory.ShopifyMemory.forget_customers`: one HMGET per shop). An
announcement without digests (written before them, or a profile without a customer id) is
passed over.

Order per batch: produce every output, wait until Kafka acknowledged all (``acks=all``), forget
the redacted shops and the erased customers, then commit the offsets. A failure seeks back to
the batch and retries it with backoff: at least once, and every output is idempotent (erasure
ids derive from the shop and customer; an export record repeats the request id; a customer
forgotten is forgotten again).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson
import redis
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from prometheus_client import CollectorRegistry, Counter

from resolvers.steps import DeadLetter, RawRecord
from schemas.errors import SCHEMA_VIOLATION, InvalidEvent
from schemas.inbound.shopify_model import PrivacyKind, PrivacyRequest
from schemas.inbound.shopify_orders import GUEST_TYPES
from schemas.inbound.shopify_privacy import (
    audit_record,
    export_record,
    request_from_json,
    shop_erasures,
)
from schemas.touchpoint import dump_touchpoint, record_key
from streams import kafka_clients
from streams.backoff import Backoff
from streams.dlq import dlq_headers
from streams.producer import SCHEMA_HEADER
from streams.reader import InvalidIdentifierError, ProfileReader
from streams.settings import LoomSettings
from streams.shopify_memory import ShopifyMemory

log = logging.getLogger(__name__)

#: Consumer group of the privacy workers: ``<app_id>-privacy``.
LANE: Final = "privacy"
BATCH: Final = 100


@dataclass
class Outputs:
    """What a batch of requests makes the worker do."""

    records: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = field(
        default_factory=list
    )
    forget: list[str] = field(default_factory=list)
    #: digests of erased customers (``privacy.erasures``) to forget in every shop's memory
    erased: set[str] = field(default_factory=set)
    outcomes: list[tuple[str, str]] = field(default_factory=list)

    def add(
        self, topic: str, key: str | bytes | None, value: bytes, headers: Sequence[Any] = ()
    ) -> None:
        k = key.encode() if isinstance(key, str) else key
        self.records.append((topic, k, value, list(headers)))


@dataclass(frozen=True, slots=True)
class PrivacyMetrics:
    requests: Counter  # loom_privacy_requests_total{kind,outcome}
    failures: Counter  # loom_privacy_batch_failures_total

    @classmethod
    def create(cls, registry: CollectorRegistry) -> PrivacyMetrics:
        return cls(
            requests=Counter(
                "loom_privacy_requests",
                "Privacy requests handled, by kind and outcome.",
                ["kind", "outcome"],
                registry=registry,
            ),
            failures=Counter(
                "loom_privacy_batch_failures",
                "Batches retried after Kafka or Redis failed.",
                registry=registry,
            ),
        )


class PrivacyWorker:
    """Consumes ``privacy.requests`` and acts on each (module doc)."""

    def __init__(
        self,
        settings: LoomSettings,
        *,
        consumer: Consumer,
        producer: Producer,
        reader: ProfileReader,
        memory: ShopifyMemory,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.topics = settings.topics
        self.consumer, self.producer = consumer, producer
        self.reader, self.memory, self.clock = reader, memory, clock
        self.backoff_max_s = settings.retry_backoff_max_s
        #: the suppression salt: the gateway hashes guest identifiers with it, and the audit
        #: names customers by their salted digest
        self.salt = settings.suppression_salt.get_secret_value().encode()
        self.registry = registry or CollectorRegistry()
        self.metrics = PrivacyMetrics.create(self.registry)

    # --- what each request does (no Kafka I/O) ------------------------------------------------

    def handle(self, request: PrivacyRequest, out: Outputs) -> None:
        now = self.clock()
        if request.kind is PrivacyKind.DATA_REQUEST:
            profile, held = self._profile(request.customer_id) or (None, None)
            out.add(
                self.topics.privacy_exports,
                request.shop,
                orjson.dumps(export_record(request, profile, now, held=held)),
            )
            outcome = "exported" if profile is not None else "not_found"
            counts = {"profiles": int(profile is not None)}
        elif request.kind is PrivacyKind.SHOP_REDACT:
            hashes = set(self.memory.guests(request.shop))
            guests = list(self.reader.held_under(GUEST_TYPES, hashes, self.salt))
            erasures = shop_erasures(request, self.memory.customers(request.shop), guests)
            for tp in erasures:
                out.add(self.topics.raw, record_key(tp), dump_touchpoint(tp), [SCHEMA_HEADER])
            out.forget.append(request.shop)
            outcome = "erasures_requested"
            counts = {"erasures": len(erasures), "guest_identifiers": len(guests)}
        else:
            outcome, counts = "erasure_requested", {"erasures": 1}
        audit = audit_record(request, outcome, now, salt=self.salt, **counts)
        out.add(self.topics.privacy_audit, request.shop, orjson.dumps(audit))
        out.outcomes.append((request.kind.value, outcome))

    def _profile(
        self, customer_id: str | None
    ) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
        """The customer's snapshot and what their profile keeps (transactions, behaviour,
        consent statements: consent hides some from the snapshot, not from the customer's own
        copy)."""
        if customer_id is None:
            return None
        try:
            found = self.reader.lookup_held("customer_id", customer_id)
        except InvalidIdentifierError:
            return None
        if found is not None and found[1] is None:
            log.warning("privacy worker: a profile's state is unreadable; exported without it")
        return found

    def kafka_ready(self) -> bool:
        """Kafka answers a metadata request."""
        self.producer.list_topics(timeout=2)
        return True

    # --- the loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        self.consumer.subscribe([self.topics.privacy_requests, self.topics.erasures])
        backoff = Backoff(self.backoff_max_s, first_s=1.0)
        try:
            while not stop.is_set():
                messages = self.consumer.consume(BATCH, timeout=1.0)
                batch = [m for m in messages if m.error() is None]
                if not batch:
                    continue
                try:
                    self.process(batch)
                    backoff.reset()
                except (KafkaException, redis.RedisError, BufferError) as exc:
                    self.metrics.failures.inc()
                    delay = backoff.next()
                    log.warning(
                        "privacy worker: batch failed (%s); retrying in %.0f s",
                        type(exc).__name__,
                        delay,
                    )
                    self._rewind(batch)
                    stop.wait(delay)
        finally:
            self.consumer.close()
            self.producer.flush(10)

    def process(self, batch: Sequence[Any]) -> None:
        """One batch: outputs produced and acknowledged, shops forgotten, offsets committed."""
        out = Outputs()
        for message in batch:
            if message.topic() == self.topics.erasures:
                out.erased.update(erased_customers(message.value()))
                continue
            try:
                request = request_from_json(orjson.loads(message.value() or b"null"))
            except (orjson.JSONDecodeError, InvalidEvent, AttributeError):
                self._dead_letter(message, out)
                continue
            self.handle(request, out)
        self._produce(out.records)
        for shop in out.forget:
            self.memory.forget_shop(shop)
        if out.erased:
            for shop in list(self.memory.shops()):
                self.memory.forget_customers(shop, out.erased)
        self.consumer.commit(asynchronous=False)
        for kind, outcome in out.outcomes:
            self.metrics.requests.labels(kind, outcome).inc()

    def _dead_letter(self, message: Any, out: Outputs) -> None:
        """A record that is no privacy request: to the DLQ (stage ``privacy``), never lost."""
        record = RawRecord(
            value=message.value(),
            key=message.key(),
            topic=message.topic(),
            partition=message.partition(),
            offset=message.offset(),
        )
        log.error("privacy worker: %s is not a privacy request; dead-lettered", record.where)
        dead = DeadLetter(
            record=record,
            stage=LANE,
            reason=SCHEMA_VIOLATION,
            error_class="InvalidEvent",
            message="not a privacy request record",
        )
        headers = dlq_headers(dead, self.clock())
        out.add(self.topics.dlq, message.key(), message.value() or b"", headers)
        out.outcomes.append(("unknown", "unreadable"))

    def _produce(self, records: Iterable[tuple[str, bytes | None, bytes, list[Any]]]) -> None:
        failures: list[str] = []

        def report(err: Any, _msg: Any) -> None:
            if err is not None:
                failures.append(err.name())

        for topic, key, value, headers in records:
            self.producer.produce(topic, value, key, headers=headers, on_delivery=report)
        left = self.producer.flush(30)
        if left or failures:
            raise KafkaException(f"{left} not delivered, {len(failures)} failed")

    def _rewind(self, batch: Sequence[Any]) -> None:
        first: dict[tuple[str, int], int] = {}
        for m in batch:
            key = (m.topic(), m.partition())
            first[key] = min(first.get(key, m.offset()), m.offset())
        for (topic, partition), offset in first.items():
            # a partition revoked meanwhile is read again by its new owner
            with contextlib.suppress(KafkaException):
                self.consumer.seek(TopicPartition(topic, partition, offset))


def erased_customers(value: bytes | None) -> list[str]:
    """The customer digests an erasure's announcement names (none: a tombstone, an older or
    unreadable record: the lane wrote it, nothing to dead-letter)."""
    try:
        data = orjson.loads(value or b"null")
    except orjson.JSONDecodeError:
        return []
    digests = data.get("customer_digests") if isinstance(data, dict) else None
    return [d for d in digests if isinstance(d, str)] if isinstance(digests, list) else []


def build(settings: LoomSettings, memory: ShopifyMemory, reader: ProfileReader) -> PrivacyWorker:
    """A worker with the deployment's Kafka clients."""
    consumer = kafka_clients.consumer(
        settings,
        settings.group_id(LANE),
        **{"auto.offset.reset": "earliest", "enable.auto.commit": False},
    )
    producer = kafka_clients.producer(settings, **{"client.id": "loom-privacy-worker"})
    return PrivacyWorker(
        settings, consumer=consumer, producer=producer, reader=reader, memory=memory
    )
