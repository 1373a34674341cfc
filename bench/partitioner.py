"""Which worker of a consumer group gets which record, for the benches that run several
workers without Kafka (``bench.conflict_bench``, ``bench.cs_two_workers``; issue 17.3).

The producer SDK keys a touchpoint with ``schemas.touchpoint.record_key`` and sends it with
librdkafka's ``murmur2_random`` partitioner (``streams.producer``): a keyed record goes to the
partition Kafka's Java client would pick (murmur2 of the key), an unkeyed one to a random
partition. The benches stand in for "random" with the event id's murmur2, so that a run is
repeatable. With 6 partitions and 2 workers, the range assignor gives partitions 0-2 to one
worker and 3-5 to the other.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Final, Literal

#: The raw topic's partitions in the benches (the e2e bench's topic).
PARTITIONS: Final = 6

Fetch = Literal["chunked", "interleaved"]


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), unsigned."""
    m, length = 0x5BD1E995, len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail, rest = length - length % 4, length % 4
    if rest >= 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    return h ^ (h >> 15)


def partition_for(key: bytes, partitions: int = PARTITIONS) -> int:
    """The partition Kafka's default (murmur2) partitioner gives ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def worker_of(partition: int, partitions: int = PARTITIONS, workers: int = 2) -> int:
    """The worker the range assignor gives ``partition`` (contiguous ranges, the first
    workers one more when it does not divide: Kafka's ``RangeAssignor``)."""
    per, extra = divmod(partitions, workers)
    cut = extra * (per + 1)
    return partition // (per + 1) if partition < cut else extra + (partition - cut) // per


def assign(
    keys: Sequence[bytes],
    *,
    batch: int,
    fetch: Fetch = "chunked",
    partitions: int = PARTITIONS,
    workers: int = 2,
) -> list[list[list[int]]]:
    """Each worker's batches of at most ``batch`` records, as indices into ``keys`` (each
    record's partitioning key: its record key, or its stand-in when unkeyed).

    ``chunked``: a batch from one partition at a time, the worker's partitions in turn (as a
    consumer fetching a backlog gets them); ``interleaved``: the worker's records in input
    order. Within a partition, input order is kept either way."""
    per_partition: dict[int, list[int]] = collections.defaultdict(list)
    ordered: list[list[int]] = [[] for _ in range(workers)]
    for i, key in enumerate(keys):
        p = partition_for(key, partitions)
        per_partition[p].append(i)
        ordered[worker_of(p, partitions, workers)].append(i)
    if fetch == "chunked":
        for w in range(workers):
            mine = [
                per_partition[p]
                for p in range(partitions)
                if worker_of(p, partitions, workers) == w
            ]
            ordered[w] = [
                i
                for start in range(0, max(map(len, mine), default=0), batch)
                for indices in mine
                for i in indices[start : start + batch]
            ]
    return [[records[j : j + batch] for j in range(0, len(records), batch)] for records in ordered]
