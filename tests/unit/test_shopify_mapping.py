"""Shopify webhooks -> touchpoint v1 (schemas.inbound.shopify), from fixtures in the shape of
Shopify's webhook reference (tests/fixtures/shopify; Shopify's own examples, verbatim:
test_shopify_reference.py): every topic of the README's table, ids shared by the topics that
carry one fact, money, people, marketing consent, stock, privacy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from shopify_shop import (
    CUSTOMER_ID,
    ONLINE_MEMO,
    SHOP,
    STORE,
    WAREHOUSE,
    delivery,
    ledger,
    payload,
    stock,
)
from shopify_shop import ORDER_ID as ORDER

from schemas.errors import InvalidEvent
from schemas.inbound.shopify import TOPICS, map_webhook, memo_order_id
from schemas.inbound.shopify_customers import marketing
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
from schemas.inbound.shopify_privacy import export_record, shop_erasures
from schemas.touchpoint import EventType, Touchpoint, dump_touchpoint, touchpoint_to_json

POS_MEMO = OrderMemo(customer_id=CUSTOMER_ID, committed_at=None)


def mapped(topic: str, data: Any = None, memo: OrderMemo | None = None, **kw: Any) -> Mapped:
    return map_webhook(SHOP, delivery(topic, **kw), payload(topic) if data is None else data, memo)


def only(result: Mapped, kind: EventType) -> Touchpoint:
    [tp] = [t for t in result.touchpoints if t.type is kind]
    return tp


# --- orders/create ---------------------------------------------------------------------------


def test_an_online_order_commits_at_online_and_moves_its_units_out_of_the_warehouse() -> None:
    result = mapped("orders/create")
    tp = only(result, EventType.ORDER_COMPLETED)
    assert tp.event_id == f"shopify:jsmith:order:{ORDER}"
    assert tp.channel.value == "web"
    assert tp.source == "shopify:jsmith"
    assert tp.name == "orders/create"
    assert tp.occurred_at == datetime(2022, 1, 1, 0, 0, tzinfo=UTC)  # 19:00 -05:00
    assert tp.region == "US"  # the billing country (the customer's home is CA)
    assert tp.identifiers.customer_id == "115310627314723954"
    assert tp.identifiers.email == "john@example.com"  # the customer's, not the order's
    assert tp.traits is not None
    assert (tp.traits.first_name, tp.traits.city) == ("John", "Ottawa")
    order = tp.order
    assert order is not None
    assert (order.order_id, order.location_id, order.currency) == (ORDER, ONLINE, "USD")
    assert order.total == Decimal("387.98")
    assert order.payment_method == "card"  # ["visa", "bogus"]
    assert [(ln.sku, ln.quantity, ln.unit_price) for ln in order.lines] == [
        ("SKU-IPOD-PINK", 1, Decimal("199.00")),  # renamed by the shop's skus
        ("SKU2006-001", 2, Decimal("89.99")),  # not listed: kept as is
    ]
    assert tp.properties == {"order_name": "#9999", "source_name": "web"}
    assert sorted(stock(result)) == [
        ("SKU-IPOD-PINK", "online", 1),
        ("SKU-IPOD-PINK", "ottawa-warehouse", -1),
        ("SKU2006-001", "online", 2),
        ("SKU2006-001", "ottawa-warehouse", -2),
    ]
    transfers = [t for t in result.touchpoints if t.type is EventType.INVENTORY_ADJUSTED]
    assert all(t.inventory and t.inventory.reason and t.inventory.reason.value == "transfer"
               for t in transfers)  # fmt: skip
    assert all(not t.identifiers.any_present() for t in transfers)  # stock only
    assert len({t.event_id for t in result.touchpoints}) == 5
    assert result.memory == (
        RememberCustomer("115310627314723954"),
        RememberOrder(ORDER, ONLINE_MEMO),
    )


def test_a_pos_order_is_a_sale_at_its_store_that_commits_nothing() -> None:
    result = mapped("orders/create", payload("orders_create_pos"))
    [sale] = result.touchpoints
    assert sale.type is EventType.POS_SALE
    assert sale.channel.value == "pos"
    assert sale.order is not None
    assert sale.order.location_id == "ottawa-store"
    assert sale.order.payment_method == "cash"
    assert sale.order.total == Decimal("199.00")
    assert sale.identifiers.customer_id == "115310627314723954"
    assert result.memory[-1] == RememberOrder("450789469", POS_MEMO)


def test_an_unlisted_location_keeps_a_stable_name_and_a_pos_order_needs_one() -> None:
    data = payload("orders_create_pos")
    data["location_id"] = 1234
    sale = mapped("orders/create", data).touchpoints[0]
    assert sale.order is not None
    assert sale.order.location_id == "shopify-1234"
    data["location_id"] = None
    assert rejected("orders/create", data).field == "location_id"


def test_lines_without_a_sku_keep_no_stock_and_an_order_needs_one_that_does() -> None:
    data = payload("orders/create")
    data["line_items"][1]["gift_card"] = True
    order = only(mapped("orders/create", data), EventType.ORDER_COMPLETED).order
    assert order is not None
    assert [ln.sku for ln in order.lines] == ["SKU-IPOD-PINK"]
    data["line_items"][0]["sku"] = ""
    error = rejected("orders/create", data)
    assert error.field == "line_items"


def test_a_guest_order_is_identified_by_its_email_and_payment_names_map() -> None:
    data = payload("orders/create")
    data["customer"] = None
    data["payment_gateway_names"] = ["gift_card", "shopify_payments"]
    result = mapped("orders/create", data)
    tp = only(result, EventType.ORDER_COMPLETED)
    assert tp.identifiers.as_mapping() == {"email": "jon@example.com"}
    assert tp.order is not None
    assert tp.order.payment_method == "card"
    assert not any(isinstance(op, RememberCustomer) for op in result.memory)
    # the guest's e-mail, canonical as the pipeline keeps it, for shop/redact (the memory
    # keeps its salted hash only)
    assert result.memory == (
        RememberGuest("email", "jon@example.com"),
        RememberOrder(ORDER, OrderMemo(None, "ottawa-warehouse")),
    )


def test_a_guest_orders_phone_is_remembered_as_the_pipeline_normalizes_it() -> None:
    data = payload("orders/create")
    data |= {"customer": None, "email": " Jon@Example.COM ", "contact_email": None}
    data["phone"] = "(613) 555-0142"  # a local number: the order's region (billing: CA)
    result = mapped("orders/create", data)
    guests = [op for op in result.memory if isinstance(op, RememberGuest)]
    assert guests == [
        RememberGuest("email", "jon@example.com"),
        RememberGuest("phone", "+16135550142"),
    ]
    # a customer's order: the customer id is remembered, its erasure follows e-mail and phone
    customer = mapped("orders/create", payload("orders/create"))
    assert not any(isinstance(op, RememberGuest) for op in customer.memory)


@pytest.mark.parametrize(
    ("source", "channel"),
    [("web", "web"), ("iphone", "app"), ("shopify_draft_order", "backoffice"), ("123", "web")],
)
def test_source_name_decides_the_channel(source: str, channel: str) -> None:
    data = payload("orders/create")
    data["source_name"] = source
    assert only(mapped("orders/create", data), EventType.ORDER_COMPLETED).channel.value == channel


def test_errors_name_shopifys_field_never_its_value() -> None:
    data = payload("orders/create")
    data["line_items"][0]["quantity"] = "lots-of-secret-units"
    error = rejected("orders/create", data)
    assert error.field == "line_items[0].quantity"
    assert "lots-of-secret" not in str(error)
    data = payload("orders/create")
    data["total_price"] = "free for jon@example.com"
    error = rejected("orders/create", data)
    assert error.field == "total_price"
    assert "jon@" not in str(error)


def rejected(topic: str, data: Any) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        mapped(topic, data)
    return info.value


# --- fulfilments ---------------------------------------------------------------------------


def test_a_fulfilment_ships_from_online_and_both_topics_carry_the_same_event() -> None:
    by_fulfillment = mapped("fulfillments/create", memo=ONLINE_MEMO)
    by_order = mapped("orders/fulfilled", memo=ONLINE_MEMO)
    assert [touchpoint_to_json(t) for t in by_fulfillment.touchpoints] == [
        touchpoint_to_json(t) | {"name": "fulfillments/create"} for t in by_order.touchpoints
    ]
    [shipped] = by_fulfillment.touchpoints
    assert shipped.type is EventType.ORDER_FULFILLED
    assert shipped.event_id == "shopify:jsmith:fulfillment:123456"
    assert shipped.order is not None
    assert shipped.order.location_id == ONLINE
    assert [(ln.sku, ln.quantity) for ln in shipped.order.lines] == [
        ("SKU-IPOD-PINK", 1),
        ("SKU2006-001", 2),
    ]
    assert shipped.properties == {"fulfillment_location": "ottawa-warehouse"}
    assert shipped.identifiers.customer_id == ONLINE_MEMO.customer_id
    assert shipped.occurred_at == datetime(2022, 1, 1, 15, 30, tzinfo=UTC)


@pytest.mark.parametrize(("memo", "why"), [(POS_MEMO, "pos_sale"), (None, "order_not_seen")])
def test_a_fulfilment_of_an_order_that_committed_nothing_moves_nothing(
    memo: OrderMemo | None, why: str
) -> None:
    result = mapped("fulfillments/create", memo=memo)
    assert result.touchpoints == ()
    assert result.ignored == why


def test_a_fulfilment_that_failed_shipped_nothing() -> None:
    data = payload("fulfillments/create")
    data["status"] = "cancelled"
    assert mapped("fulfillments/create", data, ONLINE_MEMO).ignored == "nothing_fulfilled"


def test_the_gateway_looks_up_the_order_of_topics_that_need_it() -> None:
    assert memo_order_id("fulfillments/create", payload("fulfillments/create")) == ORDER
    assert memo_order_id("refunds/create", payload("refunds/create")) == ORDER
    assert memo_order_id("orders/fulfilled", payload("orders/fulfilled")) == ORDER
    assert memo_order_id("orders/create", payload("orders/create")) is None
    assert memo_order_id("refunds/create", []) is None


# --- refunds and cancellations ----------------------------------------------------------------


def test_a_refund_returns_restocked_and_unrestocked_lines_for_the_orders_customer() -> None:
    result = mapped("refunds/create", memo=ONLINE_MEMO)
    [returned] = result.touchpoints
    assert returned.type is EventType.ORDER_RETURNED
    assert returned.event_id == "shopify:jsmith:refund:890088186047892319:return"
    assert returned.identifiers.customer_id == ONLINE_MEMO.customer_id
    order = returned.order
    assert order is not None
    assert order.location_id == "ottawa-store"  # returned in store
    assert order.total == Decimal("288.99")
    assert [(ln.sku, ln.quantity, ln.restock) for ln in order.lines] == [
        ("SKU-IPOD-PINK", 1, True),
        ("SKU2006-001", 1, False),  # no_restock: a return, nothing back on a shelf
    ]
    without_memo = mapped("refunds/create")
    assert not without_memo.touchpoints[0].identifiers.any_present()


def test_cancelled_units_go_back_from_online_to_where_shopify_restocks_them() -> None:
    data = payload("refunds/create")
    data["refund_line_items"][0]["restock_type"] = "cancel"
    data["refund_line_items"][0]["location_id"] = int(WAREHOUSE)
    result = mapped("refunds/create", data, ONLINE_MEMO)
    kinds = [t.type for t in result.touchpoints]
    assert kinds == [
        EventType.ORDER_RETURNED,  # the no_restock line
        EventType.ORDER_CANCELLED,
        EventType.INVENTORY_ADJUSTED,
        EventType.INVENTORY_ADJUSTED,
    ]
    released = only(result, EventType.ORDER_CANCELLED)
    assert released.order is not None
    assert released.order.location_id == ONLINE
    assert sorted(stock(result)) == [
        ("SKU-IPOD-PINK", "online", -1),
        ("SKU-IPOD-PINK", "ottawa-warehouse", 1),
    ]
    pos = mapped("refunds/create", data, POS_MEMO)
    assert [t.type for t in pos.touchpoints] == [EventType.ORDER_RETURNED]


def test_a_cancellation_maps_its_refund_as_refunds_create_does_and_releases_the_rest() -> None:
    cancelled = mapped("orders/cancelled", memo=ONLINE_MEMO)
    [refund] = payload("orders/cancelled")["refunds"]
    alone = mapped("refunds/create", refund, ONLINE_MEMO)
    ids = [t.event_id for t in cancelled.touchpoints]
    assert ids[: len(alone.touchpoints)] == [t.event_id for t in alone.touchpoints]
    rest = [t for t in cancelled.touchpoints if t.event_id.startswith("shopify:jsmith:order:")]
    assert [t.type for t in rest] == [EventType.ORDER_CANCELLED, EventType.INVENTORY_ADJUSTED]
    assert rest[0].order is not None
    # two sunglasses were ordered, none shipped or refunded: released; the iPod was refunded
    assert [(ln.sku, ln.quantity) for ln in rest[0].order.lines] == [("SKU2006-001", 2)]
    assert stock(Mapped(tuple(rest))) == [("SKU2006-001", "online", -2)]
    assert rest[0].occurred_at == datetime(2022, 1, 1, 14, 0, tzinfo=UTC)


def test_a_cancelled_pos_or_unknown_order_releases_nothing() -> None:
    data = payload("orders/cancelled")
    data["refunds"] = []
    assert mapped("orders/cancelled", data, POS_MEMO).ignored == "nothing_committed"
    assert mapped("orders/cancelled", data, None).ignored == "nothing_committed"


# --- variants that track no inventory ---------------------------------------------------------

#: The fixtures' sunglasses, made a variant whose inventory is not tracked.
UNTRACKED = "SKU2006-001"


def without_tracking(data: Any, sku: str = UNTRACKED) -> Any:
    """The payload with ``variant_inventory_management: null`` on every line item of ``sku``
    (Shopify's value for a variant whose inventory it does not track), wherever one is."""
    if isinstance(data, dict):
        if data.get("sku") == sku and "variant_inventory_management" in data:
            data["variant_inventory_management"] = None
        for value in data.values():
            without_tracking(value, sku)
    elif isinstance(data, list):
        for value in data:
            without_tracking(value, sku)
    return data


def returned_to_the_shelf(data: Any) -> Any:
    data["refund_line_items"][1]["restock_type"] = "return"  # the sunglasses, restocked
    return data


def order_lines(result: Mapped) -> list[tuple[str, bool | None]]:
    return [(ln.sku, ln.tracked) for t in result.touchpoints if t.order for ln in t.order.lines]


@pytest.mark.parametrize(
    ("topic", "prepare"),
    [
        ("orders/create", lambda d: d),
        ("fulfillments/create", lambda d: d),
        ("orders/fulfilled", lambda d: d),
        ("refunds/create", returned_to_the_shelf),
        ("orders/cancelled", lambda d: d),
    ],
)
def test_a_variant_that_tracks_no_inventory_moves_no_stock_and_stays_in_the_order(
    topic: str, prepare: Any
) -> None:
    memo = None if topic == "orders/create" else ONLINE_MEMO
    tracked = mapped(topic, prepare(payload(topic)), memo)
    untracked = mapped(topic, without_tracking(prepare(payload(topic))), memo)
    moved = ledger(tracked)
    assert any(m[0] == UNTRACKED for m in moved)  # tracked, the sunglasses move stock
    # untracked: not a unit of them moves (no commit, transfer, shipment, restock or release)
    assert ledger(untracked) == [m for m in moved if m[0] != UNTRACKED]
    # ... and they are still lines of the order events (the profile counts the purchase)
    assert (UNTRACKED, False) in order_lines(untracked)
    assert (UNTRACKED, False) not in order_lines(tracked)


def test_a_pos_sale_of_a_variant_that_tracks_no_inventory_takes_nothing_off_the_shelf() -> None:
    sale = mapped("orders/create", payload("orders_create_pos"))
    assert ledger(sale) == [("SKU-IPOD-PINK", "ottawa-store", "pos_sale", 1)]
    data = without_tracking(payload("orders_create_pos"), "IPOD2008PINK")
    untracked = mapped("orders/create", data)
    assert ledger(untracked) == []
    assert order_lines(untracked) == [("SKU-IPOD-PINK", False)]
    sold = only(untracked, EventType.POS_SALE).order
    assert sold is not None
    assert (sold.total, sold.location_id) == (Decimal("199.00"), "ottawa-store")  # a sale still


# --- customers ----------------------------------------------------------------------------


def test_a_new_customer_signs_up_with_marketing_consent_stamped_by_shopify() -> None:
    result = mapped("customers/create", webhook_id="w-1")
    signup, consent = result.touchpoints
    assert signup.type is EventType.SIGNUP  # state "enabled": an account
    assert signup.event_id == "shopify:jsmith:customer:created:w-1"
    assert signup.identifiers.as_mapping() == {
        "customer_id": "706405506930370084",
        "email": "bob@biller.com",
        "phone": "+16135551111",
    }
    assert signup.region == "CA"
    traits = signup.traits.model_dump(exclude_none=True) if signup.traits else {}
    assert traits == {
        "first_name": "Bob",
        "last_name": "Biller",
        "city": "Ottawa",
        "postal_code": "K2P 2L8",
        "email_marketing": "subscribed",
        "sms_marketing": "not_subscribed",
    }
    assert consent.type is EventType.CONSENT_UPDATED
    assert consent.consent is not None
    assert consent.consent.marketing is True
    assert consent.occurred_at == datetime(2022, 1, 1, 0, 0, tzinfo=UTC)
    assert consent.identifiers.as_mapping() == {"customer_id": "706405506930370084"}
    assert result.memory == (RememberCustomer("706405506930370084"),)


def test_an_update_that_unsubscribes_denies_marketing_from_then() -> None:
    update, consent = mapped("customers/update").touchpoints
    assert update.type is EventType.PROFILE_UPDATED
    assert update.occurred_at == datetime(2022, 1, 5, 17, 0, tzinfo=UTC)
    assert consent.consent is not None
    assert consent.consent.marketing is False
    assert consent.occurred_at == datetime(2022, 1, 5, 17, 0, tzinfo=UTC)


def test_a_customer_without_consent_objects_sends_no_consent() -> None:
    data = payload("customers/create")
    data["email_marketing_consent"] = None
    data["sms_marketing_consent"] = None
    data["state"] = "disabled"
    [only_one] = mapped("customers/create", data).touchpoints
    assert only_one.type is EventType.PROFILE_UPDATED  # no account: not a sign-up


def test_the_email_consent_topic_withdraws_marketing_at_shopifys_time() -> None:
    """Since API 2025-01 the consent states come on their own topics, not in customers/*."""
    result = mapped("customers_email_marketing_consent/update", webhook_id="w-9")
    profile, consent = result.touchpoints
    assert profile.type is EventType.PROFILE_UPDATED
    assert profile.identifiers.as_mapping() == {
        "customer_id": "706405506930370084",
        "email": "bob@biller.com",
    }
    traits = profile.traits.model_dump(exclude_none=True) if profile.traits else {}
    assert traits == {"email_marketing": "unsubscribed"}
    assert consent.type is EventType.CONSENT_UPDATED
    assert consent.consent is not None
    assert consent.consent.marketing is False
    assert consent.occurred_at == datetime(2022, 1, 7, 14, 30, tzinfo=UTC)
    assert consent.event_id == "shopify:jsmith:customer:email_marketing:w-9:consent"
    assert result.memory == (RememberCustomer("706405506930370084"),)


def test_the_sms_consent_topic_grants_marketing_from_its_subscription() -> None:
    profile, consent = mapped("customers_marketing_consent/update").touchpoints
    assert profile.identifiers.as_mapping() == {
        "customer_id": "706405506930370084",
        "phone": "+16135551111",
    }
    traits = profile.traits.model_dump(exclude_none=True) if profile.traits else {}
    assert traits == {"sms_marketing": "subscribed"}
    assert consent.consent is not None
    assert consent.consent.marketing is True
    assert consent.occurred_at == datetime(2022, 1, 8, 15, 0, tzinfo=UTC)


def test_a_consent_topic_without_a_time_denies_at_shopifys_trigger_time_and_needs_a_state() -> None:
    data = payload("customers_marketing_consent/update")
    del data["sms_marketing_consent"]["consent_updated_at"]
    # a subscription must say since when (the trigger time is not signed: tests/pipeline/
    # test_shopify_stale_reposts.py); a withdrawal is never ignored
    with pytest.raises(InvalidEvent) as info:
        mapped("customers_marketing_consent/update", data)
    assert info.value.field == "sms_marketing_consent.consent_updated_at"
    data["sms_marketing_consent"]["state"] = "unsubscribed"
    fired = datetime(2022, 1, 9, 8, 0, tzinfo=UTC)
    _, consent = mapped("customers_marketing_consent/update", data, triggered_at=fired).touchpoints
    assert consent.occurred_at == fired
    assert consent.consent is not None
    assert consent.consent.marketing is False
    data["sms_marketing_consent"] = None
    with pytest.raises(InvalidEvent) as info:
        mapped("customers_marketing_consent/update", data)
    assert info.value.field == "sms_marketing_consent.state"
    email = payload("customers_email_marketing_consent/update")
    del email["customer_id"]
    with pytest.raises(InvalidEvent) as info:
        mapped("customers_email_marketing_consent/update", email)
    assert info.value.field == "customer_id"


STATES = st.sampled_from(
    ["subscribed", "not_subscribed", "unsubscribed", "pending", "redacted", "invalid"]
)
TIMES = st.none() | st.integers(0, 10_000).map(
    lambda m: datetime(2022, 1, 1, tzinfo=UTC) + timedelta(minutes=m)
)


@given(st.dictionaries(st.sampled_from(["email", "sms"]), st.tuples(STATES, TIMES)), TIMES)
def test_marketing_is_granted_while_any_channel_is_subscribed_since_it_is(
    states: dict[str, tuple[str, datetime | None]], updated: datetime | None
) -> None:
    fallback = updated or datetime(2022, 2, 1, tzinfo=UTC)
    decision = marketing(states, fallback=fallback)
    if not states:
        assert decision is None
        return
    assert decision is not None
    granted, since = decision
    times = {name: at or fallback for name, (_, at) in states.items()}
    subscribed = [n for n, (state, _) in states.items() if state == "subscribed"]
    assert granted == bool(subscribed)
    # a grant holds since the earliest subscription still in force; a denial since the last
    # channel's change (before it, a channel may still have been subscribed)
    expected = min(times[n] for n in subscribed) if subscribed else max(times.values())
    assert since == expected


# --- inventory levels ---------------------------------------------------------------------


def test_an_inventory_level_is_a_count_of_the_mapped_item_at_the_mapped_location() -> None:
    when = datetime(2023, 3, 29, 18, 0, 27, 877041, tzinfo=UTC)
    [count] = mapped("inventory_levels/update", triggered_at=when, webhook_id="w-9").touchpoints
    assert count.type is EventType.INVENTORY_COUNTED
    assert count.inventory is not None
    assert (count.inventory.sku, count.inventory.location_id) == (
        "SKU-IPOD-PINK",
        "ottawa-warehouse",
    )
    assert count.inventory.on_hand == 6
    assert count.occurred_at == datetime(2022, 1, 1, 0, 0, tzinfo=UTC)  # updated_at
    assert count.event_id == "shopify:jsmith:level:20230329180027877041:w-9"


def test_counts_in_one_second_sort_by_when_shopify_fired_them() -> None:
    base = datetime(2023, 3, 29, 18, 0, 27, tzinfo=UTC)
    ids = [
        mapped("inventory_levels/update", triggered_at=base + timedelta(microseconds=us),
               webhook_id=wid).touchpoints[0].event_id
        for us, wid in ((900, "aaa"), (1000, "zzz"), (120_000, "mmm"))
    ]  # fmt: skip
    assert ids == sorted(ids)


def test_inventory_levels_edge_cases() -> None:
    data = payload("inventory_levels/update")
    data["available"] = -3  # oversold in Shopify
    [count] = mapped("inventory_levels/update", data).touchpoints
    assert count.inventory is not None
    assert count.inventory.on_hand == 0
    data["available"] = None
    assert mapped("inventory_levels/update", data).ignored == "not_tracked"
    data = payload("inventory_levels/update")
    data["inventory_item_id"] = 42
    assert rejected("inventory_levels/update", data).field == "inventory_item_id"
    connect = mapped("inventory_levels/connect").touchpoints[0]
    assert connect.inventory is not None
    assert (connect.inventory.location_id, connect.inventory.on_hand) == ("ottawa-store", 0)
    fired = datetime(2022, 3, 1, 9, 0, tzinfo=UTC)
    [gone] = mapped("inventory_levels/disconnect", triggered_at=fired).touchpoints
    assert gone.inventory is not None
    assert gone.inventory.on_hand == 0
    assert gone.occurred_at == fired


# --- privacy ------------------------------------------------------------------------------


def test_customers_redact_is_an_erasure_and_the_gateway_forgets_the_customer() -> None:
    result = mapped("customers/redact", webhook_id="w-5")
    [erasure] = result.touchpoints
    assert erasure.type is EventType.ERASURE_REQUESTED
    assert erasure.identifiers.as_mapping() == {
        "customer_id": "191167",
        "email": "john@example.com",
        "phone": "555-625-1199",
    }
    assert result.memory == (ForgetCustomer("191167", ("220458", "280263", "299938")),)
    request = result.privacy
    assert request is not None
    assert request.kind is PrivacyKind.CUSTOMER_REDACT
    assert request.request_id == "shopify:jsmith:privacy:w-5"
    assert request.erasure_event_id == erasure.event_id
    record = request.to_json()
    assert "john@" not in str(record)
    assert "555-625" not in str(record)


def test_shop_redact_and_data_request_are_recorded_for_the_privacy_worker() -> None:
    shop = mapped("shop/redact").privacy
    assert shop is not None
    assert shop.kind is PrivacyKind.SHOP_REDACT
    asked = mapped("customers/data_request").privacy
    assert asked is not None
    assert asked.kind is PrivacyKind.DATA_REQUEST
    assert (asked.customer_id, asked.data_request_id) == ("191167", "9999")
    assert asked.order_ids == ("220458", "280263", "299938")
    export = export_record(asked, {"profile_id": "p_1"}, datetime(2022, 1, 2, tzinfo=UTC))
    assert export["found"] is True
    assert export["profile"] == {"profile_id": "p_1"}
    assert export_record(asked, None, datetime(2022, 1, 2, tzinfo=UTC))["found"] is False


def test_a_privacy_webhook_for_another_shop_is_invalid() -> None:
    data = payload("customers/redact")
    data["shop_domain"] = "other.myshopify.com"
    assert rejected("customers/redact", data).field == "shop_domain"


def test_shop_erasures_are_one_per_customer_with_stable_ids() -> None:
    request = mapped("shop/redact").privacy
    assert request is not None
    first = shop_erasures(request, ["2", "1", "2"])
    again = shop_erasures(request, ["1", "2"])
    assert [t.event_id for t in first] == [t.event_id for t in again]
    assert [t.identifiers.customer_id for t in first] == ["1", "2"]
    assert all(t.type is EventType.ERASURE_REQUESTED for t in first)


# --- every topic --------------------------------------------------------------------------


@pytest.mark.parametrize("topic", sorted(TOPICS))
def test_every_topic_maps_its_reference_payload_the_same_way_twice(topic: str) -> None:
    memo = ONLINE_MEMO if memo_order_id(topic, payload(topic)) else None
    first = mapped(topic, memo=memo, webhook_id="w-1")
    again = mapped(topic, memo=memo, webhook_id="w-1")
    assert [dump_touchpoint(t) for t in first.touchpoints] == [
        dump_touchpoint(t) for t in again.touchpoints
    ]
    assert first.touchpoints or first.privacy is not None
    assert all(t.source == "shopify:jsmith" for t in first.touchpoints)


@pytest.mark.parametrize(
    "topic", ["customers/update", "inventory_levels/update", "customers/redact", "shop/redact"]
)
def test_an_event_shopify_delivers_again_under_a_new_webhook_id_keeps_its_ids(topic: str) -> None:
    """Facts without an id of their own take the event's (X-Shopify-Event-Id), else the
    webhook's: a redelivery of one event maps to the same event ids whatever its webhook id."""
    first = mapped(topic, webhook_id="w-1", event_id="ev-1")
    again = mapped(topic, webhook_id="w-2", event_id="ev-1")
    other = mapped(topic, webhook_id="w-3", event_id="ev-2")

    def ids(m: Mapped) -> list[str]:
        return [t.event_id for t in m.touchpoints] + ([m.privacy.request_id] if m.privacy else [])

    assert ids(first) == ids(again)
    assert not set(ids(first)) & set(ids(other))
    assert "ev-1" in ids(first)[0]


def test_an_unknown_topic_or_a_payload_that_is_no_object_is_invalid() -> None:
    with pytest.raises(InvalidEvent) as info:
        map_webhook(SHOP, delivery("app/uninstalled"), {})
    assert (info.value.reason, info.value.field) == ("unknown_type", "X-Shopify-Topic")
    with pytest.raises(InvalidEvent):
        map_webhook(SHOP, delivery("orders/create"), [1, 2])


def test_store_and_warehouse_fixture_ids_are_the_shops_locations() -> None:
    assert SHOP.location(int(STORE), "x") == "ottawa-store"
    assert SHOP.location(WAREHOUSE, "x") == "ottawa-warehouse"
