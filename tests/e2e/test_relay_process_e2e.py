"""``loom relay`` (ADR 0039): with ``LOOM_WORKER_RELAY=false`` the lane workers leave the
outbox to relay processes of their own, on real Kafka, Redis and worker processes."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest
from e2e_harness import Loom, metric

from resolvers.pipeline import LANES

pytestmark = pytest.mark.e2e

NO_RELAY = {"LOOM_WORKER_RELAY": "false"}

#: the topics the outbox feeds (every record a relay delivers lands on one of them)
OUTBOX_TOPICS = (
    "profile_changes",
    "merges",
    "consent_audit",
    "erasures",
    "inventory_changes",
    "inventory_alerts",
    "audience_changes",
)


def sale(n: int) -> dict[str, object]:
    """A store sale of a known customer: a profile change and a stock change."""
    return {
        "event_id": f"sale-{n}",
        "type": "pos_sale",
        "channel": "pos",
        "occurred_at": f"2024-05-01T09:{n % 60:02d}:00+00:00",
        "region": "NO",
        "identifiers": {"customer_id": f"cust-{n % 7}", "email": f"c{n % 7}@example.com"},
        "consent": {"analytics": True, "personalization": True, "marketing": True, "ads": False},
        "order": {
            "order_id": f"o-{n}",
            "total": "100.00",
            "currency": "NOK",
            "location_id": "oslo-1",
            "lines": [{"sku": f"SKU-{n % 3}", "quantity": 1, "unit_price": "100.00"}],
        },
    }


def workers_without_a_relay_after_60_sales(
    loom: Loom, free_ports: Callable[[int], list[int]]
) -> dict[str, int]:
    """A worker per lane with ``LOOM_WORKER_RELAY=false``, once both lanes committed 60 sales;
    each lane's web port."""
    worker_ports = dict(zip(LANES, free_ports(len(LANES)), strict=True))
    for lane, port in worker_ports.items():
        env = {**NO_RELAY, "LOOM_WEB_PORT": str(port), "LOOM_INVENTORY_WEB_PORT": str(port)}
        loom.start_worker(lane, env=env)
    loom.produce([sale(n) for n in range(60)])
    loom.wait_for(lambda: loom.lag() == 0, "both lanes committed everything")
    return worker_ports


@pytest.mark.parametrize(
    "loom", ["plain", pytest.param("secured", marks=pytest.mark.secured)], indirect=True
)
def test_workers_without_a_relay_leave_the_outbox_to_loom_relay_which_delivers_all_of_it(
    loom: Loom, free_ports: Callable[[int], list[int]]
) -> None:
    worker_ports = workers_without_a_relay_after_60_sales(loom, free_ports)
    # the workers relay nothing: what their batches committed waits in the outbox
    assert loom.outbox_length() > 0
    for port in worker_ports.values():
        assert metric(port, "loom_relay_records_total") == 0
        status, body = loom.health(port)
        assert status == 200
        assert "relay" not in body["checks"]

    relay_ports = dict(zip(LANES, free_ports(len(LANES)), strict=True))
    relays = {}
    for lane, port in relay_ports.items():
        env = {"LOOM_RELAY_WEB_PORT": str(port), "LOOM_INVENTORY_RELAY_WEB_PORT": str(port)}
        [relays[lane]] = loom.start_relay(lane, env=env)
    loom.wait_drained()
    for port in relay_ports.values():
        loom.wait_for(lambda p=port: loom.health(p)[0] == 200, "relay ready")
        assert loom.health(port)[1]["checks"] == {"kafka": True, "redis": True, "relay": True}
    # both lanes share one Redis here, so one outbox: one relay delivers it, the other stands
    # by (ADR 0043; before, each read its share and a position could end on a stale level)
    active = [lambda p=port: metric(p, "loom_relay_active") for port in relay_ports.values()]
    loom.wait_for(lambda: sorted(a() for a in active) == [0, 1], "one relay active")

    # every record the relays delivered is on the change topics, once (no fault: no resend)
    topics = loom.settings.topics
    delivered = sum(len(loom.topic_records(getattr(topics, t))) for t in OUTBOX_TOPICS)
    relayed = sum(metric(port, "loom_relay_records_total") for port in relay_ports.values())
    assert delivered == relayed > 0
    # each stock position's last change is its stored level; each profile has its changes
    levels = {k: v["on_hand"] for k, v in loom.decoded(topics.inventory_changes) if k and v}
    for sku in ("SKU-0", "SKU-1", "SKU-2"):
        stock = loom.stock(sku)
        assert stock is not None
        assert levels[f"{sku}@oslo-1"] == stock["locations"]["oslo-1"]["on_hand"] == -20
    changed = {k for k, _ in loom.decoded(topics.profile_changes)}
    assert changed == set(loom.profiles())

    # a stop: the relay finishes its pass and exits 0
    for proc in relays.values():
        proc.send_signal(signal.SIGTERM)
    for proc in relays.values():
        assert proc.wait(30) == 0
        loom.workers.remove(proc)


def test_a_worker_without_a_relay_still_exports_its_outbox_backlog(
    loom: Loom, free_ports: Callable[[int], list[int]]
) -> None:
    """With ``LOOM_WORKER_RELAY=false`` and no ``loom relay`` running, nothing delivers the
    outbox: the workers' ``loom_outbox_length`` and ``loom_outbox_oldest_age_seconds`` are what
    ``LoomOutboxBacklog`` and ``LoomOutboxNotDraining`` see. Before, they stayed at 0 (the
    gauges were registered but only a relay set them), so those alerts could never fire."""
    worker_ports = workers_without_a_relay_after_60_sales(loom, free_ports)
    waiting = loom.outbox_length()
    assert waiting > 0  # nothing delivers it
    for port in worker_ports.values():
        loom.wait_for(
            lambda p=port: metric(p, "loom_outbox_length") == waiting,
            f"the worker on {port} exports the outbox's {waiting} entries",
            timeout=15,
        )
        loom.wait_for(
            lambda p=port: metric(p, "loom_outbox_oldest_age_seconds") > 0,
            f"the worker on {port} exports the oldest entry's age",
            timeout=15,
        )
        assert metric(port, "loom_relay_records_total") == 0
