"""The benches' model of a consumer group (``bench.partitioner``): Kafka's murmur2 partitioner,
the range assignor, and each worker's batches, which together are the input, once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]

#: Kafka's own vectors (clients/src/test/.../common/utils/UtilsTest.java, testMurmur2).
KAFKA_MURMUR2 = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.fixture(scope="module")
def part() -> Any:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT))  # `python -m bench...` runs from the checkout
        import bench.partitioner as module

        return module


@pytest.mark.parametrize(("data", "signed"), KAFKA_MURMUR2)
def test_murmur2_is_kafkas(part: Any, data: bytes, signed: int) -> None:
    assert part.murmur2(data) == signed & 0xFFFFFFFF


@pytest.mark.parametrize(("data", "signed"), KAFKA_MURMUR2)
@pytest.mark.parametrize("partitions", [1, 6, 7, 12])
def test_partition_is_the_default_partitioners(
    part: Any, data: bytes, signed: int, partitions: int
) -> None:
    # DefaultPartitioner / BuiltInPartitioner: toPositive(murmur2(key)) % numPartitions
    assert part.partition_for(data, partitions) == (signed & 0x7FFFFFFF) % partitions


@pytest.mark.parametrize(
    ("partitions", "workers", "expected"),
    [(6, 2, [0, 0, 0, 1, 1, 1]), (7, 2, [0, 0, 0, 0, 1, 1, 1]), (5, 3, [0, 0, 1, 1, 2])],
)
def test_workers_get_contiguous_ranges(
    part: Any, partitions: int, workers: int, expected: list[int]
) -> None:
    assert [part.worker_of(p, partitions, workers) for p in range(partitions)] == expected


keys = st.lists(st.binary(min_size=0, max_size=12), max_size=300)


@given(
    keys=keys,
    batch=st.integers(1, 50),
    fetch=st.sampled_from(["chunked", "interleaved"]),
    workers=st.integers(1, 3),
)
def test_the_workers_batches_partition_the_input(
    part: Any, keys: list[bytes], batch: int, fetch: str, workers: int
) -> None:
    plan = part.assign(keys, batch=batch, fetch=fetch, partitions=6, workers=workers)
    assert len(plan) == workers
    seen = [i for batches in plan for b in batches for i in b]
    assert sorted(seen) == list(range(len(keys)))  # every record once
    for w, batches in enumerate(plan):
        assert all(0 < len(b) <= batch for b in batches)
        assert all(len(b) == batch for b in batches[:-1])  # only the last one short
        mine = [i for b in batches for i in b]
        # a record goes to the worker that owns its key's partition ...
        assert all(part.worker_of(part.partition_for(keys[i]), 6, workers) == w for i in mine)
        # ... in input order within each partition (all of it, interleaved)
        for p in range(6):
            of_p = [i for i in mine if part.partition_for(keys[i]) == p]
            assert of_p == sorted(of_p)
        if fetch == "interleaved":
            assert mine == sorted(mine)


@given(keys=keys)
def test_one_key_one_worker(part: Any, keys: list[bytes]) -> None:
    plan = part.assign(keys + keys, batch=7)
    owner = {}
    for w, batches in enumerate(plan):
        for b in batches:
            for i in b:
                assert owner.setdefault((keys + keys)[i], w) == w


def test_chunked_takes_a_batch_from_each_partition_in_turn(part: Any) -> None:
    by_partition: dict[int, list[bytes]] = {}
    n = 0
    while min((len(v) for v in by_partition.values()), default=0) < 3 or len(by_partition) < 6:
        key = f"customer_id:C{n}".encode()
        by_partition.setdefault(part.partition_for(key), []).append(key)
        n += 1
    keys = [k for p in (0, 1, 2) for k in by_partition[p][:3]]  # partition 0's, 1's, 2's
    plan = part.assign(keys, batch=2, fetch="chunked")
    flat = [keys[i] for b in plan[0] for i in b]
    p0, p1, p2 = (by_partition[p][:3] for p in (0, 1, 2))
    assert flat == [*p0[:2], *p1[:2], *p2[:2], p0[2], p1[2], p2[2]]
    assert plan[1] == []
