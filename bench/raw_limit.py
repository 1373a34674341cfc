"""The raw limit of this machine: Kafka -> Redis with no logic at all.

    python -m bench.raw_limit --topic TOPIC --expected N [--batch 500]

One confluent-kafka consumer (a fresh group, from the earliest offset) reads ``TOPIC`` in
batches (``consume(num_messages=batch)``); per batch it writes one Redis key per event
(``SET {prefix}:raw:{event_id} 1``, event id from ``orjson.loads``) in ONE pipelined round trip,
then commits the batch's offsets synchronously (effects acknowledged before the commit, like
the worker). Timed from the first record received until ``expected`` records are committed;
the keys are deleted afterwards. What the worker adds on top (validation, normalization,
identity resolution, consent, profile and inventory state, the atomic Lua commit with
idempotency, the outbox relay) is the difference between this figure and the pipeline's.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from typing import Any

import orjson
import redis

from bench import run_main
from bench.proc_cpu import CpuMeter, per_event_us
from streams import kafka_clients, redis_clients
from streams.settings import LoomSettings


def delete_prefix(client: redis.Redis, root: str) -> int:
    keys = list(client.scan_iter(match=f"{root}:*", count=1000))
    for i in range(0, len(keys), 1000):
        client.unlink(*keys[i : i + 1000])
    return len(keys)


def raw_limit(
    kafka: str, redis_url: str, topic: str, expected: int, *, batch: int = 500,
    timeout: float = 300.0, meter: CpuMeter | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Consume ``expected`` records of ``topic`` into Redis; returns events/s and details.

    CPU per event (``cpu_us_per_event``) of this process (``raw_consumer``: consumption,
    decoding, the Redis client) and of the processes of ``meter`` (e.g. Redis, the broker),
    from the first record received until the last commit."""
    meter = meter or CpuMeter()
    meter.add("raw_consumer", os.getpid())
    prefix = f"benchraw{uuid.uuid4().hex[:10]}"
    group = f"loom-bench-raw-{uuid.uuid4().hex[:10]}"
    settings = LoomSettings(kafka_bootstrap=kafka, redis_url=redis_url)
    client = redis_clients.client(settings)
    consumer = kafka_clients.consumer(
        settings,
        group,
        **{"auto.offset.reset": "earliest", "enable.auto.commit": False, "fetch.min.bytes": 1},
    )
    consumer.subscribe([topic])
    done = 0
    started: float | None = None
    deadline = time.monotonic() + timeout
    try:
        while done < expected and time.monotonic() < deadline:
            msgs = consumer.consume(num_messages=batch, timeout=0.5)
            if not msgs:
                continue
            if started is None:
                meter.start()
                started = time.monotonic()
            pipe = client.pipeline(transaction=False)
            for msg in msgs:
                if msg.error() is not None:
                    continue
                try:
                    event_id = orjson.loads(msg.value() or b"{}").get("event_id", "")
                except orjson.JSONDecodeError:
                    event_id = f"{msg.partition()}-{msg.offset()}"
                pipe.set(f"{prefix}:raw:{event_id}", b"1")
            pipe.execute()
            consumer.commit(asynchronous=False)
            done += len(msgs)
        elapsed = time.monotonic() - (started or time.monotonic())
        cpu = meter.stop()
    finally:
        consumer.close()
        written = delete_prefix(client, prefix)
        client.close()
        _delete_group(settings, group)
    if done < expected:
        raise TimeoutError(f"raw limit consumed {done} of {expected} records in {timeout}s")
    return {
        "events": done,
        "batch": batch,
        "seconds": round(elapsed, 3),
        "events_per_s": round(done / elapsed, 1) if elapsed > 0 else None,
        "keys_written": written,
        "cpu_s": cpu,
        "cpu_us_per_event": per_event_us(cpu, done),
    }


def _delete_group(settings: LoomSettings, group: str) -> None:
    try:
        admin = kafka_clients.admin(settings)
        for fut in admin.delete_consumer_groups([group]).values():
            fut.result(timeout=30)
    except Exception as exc:  # best effort
        print(f"(could not delete group {group}: {exc})", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.raw_limit", description=__doc__)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--expected", type=int, required=True, help="records on the topic")
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args(argv)
    kafka = os.environ.get("LOOM_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    url = os.environ.get("LOOM_REDIS_URL", "redis://127.0.0.1:16379/0")
    result = raw_limit(kafka, url, args.topic, args.expected, batch=args.batch)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    run_main(main)
