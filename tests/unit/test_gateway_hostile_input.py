"""What a client can send the collection gateway that it did not expect (a review of
2026-12-04, each test failing before its fix):

* a message whose time or money parses but is out of range is one invalid event, never a 500
  for its whole request. The Segment door's promise (ADR 0003 decision 3, README "Auth,
  answers and limits"): a batch with bad messages is answered 200 with an ``errors`` list and
  each bad message goes to the DLQ; the Shopify door's (ADR 0007 decision 1): a payload that
  cannot be mapped is acknowledged and dead-lettered. A 500 broke both: the SDKs retry the
  whole batch until they give up and drop it, good events included; Shopify retries for 48
  hours, then the webhook is lost;
* a Segment ``messageId`` cannot take a Shopify order's event id (the workers would drop the
  order as a copy);
* a sources file that is not UTF-8 is a one-line error, not a traceback.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from shopify_shop import REFERENCE, example, payload
from test_gateway_http import Harness, auth, track
from test_gateway_shopify_http import Harness as ShopifyHarness

from schemas.errors import InvalidEvent
from schemas.inbound.base import Source
from schemas.inbound.segment import Received, map_message
from schemas.inbound.shopify import SHAPES, TOPICS, check_topic
from schemas.touchpoint import Channel, parse_touchpoint


def order(**props: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": "C-9",
        "messageId": "m-bad",
        "properties": {"order_id": "O-1", **props},
    }


#: Messages a client can send whose values parse (ISO 8601, a numeric string) but fall outside
#: what Python's datetime / the default decimal context can compute with.
OUT_OF_RANGE: dict[str, tuple[dict[str, Any], str]] = {
    # 0001-01-01T00:00+01:00 is year 0 in UTC: rfc3339() overflows
    "time-before-year-1-utc": (
        {**track(9, messageId="m-bad"), "timestamp": "0001-01-01T00:00:00+01:00"},
        "timestamp",
    ),
    # Segment's skew correction receivedAt - (sentAt - originalTimestamp) overflows
    "skew-correction-overflow": (
        {
            **track(9, messageId="m-bad"),
            "originalTimestamp": "0001-01-02T00:00:00Z",
            "sentAt": "9999-12-30T00:00:00Z",
        },
        "sentAt",
    ),
    # a money string needing more than 28 digits once rounded to 4 places: quantize() raises
    "money-beyond-decimal-precision": (
        order(
            total="1234567890123456789012345678901.12345",
            products=[{"sku": "S-1", "price": 1}],
        ),
        "properties.total",
    ),
    # a unit price times its quantity past the decimal context's Emax: Overflow
    "line-total-overflow": (
        order(products=[{"sku": "S-1", "price": "9e999999", "quantity": 2}]),
        "properties.products",
    ),
}


@pytest.mark.parametrize("name", sorted(OUT_OF_RANGE))
def test_an_out_of_range_message_is_one_invalid_event_not_a_500_for_its_batch(name: str) -> None:
    bad, field = OUT_OF_RANGE[name]
    gw = Harness()
    status, answer, _ = gw.post("/v1/batch", {"batch": [track(1), bad]}, auth())
    assert status == 200, f"{name}: {status} {answer}"
    [error] = answer["errors"]
    assert error["index"] == 1
    assert error["messageId"] == "m-bad"
    assert error["reason"] == "schema_violation"
    assert error.get("field", "").startswith(field)
    assert [parse_touchpoint(r.value).event_id for r in gw.on("t.raw")] == ["m-1"]
    assert [orjson.loads(r.value) for r in gw.on("t.dlq")] == [bad]


@pytest.mark.parametrize("name", sorted(OUT_OF_RANGE))
def test_the_mapping_reports_out_of_range_values_as_invalid_events(name: str) -> None:
    bad, _ = OUT_OF_RANGE[name]
    source = Source("web-shop", Channel.WEB, "US", "USD")
    with pytest.raises(InvalidEvent):
        map_message(bad, source, Received(datetime(2026, 5, 1, tzinfo=UTC)))


def test_a_shopify_payload_with_an_out_of_range_time_is_dead_lettered_not_a_500() -> None:
    gw = ShopifyHarness()
    data = payload("customers/update")
    data["updated_at"] = "0001-01-01T00:00:00+01:00"
    status, answer = gw.send("customers/update", data, webhook_id="w-range")
    assert status == 200, f"{status} {answer}"
    [dead] = gw.on("t.dlq")
    assert dict(dead.headers)["loom.reason"] == b"schema_violation"
    assert not gw.memory.answered("jsmith", "w-range")  # a dead letter can be sent again


# --- event ids: a public write key must not be able to take another door's ids -----------------
#
# A Segment messageId that fits touchpoint v1's event_id rule is used as the event id verbatim
# (schemas.inbound.base.event_id), and the workers mark events processed by event id alone
# (ADR 0016), whichever source sent them. The Shopify door's ids are derived and predictable
# (``shopify:<shop>:order:<order id>``, ADR 0007 decision 2). A browser's write key is public:
# anyone can send a ``track`` whose messageId is a Shopify order's event id, and the order
# webhook, acknowledged 200 by the gateway, is then dropped by the workers as a duplicate.


def _both_doors() -> tuple[Any, Any]:
    from shopify_shop import OLD_SECRET, SECRET, SHOP
    from test_gateway_http import KEYS

    from streams.gateway.server import Gateway
    from streams.gateway.shopify_shops import Shops
    from streams.gateway.sink import MemorySink
    from streams.settings import LoomSettings, Topics
    from streams.shopify_memory import InMemoryShopifyMemory

    settings = LoomSettings(topics=Topics(raw="t.raw", dlq="t.dlq"), gateway_ops_port=0)
    sink = MemorySink()
    gateway = Gateway(
        settings,
        KEYS,
        shops=Shops.of((SHOP, (SECRET, OLD_SECRET))),
        memory=InMemoryShopifyMemory(),
        sink=sink,
    )
    return gateway, sink


def test_a_segment_message_cannot_take_the_event_id_of_a_shopify_order() -> None:
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer
    from builders import make_context
    from shopify_shop import ORDER_ID, body, headers

    from resolvers import pipeline
    from resolvers.steps import RawRecord
    from resolvers.store import InMemoryStore
    from schemas.normalize import DEFAULT
    from streams.gateway.app import build_app

    gateway, sink = _both_doors()
    squatter = {
        "type": "track",
        "event": "Anything",
        "anonymousId": "a-1",
        "messageId": f"shopify:jsmith:order:{ORDER_ID}",
        "timestamp": "2020-01-01T00:00:00Z",  # before the test context's clock
    }
    order_raw = body(payload("orders/create"))

    async def main() -> tuple[int, int]:
        app = build_app(gateway.front_doors, gateway.metrics, "*")
        async with TestClient(TestServer(app)) as client:
            seg = await client.post("/v1/track", data=orjson.dumps(squatter), headers=auth())
            shop = await client.post(
                "/shopify/webhooks",
                data=order_raw,
                headers=headers("orders/create", order_raw),
            )
            return seg.status, shop.status

    assert asyncio.run(main()) == (200, 200)
    raw = [r for r in sink.records if r.topic == "t.raw"]
    segment_id = parse_touchpoint(raw[0].value).event_id
    shopify_order = next(
        parse_touchpoint(r.value) for r in raw[1:] if parse_touchpoint(r.value).order is not None
    )
    # the profiles lane: the Segment message's batch, then the Shopify webhook's
    store = InMemoryStore()
    records = [RawRecord(r.value, topic="t.raw", partition=0, offset=i) for i, r in enumerate(raw)]
    first = pipeline.run_batch(records[:1], store, make_context, max_bytes=65536, config=DEFAULT)
    assert first.outcomes[("custom", "ok")] == 1, dict(first.outcomes)
    result = pipeline.run_batch(records[1:], store, make_context, max_bytes=65536, config=DEFAULT)
    assert result.outcomes[(shopify_order.type.value, "duplicate")] == 0, (
        f"the Shopify order {shopify_order.event_id} was dropped as a duplicate of the Segment "
        f"message {segment_id}: {dict(result.outcomes)}"
    )
    assert segment_id != shopify_order.event_id


# --- the sources file: a file that is not UTF-8 is a one-line error ---------------------------


def test_a_sources_file_that_is_not_utf8_is_a_one_line_error(tmp_path: Any) -> None:
    """A retailer's editor saving Latin-1 (a comment naming a store in Grünerløkka) must get the
    one-line SourcesError every other unreadable file gets, not a traceback from `loom gateway`."""
    from streams.gateway.sources import SourcesError, WriteKeys

    path = tmp_path / "sources.toml"
    text = (
        "# Oslo: butikken på Grünerløkka\n"
        "[[source]]\nname = 'pos'\nchannel = 'pos'\nwrite_key = 'wk_secret_12345678'\n"
    )
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(SourcesError) as info:
        WriteKeys.from_file(path)
    message = str(info.value)
    assert "UTF-8" in message
    assert "\n" not in message
    assert "wk_secret_12345678" not in message


# --- Shopify signs the body only: a signed body under another topic must not erase anyone ----


@pytest.mark.parametrize("signed_as", ["orders/create", "customers/data_request"])
def test_a_signed_body_of_another_topic_sent_as_customers_redact_erases_nobody(
    signed_as: str,
) -> None:
    """Shopify's HMAC covers the body, not ``X-Shopify-Topic``: whoever holds one signed body
    (a dead letter keeps it with its signature, a proxy's log) can post it again under another
    topic. An order's body (it carries ``customer``) or a data request's, posted as
    ``customers/redact``, was mapped to an erasure of that customer. A redact's body always
    carries ``orders_to_redact`` (Shopify's documented payload) and no ``data_request``: one
    without it is dead-lettered, and nobody is erased."""
    gw = ShopifyHarness()
    data = payload(signed_as)
    status, _ = gw.send("customers/redact", data, webhook_id="w-swapped")
    assert status == 200  # acknowledged (Shopify would retry it for 48 hours otherwise)
    erasures = [
        r for r in gw.on("t.raw") if parse_touchpoint(r.value).type.value == "erasure_requested"
    ]
    assert erasures == []
    [dead] = gw.on("t.dlq")
    assert dict(dead.headers)["loom.reason"] == b"schema_violation"
    assert gw.on("t.privacy") == []


def test_shopifys_documented_redact_still_erases() -> None:
    gw = ShopifyHarness()
    assert gw.send("customers/redact", payload("customers/redact"), webhook_id="w-r")[0] == 200
    [erasure] = [parse_touchpoint(r.value) for r in gw.on("t.raw")]
    assert erasure.type.value == "erasure_requested"


# --- every topic's body is checked against its topic (a review of 2026-12-04) -----------------

#: (the topic Shopify signed the body for, the topic it is posted under again): each mapped
#: before, and each did harm: an erasure of every customer of the shop, a profile export, an
#: order cancelled with its stock released, a count of 0 at a location, an order made of a
#: fulfilment, a profile update made of an order.
CROSS_TOPIC = [
    ("customers/create", "shop/redact"),
    ("orders/create", "customers/data_request"),
    ("orders/create", "orders/cancelled"),
    ("inventory_levels/update", "inventory_levels/disconnect"),
    ("fulfillments/create", "orders/create"),
    ("orders/create", "customers/update"),
    ("customers/update", "customers_marketing_consent/update"),
    ("orders/create", "refunds/create"),
    ("customers/create", "orders/create"),
]


@pytest.mark.parametrize(("signed_as", "posted_as"), CROSS_TOPIC)
def test_a_signed_body_posted_under_another_topic_is_dead_lettered_not_mapped(
    signed_as: str, posted_as: str
) -> None:
    """Shopify signs the body, not ``X-Shopify-Topic``: a signed body of one topic (a dead
    letter keeps it with its signature) posted again under another must not be mapped by that
    topic's mapper. It is acknowledged (a retry would fail the same way) and dead-lettered
    with a schema violation naming the field that does not fit; nothing else is produced."""
    gw = ShopifyHarness()
    assert gw.send(signed_as, payload(signed_as), webhook_id="w-original")[0] == 200
    before = {topic: len(gw.on(topic)) for topic in ("t.raw", "t.privacy", "t.dlq")}
    assert before["t.dlq"] == 0
    status, answer = gw.send(posted_as, payload(signed_as), webhook_id="w-reposted")
    assert (status, answer) == (200, {"success": True})
    assert len(gw.on("t.raw")) == before["t.raw"]
    assert len(gw.on("t.privacy")) == before["t.privacy"]
    [dead] = gw.on("t.dlq")
    kept = dict(dead.headers)
    assert kept["loom.reason"] == b"schema_violation"
    assert b"not a " + posted_as.encode() + b" body" in kept["loom.error_message"]
    assert kept["original.X-Shopify-Topic"] == posted_as.encode()


@pytest.mark.parametrize("topic", sorted(TOPICS))
def test_every_topics_own_body_still_fits_its_topic(topic: str) -> None:
    """Each topic's fixture (Shopify's documented shape) and Shopify's own reference example,
    where there is one, pass the check of their own topic."""
    shapes = [payload(topic)]
    if (REFERENCE / f"{topic.replace('/', '_')}.json").exists():
        shapes.append(example(topic))
    for data in shapes:
        check_topic(topic, data)
    assert SHAPES.keys() == TOPICS.keys()
