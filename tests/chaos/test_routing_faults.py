"""Inventory workers routed by SKU (ADR 0014) killed mid-stream: nothing lost, nothing twice.

The router commits raw offsets only after its movement records are acknowledged, and the
applier commits movement offsets only after its Redis commit; both are at least once, and the
per-event-and-SKU markers make every redelivery a no-op. Killing both routed workers with
SIGKILL while they route and apply, then starting new ones, must end exactly like the clean,
direct reference run (``conftest.reference``).
"""

from __future__ import annotations

import signal
from typing import Any

import pytest
from chaos_harness import Chaos, Picture
from test_faults import assert_same
from test_stock_routing_e2e import routed_lag

pytestmark = pytest.mark.chaos

BY_SKU = {"LOOM_INVENTORY_ROUTING": "by-sku"}


def stock_keys(c: Chaos) -> int:
    return sum(1 for _ in c.redis.scan_iter(f"{c.root}:stock:*", count=1000))


def test_routed_inventory_workers_killed_mid_stream_lose_nothing_and_count_nothing_twice(
    chaos: Any, good_input: list[Any], reference: Picture
) -> None:
    c = chaos()
    c.start_lane("profiles")
    first = [c.start_lane("inventory", **BY_SKU) for _ in range(2)]
    for proc in first:
        c.wait_ready(proc)
    c.produce(good_input)
    c.wait_for(lambda: stock_keys(c) > 0, "stock being applied")
    for proc in first:  # mid-stream: routed, applied and committed only in part
        proc.send_signal(signal.SIGKILL)
    for proc in first:
        assert proc.wait(30) == -signal.SIGKILL
    assert routed_lag(c) > 0, "the kill came after everything was done: nothing tested"
    second = [c.start_lane("inventory", **BY_SKU) for _ in range(2)]
    c.wait_idle("profiles")
    c.wait_for(lambda: routed_lag(c) == 0, "everything routed and applied", timeout=120)
    c.wait_drained()
    assert_same(c.picture(), reference)
    assert all(proc.poll() is None for proc in second)
