"""Helpers every Shopify topic's mapping shares: ids, values, places, people, touchpoints.

Pure. Errors are :class:`~schemas.errors.InvalidEvent` naming Shopify's own field
(``line_items[0].sku``), never its value.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from schemas.errors import InvalidEvent
from schemas.inbound.base import invalid, mapping, money, rfc3339, text, timestamp
from schemas.inbound.shopify_model import Delivery, OrderMemo, Shop, shopify_id_text
from schemas.touchpoint import Touchpoint, validate_touchpoint

_WEBHOOK_ID: Final = re.compile(r"^[A-Za-z0-9._-]{1,40}$")


# --- ids -----------------------------------------------------------------------------------


def required_id(payload: Mapping[str, Any], name: str, where: str | None = None) -> str:
    out = shopify_id_text(payload.get(name), where or name)
    if out is None:
        raise invalid(where or name, "required")
    return out


def webhook_key(webhook_id: str) -> str:
    """A webhook or event id as it goes into keys and event ids: as sent when short and plain
    (Shopify's are UUIDs), else a digest of it."""
    if _WEBHOOK_ID.fullmatch(webhook_id):
        return webhook_id
    return hashlib.sha256(webhook_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def delivery_key(delivery: Delivery) -> str:
    """What identifies the event behind a delivery, for the event ids of facts that have no
    id of their own (a customer's update, an inventory level, a privacy request):
    ``X-Shopify-Event-Id`` (the same on every delivery of one event, also when Shopify sends
    it again under a new webhook id), else ``X-Shopify-Webhook-Id`` (the same on retries)."""
    return webhook_key(delivery.event_id or delivery.webhook_id)


def event_id(shop: Shop, *parts: str) -> str:
    """``shopify:<shop>:<parts...>``: one business fact, one id, whichever webhook (and retry)
    carries it, so the workers apply it once."""
    out = ":".join(("shopify", shop.name, *parts))
    if len(out) > 128:  # never with the bounded parts used here; kept as a guard
        raise invalid(None, "event id too long")
    return out


def trigger_key(delivery: Delivery) -> str:
    """Sortable digits of the time Shopify fired the webhook (microseconds, UTC), so that of two
    counts stamped in the same second the later fired wins (inventory ties go to the greater
    event id)."""
    moment = delivery.triggered_at or delivery.received_at
    return moment.strftime("%Y%m%d%H%M%S%f") if moment.utcoffset() is not None else "0"


def memo_identifiers(memo: OrderMemo | None) -> dict[str, str]:
    """The identifiers of the customer the gateway remembers for an order (none if unknown)."""
    if memo is None or memo.customer_id is None:
        return {}
    return {"customer_id": memo.customer_id}


# --- values ----------------------------------------------------------------------------------


def when(payload: Mapping[str, Any], *names: str) -> datetime:
    """The first of the payload's timestamps ``names`` that is present; required."""
    for name in names:
        moment = timestamp(payload.get(name), name)
        if moment is not None:
            return moment
    raise invalid(names[0], "required")


def amount(value: object, where: str) -> Decimal:
    return abs(money(value, where))


def shop_money(item: Mapping[str, Any], name: str, where: str) -> tuple[Decimal, str | None]:
    """An amount of Shopify's ``<name>_set.shop_money`` (with its currency), else ``<name>``."""
    money_set = mapping(item.get(f"{name}_set"), f"{where}.{name}_set")
    shop = mapping(money_set.get("shop_money"), f"{where}.{name}_set.shop_money")
    if shop.get("amount") is not None:
        code = shop.get("currency_code")
        return amount(shop["amount"], f"{where}.{name}_set.shop_money.amount"), (
            code if isinstance(code, str) else None
        )
    if item.get(name) is None:
        raise invalid(f"{where}.{name}", "required")
    return amount(item[name], f"{where}.{name}"), None


def objects(value: object, where: str) -> list[Mapping[str, Any]]:
    """A JSON array of objects (absent = empty)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid(where, "must be a list")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise invalid(f"{where}[{i}]", "must be a JSON object")
        out.append(item)
    return out


def sku_of(shop: Shop, line: Mapping[str, Any], where: str) -> str | None:
    """The Loom SKU of a line item: its variant's SKU, renamed by the shop's ``skus``; ``None``
    for lines that keep no stock (gift cards, custom items without a SKU)."""
    if line.get("gift_card") is True:
        return None
    sku = text(line.get("sku"), f"{where}.sku", max_length=128)
    if sku is None:
        return None
    return shop.skus.get(sku, sku)


def stock_tracked(line: Mapping[str, Any]) -> bool:
    """Whether Shopify tracks the stock of a line item's variant, and so whether the line moves
    stock in Loom: ``variant_inventory_management`` is ``"shopify"`` or the handle of a
    fulfilment service that tracks it; ``null`` means the variant does not track inventory
    (Shopify changes no inventory for the line). A line item without the field counts as
    tracked."""
    return line.get("variant_inventory_management", "") is not None


def quantity_of(line: Mapping[str, Any], where: str) -> int:
    value = line.get("quantity")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid(f"{where}.quantity", "must be a whole number >= 0")
    return value


# --- people ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Person:
    """Who a payload is about: identifiers, traits and region, as touchpoint parts."""

    identifiers: dict[str, str] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)
    region: str | None = None

    @property
    def customer_id(self) -> str | None:
        return self.identifiers.get("customer_id")


def path(where: str, name: str) -> str:
    """``name`` inside the object at ``where`` (``""`` = the payload itself)."""
    return f"{where}.{name}" if where else name


def person(
    customer: Mapping[str, Any],
    where: str,
    *,
    email: object = None,
    phone: object = None,
    address: Mapping[str, Any] | None = None,
) -> Person:
    """A Shopify customer object (``where`` is its path) as identifiers, traits and region;
    ``email``/``phone``/``address``: the order's own, used when the customer has none."""
    ids = {
        "customer_id": shopify_id_text(customer.get("id"), path(where, "id")),
        "email": text(customer.get("email"), path(where, "email")) or text(email, "email"),
        "phone": text(customer.get("phone"), path(where, "phone")) or text(phone, "phone"),
    }
    traits: dict[str, Any] = {}
    for name in ("first_name", "last_name"):
        value = customer.get(name)
        if isinstance(value, str) and value.strip():
            traits[name] = value.strip()[:256]
    default = mapping(customer.get("default_address"), path(where, "default_address"))
    home = default or (address or {})
    city, postal = home.get("city"), home.get("zip")
    if isinstance(city, str) and city.strip():
        traits["city"] = city.strip()[:256]
    if isinstance(postal, str) and postal.strip():
        traits["postal_code"] = postal.strip()[:32]
    country = (address or {}).get("country_code") or home.get("country_code")
    region = country.strip().upper() if isinstance(country, str) and len(country) == 2 else None
    return Person({k: v for k, v in ids.items() if v is not None}, traits, region)


# --- building touchpoints --------------------------------------------------------------------


def touchpoint(
    shop: Shop,
    body: dict[str, Any],
    *,
    who: Person | None = None,
    topic: str,
) -> Touchpoint:
    """A validated touchpoint of ``body`` (type, event_id, channel, occurred_at, ...) with the
    shop's source and region, the person's identifiers and traits, and ``name`` = the topic."""
    full: dict[str, Any] = {"source": shop.source, "name": topic, **body}
    if isinstance(full.get("occurred_at"), datetime):
        full["occurred_at"] = rfc3339(full["occurred_at"])
    region = (who.region if who is not None else None) or shop.region
    if region:
        full["region"] = region
    if who is not None:
        if who.identifiers:
            full["identifiers"] = {**who.identifiers, **full.get("identifiers", {})}
        if who.traits:
            full["traits"] = {**who.traits, **full.get("traits", {})}
    try:
        return validate_touchpoint(full)
    except InvalidEvent as exc:  # the mapping built something touchpoint v1 refuses
        where = f"touchpoint.{exc.field}" if exc.field else "touchpoint"
        raise InvalidEvent(exc.reason, exc.message, field=where, details=exc.details) from None
