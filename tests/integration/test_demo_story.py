"""``loom demo``'s story on real Redis: the sections that show an example profile or SKU (stock,
consent, example profiles, the commands to try next) share one read of each index, counted
by Redis itself (``INFO commandstats``); the numbers read each lane's counters where the lane
keeps them (its own Redis with ``LOOM_INVENTORY_REDIS_URL``)."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import orjson
import redis
from builders import NOW, make_context

from resolvers.pipeline import INVENTORY, LANES, PROFILES, run_batch
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


def other_database(client: redis.Redis) -> redis.Redis:
    """A client of another database of the same server: a second Redis for the inventory lane."""
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "db": (int(pool.connection_kwargs.get("db", 0)) + 1) % 16}
    return redis.Redis(connection_pool=redis.ConnectionPool(pool.connection_class, **kwargs))


def numbers(story: demo_story.Story) -> dict[str, str]:
    out = io.StringIO()
    demo_story._numbers(story, out)
    return {line[:26].strip(): line[26:] for line in out.getvalue().splitlines()}


def test_the_numbers_read_the_inventory_lanes_own_redis(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """With ``LOOM_INVENTORY_REDIS_URL`` (ADR 0008) the stock index and the inventory lane's
    counters live on that server, which the demo's workers, its reset and its stock section
    use: the numbers read them on the profiles' Redis and said "SKUs with stock 0" and
    "oversell alerts 0" beside a stock table (measured: a demo with the inventory lane on
    database 1 printed 0 SKUs while database 1 held 200)."""
    stock_client = other_database(redis_client)
    try:
        records = [RawRecord(sale(i), "touchpoints.raw", 0, i) for i in range(PEOPLE)]
        records.append(RawRecord(b"{not json", "touchpoints.raw", 0, PEOPLE))
        for client, lane in ((redis_client, PROFILES), (stock_client, INVENTORY)):
            store = RedisStore(client, prefix=redis_prefix)
            run_batch(records, store, make_context, max_bytes=65536, config=DEFAULT, lane=lane)
        oversold = int(stock_client.hget(f"{redis_prefix}:v1:stats", "oversold") or 0)
        assert oversold > 0  # every first sale of a SKU at a location oversells: no count yet
        story = demo_story.Story(
            settings=LoomSettings(redis_prefix=redis_prefix, development=True),
            profiles=ProfileReader(redis_client, redis_prefix),
            stock=InventoryReader(stock_client, redis_prefix),
            sent=len(records),
            kept=True,
        )
        told = numbers(story)
        assert told["SKUs with stock"] == "3"
        assert told["oversell alerts"] == str(oversold)
        assert told["live profiles"] == str(PEOPLE)
        assert told["dead letters (DLQ)"] == "1"  # the profiles lane dead-letters
    finally:
        keys = list(stock_client.scan_iter(match=f"{redis_prefix}*", count=500))
        if keys:
            stock_client.delete(*keys)
        stock_client.close()


def test_the_stock_section_shows_a_store_sale_in_the_stock_and_the_buyers_profile(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """The README opens with "when someone buys in a store, the website knows at once: stock
    is updated and the customer's profile is current", and the stock section said so in
    prose ("a POS sale lowers on hand at its store ...") under a SKU chosen for its online
    orders, without showing any store sale. It now follows one identified customer's store
    purchase into the store's stock of the SKU and into the customer's profile."""
    store = RedisStore(redis_client, prefix=redis_prefix)
    # everyone allows analytics (the order fields) and personalization (recent activity)
    consented = [
        orjson.dumps(
            {**orjson.loads(sale(i)), "consent": {"analytics": True, "personalization": True}}
        )
        for i in range(PEOPLE)
    ]
    records = [RawRecord(value, "touchpoints.raw", 0, i) for i, value in enumerate(consented)]
    for lane in LANES.values():
        run_batch(records, store, make_context, max_bytes=65536, config=DEFAULT, lane=lane)
    profiles = ProfileReader(redis_client, redis_prefix)
    stock = InventoryReader(redis_client, redis_prefix)
    story = demo_story.Story(
        settings=LoomSettings(redis_prefix=redis_prefix, development=True),
        profiles=profiles,
        stock=stock,
        sent=PEOPLE,
        kept=True,
    )
    out = io.StringIO()
    demo_story._store_sale(story, out)
    told = out.getvalue()
    # the odd customers bought in store (oslo-1); which one the story follows is its choice
    shown = [i for i in range(1, PEOPLE, 2) if f"pos_sale e{i} " in told]
    assert len(shown) == 1, told
    (i,) = shown
    buyer = profiles.lookup("customer_id", f"c{i}")
    sold = stock.get(f"SKU-{i % 3}")
    assert buyer is not None
    assert sold is not None
    here = sold["locations"]["oslo-1"]
    assert (
        f"SKU-{i % 3} at oslo-1: on hand {here['on_hand']}, to sell {here['available_to_sell']}"
        in told
    )
    assert f"profile  {buyer['profile_id']} (" in told
    assert f"{buyer['orders_in_store']} in store" in told
