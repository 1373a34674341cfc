"""Issue 7's end-to-end scenarios: stock through real worker processes on real Kafka and Redis.

Expected stock levels are computed by hand (the day of a store) or by an independent model of
the ledger rule written here (on_hand = latest count + every on_hand delta stamped after it;
committed = every reservation delta), and also cross-checked with the pure fold
``resolvers.inventory.apply_all`` of the same movements.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import redis
from e2e_harness import Loom
from local_infra import RedisServer

from resolvers import inventory as ledger

pytestmark = pytest.mark.e2e

CONSENT = {"analytics": True, "personalization": True, "marketing": False, "ads": False}
DAY = "2026-11-22"


def ev(event_id: str, type_: str, at: str, ids: dict[str, str], **fields: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": type_,
        "channel": fields.pop("channel", "web"),
        "occurred_at": at,
        "region": "NO",
        "identifiers": ids,
        "consent": CONSENT,
        **fields,
    }


def order(
    event_id: str,
    at: str,
    *,
    type_: str = "pos_sale",
    location: str | None = "oslo-1",
    lines: list[tuple[str, int]],
    ids: dict[str, str] | None = None,
    channel: str | None = None,
    **line_extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "order_id": f"o-{event_id}",
        "total": "100.00",
        "currency": "NOK",
        "payment_method": "card",
        "lines": [
            {"sku": sku, "quantity": q, "unit_price": "10.00", **line_extra} for sku, q in lines
        ],
    }
    if location is not None:
        body["location_id"] = location
    default_channel = "pos" if type_ == "pos_sale" or location not in (None, "online") else "web"
    return ev(event_id, type_, at, ids or {}, channel=channel or default_channel, order=body)


def counted(event_id: str, at: str, sku: str, location: str, on_hand: int) -> dict[str, Any]:
    return ev(
        event_id,
        "inventory_counted",
        at,
        {},
        channel="backoffice",
        inventory={"sku": sku, "location_id": location, "on_hand": on_hand, "reason": "count"},
    )


def adjusted(
    event_id: str, at: str, sku: str, location: str, delta: int, reason: str
) -> dict[str, Any]:
    return ev(
        event_id,
        "inventory_adjusted",
        at,
        {},
        channel="backoffice",
        inventory={"sku": sku, "location_id": location, "delta": delta, "reason": reason},
    )


def at(hhmm: str) -> str:
    return f"{DAY}T{hhmm}:00+01:00"


def location(loom: Loom, sku: str, loc: str) -> dict[str, Any]:
    doc = loom.stock(sku)
    assert doc is not None, f"no stock snapshot for {sku}"
    return dict(doc["locations"][loc])


# --- the day of a store ------------------------------------------------------------------------


def store_day() -> list[dict[str, Any]]:
    """oslo-1, SKU-DAY. Hand arithmetic in the comments (on_hand / committed)."""
    return [
        # a sale stamped after the count, produced (so likely processed) before the count
        order("d-sale-1", at("09:00"), lines=[("SKU-DAY", 2)], ids={"loyalty_id": "L-day-1"}),
        counted("d-count", at("08:00"), "SKU-DAY", "oslo-1", 20),  # 20 / 0
        # (the sale above: 18 / 0)
        order("d-sale-2", at("10:00"), lines=[("SKU-DAY", 1)]),  # 17 / 0 cash
        # click and collect: reserved at 11:00, handed over at 16:00
        order(
            "d-cc",
            at("11:00"),
            type_="order_completed",
            lines=[("SKU-DAY", 3)],
            ids={"customer_id": "C-day-2"},
            channel="web",
        ),  # 17 / 3
        # a return: one unit back on the shelf, the other line is not restocked
        ev(
            "d-return",
            "order_returned",
            at("12:00"),
            {"loyalty_id": "L-day-1"},
            channel="pos",
            order={
                "order_id": "o-d-sale-1",
                "total": "10.00",
                "currency": "NOK",
                "location_id": "oslo-1",
                "lines": [
                    {"sku": "SKU-DAY", "quantity": 1, "restock": True},
                    {"sku": "SKU-DAY-DAMAGED", "quantity": 5, "restock": False},
                ],
            },
        ),
        # 18 / 3
        adjusted("d-restock", at("14:00"), "SKU-DAY", "oslo-1", 10, "restock"),  # 28 / 3
        order(
            "d-cc-done",
            at("16:00"),
            type_="order_fulfilled",
            lines=[("SKU-DAY", 3)],
            ids={"customer_id": "C-day-2"},
            channel="web",
        ),  # 25 / 0
        adjusted("d-damage", at("17:00"), "SKU-DAY", "oslo-1", -1, "damage"),  # 24 / 0
    ]


def test_a_day_of_a_store_ends_exact_and_a_late_offline_sale_before_the_count_changes_nothing(
    loom: Loom,
) -> None:
    loom.start_worker()
    loom.produce(store_day())
    loom.wait_idle()
    expected_on_hand = 20 - 2 - 1 + 1 + 10 - 3 - 1
    assert location(loom, "SKU-DAY", "oslo-1") == {
        "on_hand": expected_on_hand,
        "committed": 0,
        "available": expected_on_hand,
        "available_to_sell": expected_on_hand,
        "oversold": False,
        "last_count_at": f"{DAY}T07:00:00Z",
        "updated_at": f"{DAY}T16:00:00Z",
    }
    assert loom.stock("SKU-DAY-DAMAGED") is None  # a return without restock moves no stock
    before = loom.stock("SKU-DAY")

    # an offline till syncs at closing time: a sale rung up at 07:30, before the morning count
    loom.produce(
        [order("d-offline", at("07:30"), lines=[("SKU-DAY", 4)], ids={"loyalty_id": "L-day-3"})]
    )
    loom.wait_idle()
    assert loom.stock("SKU-DAY") == before  # the count already reflects it: not even a write
    # ...but it is still a purchase on the shopper's profile (only the stock ignores it)
    [shopper] = [
        p for p in loom.profiles().values() if p["identifiers"].get("loyalty_id") == ["L-day-3"]
    ]
    assert shopper["orders_in_store"] == 1


def test_inventory_worker_stops_on_sigterm_with_its_offsets_committed(loom: Loom) -> None:
    """The inventory lane's consume loop finishes its batch, commits, leaves the group, exits 0;
    a worker started afterwards has nothing left to do."""
    import signal

    [worker] = loom.start_worker("inventory")
    loom.produce(store_day())
    loom.wait_idle("inventory")
    levels = loom.stock("SKU-DAY")
    loom.stop([worker], signal.SIGTERM)
    assert worker.returncode == 0, loom.logs()
    assert loom.lag("inventory") == 0
    loom.produce([order("after-stop", at("18:00"), lines=[("SKU-DAY", 1)])])
    loom.start_worker("inventory")
    loom.wait_idle("inventory")
    after = loom.stock("SKU-DAY")
    assert levels is not None
    assert after is not None
    oslo, was = after["locations"]["oslo-1"], levels["locations"]["oslo-1"]
    assert oslo["on_hand"] == was["on_hand"] - 1  # only the new sale, nothing applied twice


def test_every_event_delivered_twice_ends_exact(loom: Loom) -> None:
    loom.start_worker()
    events = store_day()
    loom.produce(events + events)  # duplicates in the same batches and across partitions
    loom.wait_idle()
    first = loom.stock("SKU-DAY")
    assert first is not None
    assert first["locations"]["oslo-1"]["on_hand"] == 24
    assert first["locations"]["oslo-1"]["committed"] == 0
    loom.produce(list(reversed(events)))  # and a third time, later, in reverse
    loom.wait_idle()
    assert loom.stock("SKU-DAY") == first  # same document, same version
    # one change record per movement that changed the level, never one per delivery
    changes = [v for _, v in loom.decoded(loom.settings.topics.inventory_changes)]
    # (every movement of the day changes the level, whatever the arrival order)
    assert sorted(c["event_id"] for c in changes) == sorted(e["event_id"] for e in events)
    assert {c["kind"] for c in changes} == {
        "pos_sale",
        "count",
        "order_placed",
        "return_restock",
        "adjustment",
        "order_fulfilled",
    }


# --- many movements, two workers ---------------------------------------------------------------

SKUS = ("SKU-M1", "SKU-M2", "SKU-M3")
LOCATIONS = ("oslo-1", "bergen-2", "online")


def mixed_movements(seed: int, n: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    start = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
    stamps = rng.sample(range(12 * 3600), n)  # distinct seconds in a 12-hour day
    events: list[dict[str, Any]] = []
    open_orders: list[tuple[str, str, int]] = []
    for i, sec in enumerate(stamps):
        when = (start + timedelta(seconds=sec)).isoformat()
        sku, loc = rng.choice(SKUS), rng.choice(LOCATIONS)
        q = rng.randint(1, 4)
        eid = f"m{seed}-{i}"
        kind = rng.choices(
            ["count", "adjust", "pos", "return", "placed", "fulfilled", "cancelled"],
            weights=[1, 2, 4, 1, 3, 2, 1],
        )[0]
        if kind in ("fulfilled", "cancelled") and open_orders:
            sku, loc, q = open_orders.pop(rng.randrange(len(open_orders)))
        elif kind in ("fulfilled", "cancelled"):
            kind = "placed"
        ids = {"loyalty_id": f"LM-{rng.randrange(40)}"} if rng.random() < 0.5 else {}
        if kind == "count":
            events.append(counted(eid, when, sku, loc, rng.randint(0, 60)))
        elif kind == "adjust":
            delta = rng.choice([-3, -2, -1, 1, 2, 5, 12])
            events.append(
                adjusted(eid, when, sku, loc, delta, "restock" if delta > 0 else "shrinkage")
            )
        elif kind == "pos":
            events.append(order(eid, when, location=loc, lines=[(sku, q)], ids=ids))
        elif kind == "return":
            events.append(
                order(
                    eid,
                    when,
                    type_="order_returned",
                    location=loc,
                    lines=[(sku, q)],
                    ids=ids,
                    restock=True,
                )
            )
        else:
            type_ = {
                "placed": "order_completed",
                "fulfilled": "order_fulfilled",
                "cancelled": "order_cancelled",
            }[kind]
            if kind == "placed":
                open_orders.append((sku, loc, q))
            # "online" reservations sometimes name the location, sometimes leave it out
            location_id = None if loc == "online" and rng.random() < 0.5 else loc
            events.append(
                order(
                    eid,
                    when,
                    type_=type_,
                    location=location_id,
                    lines=[(sku, q)],
                    ids=ids,
                    channel="web",
                )
            )
    return events


SIGNS = {  # (on_hand, committed) per event type, written independently of resolvers/
    "order_completed": (0, 1),
    "order_fulfilled": (-1, -1),
    "order_cancelled": (0, -1),
    "pos_sale": (-1, 0),
    "order_returned": (1, 0),
}


def expected_levels(events: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[int, int]]:
    """(sku, location) -> (on_hand, committed) by the ledger rule, computed from the events."""
    counts: dict[tuple[str, str], tuple[datetime, int]] = {}
    deltas: dict[tuple[str, str], list[tuple[datetime, int, int]]] = defaultdict(list)
    for e in events:
        when = datetime.fromisoformat(e["occurred_at"])
        if e["type"] == "inventory_counted":
            inv = e["inventory"]
            key = (inv["sku"], inv["location_id"])
            if key not in counts or when > counts[key][0]:
                counts[key] = (when, inv["on_hand"])
            deltas.setdefault(key, [])  # the position exists even if nothing else moved
        elif e["type"] == "inventory_adjusted":
            inv = e["inventory"]
            deltas[(inv["sku"], inv["location_id"])].append((when, inv["delta"], 0))
        else:
            oh, co = SIGNS[e["type"]]
            loc = e["order"].get("location_id", "online")
            for line in e["order"]["lines"]:
                q = line["quantity"]
                deltas[(line["sku"], loc)].append((when, oh * q, co * q))
    out = {}
    for key, items in deltas.items():
        count_at, base = counts.get(key, (None, 0))
        on_hand = base + sum(d for t, d, _ in items if count_at is None or t > count_at)
        out[key] = (on_hand, sum(c for _, _, c in items))
    return out


def pure_fold(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The pure ledger's snapshot of the same movements, folded in a shuffled order."""
    movements: list[ledger.Movement] = []
    for e in events:
        when = datetime.fromisoformat(e["occurred_at"])
        if e["type"] == "inventory_counted":
            inv = e["inventory"]
            movements.append(
                ledger.Movement(
                    e["event_id"],
                    inv["sku"],
                    inv["location_id"],
                    ledger.MovementKind.COUNT,
                    inv["on_hand"],
                    when,
                )
            )
        elif e["type"] == "inventory_adjusted":
            inv = e["inventory"]
            movements.append(
                ledger.Movement(
                    e["event_id"],
                    inv["sku"],
                    inv["location_id"],
                    ledger.MovementKind.ADJUSTMENT,
                    inv["delta"],
                    when,
                )
            )
        else:
            kind = {
                "order_completed": "order_placed",
                "order_fulfilled": "order_fulfilled",
                "order_cancelled": "order_cancelled",
                "pos_sale": "pos_sale",
                "order_returned": "return_restock",
            }[e["type"]]
            [line] = e["order"]["lines"]
            movements.append(
                ledger.Movement(
                    e["event_id"],
                    line["sku"],
                    e["order"].get("location_id", "online"),
                    ledger.MovementKind(kind),
                    line["quantity"],
                    when,
                )
            )
    random.Random(7).shuffle(movements)
    out = {}
    for sku in SKUS:
        stock, _ = ledger.apply_all(
            ledger.SkuStock.empty(sku), [m for m in movements if m.sku == sku]
        )
        out[sku] = ledger.snapshot(stock)
    return out


def test_two_workers_in_one_group_end_exact_on_many_mixed_movements(loom: Loom) -> None:
    assert loom.settings.partitions == 6
    events = mixed_movements(seed=11, n=360)
    loom.start_worker("inventory")
    loom.start_worker("inventory")
    loom.produce(events)
    loom.wait_idle("inventory")
    expected = expected_levels(events)
    folded = pure_fold(events)
    assert {k[0] for k in expected} == set(SKUS)
    for sku in SKUS:
        doc = loom.stock(sku)
        assert doc is not None
        got = {(sku, loc): (v["on_hand"], v["committed"]) for loc, v in doc["locations"].items()}
        assert got == {k: v for k, v in expected.items() if k[0] == sku}
        for loc in doc["locations"].values():
            assert loc["available"] == loc["on_hand"] - loc["committed"]
            assert loc["available_to_sell"] == max(0, min(loc["on_hand"], loc["available"]))
            assert loc["oversold"] is (loc["available"] < 0)
        assert doc["totals"]["on_hand"] == sum(v[0] for k, v in expected.items() if k[0] == sku)
        assert {k: v for k, v in doc.items() if k != "version"} == folded[sku]
    # both inventory workers are still in the group (it split the partitions between them)
    assert len(loom.workers) == 2
    assert all(p.poll() is None for p in loom.workers)


# --- reservations, oversell, change topics, the reader CLI ------------------------------------


def test_an_online_order_placed_then_cancelled_gives_the_units_back(loom: Loom) -> None:
    loom.start_worker()
    loom.produce([counted("c-count", at("08:00"), "SKU-WEB", "online", 10)])
    loom.wait_idle()
    assert location(loom, "SKU-WEB", "online")["available_to_sell"] == 10

    placed = order(
        "c-placed",
        at("09:00"),
        type_="order_completed",
        location=None,
        lines=[("SKU-WEB", 2)],
        ids={"email": "web.shopper@example.no"},
    )
    loom.produce([placed])
    loom.wait_idle()
    reserved = location(loom, "SKU-WEB", "online")
    assert (
        reserved["on_hand"],
        reserved["committed"],
        reserved["available"],
        reserved["available_to_sell"],
    ) == (10, 2, 8, 8)

    cancelled = order(
        "c-cancelled",
        at("09:30"),
        type_="order_cancelled",
        location=None,
        lines=[("SKU-WEB", 2)],
        ids={"email": "web.shopper@example.no"},
    )
    loom.produce([cancelled])
    loom.wait_idle()
    released = location(loom, "SKU-WEB", "online")
    assert (
        released["on_hand"],
        released["committed"],
        released["available"],
        released["available_to_sell"],
    ) == (10, 0, 10, 10)
    doc = loom.stock("SKU-WEB")
    assert doc is not None
    assert doc["totals"]["committed"] == 0
    assert doc["totals"]["available_to_sell"] == 10


def test_oversell_raises_an_alert_and_the_snapshot_says_oversold(loom: Loom) -> None:
    loom.start_worker()
    loom.produce(
        [
            counted("o-count", at("08:00"), "SKU-LAST", "bergen-2", 1),
            counted("o-count-other", at("08:00"), "SKU-LAST", "oslo-1", 5),
        ]
    )
    loom.wait_idle()
    loom.produce([order("o-sale", at("10:00"), location="bergen-2", lines=[("SKU-LAST", 3)])])
    loom.wait_idle()
    doc = loom.stock("SKU-LAST")
    assert doc is not None
    bergen = doc["locations"]["bergen-2"]
    assert (
        bergen["on_hand"],
        bergen["available"],
        bergen["available_to_sell"],
        bergen["oversold"],
    ) == (-2, -2, 0, True)
    assert doc["locations"]["oslo-1"]["oversold"] is False
    assert doc["totals"]["oversold"] is True
    assert doc["totals"]["available"] == 3  # 5 at oslo-1, -2 at bergen-2

    alerts = loom.decoded(loom.settings.topics.inventory_alerts)
    assert alerts == [
        (
            "SKU-LAST@bergen-2",
            {
                "alert": "oversold",
                "sku": "SKU-LAST",
                "location_id": "bergen-2",
                "available": -2,
                "event_id": "o-sale",
                "occurred_at": "2026-11-22T09:00:00Z",
            },
        )
    ]
    changes = loom.decoded(loom.settings.topics.inventory_changes)
    by_event = {v["event_id"]: (k, v) for k, v in changes}
    assert set(by_event) == {"o-count", "o-count-other", "o-sale"}
    key, sale = by_event["o-sale"]
    assert key == "SKU-LAST@bergen-2"
    assert (
        sale["on_hand"],
        sale["committed"],
        sale["available"],
        sale["available_to_sell"],
        sale["kind"],
    ) == (-2, 0, -2, 0, "pos_sale")
    assert loom.stats().get("oversold") == 1


def test_the_reader_cli_prints_the_snapshot_the_worker_wrote(loom: Loom) -> None:
    loom.start_worker()
    loom.produce(store_day())
    loom.wait_idle()
    done = loom.cli("inventory", "get", "SKU-DAY", "--json")
    assert done.returncode == 0, done.stderr
    doc = orjson.loads(done.stdout)
    assert doc["locations"]["oslo-1"]["on_hand"] == 24
    stored = loom.stock("SKU-DAY")
    assert stored is not None
    assert {k: v for k, v in doc.items() if k != "version"} == {
        k: v for k, v in stored.items() if k != "version"
    }
    assert doc["version"] == stored["version"]

    missing = loom.cli("inventory", "get", "SKU-NEVER-SEEN", "--json")
    assert missing.returncode == 1
    assert "SKU-NEVER-SEEN" in missing.stderr


def test_the_inventory_lane_on_its_own_redis_keeps_all_its_state_there(
    loom: Loom, redis_server: Callable[..., RedisServer]
) -> None:
    """``LOOM_INVENTORY_REDIS_URL`` (ADR 0008): the stock, the lane's processed markers, its
    change stream, outbox and generation marker live on the inventory lane's own Redis; the
    profiles lane's Redis holds none of them (and the inventory Redis no profile); the
    relay still delivers the lane's changes to Kafka, and ``loom inventory get`` reads there."""
    own = redis_server()
    loom.env["LOOM_INVENTORY_REDIS_URL"] = own.url
    inventory_redis = redis.Redis.from_url(own.url)
    root = loom.root
    loom.start_worker()
    loom.produce(store_day())
    loom.wait_idle()
    loom.wait_for(lambda: inventory_redis.xlen(f"{root}:outbox") == 0, "inventory outbox drained")

    raw = inventory_redis.hget(f"{root}:stock:SKU-DAY", "d")
    assert raw is not None
    assert orjson.loads(raw)["locations"]["oslo-1"]["on_hand"] == 24  # type: ignore[arg-type]
    assert loom.stock("SKU-DAY") is None
    for pattern in ("stock:*", "markers:seen-inventory:*", "changes:inventory", "stock-index"):
        assert not list(loom.redis.scan_iter(f"{root}:{pattern}")), pattern
        assert list(inventory_redis.scan_iter(f"{root}:{pattern}")), pattern
    for pattern in ("profile:*", "id:*", "markers:seen:*", "changes:profiles"):
        assert not list(inventory_redis.scan_iter(f"{root}:{pattern}")), pattern
    assert loom.profiles(), "the profiles lane wrote its own Redis"
    assert inventory_redis.get(f"{root}:generation") is not None
    assert loom.redis.get(f"{root}:generation") is not None

    changes = loom.decoded(loom.settings.topics.inventory_changes)
    assert {v["event_id"] for _, v in changes} >= {"d-count", "d-sale-2", "d-restock", "d-damage"}
    assert {k for k, _ in changes} >= {"SKU-DAY@oslo-1"}

    done = loom.cli("inventory", "get", "SKU-DAY", "--json")
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["locations"]["oslo-1"]["on_hand"] == 24
    inventory_redis.close()
