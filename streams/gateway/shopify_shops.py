"""Shopify shops the gateway accepts webhooks from (``[[shopify]]`` tables of the sources file),
and the webhook signature check.

One table per shop::

    [[shopify]]
    name = "jsmith"                      # the touchpoints' source shopify:<name>; metric label
    domain = "jsmith.myshopify.com"      # X-Shopify-Shop-Domain
    secrets = ["shpss_..."]              # the app's client secret; two while rotating it
    region = "US"                        # default region: consent jurisdiction, phone numbers
    currency = "USD"                     # for orders that name none
    online_location = "24826418"         # the Shopify location online orders are committed at
    [shopify.locations]                  # Shopify location id -> Loom location id
    "24826418" = "ottawa-warehouse"
    [shopify.skus]                       # variant SKU -> Loom SKU (unlisted: kept as is)
    "IPOD2008PINK" = "SKU-IPOD-PINK"
    [shopify.inventory_items]            # inventory item id -> Loom SKU (inventory levels)
    "271878346596884015" = "SKU-IPOD-PINK"

A webhook is Shopify's when ``X-Shopify-Hmac-Sha256`` is the base64 HMAC-SHA256 of the raw body
keyed with one of the shop's secrets, compared in constant time; the secrets are held as
:class:`~pydantic.SecretStr` and never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from typing import Annotated, Final, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator

from schemas.inbound.shopify_model import MAX_SHOP_NAME, Shop
from schemas.touchpoint import Channel, Code, Region

#: Shop names are in event ids and metric labels: short, lower-case.
SHOP_NAME: Final = rf"^[a-z][a-z0-9_-]{{0,{MAX_SHOP_NAME - 1}}}$"
SHOP_DOMAIN: Final = r"^[a-z0-9][a-z0-9.-]{0,252}$"
_ID: Final = r"^[0-9]{1,20}$"


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


class ShopEntry(BaseModel):
    """One ``[[shopify]]`` table of the sources file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(pattern=SHOP_NAME)]
    domain: Annotated[str, BeforeValidator(_lower), Field(pattern=SHOP_DOMAIN)]
    secrets: Annotated[
        tuple[Annotated[SecretStr, Field(min_length=8, max_length=256)], ...],
        Field(min_length=1, max_length=4),
    ]
    online_location: Annotated[str, Field(pattern=_ID)]
    region: Region | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    channel: Channel = Channel.WEB
    locations: dict[Annotated[str, Field(pattern=_ID)], Code] = Field(default_factory=dict)
    skus: dict[Annotated[str, Field(min_length=1, max_length=128)], Code] = Field(
        default_factory=dict
    )
    inventory_items: dict[Annotated[str, Field(pattern=_ID)], Code] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _online_location_is_listed(self) -> Self:
        if self.online_location not in self.locations:
            raise ValueError("online_location must be one of the shop's [shopify.locations]")
        return self

    def shop(self) -> Shop:
        return Shop(
            name=self.name,
            domain=self.domain.lower(),
            online_location=self.locations[self.online_location],
            region=self.region,
            currency=self.currency,
            channel=self.channel,
            locations=dict(self.locations),
            skus=dict(self.skus),
            inventory_items=dict(self.inventory_items),
        )


class Shops:
    """The configured shops by domain, and their secrets."""

    def __init__(self, entries: Iterable[ShopEntry] = ()) -> None:
        entries = list(entries)
        self._shops: dict[str, Shop] = {e.domain.lower(): e.shop() for e in entries}
        self._secrets: dict[str, tuple[bytes, ...]] = {
            e.domain.lower(): tuple(s.get_secret_value().encode() for s in e.secrets)
            for e in entries
        }

    @classmethod
    def of(cls, *shops: tuple[Shop, Iterable[str]]) -> Shops:
        """From plain ``(shop, secrets)`` pairs (tests, benchmarks)."""
        out = cls()
        for shop, secrets in shops:
            out._shops[shop.domain] = shop
            out._secrets[shop.domain] = tuple(s.encode() for s in secrets)
        return out

    def __bool__(self) -> bool:
        return bool(self._shops)

    def all(self) -> list[Shop]:
        return sorted(self._shops.values(), key=lambda s: s.name)

    def verified(self, domain: str | None, body: bytes, signature: str | None) -> Shop | None:
        """The shop that signed ``body``; ``None`` for an unknown shop or a missing or wrong
        signature (the same answer, so a caller learns nothing of which shops exist)."""
        if not domain or signature is None:
            return None
        shop = self._shops.get(domain.strip().lower())
        given = _decoded(signature)
        if shop is None or given is None:
            return None
        ok = False
        for secret in self._secrets[shop.domain]:  # every secret, whatever matched first
            expected = hmac.new(secret, body, hashlib.sha256).digest()
            ok |= hmac.compare_digest(expected, given)
        return shop if ok else None


def _decoded(signature: str) -> bytes | None:
    try:
        return base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
