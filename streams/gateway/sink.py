"""Where a front door's records go: Kafka, acknowledged by every in-sync replica first.

:class:`KafkaSink` produces a request's records with the producer SDK's settings (idempotent,
``acks=all``, the same partitioner, so an identifier lands on the same partition whichever
door it came in) through :mod:`streams.kafka_clients`, and :meth:`~KafkaSink.deliver`
returns only when Kafka acknowledged every one of them. Otherwise it raises, and the front
door answers without a 200:

* :class:`~streams.gateway.errors.OverloadedError` (429) before producing anything, when the events
  already awaiting an ack plus this request's would exceed ``max_in_flight``, or when
  librdkafka's local queue is full;
* :class:`~streams.gateway.errors.UnavailableError` (503) when a record failed, or was not
  acknowledged within ``ack_timeout_s`` (librdkafka's ``message.timeout.ms`` is the same, so
  every record has its answer by then). Records of a failed request may still have been
  written; the client's retry repeats the same event ids, and the workers drop the copies.

Delivery callbacks run on a poll thread and only count; one ``call_soon_threadsafe`` per
request wakes the waiting handler. :class:`MemorySink` is the in-process fake for tests of the
front doors.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaError, Message

from streams import kafka_clients
from streams.gateway.errors import GatewayError, OverloadedError, UnavailableError
from streams.gateway.records import OutRecord
from streams.producer import DEFAULT_CONFIG
from streams.settings import LoomSettings

log = logging.getLogger(__name__)

#: How much longer than librdkafka's message timeout a request waits for its reports.
_REPORT_GRACE_S = 1.0


class Sink(Protocol):
    """What a front door needs of the place records go."""

    @property
    def in_flight(self) -> int: ...

    async def deliver(self, records: Sequence[OutRecord]) -> None:
        """Return once every record is acknowledged; raise a GatewayError otherwise."""
        ...

    async def ready(self) -> bool: ...

    def broken(self) -> bool:
        """It can never deliver again (the process must restart)."""
        ...

    def close(self, timeout: float = 30.0) -> int:
        """Flush and stop; returns records left unacknowledged."""
        ...


class _Pending:
    """One request's records awaiting their delivery reports."""

    def __init__(self, n: int, loop: asyncio.AbstractEventLoop, sink: KafkaSink) -> None:
        self.n = n
        self.remaining = n
        self.failures: list[str] = []
        self.future: asyncio.Future[None] = loop.create_future()
        self._loop = loop
        self._sink = sink
        self._lock = threading.Lock()

    def on_delivery(self, err: KafkaError | None, _msg: Message) -> None:  # poll thread
        if err is not None:
            self.settle(1, err.name())
        else:
            self.settle(1)

    def settle(self, count: int, failure: str | None = None) -> None:
        with self._lock:
            if failure is not None:
                self.failures.append(failure)
            self.remaining -= count
            done = self.remaining == 0
        if done:
            self._loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:  # event loop
        self._sink._settled(self.n)
        if not self.future.done():
            self.future.set_result(None)


class KafkaSink:
    """Produces records with ``acks=all`` and waits for every acknowledgement (module doc)."""

    def __init__(
        self,
        settings: LoomSettings,
        *,
        max_in_flight: int | None = None,
        ack_timeout_s: float | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.max_in_flight = max_in_flight or settings.gateway_max_in_flight
        self.ack_timeout_s = ack_timeout_s or settings.gateway_ack_timeout_s
        self._producer = kafka_clients.producer(
            settings,
            **{
                **DEFAULT_CONFIG,
                "client.id": "loom-gateway",
                "linger.ms": 5,
                "message.timeout.ms": max(1, int(self.ack_timeout_s * 1000)),
                "error_cb": self._client_error,
                **(config or {}),
            },
        )
        self._in_flight = 0
        self._brokers_down = False
        #: set when librdkafka reports a fatal error: this producer can never deliver again
        self.fatal = threading.Event()
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="gateway-kafka-poll", daemon=True)
        self._poller.start()

    @property
    def in_flight(self) -> int:
        """Events produced and not yet acknowledged (or failed)."""
        return self._in_flight

    def _settled(self, n: int) -> None:
        self._in_flight -= n

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    def _client_error(self, err: KafkaError) -> None:  # poll thread
        """One warning when every broker is down (librdkafka retries by itself; requests get
        503 meanwhile); transient connection errors only at debug level. A fatal error (the
        idempotent producer cannot guarantee order or uniqueness any more) sets :attr:`fatal`:
        the gateway then stops, so that its supervisor starts a fresh one."""
        if err.fatal():
            log.error("kafka: fatal producer error, the gateway must restart: %s", err.str())
            self.fatal.set()
        elif err.code() == KafkaError._ALL_BROKERS_DOWN:
            if not self._brokers_down:
                log.warning("kafka: all brokers are down; answering 503 until one is back")
            self._brokers_down = True
        elif err.code() in (KafkaError._TRANSPORT, KafkaError._RESOLVE):
            log.debug("kafka client error: %s", err.str())
        else:
            log.warning("kafka client error: %s", err.str())

    async def deliver(self, records: Sequence[OutRecord]) -> None:
        n = len(records)
        if n == 0:
            return
        if self.fatal.is_set():
            raise UnavailableError("the gateway is restarting its Kafka producer")
        if self._in_flight + n > self.max_in_flight:
            raise OverloadedError(f"{self._in_flight} events await Kafka's ack; try again shortly")
        pending = _Pending(n, asyncio.get_running_loop(), self)
        self._in_flight += n
        produced = 0
        try:
            for r in records:
                self._producer.produce(
                    r.topic,
                    r.value,
                    r.key,
                    headers=list(r.headers),
                    on_delivery=pending.on_delivery,
                )
                produced += 1
        except BufferError:
            pending.settle(n - produced, "_QUEUE_FULL")
            raise OverloadedError("the gateway's Kafka queue is full; try again shortly") from None
        except Exception:  # a bug or a closed producer: never leave the count raised
            pending.settle(n - produced, "_PRODUCE_FAILED")
            raise
        try:
            await asyncio.wait_for(
                asyncio.shield(pending.future), self.ack_timeout_s + _REPORT_GRACE_S
            )
        except TimeoutError:
            raise UnavailableError("Kafka did not acknowledge the events in time") from None
        if pending.failures:
            log.warning(
                "kafka did not acknowledge %d of %d records (%s)",
                len(pending.failures),
                n,
                ", ".join(sorted(set(pending.failures))),
            )
            raise UnavailableError(
                f"Kafka did not acknowledge {len(pending.failures)} of {n} events"
            )
        if self._brokers_down:
            log.info("kafka: acknowledging again")
            self._brokers_down = False

    def broken(self) -> bool:
        return self.fatal.is_set()

    async def ready(self) -> bool:
        """Kafka answers a metadata request (and the producer can still deliver)."""
        if self.fatal.is_set():
            return False
        await asyncio.to_thread(self._producer.list_topics, timeout=2)
        return True

    def close(self, timeout: float = 30.0) -> int:
        """Flush what is queued (up to ``timeout`` s), stop polling; returns records left."""
        left: int = self._producer.flush(timeout)
        self._stop.set()
        self._poller.join(timeout=2)
        if left:
            log.error("gateway closed with %d records not acknowledged", left)
        return left


class MemorySink:
    """An in-process sink for tests of the front doors: keeps what it is given, or raises
    ``fail_with`` (a :class:`GatewayError`) to stand for an overloaded or absent Kafka."""

    def __init__(self) -> None:
        self.records: list[OutRecord] = []
        self.fail_with: GatewayError | None = None

    @property
    def in_flight(self) -> int:
        return 0

    async def deliver(self, records: Sequence[OutRecord]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.records.extend(records)

    async def ready(self) -> bool:
        return self.fail_with is None

    def broken(self) -> bool:
        return False

    def close(self, timeout: float = 30.0) -> int:
        return 0
