"""A Shopify shop's day, end to end: signed webhooks over HTTP -> a real ``loom gateway`` -> Kafka
-> real ``loom worker`` processes (both lanes) and ``loom privacy-worker`` -> Redis.

The day (payloads built from Shopify's reference examples, tests/fixtures/shopify): stock levels
in the morning; a customer signs up online and gives e-mail marketing consent (its own topic
since API 2025-01); she orders online;
the order ships from the warehouse; she buys in the store at the POS; she brings one unit of the
online order back to the store; a stock take in the warehouse; a guest orders online; Shopify
asks for her data. Shopify sends an inventory level after every change of availability, as it
does. Every webhook is delivered twice (Shopify's retry); a forged one is refused. Then:

* one profile holds her online and in-store orders, ``omnichannel``, her return, and is
  reachable by e-mail (marketing consent); the data export holds that profile;
* stock per location is exactly Shopify's (on hand = Shopify's available; ``online`` holds the
  guest's unshipped units), the totals Shopify's on hand, committed and available;
* every webhook of the day delivered once more, past the gateway's memory of them, changes
  nothing (full Redis state compared);
* after ``customers/redact`` nothing of her is left: no profile, no identifier records, nothing
  in the gateway's memory; the guest and the stock are untouched; the redact again changes
  nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from e2e_harness import Loom
from gateway_process import GatewayProcess
from shopify_deployment import shopify_deployment
from shopify_shop import (
    STORE,
    WAREHOUSE,
    fulfillment_payload,
    headers,
    level_payload,
    order_payload,
    payload,
    refund_payload,
)

EST = timezone(timedelta(hours=-5))
DAY = datetime(2022, 1, 3, tzinfo=EST)
SKU = "SKU-IPOD-PINK"
ADA_ID = 7001
ADA_EMAIL = "ada.shopper@example.com"
GUEST_EMAIL = "guest.buyer@example.com"


def at(hour: int, minute: int = 0) -> datetime:
    return DAY + timedelta(hours=hour, minutes=minute)


@dataclass
class Shopify:
    """Sends a shop's webhooks to the gateway as Shopify does, and keeps them for a replay."""

    gateway: GatewayProcess
    sent: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    ids: int = 0

    def send(self, topic: str, data: dict[str, Any], when: datetime) -> None:
        self.ids += 1
        raw = orjson.dumps(data)
        fired = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
        sent = headers(topic, raw, webhook_id=f"day-{self.ids}", triggered_at=fired)
        self.sent.append((raw, sent))
        for _ in range(2):  # delivered, then retried by Shopify: both must be answered 200
            self.post(raw, sent, expect=200)

    def post(self, raw: bytes, sent: dict[str, str], expect: int) -> None:
        resp = requests.post(f"{self.gateway.url}/shopify/webhooks", data=raw, headers=sent,
                             timeout=30)  # fmt: skip
        assert resp.status_code == expect, resp.text

    def replay(self, start: int = 0) -> None:
        """Every webhook from ``start`` delivered again as Shopify may: the same event (and
        body and signature) under a new webhook id, so the gateway's memory of answered
        webhooks does not catch it: the ids of what it maps to must."""
        for raw, sent in self.sent[start:]:
            again = {**sent, "X-Shopify-Webhook-Id": sent["X-Shopify-Webhook-Id"] + "-again"}
            self.post(raw, again, expect=200)


@pytest.fixture
def deployment(loom: Loom, tmp_path: Path) -> Iterator[tuple[Loom, GatewayProcess]]:
    with shopify_deployment(loom, tmp_path) as deployed:
        yield deployed


def full_state(loom: Loom) -> dict[str, Any]:
    """Every key under the deployment's prefix with its value (the workers' and the gateway's),
    but the markers of answered webhooks and processed events (they only say "seen") and the
    offsets the lanes keep (they say how far the lanes read: ADR 0045)."""
    r = loom.redis
    out: dict[str, Any] = {}
    for raw_key in r.scan_iter(f"{loom.settings.redis_prefix}:*", count=1000):
        key = raw_key.decode()
        if ":webhook:" in key or ":seen" in key or ":v1:offsets:" in key:
            continue
        kind = r.type(raw_key).decode()  # type: ignore[union-attr]
        if kind == "string":
            out[key] = r.get(raw_key)
        elif kind == "hash":
            out[key] = r.hgetall(raw_key)
        elif kind == "set":
            out[key] = sorted(r.smembers(raw_key))  # type: ignore[type-var]
        elif kind == "stream":
            out[key] = [(i, f) for i, f in r.xrange(raw_key)]  # type: ignore[union-attr]
        else:
            out[key] = kind
    return out


def ada(loom: Loom) -> list[dict[str, Any]]:
    return [p for p in loom.profiles().values()
            if str(ADA_ID) in p["identifiers"].get("customer_id", [])]  # fmt: skip


def wait_for_export(loom: Loom, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        exports = loom.decoded(loom.settings.topics.privacy_exports)
        if exports:
            [(_, export)] = exports
            return export  # type: ignore[no-any-return]
        time.sleep(0.5)
    pytest.fail(f"no data export after {timeout}s:\n{loom.logs()}")


def test_a_shops_day_ends_in_one_omnichannel_profile_exact_stock_and_a_clean_redact(
    deployment: tuple[Loom, GatewayProcess],
) -> None:
    loom, gateway = deployment
    shop = Shopify(gateway)
    customer = {
        **payload("customers/create"),
        "id": ADA_ID, "email": ADA_EMAIL, "phone": "+12025550143", "first_name": "Ada",
        "last_name": "Shopper", "state": "enabled",
        "created_at": at(9).isoformat(), "updated_at": at(9).isoformat(),
        # API 2025-01 on: no consent objects here, they come on their own topics (below)
        "email_marketing_consent": None, "sms_marketing_consent": None,
        "default_address": {**payload("customers/create")["default_address"],
                            "customer_id": ADA_ID, "country_code": "US", "city": "Buffalo"},
    }  # fmt: skip

    # Shopify's stock this morning: 20 in the warehouse, 8 in the store
    shop.send("inventory_levels/update", level_payload(WAREHOUSE, 20, at(8)), at(8))
    shop.send("inventory_levels/update", level_payload(STORE, 8, at(8)), at(8))
    shop.send("customers/create", customer, at(9))
    consent = {"customer_id": ADA_ID, "email_address": ADA_EMAIL, "email_marketing_consent": {
        "state": "subscribed", "opt_in_level": "single_opt_in",
        "consent_updated_at": at(9).isoformat()}}  # fmt: skip
    shop.send("customers_email_marketing_consent/update", consent, at(9))
    online = order_payload(5001, 2, at(10), customer=customer, email=ADA_EMAIL)
    shop.send("orders/create", online, at(10))
    shop.send("inventory_levels/update", level_payload(WAREHOUSE, 18, at(10)), at(10))
    shipped = fulfillment_payload(6001, online, WAREHOUSE, at(12))
    shop.send("fulfillments/create", shipped, at(12))
    fulfilled = {**online, "fulfillment_status": "fulfilled", "fulfillments": [shipped]}
    shop.send("orders/fulfilled", fulfilled, at(12))  # the same fulfilment, by the order
    pos = order_payload(5002, 1, at(15), pos_location=STORE, customer=customer, email=ADA_EMAIL)
    shop.send("orders/create", pos, at(15))
    shop.send("fulfillments/create", fulfillment_payload(6002, pos, STORE, at(15)), at(15))
    shop.send("inventory_levels/update", level_payload(STORE, 7, at(15)), at(15))
    shop.send("refunds/create", refund_payload(8001, online, 1, "return", STORE, at(16)), at(16))
    shop.send("inventory_levels/update", level_payload(STORE, 8, at(16)), at(16))
    shop.send("inventory_levels/update", level_payload(WAREHOUSE, 17, at(18)), at(18))  # count
    guest = order_payload(5003, 3, at(19), email=GUEST_EMAIL)
    shop.send("orders/create", guest, at(19))
    shop.send("inventory_levels/update", level_payload(WAREHOUSE, 14, at(19)), at(19))
    asked = {**payload("customers/data_request"), "customer": {"id": ADA_ID, "email": ADA_EMAIL},
             "orders_requested": [5001, 5002]}  # fmt: skip
    loom.wait_idle()  # her profile is complete before she asks for it
    shop.send("customers/data_request", asked, at(20))
    export = wait_for_export(loom)
    loom.wait_idle()
    day = len(shop.sent)

    # a forged webhook (a POS sale of 5, signed with another secret) is refused
    forged = orjson.dumps(order_payload(5999, 5, at(20), pos_location=STORE))
    before = full_state(loom)
    shop.post(forged, headers("orders/create", forged, secret="shpss_forged_secret_1"), 401)

    # --- one profile, online and in store -----------------------------------------------------
    [profile] = ada(loom)
    assert profile["identifiers"]["email"] == [ADA_EMAIL]
    assert profile["identifiers"]["phone"] == ["+12025550143"]
    assert profile["shopping_mode"] == "omnichannel"
    assert (profile["orders_online"], profile["orders_in_store"]) == (1, 1)
    assert profile["revenue"] == {"USD": "597.00"}
    assert profile["returns"]["count"] == 1
    assert profile["preferred_store"] == "ottawa-store"
    assert profile["preferred_payment_method"] in {"card", "cash"}
    assert profile["reachable"]["email"] is True  # Shopify's e-mail marketing consent
    assert profile["consent"]["marketing"]["granted"] is True
    assert profile["traits"]["email_marketing"] == "subscribed"
    assert export["found"] is True
    assert export["profile"]["profile_id"] == profile["profile_id"]
    [guest_profile] = [p for p in loom.profiles().values()
                       if GUEST_EMAIL in p["identifiers"].get("email", [])]  # fmt: skip
    assert guest_profile["orders_online"] == 1

    # --- stock: Shopify's, per location and in total ----------------------------------------
    stock = loom.stock(SKU)
    assert stock is not None
    levels = {loc: (v["on_hand"], v["committed"], v["available"])
              for loc, v in stock["locations"].items()}  # fmt: skip
    assert levels == {
        "ottawa-warehouse": (14, 0, 14),  # 17 counted, 3 sold to the guest, not shipped
        "ottawa-store": (8, 0, 8),  # 8, one sold at the POS, one brought back
        "online": (3, 3, 0),  # the guest's units, committed until they ship
    }
    totals = stock["totals"]
    assert (totals["on_hand"], totals["committed"], totals["available"]) == (25, 3, 22)
    assert loom.stats().get("dlq", 0) == 0
    assert full_state(loom) == before  # the forged webhook changed nothing

    # --- the whole day delivered once more, past the gateway's memory: nothing changes ------
    shop.replay()
    loom.wait_idle()
    assert full_state(loom) == before
    assert len(loom.decoded(loom.settings.topics.privacy_exports)) >= 1

    # --- she asks to be forgotten -----------------------------------------------------------
    redact = {**payload("customers/redact"),
              "customer": {"id": ADA_ID, "email": ADA_EMAIL, "phone": "+12025550143"},
              "orders_to_redact": [5001, 5002]}  # fmt: skip
    shop.send("customers/redact", redact, at(21))
    loom.wait_idle()
    assert ada(loom) == []
    gone = [f"id:{t}:{v}" for t, v in (("customer_id", ADA_ID), ("email", ADA_EMAIL),
                                       ("phone", "+12025550143"))]  # fmt: skip
    assert [k for k in gone if loom.redis.exists(f"{loom.root}:{k}")] == []
    left = {k: v for k, v in full_state(loom).items() if ":profile" in k or ":id:" in k}
    assert ADA_EMAIL not in repr(left)
    assert f"customer_id:{ADA_ID}" not in repr(left)
    memory = f"{loom.settings.redis_prefix}:shopify:v1:jsmith"
    assert loom.redis.smembers(f"{memory}:customers") == set()
    assert not loom.redis.exists(f"{memory}:order:5001")
    assert loom.stock(SKU) == stock  # stock is not personal: untouched
    assert len([p for p in loom.profiles().values()
                if GUEST_EMAIL in p["identifiers"].get("email", [])]) == 1  # fmt: skip
    erased = loom.decoded(loom.settings.topics.erasures)
    assert [v["profile_id"] for _, v in erased] == [profile["profile_id"]]
    after = full_state(loom)
    shop.replay(start=day)  # the redact once more: nothing changes
    loom.wait_idle()
    assert full_state(loom) == after


def wait_until(condition: Any, what: str, loom: Loom, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    pytest.fail(f"{what} after {timeout}s:\n{loom.logs()}")


def test_shop_redact_erases_every_customer_the_shop_sent(
    deployment: tuple[Loom, GatewayProcess],
) -> None:
    loom, gateway = deployment
    shop = Shopify(gateway)
    people = {8001 + i: f"buyer{i}@example.com" for i in range(3)}
    for n, (cid, email) in enumerate(people.items()):
        when = at(9, n).isoformat()
        customer = {**payload("customers/create"), "id": cid, "email": email, "phone": None,
                    "created_at": when, "updated_at": when}  # fmt: skip
        shop.send("customers/create", customer, at(9, n))
        order = order_payload(9100 + n, 1, at(10, n), customer=customer, email=email)
        shop.send("orders/create", order, at(10, n))
    loom.wait_idle()
    assert len(loom.profiles()) == 3
    shop.send("shop/redact", payload("shop/redact"), at(22))
    # the privacy worker turns it into one erasure per customer; the workers apply them
    wait_until(lambda: loom.decoded(loom.settings.topics.privacy_audit), "no audit", loom)
    loom.wait_idle()
    assert loom.profiles() == {}
    assert [k for k in loom.redis.scan_iter(f"{loom.root}:id:*")] == []
    assert list(loom.redis.scan_iter(f"{loom.settings.redis_prefix}:shopify:*")) == []
    [(_, audit)] = loom.decoded(loom.settings.topics.privacy_audit)
    assert (audit["kind"], audit["outcome"], audit["erasures"]) == (
        "shop_redact",
        "erasures_requested",
        3,
    )
    erased = loom.decoded(loom.settings.topics.erasures)
    assert len(erased) == 3
    stock = loom.stock(SKU)
    assert stock is not None
    assert stock["locations"]["online"]["committed"] == 3  # stock is the retailer's, kept
