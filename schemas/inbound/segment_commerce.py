"""Segment ``track`` events Loom has a type for: the e-commerce spec v2 and sign-up/sign-in.

Names are matched ignoring case, spaces and punctuation (``Order Completed``,
``order_completed`` and ``orderCompleted`` are one event). Every other name becomes a
``custom`` touchpoint with the name kept, so nothing a channel tracks is dropped.

Order events (``Order Completed``, ``Order Refunded``, ``Order Cancelled``) need their
``products``: Loom keeps order lines (stock, category affinities). One exception, as the spec
has it: an ``Order Refunded`` without ``products`` (a full refund names only its
``order_id``) is a return of the whole order, with no lines (the profiles lane gives back the
order it holds: ``resolvers.profile.render``); an empty ``products`` list is still refused.
A line's ``sku`` is the product's ``sku``, else its ``product_id``; ``quantity`` defaults to
1; ``price`` is the unit price. The order's total is ``total``, else ``revenue``, else the
sum of the lines; refunds are read as positive amounts. Money is exact decimal (see
:func:`schemas.inbound.base.money`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final

from schemas.inbound.base import currency, invalid, money, quantity, text
from schemas.touchpoint import MAX_FREEFORM_KEYS, ORDER_TYPES, EventType

#: Segment event name -> touchpoint type. The README's mapping table is this table.
TRACK_TYPES: Final[Mapping[str, EventType]] = MappingProxyType(
    {
        "Product Viewed": EventType.PRODUCT_VIEWED,
        "Product Clicked": EventType.PRODUCT_VIEWED,
        "Product Added": EventType.CART_UPDATED,
        "Product Removed": EventType.CART_UPDATED,
        "Cart Viewed": EventType.CART_UPDATED,
        "Checkout Started": EventType.CART_UPDATED,
        "Wishlist Product Added to Cart": EventType.CART_UPDATED,
        "Order Completed": EventType.ORDER_COMPLETED,
        "Order Refunded": EventType.ORDER_RETURNED,
        "Order Cancelled": EventType.ORDER_CANCELLED,
        "Order Canceled": EventType.ORDER_CANCELLED,
        "Signed Up": EventType.SIGNUP,
        "Signed In": EventType.LOGIN,
        "Segment Consent Preference Updated": EventType.CONSENT_UPDATED,
    }
)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_BY_KEY: Final = {_key(name): kind for name, kind in TRACK_TYPES.items()}
_PRODUCT_TYPES: Final = frozenset({EventType.PRODUCT_VIEWED, EventType.CART_UPDATED})


def track_type(name: str) -> EventType:
    """The touchpoint type of a ``track`` event named ``name`` (``custom`` if none fits)."""
    return _BY_KEY.get(_key(name), EventType.CUSTOM)


def properties(kind: EventType, props: Mapping[str, Any]) -> dict[str, Any]:
    """The touchpoint's ``properties``: the sender's, plus ``sku`` from ``product_id`` on
    product events that name no ``sku`` (Loom's affinities and activity read ``sku``), where
    the contract's key count leaves room (an event whose own properties fit stays valid)."""
    out = dict(props)
    if (
        kind in _PRODUCT_TYPES
        and "sku" not in out
        and isinstance(out.get("product_id"), str)
        and len(out) < MAX_FREEFORM_KEYS
    ):
        out["sku"] = out["product_id"]
    return out


def order(
    kind: EventType, name: str, props: Mapping[str, Any], default_currency: str
) -> dict[str, Any] | None:
    """The touchpoint ``order`` of an order event (``None`` for other types)."""
    if kind not in ORDER_TYPES:
        return None
    products = props.get("products")
    if products is None and kind is EventType.ORDER_RETURNED:
        lines: list[dict[str, Any]] = []  # a full refund: the whole order (module doc)
    elif not isinstance(products, list) or not products:
        raise invalid("properties.products", f"{name} needs its products (order lines)")
    else:
        lines = [_line(p, f"properties.products[{i}]") for i, p in enumerate(products)]
    order_id = text(props.get("order_id"), "properties.order_id", max_length=128)
    if order_id is None:
        raise invalid("properties.order_id", f"required for {name}")
    total = _total(props, lines)
    out: dict[str, Any] = {
        "order_id": order_id,
        "currency": currency(props.get("currency"), "properties.currency", default_currency),
        "lines": lines,
    }
    if total is not None:
        out["total"] = str(total)
    method = props.get("payment_method")
    if isinstance(method, str) and 0 < len(method.strip()) <= 32:
        out["payment_method"] = method.strip()
    return out


def _line(product: object, field: str) -> dict[str, Any]:
    if not isinstance(product, Mapping):
        raise invalid(field, "must be a JSON object")
    sku = text(product.get("sku"), f"{field}.sku", max_length=128) or text(
        product.get("product_id"), f"{field}.product_id", max_length=128
    )
    if sku is None:
        raise invalid(f"{field}.sku", "sku or product_id is required")
    line: dict[str, Any] = {
        "sku": sku,
        "quantity": quantity(product.get("quantity"), f"{field}.quantity"),
    }
    if product.get("price") is not None:
        line["unit_price"] = str(abs(money(product["price"], f"{field}.price")))
    category = product.get("category")
    if isinstance(category, str) and category.strip():
        line["category"] = category.strip()[:256]
    return line


def _total(props: Mapping[str, Any], lines: list[dict[str, Any]]) -> Decimal | None:
    for name in ("total", "revenue"):
        if props.get(name) is not None:
            return abs(money(props[name], f"properties.{name}"))
    if lines and all("unit_price" in ln for ln in lines):
        return sum((Decimal(ln["unit_price"]) * ln["quantity"] for ln in lines), Decimal(0))
    return None
