"""A changed audiences file reaches the member sets when the workers restart with it, not an
interval later (real Redis and Kafka clients; the worker's own pass, ``_run_once``).

The operator makes ``spenders`` a marketing audience (``marketing = true``) to export it for
a campaign, and restarts the profiles workers. The member set must lose the customer who never
granted marketing before anyone exports it. The pass of the old definitions had taken the
interval's lock (``LOOM_AUDIENCES_REFRESH_S``, an hour by default), so no worker with the new
file ran a pass until it expired: the set kept them that long (with the interval 0 and no
``loom audiences refresh``, until each member's next event)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from builders import NOW

from resolvers.pipeline import LANES, run_batch
from resolvers.steps import RawRecord
from resolvers.timefmt import format_time
from schemas.normalize import DEFAULT
from streams import audience_schedule
from streams.runtime import Runtime, build_runtime
from streams.settings import LoomSettings

pytestmark = pytest.mark.integration

BEFORE = '[audiences.spenders]\nexpression = "orders >= 1"\n'
AFTER = '[audiences.spenders]\nexpression = "orders >= 1"\nmarketing = true\n'


def _order(i: int, marketing: bool) -> RawRecord:
    event: dict[str, Any] = {
        "event_id": f"e{i}", "type": "order_completed", "channel": "web",
        "occurred_at": format_time(NOW), "region": "NO",
        "identifiers": {"customer_id": f"c{i}"},
        "consent": {"analytics": True, "personalization": True, "marketing": marketing},
        "order": {"order_id": f"o{i}", "total": "100.00", "currency": "NOK",
                  "lines": [{"sku": "S-1", "quantity": 1, "unit_price": "100.00"}]},
    }  # fmt: skip
    return RawRecord(orjson.dumps(event), "touchpoints.raw", 0, i)


@pytest.fixture
def runtimes(
    kafka_bootstrap: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> Iterator[tuple[Runtime, Runtime]]:
    """Profiles workers' runtimes before and after the file changed."""
    made = []
    for name, text in (("before", BEFORE), ("after", AFTER)):
        path = tmp_path / f"{name}.toml"
        path.write_text(text)
        settings = LoomSettings(
            kafka_bootstrap=kafka_bootstrap,
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            audiences_file=path,
        )
        rt = build_runtime(settings, LANES["profiles"])
        made.append(replace(rt, clock=lambda: NOW))
    yield made[0], made[1]
    for rt in made:
        rt.redis.close()


def _members(client: redis.Redis, rt: Runtime) -> set[str]:
    key = f"{rt.settings.redis_prefix}:v1:audience:spenders"
    return {m.decode() for m in client.smembers(key)}  # type: ignore[union-attr]


def test_a_worker_restarted_with_a_changed_file_applies_it_at_once(
    runtimes: tuple[Runtime, Runtime], redis_client: redis.Redis
) -> None:
    before, after = runtimes
    store = before.store
    records = [_order(0, marketing=True), _order(1, marketing=False)]
    lane = LANES["profiles"]
    run_batch(records, store, before.context, max_bytes=65536, config=DEFAULT, lane=lane)
    assert len(_members(redis_client, before)) == 2
    audience_schedule._run_once(before, store)  # type: ignore[arg-type]  # the hour's pass

    audience_schedule._run_once(after, after.store)  # type: ignore[arg-type]  # restarted

    assert _members(redis_client, after) == {_profile_of(redis_client, after, "c0")}


def _profile_of(client: redis.Redis, rt: Runtime, customer: str) -> str:
    root = f"{rt.settings.redis_prefix}:v1"
    for raw in client.smembers(f"{root}:profile-index"):  # type: ignore[union-attr]
        doc = orjson.loads(client.hget(f"{root}:profile:{raw.decode()}", "d"))  # type: ignore[arg-type]
        if doc["identifiers"]["customer_id"] == [customer]:
            return str(doc["profile_id"])
    raise AssertionError(customer)
