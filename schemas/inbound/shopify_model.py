"""The vocabulary of the Shopify mapping: a shop's configuration, a delivery, what the gateway
remembers of orders, what a webhook maps to, and the privacy request record.

Pure values (frozen dataclasses); the helpers that build touchpoints are in
:mod:`schemas.inbound.shopify_common`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from schemas.inbound.base import invalid, rfc3339
from schemas.touchpoint import Channel, Touchpoint

#: Loom's location of online demand: units an online order took from a store's or warehouse's
#: availability, until shipped (the inventory lane's default for orders without a location).
ONLINE: Final = "online"
#: Longest shop name (it is in every event id, which touchpoint v1 bounds at 128 characters).
MAX_SHOP_NAME: Final = 24


@dataclass(frozen=True, slots=True)
class Shop:
    """One configured Shopify shop, as the mapping needs it (secrets stay in the gateway).

    ``locations``: Shopify location id -> Loom location id (an unlisted location becomes
    ``shopify-<id>``); ``skus``: variant SKU -> Loom SKU (an unlisted SKU is kept as is);
    ``inventory_items``: inventory item id -> Loom SKU (inventory level webhooks name no SKU);
    ``online_location``: the Loom location whose availability online orders take from (the
    Shopify location that fulfils them, mapped).
    """

    name: str
    domain: str
    online_location: str
    region: str | None = None
    currency: str = "USD"
    channel: Channel = Channel.WEB
    locations: Mapping[str, str] = field(default_factory=dict)
    skus: Mapping[str, str] = field(default_factory=dict)
    inventory_items: Mapping[str, str] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """The touchpoints' ``source``."""
        return f"shopify:{self.name}"

    def location(self, shopify_id: object, where: str) -> str:
        """The Loom location of a Shopify location id."""
        key = shopify_id_text(shopify_id, where)
        if key is None:
            raise invalid(where, "a location id is required")
        return self.locations.get(key, f"shopify-{key}")


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the gateway knows of one webhook delivery: its headers and when it arrived.

    ``webhook_id`` (``X-Shopify-Webhook-Id``) is the same on every retry of one delivery;
    ``triggered_at`` (``X-Shopify-Triggered-At``) is when Shopify fired it."""

    topic: str
    webhook_id: str
    received_at: datetime
    triggered_at: datetime | None = None
    api_version: str | None = None
    event_id: str | None = None

    @property
    def at(self) -> datetime:
        """When it happened, for webhooks whose payload has no time of its own."""
        return self.triggered_at or self.received_at


@dataclass(frozen=True, slots=True)
class OrderMemo:
    """What the gateway remembers of an order it mapped (``orders/create``): its customer,
    and where its units were committed for an online order (``None``: a POS sale, nothing
    committed)."""

    customer_id: str | None = None
    committed_at: str | None = None


@dataclass(frozen=True, slots=True)
class RememberOrder:
    order_id: str
    memo: OrderMemo


@dataclass(frozen=True, slots=True)
class RememberCustomer:
    """A customer of the shop (``shop/redact`` erases every one the gateway remembers)."""

    customer_id: str


@dataclass(frozen=True, slots=True)
class RememberGuest:
    """An identifier of a guest checkout (an order without a customer), canonical as the
    pipeline keeps it: ``shop/redact`` erases it. The gateway's memory keeps only its salted
    hash (the suppression hash), never the value."""

    identifier_type: str
    value: str


@dataclass(frozen=True, slots=True)
class ForgetCustomer:
    """``customers/redact``: forget the customer and these orders."""

    customer_id: str
    order_ids: tuple[str, ...] = ()


MemoryOp = RememberOrder | RememberCustomer | RememberGuest | ForgetCustomer


class PrivacyKind(StrEnum):
    CUSTOMER_REDACT = "customer_redact"
    SHOP_REDACT = "shop_redact"
    DATA_REQUEST = "data_request"


@dataclass(frozen=True, slots=True)
class PrivacyRequest:
    """A privacy webhook as Loom records it (``privacy.requests``): no e-mail or phone. A
    ``customers/redact`` is recorded with its customer and orders as salted digests only
    (``customer_digest``, ``order_digests``; :func:`schemas.inbound.shopify_privacy.recorded`)."""

    request_id: str
    kind: PrivacyKind
    shop: str
    shop_domain: str
    received_at: datetime
    customer_id: str | None = None
    order_ids: tuple[str, ...] = ()
    data_request_id: str | None = None
    erasure_event_id: str | None = None
    customer_digest: str | None = None
    order_digests: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "request_id": self.request_id,
            "kind": self.kind.value,
            "shop": self.shop,
            "shop_domain": self.shop_domain,
            "received_at": rfc3339(self.received_at),
            "customer_id": self.customer_id,
            "order_ids": list(self.order_ids),
            "data_request_id": self.data_request_id,
            "erasure_event_id": self.erasure_event_id,
            "customer_digest": self.customer_digest,
            "order_digests": list(self.order_digests),
        }
        return out


@dataclass(frozen=True, slots=True)
class Mapped:
    """What one webhook becomes: touchpoints for the raw topic, what the gateway must remember
    (applied only once Kafka acknowledged the touchpoints), a privacy request, and ``ignored``
    (why nothing was produced, when nothing was)."""

    touchpoints: tuple[Touchpoint, ...] = ()
    memory: tuple[MemoryOp, ...] = ()
    privacy: PrivacyRequest | None = None
    ignored: str | None = None


def shopify_id_text(value: object, where: str) -> str | None:
    """A Shopify numeric id (JSON number or string) as text; ``None`` when absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise invalid(where, "must be an id")
    out = str(value).strip()
    if not out:
        return None
    if len(out) > 64 or not out.isascii() or not out.replace("-", "").isalnum():
        raise invalid(where, "must be an id")
    return out
