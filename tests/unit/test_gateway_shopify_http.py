"""The Shopify front door in-process (streams.gateway.shopify_api) on the in-memory sink and
memory: signatures and shops, one answer per webhook id, dead letters that can be sent again,
what the gateway remembers, refusals that leave nothing behind, the 5-second budget.

The same door on real Kafka and Redis: tests/integration/test_gateway_shopify.py; a shop's day
through real workers: tests/e2e/test_shopify_e2e.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from shopify_shop import (
    DOMAIN,
    OLD_SECRET,
    REFERENCE,
    SECRET,
    SHOP,
    body,
    headers,
    payload,
)

from schemas.inbound.shopify_model import OrderMemo, Shop
from schemas.touchpoint import EventType, parse_touchpoint
from streams.gateway import shopify_api
from streams.gateway.app import build_app
from streams.gateway.errors import OverloadedError, UnavailableError
from streams.gateway.records import OutRecord
from streams.gateway.server import Gateway
from streams.gateway.shopify_shops import Shops
from streams.gateway.sink import MemorySink
from streams.gateway.sources import WriteKeys
from streams.settings import LoomSettings, Topics
from streams.shopify_memory import InMemoryShopifyMemory

TOPICS = Topics(raw="t.raw", dlq="t.dlq", privacy_requests="t.privacy")
T = TypeVar("T")


class Harness:
    def __init__(self, shop: Shop = SHOP, memory: InMemoryShopifyMemory | None = None) -> None:
        self.settings = LoomSettings(topics=TOPICS, gateway_ops_port=0)
        self.sink = MemorySink()
        self.memory = memory if memory is not None else InMemoryShopifyMemory()
        shops = Shops.of((shop, (SECRET, OLD_SECRET)))
        self.gateway = Gateway(
            self.settings, WriteKeys.of({}), shops=shops, memory=self.memory, sink=self.sink
        )

    def run(self, scenario: Callable[[TestClient[Any, Any]], Awaitable[T]]) -> T:
        app = build_app(self.gateway.front_doors, self.gateway.metrics, "*")

        async def main() -> T:
            async with TestClient(TestServer(app)) as client:
                return await scenario(client)

        return asyncio.run(main())

    def send(self, topic: str, data: Any, **kw: Any) -> tuple[int, Any]:
        raw = data if isinstance(data, bytes) else body(data)
        sent = headers(topic, raw, **kw)
        return self.post(raw, sent)

    def post(self, raw: bytes, sent: Mapping[str, str]) -> tuple[int, Any]:
        async def scenario(client: TestClient[Any, Any]) -> tuple[int, Any]:
            resp = await client.post("/shopify/webhooks", data=raw, headers=dict(sent))
            return resp.status, await resp.json()

        return self.run(scenario)

    def on(self, topic: str) -> list[OutRecord]:
        return [r for r in self.sink.records if r.topic == topic]

    def types(self) -> list[str]:
        return [parse_touchpoint(r.value).type.value for r in self.on("t.raw")]

    def metric(self, name: str, **labels: str) -> float:
        return self.gateway.registry.get_sample_value(name, labels) or 0.0

    def webhooks(self, topic: str, outcome: str) -> float:
        return self.metric(
            "loom_gateway_shopify_webhooks_total", shop="jsmith", topic=topic, outcome=outcome
        )


@pytest.fixture
def gw() -> Harness:
    return Harness()


def test_a_signed_order_is_acknowledged_after_its_touchpoints_are_and_remembered(
    gw: Harness,
) -> None:
    status, answer = gw.send("orders/create", payload("orders/create"), webhook_id="w-1")
    assert (status, answer) == (200, {"success": True})
    assert gw.types() == ["order_completed", *["inventory_adjusted"] * 4]
    [order] = gw.on("t.raw")[:1]
    assert order.key == b"customer_id:115310627314723954"
    assert gw.memory.order("jsmith", "820982911946154508") == OrderMemo(
        "115310627314723954", "ottawa-warehouse"
    )
    assert list(gw.memory.customers("jsmith")) == ["115310627314723954"]
    assert gw.memory.answered("jsmith", "w-1")
    assert gw.webhooks("orders/create", "mapped") == 1
    assert gw.metric("loom_gateway_events_total", front_door="shopify", source="jsmith",
                     outcome="accepted") == 5  # fmt: skip


@pytest.mark.parametrize(
    "triggered_at",
    ["2025-07-10T16:15:47.000000Z", "2025-07-10T16:15:47.000000123Z"],
    ids=["as-documented", "nanoseconds"],
)
def test_shopifys_documented_example_with_lower_case_headers_is_accepted(
    gw: Harness, triggered_at: str
) -> None:
    """The body byte for byte as Shopify documents it, and the headers lower-cased as HTTP/2
    delivers them (Shopify's reference: treat header names as case-insensitive); the time
    Shopify fired it, to the microsecond, orders the count."""
    raw = (REFERENCE / "inventory_levels_update.json").read_bytes()
    event = "59d6d79c-595f-4e7e-bc6f-72f5c3d0c66f"
    signed = headers("inventory_levels/update", raw, triggered_at=triggered_at, event_id=event)
    sent = {name.lower(): value for name, value in signed.items()}
    assert gw.post(raw, sent) == (200, {"success": True})
    [count] = [parse_touchpoint(r.value) for r in gw.on("t.raw")]
    assert count.event_id == f"shopify:jsmith:level:20250710161547000000:{event}"
    assert count.inventory is not None
    assert (count.inventory.location_id, count.inventory.on_hand) == ("ottawa-warehouse", 10)


def test_the_previous_secret_still_verifies_while_rotating(gw: Harness) -> None:
    assert gw.send("orders/create", payload("orders/create"), secret=OLD_SECRET)[0] == 200


@pytest.mark.parametrize(
    "change",
    [
        {"secret": "shpss_someone_else_01"},
        {"domain": "unknown.myshopify.com"},
        {"X-Shopify-Hmac-Sha256": None},
        {"X-Shopify-Hmac-Sha256": "not base64 !"},
        {"X-Shopify-Shop-Domain": None},
    ],
    ids=["wrong-secret", "unknown-shop", "unsigned", "garbage-signature", "no-shop"],
)
def test_an_unknown_shop_or_a_bad_signature_is_401_and_changes_nothing(
    gw: Harness, change: dict[str, Any]
) -> None:
    raw = body(payload("orders/create"))
    kw = {k: v for k, v in change.items() if not k.startswith("X-")}
    sent = headers("orders/create", raw, **kw)
    for name, value in change.items():
        if name.startswith("X-"):
            sent.pop(name)
            if value is not None:
                sent[name] = value
    status, answer = gw.post(raw, sent)
    assert status == 401
    assert answer["code"] == "unauthorized"
    assert gw.sink.records == []
    assert gw.memory.orders == {}
    assert gw.memory.markers == {}
    assert gw.metric("loom_gateway_unauthorized_total", front_door="shopify") == 1


def test_a_body_changed_after_signing_is_401(gw: Harness) -> None:
    raw = body(payload("orders/create"))
    sent = headers("orders/create", raw)
    tampered = raw.replace(b'"quantity": 2', b'"quantity": 20')
    assert tampered != raw
    assert gw.post(tampered, sent)[0] == 401
    assert gw.sink.records == []


def test_a_retry_of_an_acknowledged_webhook_is_answered_without_producing(gw: Harness) -> None:
    data = payload("orders/create")
    assert gw.send("orders/create", data, webhook_id="w-7")[0] == 200
    produced = len(gw.sink.records)
    assert gw.send("orders/create", data, webhook_id="w-7")[0] == 200
    assert len(gw.sink.records) == produced
    assert gw.webhooks("orders/create", "duplicate") == 1


def test_a_refused_delivery_remembers_nothing_and_its_retry_repeats_the_same_events(
    gw: Harness,
) -> None:
    data = payload("orders/create")
    gw.sink.fail_with = UnavailableError("kafka down")
    broken = gw.send("orders/create", b"{broken", webhook_id="w-9")
    assert broken[0] == 503  # its dead letter was not acknowledged either: not counted
    assert gw.metric("loom_dlq_records_total", stage="gateway", reason="malformed_json") == 0
    status, answer = gw.send("orders/create", data, webhook_id="w-8")
    assert (status, answer["code"]) == (503, "unavailable")
    assert gw.memory.markers == {}
    assert gw.memory.orders == {}
    gw.sink.fail_with = OverloadedError("busy")
    assert gw.send("orders/create", data, webhook_id="w-8")[0] == 429
    gw.sink.fail_with = None
    assert gw.send("orders/create", data, webhook_id="w-8")[0] == 200
    first = [parse_touchpoint(r.value).event_id for r in gw.on("t.raw")]
    assert first[0] == "shopify:jsmith:order:820982911946154508"
    assert gw.webhooks("orders/create", "refused") == 3


def test_redis_down_is_503_before_anything_is_produced(gw: Harness) -> None:
    gw.memory.up = False
    status, answer = gw.send("orders/create", payload("orders/create"))
    assert (status, answer["code"]) == (503, "unavailable")
    assert gw.sink.records == []


def test_kafka_slower_than_shopify_waits_is_503_within_the_deadline(
    gw: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shopify_api, "DEADLINE_S", 0.2)

    async def never(_records: Sequence[OutRecord]) -> None:
        await asyncio.sleep(30)

    monkeypatch.setattr(gw.sink, "deliver", never)
    status, answer = gw.send("orders/create", payload("orders/create"))
    assert (status, answer["code"]) == (503, "unavailable")
    assert gw.memory.markers == {}


def test_an_invalid_payload_is_acknowledged_and_dead_lettered_so_it_can_be_sent_again(
    gw: Harness,
) -> None:
    data = payload("inventory_levels/update")
    data["inventory_item_id"] = 42  # not in the shop's inventory_items
    raw = body(data)
    sent = headers("inventory_levels/update", raw, webhook_id="w-3")
    assert gw.post(raw, sent)[0] == 200
    assert gw.on("t.raw") == []
    [dead] = gw.on("t.dlq")
    assert dead.value == raw  # the body as Shopify signed it
    kept = dict(dead.headers)
    assert kept["loom.stage"] == b"gateway"
    assert kept["loom.reason"] == b"schema_violation"
    assert kept["loom.source_topic"] == b"gateway:shopify:jsmith"
    assert kept["original.X-Shopify-Hmac-Sha256"] == sent["X-Shopify-Hmac-Sha256"].encode()
    assert kept["original.X-Shopify-Topic"] == b"inventory_levels/update"
    assert b"inventory_item_id" in kept["loom.error_message"]
    assert gw.webhooks("inventory_levels/update", "invalid") == 1
    assert gw.metric("loom_dlq_records_total", stage="gateway", reason="schema_violation") == 1
    # not remembered as answered: sent again (same webhook id), it is mapped again, not
    # taken for a retry of one already answered
    assert not gw.memory.answered("jsmith", "w-3")
    # once the item is in the configuration, the dead letter sent again as it is is accepted
    fixed = Harness(
        replace(SHOP, inventory_items={**SHOP.inventory_items, "42": "SKU-42"}), gw.memory
    )
    resent = {
        name.removeprefix("original."): value.decode()
        for name, value in dead.headers
        if name.startswith("original.") and isinstance(value, bytes)
    }
    assert fixed.post(dead.value, resent)[0] == 200
    [count] = [parse_touchpoint(r.value) for r in fixed.on("t.raw")]
    assert count.inventory is not None
    assert count.inventory.sku == "SKU-42"


@pytest.mark.parametrize(
    ("topic", "raw", "reason"),
    [
        ("app/uninstalled", b"{}", "unknown_type"),
        ("orders/create", b"{not json", "malformed_json"),
    ],
)
def test_unmapped_topics_and_broken_json_are_dead_lettered(
    gw: Harness, topic: str, raw: bytes, reason: str
) -> None:
    assert gw.send(topic, raw)[0] == 200
    [dead] = gw.on("t.dlq")
    assert dict(dead.headers)["loom.reason"] == reason.encode()
    label = "other" if topic == "app/uninstalled" else topic
    assert gw.webhooks(label, "invalid") == 1


def test_a_fulfilment_finds_its_order_in_memory_and_a_pos_fulfilment_moves_nothing(
    gw: Harness,
) -> None:
    assert gw.send("orders/create", payload("orders/create"))[0] == 200
    assert gw.send("fulfillments/create", payload("fulfillments/create"))[0] == 200
    assert gw.types()[-1] == "order_fulfilled"
    pos = payload("orders_create_pos")
    assert gw.send("orders/create", pos)[0] == 200
    before = len(gw.sink.records)
    pos_fulfilment = {**pos["fulfillments"][0], "order_id": pos["id"]}
    assert gw.send("fulfillments/create", pos_fulfilment)[0] == 200
    assert len(gw.sink.records) == before
    assert gw.webhooks("fulfillments/create", "ignored") == 1


def test_customers_redact_erases_records_the_request_and_forgets_the_customer(
    gw: Harness,
) -> None:
    order = payload("orders/create")
    order["customer"]["id"] = 191167
    order["id"] = 299938
    assert gw.send("orders/create", order)[0] == 200
    assert gw.memory.order("jsmith", "299938") is not None
    assert gw.send("customers/redact", payload("customers/redact"), webhook_id="w-r")[0] == 200
    erasure = parse_touchpoint(gw.on("t.raw")[-1].value)
    assert erasure.type is EventType.ERASURE_REQUESTED
    [request] = gw.on("t.privacy")
    assert request.key == b"jsmith"
    record = orjson.loads(request.value)
    assert record["kind"] == "customer_redact"
    assert record["erasure_event_id"] == erasure.event_id
    assert gw.memory.order("jsmith", "299938") is None
    assert list(gw.memory.customers("jsmith")) == []
    # an older webhook retried after the redact does not make the gateway remember him again
    order["id"] = 1
    assert gw.send("orders/create", order)[0] == 200
    assert list(gw.memory.customers("jsmith")) == []
    assert gw.memory.order("jsmith", "1") == OrderMemo(None, "ottawa-warehouse")


def test_compliance_topics_without_touchpoints_are_recorded(gw: Harness) -> None:
    assert gw.send("shop/redact", payload("shop/redact"))[0] == 200
    assert gw.send("customers/data_request", payload("customers/data_request"))[0] == 200
    kinds = [orjson.loads(r.value)["kind"] for r in gw.on("t.privacy")]
    assert kinds == ["shop_redact", "data_request"]
    assert gw.on("t.raw") == []


def test_the_shopify_door_needs_a_webhook_id(gw: Harness) -> None:
    raw = body(payload("orders/create"))
    sent = headers("orders/create", raw)
    del sent["X-Shopify-Webhook-Id"]
    assert gw.post(raw, sent)[0] == 400


def test_without_shops_there_is_no_shopify_door() -> None:
    settings = LoomSettings(topics=TOPICS, gateway_ops_port=0)
    gateway = Gateway(settings, WriteKeys.of({}), sink=MemorySink())
    assert [d.name for d in gateway.front_doors] == ["segment"]
    assert SHOP.domain == DOMAIN
