"""A lane whose group's committed offsets are gone reads on from where its Redis state was
written, not from the raw topic's first record.

Kafka deletes an empty group's committed offsets ``offsets.retention.minutes`` after its last
member left (7 days by default). A lane stopped that long (an outage, a paused deployment)
started again at the topic's earliest record (``auto.offset.reset=earliest``) and read again
every event it had applied: work for hours on a long-kept raw topic, and once the processed
markers had forgotten them (``LOOM_DEDUPE_TTL_S``, 7 days by default), a stock movement older
than its position's kept ledger moved the stock a second time. The lane now keeps the offsets
it commits beside its state (``P:v1:offsets:{lane}``) and starts a partition without a
committed offset there (``streams.lane_runner``).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import TopicPartition
from e2e_harness import Loom, metric
from test_inventory_e2e import expected_levels
from test_profiles_e2e import order
from test_stock_routing_e2e import (
    BY_SKU,
    MULTI_SKUS,
    levels,
    multi_sku_orders,
    start_routed,
    wait_routed,
)

from resolvers.pipeline import LANES
from streams import kafka_clients

pytestmark = pytest.mark.e2e


def _sales(start: int, n: int) -> list[dict[str, object]]:
    return [
        order(f"x{i}", "2026-11-03T12:00:00+01:00", {"loyalty_id": f"LX-{i}"}, sku="SKU-X")
        for i in range(start, start + n)
    ]


def test_a_lane_whose_group_offsets_expired_reads_on_from_its_state(
    loom: Loom, free_ports: Callable[[int], list[int]]
) -> None:
    first, second = _sales(0, 40), _sales(40, 10)
    workers = loom.start_worker()
    loom.produce(first)
    loom.wait_idle()
    loom.stop(workers)  # a graceful stop: every lane commits what it applied
    # what Kafka's offsets expiry leaves of the two groups: nothing
    s = loom.settings
    expire_groups(loom, [s.group_id(lane) for lane in LANES])
    assert loom.lag() == 2 * len(first)  # both groups: no committed offset left

    loom.produce(second)
    ports = dict(zip(LANES, free_ports(len(LANES)), strict=True))
    loom.start_worker(
        env={
            "LOOM_WEB_PORT": str(ports["profiles"]),
            "LOOM_INVENTORY_WEB_PORT": str(ports["inventory"]),
        }
    )
    loom.wait_idle()
    # only the new sales were read: none of the first forty came round again
    read = {lane: metric(port, "loom_events_total", lane=lane) for lane, port in ports.items()}
    again = {
        lane: metric(port, "loom_events_total", lane=lane, outcome="duplicate")
        for lane, port in ports.items()
    }
    assert again == {lane: 0 for lane in LANES}
    assert read == {lane: len(second) for lane in LANES}
    stock = loom.stock("SKU-X")
    assert stock is not None
    assert stock["locations"]["oslo-1"]["on_hand"] == -(len(first) + len(second))
    assert len(loom.profiles()) == len(first) + len(second)


def test_a_routed_deployment_whose_groups_offsets_expired_routes_nothing_again(
    loom: Loom, free_ports: Callable[[int], list[int]]
) -> None:
    """By SKU (ADR 0014) the router's group reads the raw topic and the lane's the movements:
    both groups' offsets gone, the router started at the raw topic's first record (the direct
    lane's group, its other seed, never committed in this mode) and routed every sale again."""
    sales = multi_sku_orders(30)
    first, second = sales[:20], sales[20:]
    start_routed(loom, free_ports(1))
    loom.produce(first)
    wait_routed(loom)
    loom.stop(loom.workers)
    s = loom.settings
    expire_groups(loom, [s.router_group_id(), s.group_id("inventory")])

    loom.produce(second)
    routed, again = routed_again(loom, free_ports)
    assert (routed, again) == (3 * len(second), 0)  # three SKUs a sale, the new sales only
    assert levels(loom, MULTI_SKUS) == expected_levels(sales)


def test_a_switch_to_by_sku_after_the_direct_groups_offsets_expired_routes_nothing_again(
    loom: Loom, free_ports: Callable[[int], list[int]]
) -> None:
    """A deployment switched to by-sku (ADR 0014) after a stop long enough for Kafka to expire
    the direct lane's group's offsets: the router has no offset of its own, none kept, and the
    direct lane's group none either. The direct lane kept its raw offsets beside its state
    (``P:v1:offsets:inventory``): the router starts there, as it starts at that group's
    committed offset, not at the raw topic's first record."""
    sales = multi_sku_orders(30)
    first, second = sales[:20], sales[20:]
    [direct] = loom.start_worker("inventory")
    loom.produce(first)
    loom.wait_idle("inventory")
    loom.stop([direct])
    s = loom.settings
    expire_groups(loom, [s.group_id("inventory")])

    loom.produce(second)
    routed, again = routed_again(loom, free_ports)
    assert (routed, again) == (3 * len(second), 0)  # three SKUs a sale, the new sales only
    assert levels(loom, MULTI_SKUS) == expected_levels(sales)


def test_a_routed_replay_reset_as_the_readme_says_is_not_held_back_by_the_direct_lanes_kept_offsets(
    loom: Loom, free_ports: Callable[[int], list[int]]
) -> None:
    """README, Replay from an offset, by-sku: reset the router group's offsets and delete the
    direct lane's group's raw ones (its floor). The raw offsets the direct lane kept in Redis
    while it ran ``direct`` stand for that group's only where the router has no offset of its
    own: a router whose group was reset replays from there."""
    sales = multi_sku_orders(30)
    first, second = sales[:20], sales[20:]
    [direct] = loom.start_worker("inventory")
    loom.produce(first)
    loom.wait_idle("inventory")
    loom.stop([direct])
    start_routed(loom, free_ports(1))
    loom.produce(second)
    wait_routed(loom)
    loom.stop(loom.workers)
    s = loom.settings
    expire_groups(loom, [s.group_id("inventory")])
    router = kafka_clients.consumer(s, s.router_group_id())
    router.commit(
        offsets=[TopicPartition(s.topics.raw, p, 0) for p in range(s.partitions)],
        asynchronous=False,
    )
    router.close()

    routed, again = routed_again(loom, free_ports)
    assert (routed, again) == (3 * len(sales), 3 * len(sales))  # all replayed, all no-ops
    assert levels(loom, MULTI_SKUS) == expected_levels(sales)


def test_by_sku_again_after_a_direct_spell_and_expired_groups_routes_nothing_again(
    loom: Loom, free_ports: Callable[[int], list[int]]
) -> None:
    """by-sku, then direct, then by-sku again after a stop long enough for Kafka to expire
    both groups' offsets: the router's kept offsets are from before the direct spell, the
    direct lane's from its end. The router starts at the later of the two, as it starts at
    the later of its group's offset and the direct lane's group's (README, Switch the
    inventory lane's routing), not where it stopped routing before the direct spell."""
    sales = multi_sku_orders(30)
    routed_first, direct_sales, last = sales[:10], sales[10:20], sales[20:]
    start_routed(loom, free_ports(1))
    loom.produce(routed_first)
    wait_routed(loom)
    loom.stop(loom.workers)
    [direct] = loom.start_worker("inventory")
    loom.produce(direct_sales)
    loom.wait_idle("inventory")
    loom.stop([direct])
    s = loom.settings
    expire_groups(loom, [s.router_group_id(), s.group_id("inventory")])

    loom.produce(last)
    routed, again = routed_again(loom, free_ports)
    assert (routed, again) == (3 * len(last), 0)  # three SKUs a sale, the new sales only
    assert levels(loom, MULTI_SKUS) == expected_levels(sales)


def test_a_lane_whose_group_offsets_expired_after_a_rebuild_reads_on_from_the_rebuild(
    loom: Loom, free_ports: Callable[[int], list[int]]
) -> None:
    """``loom rebuild --wipe`` deletes the kept offsets with the lane's state and commits the
    group's offsets as it replays: a partition no worker committed since (no new record there,
    or the lane stopped after the rebuild) had nothing kept, and once Kafka expired the
    group's offsets the lane read the whole topic again, as before ADR 0045."""
    first, second = _sales(0, 40), _sales(40, 10)
    [worker] = loom.start_worker("inventory")
    loom.produce(first)
    loom.wait_idle("inventory")
    loom.stop([worker])
    rebuilt = loom.cli("rebuild", "--lane", "inventory", "--wipe", "--yes")
    assert rebuilt.returncode == 0, rebuilt.stderr
    s = loom.settings
    expire_groups(loom, [s.group_id("inventory")])

    loom.produce(second)
    [port] = free_ports(1)
    loom.start_worker("inventory", env={"LOOM_INVENTORY_WEB_PORT": str(port)})
    loom.wait_idle("inventory")
    read = metric(port, "loom_events_total", lane="inventory")
    again = metric(port, "loom_events_total", lane="inventory", outcome="duplicate")
    assert (read, again) == (len(second), 0)
    stock = loom.stock("SKU-X")
    assert stock is not None
    assert stock["locations"]["oslo-1"]["on_hand"] == -(len(first) + len(second))


def test_a_routed_deployment_whose_groups_offsets_expired_after_a_rebuild_routes_nothing_again(
    loom: Loom, free_ports: Callable[[int], list[int]]
) -> None:
    """The same by SKU (ADR 0014): the rebuild's hand-over commits the router group's raw
    offsets and the lane group's stock-movement offsets; kept beside the state too, they are
    where a router and its lane start once Kafka expired both groups' offsets."""
    sales = multi_sku_orders(30)
    first, second = sales[:20], sales[20:]
    start_routed(loom, free_ports(1))
    loom.produce(first)
    wait_routed(loom)
    loom.stop(loom.workers)
    loom.env = {**loom.env, **BY_SKU}  # the rebuild of a routed deployment hands over
    rebuilt = loom.cli("rebuild", "--lane", "inventory", "--wipe", "--yes", timeout=180)
    assert rebuilt.returncode == 0, rebuilt.stderr
    s = loom.settings
    expire_groups(loom, [s.router_group_id(), s.group_id("inventory")])

    loom.produce(second)
    routed, again = routed_again(loom, free_ports)
    assert (routed, again) == (3 * len(second), 0)
    assert levels(loom, MULTI_SKUS) == expected_levels(sales)


def test_a_lane_upgraded_without_kept_offsets_keeps_its_groups_at_its_start(
    loom: Loom, free_ports: Callable[[int], list[int]]
) -> None:
    """A lane that ran before ADR 0045 has nothing kept; a worker of this release keeps what
    it commits, and a partition with no new record since its upgrade commits nothing: once
    Kafka expired the group's offsets, it was read again from its first record. The group's
    committed offsets found at a worker's start are kept then."""
    first, second = _sales(0, 40), _sales(40, 10)
    [worker] = loom.start_worker("inventory")
    loom.produce(first)
    loom.wait_idle("inventory")
    loom.stop([worker])
    loom.redis.delete(f"{loom.root}:offsets:inventory")  # as a release before ADR 0045 left it
    [port] = free_ports(1)
    [upgraded] = loom.start_worker("inventory", env={"LOOM_INVENTORY_WEB_PORT": str(port)})
    loom.wait_for(lambda: loom.health(port)[0] == 200, "the upgraded worker ready")
    loom.stop([upgraded])  # nothing new came while it ran
    s = loom.settings
    expire_groups(loom, [s.group_id("inventory")])

    loom.produce(second)
    [port] = free_ports(1)
    loom.start_worker("inventory", env={"LOOM_INVENTORY_WEB_PORT": str(port)})
    loom.wait_idle("inventory")
    read = metric(port, "loom_events_total", lane="inventory")
    again = metric(port, "loom_events_total", lane="inventory", outcome="duplicate")
    assert (read, again) == (len(second), 0)


def expire_groups(loom: Loom, groups: list[str]) -> None:
    """Kafka forgets ``groups``' committed offsets, as it does ``offsets.retention.minutes``
    after a group's last member left (deleted: the same to a group that starts again)."""
    admin = kafka_clients.admin(loom.settings)  # held: a client freed answers no future
    for future in admin.delete_consumer_groups(groups).values():
        future.result(timeout=30)


def routed_again(loom: Loom, free_ports: Callable[[int], list[int]]) -> tuple[float, float]:
    """Routed workers started on what waits (``start_routed``), until all of it is routed and
    applied: (movements routed, events the inventory lane found applied already)."""
    [port] = free_ports(1)
    start_routed(loom, [port])
    wait_routed(loom)
    routed = metric(port, "loom_routed_movements_total")
    return routed, metric(port, "loom_events_total", lane="inventory", outcome="duplicate")
