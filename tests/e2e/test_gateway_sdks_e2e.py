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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from e2e_harness import Loom
from gateway_process import SERVER_KEY, WEB_KEY, GatewayProcess
from journeys import CLIENTS, Person, assert_one_profile


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
