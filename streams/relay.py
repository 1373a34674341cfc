"""The outbox relay: Kafka records a batch committed into Redis, moved to Kafka.

A batch's Kafka side effects (profile changes, merges, consent audit, stock changes, alerts)
are written into the Redis outbox stream by the batch's own atomic commit, so they are durable
when the commit returns. The relay runs beside the lane's loop, off the batch's path: it
produces outbox entries, waits for the broker's acknowledgements, then acknowledges and deletes
them in Redis. A crash in between re-sends them: at least once, never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

import redis
from confluent_kafka import Producer

from streams.errors import KafkaUnavailableError, RetryableError, classify

log = logging.getLogger(__name__)


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
        flush_timeout_s: float = 5.0,
    ) -> None:
        self.client, self.producer, self.key = client, producer, key
        self.consumer, self.min_idle_ms = consumer, min_idle_ms
        self.claim_every_s, self.flush_timeout_s = claim_every_s, flush_timeout_s
        self._claimed_at = float("-inf")
        self._group_ready = False

    def ensure_group(self) -> None:
        """Create the outbox stream's consumer group (and the stream) unless it exists."""
        try:
            self.client.xgroup_create(self.key, self.GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:  # BUSYGROUP: exists already
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

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
        remaining = self.producer.flush(self.flush_timeout_s)
        if remaining or errors:
            raise KafkaUnavailableError(
                f"outbox relay: {remaining} undelivered, errors: {errors[:3]}"
            )
        ids = [entry_id for entry_id, _ in entries]
        pipe = self.client.pipeline(transaction=True)
        pipe.xack(self.key, self.GROUP, *ids)
        pipe.xdel(self.key, *ids)
        pipe.execute()
        return len(ids)

    def relay(self, *, count: int = 5000) -> int:
        if not self._group_ready:
            self.ensure_group()
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


async def relay_forever(
    relay: OutboxRelay,
    backoff_max_s: float,
    wakeup: asyncio.Event,
    *,
    idle_s: float = 0.25,
    min_interval_s: float = 0.1,
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
            await asyncio.to_thread(relay.relay)
            delay = 0.1
            await asyncio.sleep(max(0.0, min_interval_s - (time.monotonic() - started)))
        except Exception as exc:
            if not isinstance(classify(exc), RetryableError):
                raise
            log.warning(
                "outbox relay failed (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, backoff_max_s)
