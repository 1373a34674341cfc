"""``loom demo``'s story on real Redis: the sections that show an example profile or SKU (stock,
consent, example profiles, the commands to try next) share one read of each index, counted
by Redis itself (``INFO commandstats``)."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import orjson
import redis
from builders import NOW, make_context

from resolvers.pipeline import LANES, run_batch
from resolvers.steps import RawRecord
from resolvers.timefmt import format_time
from schemas.normalize import DEFAULT
from streams.cli import demo_story
from streams.inventory_reader import InventoryReader
from streams.reader import ProfileReader
from streams.redis_store import RedisStore
from streams.settings import LoomSettings

PEOPLE = 8


def sale(i: int) -> bytes:
    """Customer ``c<i>``'s purchase: online for the even ones, in store for the odd ones."""
    online = i % 2 == 0
    event: dict[str, Any] = {
        "event_id": f"e{i}",
        "type": "order_completed" if online else "pos_sale",
        "channel": "web" if online else "pos",
        "occurred_at": format_time(NOW - timedelta(hours=i)),
        "region": "NO",
        "identifiers": {"customer_id": f"c{i}", "email": f"c{i}@example.com"},
        # every third customer gave no consent: an opt-in region's default denies analytics
        "consent": {"analytics": True} if i % 3 else {},
        "order": {
            "order_id": f"o{i}",
            "total": "100.00",
            "currency": "NOK",
            "location_id": "online" if online else "oslo-1",
            "lines": [{"sku": f"SKU-{i % 3}", "quantity": 1, "unit_price": "100.00"}],
        },
    }
    return orjson.dumps(event)


def sscans(client: redis.Redis) -> int:
    stats: dict[str, Any] = client.info("commandstats")  # type: ignore[assignment]
    return int(stats.get("cmdstat_sscan", {}).get("calls", 0))


def test_the_story_reads_the_profiles_and_skus_it_shows_once(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    store = RedisStore(redis_client, prefix=redis_prefix)
    records = [RawRecord(sale(i), "touchpoints.raw", 0, i) for i in range(PEOPLE)]
    for lane in LANES.values():
        run_batch(records, store, make_context, max_bytes=65536, config=DEFAULT, lane=lane)
    story = demo_story.Story(
        settings=LoomSettings(redis_prefix=redis_prefix, development=True),
        profiles=ProfileReader(redis_client, redis_prefix),
        stock=InventoryReader(redis_client, redis_prefix),
        sent=PEOPLE,
        kept=True,
    )
    out = io.StringIO()
    before = sscans(redis_client)
    for section in (
        demo_story._store_sale,
        demo_story._consent,
        demo_story._examples,
        demo_story._next_steps,
    ):
        section(story, out)
    # one SSCAN of the profile index and one of the stock index (was three and two)
    assert sscans(redis_client) - before == 2
    told = out.getvalue()
    assert "analytics is denied" in told  # a customer without consent, from the shared read
    assert "The customer with the most orders" in told or "omnichannel" in told
    [example] = [line for line in told.splitlines() if "loom profile get" in line]
    assert "@example.com" in example
    assert "loom inventory get SKU-" in told
