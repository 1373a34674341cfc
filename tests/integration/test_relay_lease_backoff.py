"""A relay holding the outbox keeps its lease while Kafka does not answer it (ADR 0043, real
Redis): its flush waits in slices of a third of the lease, renewing it between them, and its
backoff renews before it sleeps. Before, a 5 s flush and a backoff's first sleep lapsed a 10 s
lease: a relay standing by took the outbox and sent newer records, and the old holder's queued
ones reached Kafka after them once its link healed (a review of the twenty-ninth pass)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest
import redis
from prometheus_client import CollectorRegistry
from test_relay import until

from resolvers.store import OutboxRecord
from streams import outbox
from streams.metrics import RelayMetrics
from streams.relay import OutboxRelay, RelaySupervisor
from streams.testing import FakeProducer

pytestmark = pytest.mark.integration

#: the defaults' ratio (a 10 s lease, a 5 s flush), scaled down
LEASE_S, FLUSH_S, BACKOFF_MAX_S = 1.5, 0.75, 2.0
#: how long the standby keeps trying: the old code lapsed the lease after ~6 s
WATCH_S = 10.0


@dataclass
class _CutOff(FakeProducer):
    """A producer whose broker does not answer (a partition between it and the leader): a
    flush waits its whole timeout and keeps the records queued."""

    cut: bool = True
    sent: list[bytes | None] = field(default_factory=list)

    def flush(self, timeout: float = -1) -> int:
        if self.cut:
            time.sleep(max(0.0, timeout))
            return len(self._pending)
        self.sent += [record.value for record, _ in self._pending]
        return super().flush(timeout)

    def poll(self, timeout: float = 0) -> int:
        return 0 if self.cut else len(self._pending) - self.flush()

    def purge(self, in_queue: bool = True, in_flight: bool = True) -> None:
        self._pending = []


def test_a_holder_waiting_on_kafka_keeps_the_lease(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    key = f"{redis_prefix}:v1:outbox"
    redis_client.xadd(key, {outbox.FIELD: outbox.pack([OutboxRecord("t", b"SKU-0", b"1")])})
    relay_a = OutboxRelay(
        redis_client,
        _CutOff(),
        key,
        "A",
        lease_s=LEASE_S,
        flush_timeout_s=FLUSH_S,  # type: ignore[arg-type]
    )
    sup = RelaySupervisor(
        lambda: relay_a, RelayMetrics.create(CollectorRegistry()),
        backoff_max_s=BACKOFF_MAX_S, failing_after_s=60.0, idle_s=0.05, min_interval_s=0.0,
    )  # fmt: skip
    relay_b = OutboxRelay(
        redis_client,
        _CutOff(cut=False),
        key,
        "B",
        lease_s=LEASE_S,  # type: ignore[arg-type]
    )
    took_over_after: list[float] = []

    async def scenario() -> None:
        sup.start(asyncio.Event())
        await until(lambda: bool(relay_a._inflight), within_s=5)  # A sent it, waits for Kafka
        started = time.monotonic()
        while time.monotonic() - started < WATCH_S:  # B stands by, trying every turn_s
            await asyncio.to_thread(relay_b.relay)
            if relay_b.active():
                took_over_after.append(time.monotonic() - started)
                break
            await asyncio.sleep(0.1)
        await sup.stop()

    asyncio.run(scenario())
    assert sup.failures >= 2  # A failed passes and backed off meanwhile
    assert took_over_after == []
