"""A test shop and its webhooks, built from the payload examples in tests/fixtures/shopify.

``SHOP`` is the pure configuration the mapping sees; ``shop_toml`` the gateway's configuration of
it (with its client secrets); :func:`payload` a fixture (a deep copy, to change freely);
:func:`headers` a delivery's headers, signed as Shopify signs them (HMAC-SHA256 of the raw
body with the app's client secret, base64).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from resolvers.stages import inventory as inventory_stage
from schemas.inbound.shopify_model import Delivery, Mapped, OrderMemo, Shop
from schemas.touchpoint import Channel

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "shopify"
#: Shopify's documented examples, verbatim (its README says where they come from).
REFERENCE = FIXTURES / "reference"

DOMAIN = "jsmith.myshopify.com"
#: The fixtures' Shopify locations and items, and what the shop maps them to.
WAREHOUSE, STORE = "24826418", "905684977"
IPOD_ITEM = "271878346596884015"
SECRET, OLD_SECRET = "shpss_test_current_0001", "shpss_test_previous_0001"

#: The order and customer of the fixtures (and of Shopify's examples), and what the gateway
#: remembers of that order once it mapped it as an online order.
ORDER_ID = "820982911946154508"
CUSTOMER_ID = "115310627314723954"
ONLINE_MEMO = OrderMemo(customer_id=CUSTOMER_ID, committed_at="ottawa-warehouse")

SHOP = Shop(
    name="jsmith",
    domain=DOMAIN,
    online_location="ottawa-warehouse",
    region="US",
    currency="USD",
    channel=Channel.WEB,
    locations={WAREHOUSE: "ottawa-warehouse", STORE: "ottawa-store"},
    skus={"IPOD2008PINK": "SKU-IPOD-PINK"},
    inventory_items={IPOD_ITEM: "SKU-IPOD-PINK"},
)


def shop_toml(
    shop: Shop = SHOP, secrets: tuple[str, ...] = (SECRET, OLD_SECRET), name: str | None = None
) -> str:
    """The shop's ``[[shopify]]`` table of the gateway's sources file."""
    online = next(k for k, v in shop.locations.items() if v == shop.online_location)
    quoted = ", ".join(f'"{s}"' for s in secrets)
    table = [
        "[[shopify]]",
        f'name = "{name or shop.name}"',
        f'domain = "{shop.domain}"',
        f"secrets = [{quoted}]",
        f'region = "{shop.region}"',
        f'currency = "{shop.currency}"',
        f'online_location = "{online}"',
        "[shopify.locations]",
        *(f'"{k}" = "{v}"' for k, v in shop.locations.items()),
        "[shopify.skus]",
        *(f'"{k}" = "{v}"' for k, v in shop.skus.items()),
        "[shopify.inventory_items]",
        *(f'"{k}" = "{v}"' for k, v in shop.inventory_items.items()),
    ]
    return "\n".join(table) + "\n"


#: The consent topics (API 2025-01 on): Shopify's webhook reference lists their fields
#: (``customer_id``, ``email_address``, ``email_marketing_consent``; ``id``, ``phone``,
#: ``sms_marketing_consent``) without a sample; their types are the Customer resource's.
CONSENT_TOPICS: dict[str, dict[str, str]] = {
    "customers_email_marketing_consent_update": {
        "customer_id": "id",
        "email_address": "email",
        "email_marketing_consent": "email_marketing_consent",
    },
    "customers_marketing_consent_update": {
        "id": "id",
        "phone": "phone",
        "sms_marketing_consent": "sms_marketing_consent",
    },
}


@cache
def _fixture(topic: str) -> Any:
    return json.loads((FIXTURES / f"{topic.replace('/', '_')}.json").read_text())


def example(name: str, *, shop: str | None = "jsmith") -> dict[str, Any]:
    """Shopify's documented example by topic (``orders/create``) or file stem; the compliance
    examples' ``{shop}`` template is filled in with ``shop`` (``None``: left as documented)."""
    text = (REFERENCE / f"{name.replace('/', '_')}.json").read_text()
    data: dict[str, Any] = json.loads(text if shop is None else text.replace("{shop}", shop))
    return data


def payload(name: str) -> dict[str, Any]:
    """A fixture by topic (``orders/create``) or file stem (``orders_create_pos``)."""
    data: dict[str, Any] = copy.deepcopy(_fixture(name))
    return data


def delivery(
    topic: str,
    *,
    webhook_id: str | None = None,
    triggered_at: datetime | None = None,
    received_at: datetime | None = None,
    event_id: str | None = None,
) -> Delivery:
    now = received_at or datetime(2022, 1, 10, 12, 0, tzinfo=UTC)
    return Delivery(
        topic=topic,
        webhook_id=webhook_id or str(uuid.uuid4()),
        received_at=now,
        triggered_at=triggered_at,
        api_version="2026-07",
        event_id=event_id,
    )


def stock(result: Mapped) -> list[tuple[str, str, int | None]]:
    """The stock moves of a mapped webhook: (sku, location, delta), in touchpoint order."""
    return [
        (t.inventory.sku, t.inventory.location_id, t.inventory.delta)
        for t in result.touchpoints
        if t.inventory is not None
    ]


def ledger(result: Mapped) -> list[tuple[str, str, str, int]]:
    """Every stock movement the inventory lane makes of a mapped webhook's touchpoints, order
    lines included: (sku, location, kind, quantity), sorted."""
    return sorted(
        (m.sku, m.location_id, m.kind.value, m.quantity)
        for t in result.touchpoints
        for m in inventory_stage.movements(t)
    )


def body(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data).encode()


def signature(raw: bytes, secret: str = SECRET) -> str:
    digest = hmac.new(secret.encode(), raw, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def headers(
    topic: str,
    raw: bytes,
    *,
    secret: str = SECRET,
    domain: str = DOMAIN,
    webhook_id: str | None = None,
    triggered_at: str = "2023-03-29T18:00:27.877041743Z",  # deliveries carry nanoseconds
    event_id: str | None = None,
) -> dict[str, str]:
    """A delivery's headers as Shopify sends them (fixtures/shopify/headers.json), signed."""
    out: dict[str, str] = dict(_fixture("headers"))
    out.update(
        {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": signature(raw, secret),
            "X-Shopify-Shop-Domain": domain,
            "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
            "X-Shopify-Triggered-At": triggered_at,
            "X-Shopify-Event-Id": event_id or str(uuid.uuid4()),
        }
    )
    return out


# --- a shop's webhooks, built from the fixtures ------------------------------------------------


def iso(moment: datetime) -> str:
    return moment.isoformat()


def order_payload(
    order_id: int,
    quantity: int,
    at: datetime,
    *,
    pos_location: str | None = None,
    customer: Mapping[str, Any] | None = None,
    email: str | None = None,
    sku: str = "IPOD2008PINK",
    price: str = "199.00",
) -> dict[str, Any]:
    """``orders/create`` of one line: online (the fixture), or a POS sale at ``pos_location``."""
    data = payload("orders_create_pos" if pos_location else "orders/create")
    [template] = data["line_items"][:1]
    item = {**template, "id": order_id * 10, "quantity": quantity, "sku": sku, "price": price}
    total = f"{float(price) * quantity:.2f}"
    data.update(
        {
            "id": order_id,
            "name": f"#{order_id}",
            "created_at": iso(at),
            "processed_at": iso(at),
            "updated_at": iso(at),
            "line_items": [item],
            "total_price": total,
            "customer": dict(customer) if customer is not None else None,
            "email": email,
            "contact_email": email,
            "fulfillments": [],
        }
    )
    if pos_location:
        data["location_id"] = int(pos_location)
    return data


def fulfillment_payload(
    fulfillment_id: int, order: Mapping[str, Any], location: str, at: datetime
) -> dict[str, Any]:
    """``fulfillments/create`` shipping every line of ``order`` from ``location``."""
    data = payload("fulfillments/create")
    data.update(
        {
            "id": fulfillment_id,
            "order_id": order["id"],
            "location_id": int(location),
            "created_at": iso(at),
            "updated_at": iso(at),
            "line_items": [dict(item) for item in order["line_items"]],
            "name": f"{order['name']}.1",
        }
    )
    return data


def refund_payload(
    refund_id: int,
    order: Mapping[str, Any],
    quantity: int,
    restock_type: str,
    location: str | None,
    at: datetime,
) -> dict[str, Any]:
    """``refunds/create`` of ``quantity`` units of the order's line."""
    data = payload("refunds/create")
    [template] = data["refund_line_items"][:1]
    item = order["line_items"][0]
    subtotal = f"{float(item['price']) * quantity:.2f}"
    line = {
        **template,
        "id": refund_id * 10,
        "quantity": quantity,
        "line_item_id": item["id"],
        "line_item": dict(item),
        "restock_type": restock_type,
        "location_id": int(location) if location else None,
        "subtotal": float(subtotal),
        "subtotal_set": {
            "shop_money": {"amount": subtotal, "currency_code": "USD"},
            "presentment_money": {"amount": subtotal, "currency_code": "USD"},
        },
    }
    data.update(
        {
            "id": refund_id,
            "order_id": order["id"],
            "created_at": iso(at),
            "processed_at": iso(at),
            "refund_line_items": [line],
        }
    )
    data["transactions"][0]["amount"] = subtotal
    return data


def level_payload(
    location: str, available: int, at: datetime, item: str = IPOD_ITEM
) -> dict[str, Any]:
    """``inventory_levels/update``: Shopify's available quantity of ``item`` at ``location``."""
    data = payload("inventory_levels/update")
    data.update(
        {
            "inventory_item_id": int(item),
            "location_id": int(location),
            "available": available,
            "updated_at": iso(at),
        }
    )
    return data
