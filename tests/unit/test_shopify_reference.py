"""Shopify's own documented webhook examples (tests/fixtures/shopify/reference, verbatim; the
README there says where they come from) through the mapping.

Each topic Loom maps has its example here, and what it becomes is spelled out: the documented
payload is accepted and gives these touchpoints (or, where the example has nothing to map,
that and why). That the hand-made fixtures keep the examples' shape:
test_shopify_fixture_shape.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from shopify_shop import (
    CONSENT_TOPICS,
    ONLINE_MEMO,
    REFERENCE,
    SHOP,
    delivery,
    example,
    ledger,
    stock,
)
from shopify_shop import CUSTOMER_ID as CUSTOMER
from shopify_shop import ORDER_ID as ORDER

from schemas.errors import InvalidEvent
from schemas.inbound.shopify import TOPICS, map_webhook, memo_order_id
from schemas.inbound.shopify_model import (
    ONLINE,
    ForgetCustomer,
    Mapped,
    OrderMemo,
    PrivacyKind,
    RememberCustomer,
    RememberGuest,
    RememberOrder,
)
from schemas.touchpoint import EventType, Touchpoint

#: The documented order's five lines (SKU, price); the shop renames none of these SKUs.
ORDER_LINES = [
    ("SKU2006-001", Decimal("89.99")),
    ("LENS-PROTECT-2YR", Decimal("19.99")),
    ("CASE-LEATHER-PREM", Decimal("24.99")),
    ("SKU2006-020", Decimal("159.99")),
    ("SKU2006-035", Decimal("119.99")),
]
SKUS = sorted(sku for sku, _ in ORDER_LINES)
#: Shopify's examples' times are 2021-12-31T19:00:00-05:00.
EXAMPLE_TIME = datetime(2022, 1, 1, 0, 0, tzinfo=UTC)
DELIVERED = datetime(2022, 1, 10, 12, 0, tzinfo=UTC)  # shopify_shop.delivery's received_at


def mapped(topic: str, memo: OrderMemo | None = None, **kw: Any) -> Mapped:
    return map_webhook(SHOP, delivery(topic, webhook_id="w-1", **kw), example(topic), memo)


def of_type(result: Mapped, kind: EventType) -> list[Touchpoint]:
    return [t for t in result.touchpoints if t.type is kind]


def moves(result: Mapped) -> list[tuple[str, str, int | None]]:
    return sorted(stock(result))


def test_every_topic_loom_maps_has_a_documented_example() -> None:
    """Or, for the consent topics the reference lists without a sample, the documented fields
    (tests/shopify_shop.py CONSENT_TOPICS)."""
    documented = {p.stem for p in REFERENCE.glob("*.json")} | set(CONSENT_TOPICS)
    assert {t.replace("/", "_") for t in TOPICS} <= documented


# --- orders ---------------------------------------------------------------------------------


def test_the_documented_order_is_an_online_order_of_five_lines_for_its_customer() -> None:
    result = mapped("orders/create")
    [order] = of_type(result, EventType.ORDER_COMPLETED)
    assert order.event_id == f"shopify:jsmith:order:{ORDER}"
    assert order.occurred_at == EXAMPLE_TIME  # processed_at, with its -05:00 offset
    assert order.channel.value == "web"  # source_name "web"
    assert order.region == "US"  # the billing address's country_code
    assert order.identifiers.as_mapping() == {"customer_id": CUSTOMER, "email": "john@example.com"}
    assert order.order is not None
    assert (order.order.location_id, order.order.currency) == (ONLINE, "USD")
    assert order.order.total == Decimal("404.95")  # total_price, a string in the payload
    assert order.order.payment_method == "card"  # payment_gateway_names ["visa", "bogus"]
    assert [(ln.sku, ln.quantity, ln.unit_price) for ln in order.order.lines] == [
        (sku, 1, price) for sku, price in ORDER_LINES
    ]
    assert order.properties == {"order_name": "#9999", "source_name": "web"}
    # every line's variant has "variant_inventory_management": null (inventory not tracked):
    # Shopify changes no inventory for them, so neither does Loom (no transfer, no commit);
    # the lines stay in the order, where the profile counts their products
    assert [ln.tracked for ln in order.order.lines] == [False] * len(ORDER_LINES)
    assert (moves(result), ledger(result)) == ([], [])
    assert result.memory == (RememberCustomer(CUSTOMER), RememberOrder(ORDER, ONLINE_MEMO))


def test_the_documented_order_with_tracked_variants_commits_its_units_at_online() -> None:
    data = example("orders/create")
    for item in data["line_items"]:
        item["variant_inventory_management"] = "shopify"
    result = map_webhook(SHOP, delivery("orders/create"), data, None)
    [order] = of_type(result, EventType.ORDER_COMPLETED)
    assert order.order is not None
    assert [ln.tracked for ln in order.order.lines] == [None] * len(ORDER_LINES)
    # each line's unit moves from the online location to `online` (committed there)
    assert moves(result) == sorted(
        [(sku, "ottawa-warehouse", -1) for sku in SKUS] + [(sku, ONLINE, 1) for sku in SKUS]
    )
    assert ledger(result) == sorted(
        [(sku, "ottawa-warehouse", "adjustment", -1) for sku in SKUS]
        + [(sku, ONLINE, "adjustment", 1) for sku in SKUS]
        + [(sku, ONLINE, "order_placed", 1) for sku in SKUS]
    )


def test_the_documented_order_without_its_customer_is_a_guest_order_by_email() -> None:
    data = example("orders/create")
    data["customer"] = None  # a guest checkout: Shopify sends "customer": null
    result = map_webhook(SHOP, delivery("orders/create"), data, None)
    [order] = of_type(result, EventType.ORDER_COMPLETED)
    assert order.identifiers.as_mapping() == {"email": "jon@example.com"}  # the order's email
    assert result.memory == (  # the guest's e-mail, for shop/redact (kept as a salted hash)
        RememberGuest("email", "jon@example.com"),
        RememberOrder(ORDER, OrderMemo(None, "ottawa-warehouse")),
    )


def test_the_documented_orders_fulfilled_example_has_no_fulfilment_to_ship() -> None:
    # the reference shows the order before anything happened to it: "fulfillments": []
    result = mapped("orders/fulfilled", ONLINE_MEMO)
    assert (result.touchpoints, result.ignored) == ((), "nothing_fulfilled")


def test_the_documented_cancellation_releases_every_committed_unit_at_online() -> None:
    # the example carries no refund ("refunds": []): nothing shipped, nothing released before
    result = mapped("orders/cancelled", ONLINE_MEMO)
    [released] = of_type(result, EventType.ORDER_CANCELLED)
    assert released.event_id == f"shopify:jsmith:order:{ORDER}:cancel"
    assert released.occurred_at == EXAMPLE_TIME  # cancelled_at
    assert released.identifiers.as_mapping() == {"customer_id": CUSTOMER}
    assert released.order is not None
    # untracked variants: released lines that move nothing, no units to take off `online`
    assert [(ln.sku, ln.quantity, ln.tracked) for ln in released.order.lines] == [
        (s, 1, False) for s in SKUS
    ]
    assert (moves(result), ledger(result)) == ([], [])
    assert mapped("orders/cancelled", None).ignored == "nothing_committed"


# --- fulfilments and refunds ----------------------------------------------------------------


def test_the_documented_fulfilment_ships_its_lines_from_online() -> None:
    # "status": "pending" (a fulfilment service has it) counts as shipped: Shopify takes the
    # units off committed when the fulfilment is created; "location_id": null names no place
    [shipped] = mapped("fulfillments/create", ONLINE_MEMO).touchpoints
    assert shipped.type is EventType.ORDER_FULFILLED
    assert shipped.event_id == "shopify:jsmith:fulfillment:123456"
    assert shipped.occurred_at == EXAMPLE_TIME
    assert shipped.identifiers.as_mapping() == {"customer_id": CUSTOMER}
    assert shipped.order is not None
    assert (shipped.order.order_id, shipped.order.location_id) == (ORDER, ONLINE)
    assert [(ln.sku, ln.quantity, ln.tracked) for ln in shipped.order.lines] == [
        (sku, 1, False) for sku, _ in ORDER_LINES
    ]
    assert ledger(mapped("fulfillments/create", ONLINE_MEMO)) == []  # untracked variants
    assert not shipped.properties  # no fulfillment_location
    assert mapped("fulfillments/create", None).ignored == "order_not_seen"


def test_the_documented_refund_returns_five_lines_restocked_nowhere() -> None:
    # every line is "restock_type": "no_restock" with "location_id": null; amounts come from
    # subtotal_set.shop_money (strings), not the float subtotal
    result = mapped("refunds/create", ONLINE_MEMO)
    [returned] = result.touchpoints
    assert returned.type is EventType.ORDER_RETURNED
    assert returned.event_id == "shopify:jsmith:refund:890088186047892319:return"
    assert returned.occurred_at == EXAMPLE_TIME
    assert returned.identifiers.as_mapping() == {"customer_id": CUSTOMER}
    assert returned.order is not None
    assert returned.order.location_id is None
    assert returned.order.total == Decimal("414.95")
    assert returned.order.currency == "USD"
    assert [(ln.sku, ln.quantity, ln.restock) for ln in returned.order.lines] == [
        (sku, 1, False) for sku, _ in ORDER_LINES
    ]
    assert moves(result) == []


# --- customers ------------------------------------------------------------------------------


@pytest.mark.parametrize("topic", ["customers/create", "customers/update"])
def test_the_documented_customer_is_a_profile_without_consent(topic: str) -> None:
    # "state": "disabled" (no account: not a sign-up), "phone": null, and no
    # email_marketing_consent / sms_marketing_consent in the example: no consent touchpoint
    result = mapped(topic)
    [profile] = result.touchpoints
    assert profile.type is EventType.PROFILE_UPDATED
    assert profile.occurred_at == EXAMPLE_TIME
    assert profile.identifiers.as_mapping() == {
        "customer_id": "706405506930370084",
        "email": "bob@biller.com",
    }
    assert profile.region == "CA"  # default_address.country_code
    traits = profile.traits.model_dump(exclude_none=True) if profile.traits else {}
    assert traits == {
        "first_name": "Bob",
        "last_name": "Biller",
        "city": "Ottawa",
        "postal_code": "K2P 2L8",
    }
    assert result.memory == (RememberCustomer("706405506930370084"),)


def test_the_documented_consent_objects_of_the_customer_resource_grant_marketing() -> None:
    resource = example("customer_resource")
    data = example("customers/update")
    for name in ("email_marketing_consent", "sms_marketing_consent"):
        data[name] = resource[name]
    result = map_webhook(SHOP, delivery("customers/update"), data, None)
    profile, consent = result.touchpoints
    assert profile.traits is not None
    assert profile.traits.model_dump(exclude_none=True)["email_marketing"] == "subscribed"
    assert consent.type is EventType.CONSENT_UPDATED
    assert consent.consent is not None
    assert consent.consent.marketing is True
    # granted since the earliest subscription in force: SMS, 2021-08-03T15:31:06-04:00
    assert consent.occurred_at == datetime(2021, 8, 3, 19, 31, 6, tzinfo=UTC)


# --- inventory levels -----------------------------------------------------------------------


@pytest.mark.parametrize("topic", ["inventory_levels/update", "inventory_levels/connect"])
def test_the_documented_level_is_a_count_of_ten_at_the_warehouse(topic: str) -> None:
    [count] = mapped(topic).touchpoints
    assert count.type is EventType.INVENTORY_COUNTED
    assert count.inventory is not None
    assert (count.inventory.sku, count.inventory.location_id, count.inventory.on_hand) == (
        "SKU-IPOD-PINK",  # inventory_item_id 271878346596884015, by the shop's inventory_items
        "ottawa-warehouse",  # location_id 24826418
        10,
    )
    assert count.occurred_at == EXAMPLE_TIME  # updated_at


def test_the_documented_disconnect_counts_zero_when_shopify_fired_it() -> None:
    fired = datetime(2025, 7, 10, 16, 15, 47, tzinfo=UTC)
    [count] = mapped("inventory_levels/disconnect", triggered_at=fired).touchpoints
    assert count.inventory is not None
    assert (count.inventory.location_id, count.inventory.on_hand) == ("ottawa-warehouse", 0)
    assert count.occurred_at == fired


# --- compliance topics ----------------------------------------------------------------------


def test_the_documented_customers_redact_erases_the_customer_and_forgets_the_orders() -> None:
    result = mapped("customers/redact")
    [erasure] = result.touchpoints
    assert erasure.type is EventType.ERASURE_REQUESTED
    assert erasure.occurred_at == DELIVERED  # the payload has no time of its own
    assert erasure.identifiers.as_mapping() == {
        "customer_id": "191167",
        "email": "john@example.com",
        "phone": "555-625-1199",
    }
    assert result.memory == (ForgetCustomer("191167", ("220458", "280263", "299938")),)
    assert result.privacy is not None
    assert result.privacy.kind is PrivacyKind.CUSTOMER_REDACT


def test_the_documented_data_request_and_shop_redact_are_recorded() -> None:
    asked = mapped("customers/data_request").privacy
    assert asked is not None
    assert (asked.kind, asked.customer_id, asked.data_request_id) == (
        PrivacyKind.DATA_REQUEST,
        "191167",
        "9999",
    )
    assert asked.order_ids == ("220458", "280263", "299938")
    shop = mapped("shop/redact").privacy
    assert shop is not None
    assert (shop.kind, shop.shop_domain) == (PrivacyKind.SHOP_REDACT, "jsmith.myshopify.com")


@pytest.mark.parametrize("topic", ["customers/redact", "customers/data_request", "shop/redact"])
def test_the_unfilled_shop_template_is_not_this_shop(topic: str) -> None:
    """As printed, the examples' shop_domain is "{shop}.myshopify.com": another shop's request
    is refused (dead-lettered by the gateway) naming the field."""
    with pytest.raises(InvalidEvent) as info:
        map_webhook(SHOP, delivery(topic), example(topic, shop=None), None)
    assert info.value.field == "shop_domain"


def test_memo_lookups_read_the_documented_order_ids() -> None:
    for topic in ("orders/fulfilled", "orders/cancelled", "fulfillments/create", "refunds/create"):
        assert memo_order_id(topic, example(topic)) == ORDER
