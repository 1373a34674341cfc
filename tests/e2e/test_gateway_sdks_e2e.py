"""Real Segment SDKs, unmodified, pointed at a real ``loom gateway``, through real workers.

Each person's journey (page as a visitor, identify, track Order Completed, alias of an older
device id) is sent by one SDK: ``segment-analytics-python`` and ``rudder-sdk-python``
in-process, ``@segment/analytics-node`` with the machine's Node (tests/clients, installed by
``make js-deps``). Each must end as exactly one profile in Redis holding the person's
identifiers, the order and its revenue. The browser SDK's journey is in
test_gateway_browser_e2e.py.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from e2e_harness import Loom
from gateway_process import SERVER_KEY, WEB_KEY, GatewayProcess

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ROOT / "tests" / "clients"


@dataclass
class Person:
    sdk: str
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def user_id(self) -> str:
        return f"C-{self.sdk}-{self.tag}"

    @property
    def anonymous_id(self) -> str:
        return f"anon-{self.tag}"

    @property
    def previous_id(self) -> str:  # an older device of the same person, linked by alias
        return f"old-device-{self.tag}"

    @property
    def email(self) -> str:
        return f"Shopper.{self.tag}@Example.COM"

    @property
    def order(self) -> dict[str, Any]:
        return {
            "order_id": f"O-{self.tag}",
            "total": 59.9,
            "revenue": 50.0,
            "currency": "USD",
            "products": [
                {"product_id": "P-1", "sku": "SKU-RED-42", "name": "Red shoe", "price": 29.95,
                 "quantity": 2, "category": "shoes"},
            ],
        }  # fmt: skip


def python_journey(client_class: Callable[..., Any], write_key: str, url: str, p: Person) -> None:
    """The journey through a Python SDK's client (same API in Segment's and RudderStack's)."""
    errors: list[str] = []
    client = client_class(
        write_key,
        host=url,
        on_error=lambda error, _batch: errors.append(str(error)),
        upload_interval=0.1,
        max_retries=3,
    )
    client.page(anonymous_id=p.anonymous_id, category="catalog", name="Shoes",
                properties={"path": "/shoes"})  # fmt: skip
    client.identify(user_id=p.user_id, anonymous_id=p.anonymous_id,
                    traits={"email": p.email, "firstName": "Py"})  # fmt: skip
    client.track(user_id=p.user_id, event="Order Completed", properties=p.order)
    client.alias(previous_id=p.previous_id, user_id=p.user_id)
    client.flush()
    client.join()
    assert errors == [], f"{p.sdk}: {errors}"


def node_journey(write_key: str, url: str, p: Person) -> None:
    node = shutil.which("node")
    assert node, "Node.js is required for the @segment/analytics-node test"
    assert (CLIENTS / "node_modules" / "@segment" / "analytics-node").is_dir(), (
        "run `make js-deps` (npm ci in tests/clients)"
    )
    journey = {
        "writeKey": write_key,
        "host": url,
        "userId": p.user_id,
        "email": p.email,
        "anonymousId": p.anonymous_id,
        "previousId": p.previous_id,
        "order": p.order,
    }
    done = subprocess.run(
        [node, "node_journey.mjs", orjson.dumps(journey).decode()],
        cwd=CLIENTS, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"node journey failed:\n{done.stdout}\n{done.stderr}"


def assert_one_profile(loom: Loom, people: list[Person]) -> None:
    profiles = list(loom.profiles().values())
    assert len(profiles) == len(people), [p["identifiers"] for p in profiles]
    for person in people:
        mine = [p for p in profiles if person.user_id in p["identifiers"].get("customer_id", [])]
        assert len(mine) == 1, f"{person.sdk}: {len(mine)} profiles"
        [profile] = mine
        ids = profile["identifiers"]
        assert ids["customer_id"] == [person.user_id], person.sdk
        assert ids["email"] == [person.email.lower()], person.sdk
        assert set(ids["anonymous_id"]) == {person.anonymous_id, person.previous_id}, person.sdk
        assert set(ids) == {"customer_id", "email", "anonymous_id"}, person.sdk
        assert profile["orders_online"] == 1, person.sdk
        assert Decimal(profile["revenue"]["USD"]) == Decimal("59.9"), person.sdk
        assert profile["last_order"]["order_id"] == f"O-{person.tag}", person.sdk


@pytest.fixture
def gateway(loom: Loom, tmp_path: Path) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(loom.env, tmp_path)
    try:
        yield gw
    finally:
        assert gw.stop() == 0, gw.logs()


def test_server_sdk_journeys_each_end_in_one_profile(loom: Loom, gateway: GatewayProcess) -> None:
    from rudderstack.analytics.client import Client as RudderClient
    from segment.analytics.client import Client as SegmentClient

    loom.start_worker()
    people = [Person("segment-python"), Person("rudder-python"), Person("segment-node")]
    python_journey(SegmentClient, SERVER_KEY, gateway.url, people[0])
    python_journey(RudderClient, SERVER_KEY, gateway.url, people[1])  # gzip bodies
    node_journey(WEB_KEY, gateway.url, people[2])
    events = gateway.metric(
        "loom_gateway_events_total", front_door="segment", source="backend", outcome="accepted"
    ) + gateway.metric(
        "loom_gateway_events_total", front_door="segment", source="web-shop", outcome="accepted"
    )
    assert events >= 12  # four calls per person (an SDK retry may add copies, never fewer)
    loom.wait_idle()
    assert_one_profile(loom, people)
    assert loom.stats().get("dlq", 0) == 0
