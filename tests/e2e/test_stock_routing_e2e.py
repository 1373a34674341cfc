"""Stock routed by SKU (``LOOM_INVENTORY_ROUTING=by-sku``, ADR 0014) through real ``loom worker``
processes on real Kafka and Redis: two inventory workers never conflict and end exact, a
movement delivered again changes nothing, switching from ``direct`` neither skips nor double
counts, and bad input is dead-lettered with its reason, never stalls the lane.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from confluent_kafka import TopicPartition
from e2e_harness import Loom, metric
from test_inventory_e2e import SKUS, expected_levels, mixed_movements, order, pure_fold

from streams import kafka_clients
from streams.lag import uncommitted

pytestmark = pytest.mark.e2e

BY_SKU = {"LOOM_INVENTORY_ROUTING": "by-sku"}
MULTI_SKUS = tuple(f"SKU-R{i}" for i in range(12))


def multi_sku_orders(n: int) -> list[dict[str, Any]]:
    """Sales of three SKUs each: their movements are split over partitions (and workers)."""
    out = []
    for i in range(n):
        skus = [MULTI_SKUS[(i + k * 5) % len(MULTI_SKUS)] for k in range(3)]
        out.append(
            order(
                f"r-{i}",
                f"2026-11-22T{8 + i % 10:02d}:{i % 60:02d}:00Z",
                location="oslo-1",
                lines=[(sku, 1 + (i + n) % 3) for sku in skus],
                ids={"loyalty_id": f"LR-{i % 7}"},
            )
        )
    return out


def routed_lag(loom: Loom) -> int:
    """Raw records the router group has not committed + movement records the inventory group
    has not: 0 once everything produced is routed and applied."""
    s = loom.settings
    router = kafka_clients.consumer(s, s.router_group_id())
    applier = kafka_clients.consumer(s, s.group_id("inventory"))
    try:
        return uncommitted(router, s.topics.raw, s.partitions) + uncommitted(
            applier, s.topics.stock_movements, s.partitions
        )
    finally:
        router.close()
        applier.close()


def wait_routed(loom: Loom) -> None:
    loom.wait_for(lambda: routed_lag(loom) == 0, "everything routed and applied", timeout=120)
    loom.wait_drained()


def start_routed(loom: Loom, ports: list[int]) -> None:
    for port in ports:
        loom.start_worker("inventory", env={**BY_SKU, "LOOM_INVENTORY_WEB_PORT": str(port)})
    for port in ports:  # both consumers of each worker have their partitions
        loom.wait_for(lambda p=port: loom.health(p)[0] == 200, f"worker on {port} ready")


def levels(loom: Loom, skus: tuple[str, ...]) -> dict[tuple[str, str], tuple[int, int]]:
    out = {}
    for sku in skus:
        doc = loom.stock(sku)
        assert doc is not None, sku
        for loc, v in doc["locations"].items():
            out[(sku, loc)] = (v["on_hand"], v["committed"])
    return out


def test_two_routed_workers_end_exact_without_a_single_conflict(
    loom: Loom, free_ports: Callable[[int], list[int]]
) -> None:
    assert loom.settings.partitions == 6
    ports = free_ports(2)
    start_routed(loom, ports)
    events = mixed_movements(seed=17, n=360) + multi_sku_orders(60)
    loom.produce(events)
    wait_routed(loom)

    assert levels(loom, SKUS + MULTI_SKUS) == expected_levels(events)
    folded = pure_fold([e for e in events if e["event_id"].startswith("m")])
    for sku in SKUS:
        doc = loom.stock(sku)
        assert doc is not None
        assert {k: v for k, v in doc.items() if k != "version"} == folded[sku]
    # one movement record per event and SKU, and no commit of either worker ever conflicted
    pairs = 360 + 60 * 3
    assert sum(metric(p, "loom_routed_movements_total") for p in ports) == pairs
    assert sum(metric(p, "loom_commit_conflicts_total", lane="inventory") for p in ports) == 0
    applied = [metric(p, "loom_events_total", lane="inventory", outcome="ok") for p in ports]
    assert sum(applied) == pairs
    assert all(n > 0 for n in applied), f"one worker applied nothing: {applied}"
    assert all(p.poll() is None for p in loom.workers)


def test_a_movement_delivered_again_changes_nothing(
    loom: Loom, free_ports: Callable[[int], list[int]]
) -> None:
    ports = free_ports(1)
    start_routed(loom, ports)
    events = multi_sku_orders(30)
    loom.produce(events)
    wait_routed(loom)
    before = {sku: loom.stock(sku) for sku in MULTI_SKUS}
    assert levels(loom, MULTI_SKUS) == expected_levels(events)

    # every movement record again (as a router that crashed before committing would), and
    # every raw event again (routed a second time)
    movements = loom.topic_records(loom.settings.topics.stock_movements)
    assert len(movements) == 90
    producer = kafka_clients.producer(loom.settings)
    for msg in movements:
        producer.produce(loom.settings.topics.stock_movements, msg.value(), key=msg.key())
    assert producer.flush(30) == 0
    loom.produce(events)
    wait_routed(loom)

    assert {sku: loom.stock(sku) for sku in MULTI_SKUS} == before  # same versions too
    duplicates = metric(ports[0], "loom_events_total", lane="inventory", outcome="duplicate")
    assert duplicates == 180


def test_switching_an_existing_deployment_to_by_sku_neither_skips_nor_double_counts(
    loom: Loom, free_ports: Callable[[int], list[int]]
) -> None:
    first, second = multi_sku_orders(40)[:20], multi_sku_orders(40)[20:]
    [direct] = loom.start_worker("inventory")
    loom.produce(first)
    loom.wait_idle("inventory")
    loom.stop([direct])
    # a direct worker applied these: routed copies of them (what a router re-routing the past
    # would make) must change nothing, whichever SKU's partition they land on
    loom.produce(second)
    ports = free_ports(1)
    start_routed(loom, ports)
    wait_routed(loom)
    assert levels(loom, MULTI_SKUS) == expected_levels(first + second)
    # the router started where the direct lane stopped: it routed only the second half
    assert metric(ports[0], "loom_routed_movements_total") == 60

    from resolvers import stock_routing
    from resolvers.stages.inventory import movements
    from schemas.touchpoint import parse_touchpoint

    producer = kafka_clients.producer(loom.settings)
    for event in first:
        tp = parse_touchpoint(orjson.dumps(event), max_bytes=1 << 20)
        for r in stock_routing.route(tp.event_id, tp.type.value, movements(tp)):
            producer.produce(
                loom.settings.topics.stock_movements, stock_routing.encode(r), key=r.sku.encode()
            )
    assert producer.flush(30) == 0
    wait_routed(loom)
    assert levels(loom, MULTI_SKUS) == expected_levels(first + second)


def test_after_a_switch_the_router_commits_where_it_started_on_partitions_with_nothing_new(
    loom: Loom, free_ports: Callable[[int], list[int]]
) -> None:
    """A router partition without an offset of its own starts where the direct lane's group
    left the raw topic, but that start was never committed until a new record arrived there:
    ``loom lag`` showed the partition's whole history as the router group's lag, and once the
    direct group's old offsets were deleted (as the README says to) a restarted router began
    that partition again at its earliest offset. The start is committed at once."""
    [direct] = loom.start_worker("inventory")
    loom.produce(multi_sku_orders(20))
    loom.wait_idle("inventory")
    loom.stop([direct])
    s = loom.settings
    lane = kafka_clients.consumer(s, s.group_id("inventory"))
    try:
        ends = {
            tp.partition: tp.offset
            for tp in lane.committed(
                [TopicPartition(s.topics.raw, p) for p in range(s.partitions)],
                timeout=10,
            )
        }
    finally:
        lane.close()
    # partitions with history that the one late event below leaves alone
    assert sum(offset > 0 for offset in ends.values()) >= 2, ends

    ports = free_ports(1)
    start_routed(loom, ports)
    late = multi_sku_orders(21)[20:]  # one event: one raw partition
    loom.produce(late)
    wait_routed(loom)
    assert metric(ports[0], "loom_routed_movements_total") == 3
    assert levels(loom, MULTI_SKUS) == expected_levels([*multi_sku_orders(20), *late])


def test_bad_input_is_dead_lettered_once_with_its_reason_and_never_stalls_the_lane(
    loom: Loom, free_ports: Callable[[int], list[int]]
) -> None:
    ports = free_ports(1)
    start_routed(loom, ports)
    loom.start_worker("profiles")  # the lane that dead-letters bad raw records, as in direct
    bad_raw = order("bad-1", "2026-11-22T09:00:00Z", lines=[("SKU-R0", 1)])
    bad_raw["order"]["lines"][0]["quantity"] = -3  # a schema violation
    good = multi_sku_orders(10)
    loom.produce([b"{not json", orjson.dumps(bad_raw), *good])
    producer = kafka_clients.producer(loom.settings)
    producer.produce(loom.settings.topics.stock_movements, b'{"v": 1, "sku": "x"}', key=b"x")
    assert producer.flush(30) == 0
    wait_routed(loom)
    loom.wait_idle("profiles")

    assert levels(loom, MULTI_SKUS) == expected_levels(good)  # the lane went on
    letters = [
        {k: (v.decode() if isinstance(v, bytes) else v) for k, v in (m.headers() or [])}
        for m in loom.topic_records(loom.settings.topics.dlq)
    ]
    by_source = sorted((h["loom.source_topic"], h["loom.lane"], h["loom.reason"]) for h in letters)
    s = loom.settings
    assert by_source == sorted(
        [
            (s.topics.raw, "profiles", "malformed_json"),
            (s.topics.raw, "profiles", "schema_violation"),
            (s.topics.stock_movements, "inventory", "invalid_movement_record"),
        ]
    )
    # the router counted the stock event it could not decode (a record that is not JSON is
    # not a stock type for it: the profiles lane's alone), the applier dead-lettered the bad
    # movement record
    assert metric(ports[0], "loom_events_total", lane="inventory", outcome="invalid") == 1
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and loom.health(ports[0])[0] != 200:
        time.sleep(0.1)
    assert loom.health(ports[0])[0] == 200


def test_a_rebuild_of_a_routed_deployment_hands_over_to_the_routed_workers(
    loom: Loom, free_ports: Callable[[int], list[int]]
) -> None:
    """``loom rebuild --lane inventory`` computes from the raw topic; the routed workers
    started afterwards continue from where it stopped: nothing lost, nothing twice, and the
    generation their group's offsets carry is the rebuilt Redis'."""
    first, second = multi_sku_orders(40)[:20], multi_sku_orders(40)[20:]
    ports = free_ports(2)
    start_routed(loom, ports[:1])
    loom.produce(first)
    wait_routed(loom)
    loom.stop(loom.workers)
    for key in loom.redis.scan_iter(f"{loom.root}:*", count=1000):  # Redis lost its state
        loom.redis.delete(key)
    loom.env = {**loom.env, **BY_SKU}
    rebuilt = loom.cli("rebuild", "--lane", "inventory")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert levels(loom, MULTI_SKUS) == expected_levels(first)
    start_routed(loom, ports[1:])
    loom.produce(second)
    wait_routed(loom)
    assert levels(loom, MULTI_SKUS) == expected_levels(first + second)
    assert metric(ports[1], "loom_routed_movements_total") == 60  # only the new events


def test_switching_to_by_sku_a_second_time_starts_where_the_direct_lane_stopped(
    loom: Loom, free_ports: Callable[[int], list[int]]
) -> None:
    """by-sku, then direct, then by-sku again: the router group still has its offsets from the
    first period (Kafka keeps an empty group's for ``offsets.retention.minutes``), so it
    resumed from them and routed again everything the direct lane had applied meanwhile. Its
    processed markers last ``LOOM_DEDUPE_TTL_S`` (deleted here, as that TTL does), and a
    ledger forgets the ids it compacted (a sale 60 days older than the position's newest
    movement), so that sale was applied twice. The router starts each partition at the later
    of its own offset and the direct lane's."""
    first = multi_sku_orders(10)
    # keyed like one of ``first``: on a raw partition the router committed in its first period
    shopper = first[0]["identifiers"]
    old_sale = order("sw-old", "2026-09-20T10:00:00Z", lines=[("SKU-R0", 2)], ids=shopper)
    new_sale = order("sw-new", "2026-11-22T10:00:00Z", lines=[("SKU-R0", 1)], ids=shopper)
    ports = free_ports(2)
    start_routed(loom, ports[:1])
    loom.produce(first)
    wait_routed(loom)
    loom.stop(loom.workers)

    [direct] = loom.start_worker("inventory")
    loom.produce([old_sale, new_sale])  # the old one is compacted into the ledger's base
    loom.wait_idle("inventory")
    loom.stop([direct])
    assert levels(loom, MULTI_SKUS) == expected_levels([*first, old_sale, new_sale])
    for key in loom.redis.scan_iter(f"{loom.root}:markers:seen-inventory:*", count=1000):
        loom.redis.delete(key)  # LOOM_DEDUPE_TTL_S later

    start_routed(loom, ports[1:])
    last = multi_sku_orders(12)[10:]
    loom.produce(last)
    wait_routed(loom)
    assert levels(loom, MULTI_SKUS) == expected_levels([*first, old_sale, new_sale, *last])
    assert metric(ports[1], "loom_routed_movements_total") == 3 * len(last)
