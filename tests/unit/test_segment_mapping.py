"""Segment spec messages -> touchpoint v1 (schemas.inbound): the mapping table, clock-skew
correction, ids, money, consent, what is kept of the context, and errors in Segment's terms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.errors import InvalidEvent
from schemas.inbound.base import Source, money
from schemas.inbound.segment import Received, device_type, map_message, occurred_at
from schemas.inbound.segment_commerce import TRACK_TYPES, track_type
from schemas.touchpoint import Channel, EventType, Touchpoint, dump_touchpoint

WEB = Source("web-shop", Channel.WEB, "US", "USD")
APP = Source("ios-app", Channel.APP, "NO", "NOK")
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
AT = Received(at=NOW)

Message = dict[str, Any]


def order_completed(**props: Any) -> Message:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": "C-1",
        "messageId": "m-1",
        "properties": {
            "order_id": "O-1",
            "total": 27.5,
            "currency": "eur",
            "products": [
                {"product_id": "P-1", "price": 12.5, "quantity": 1, "category": "shoes"},
                {"sku": "S-2", "price": 7.5, "quantity": 2},
            ],
            **props,
        },
    }


def mapped(message: Message, source: Source = WEB, received: Received = AT) -> Touchpoint:
    return map_message(message, source, received)


def rejected(message: object, source: Source = WEB) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        map_message(message, source, AT)
    return info.value


# --- the table ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        ({"type": "identify", "userId": "u"}, EventType.PROFILE_UPDATED),
        ({"type": "alias", "userId": "u", "previousId": "a"}, EventType.PROFILE_UPDATED),
        ({"type": "page", "anonymousId": "a"}, EventType.PAGE_VIEW),
        ({"type": "screen", "anonymousId": "a", "name": "Home"}, EventType.PAGE_VIEW),
        ({"type": "group", "userId": "u", "groupId": "g"}, EventType.CUSTOM),
        ({"type": "track", "userId": "u", "event": "Store Locator Used"}, EventType.CUSTOM),
        ({"type": "track", "userId": "u", "event": "Product Viewed"}, EventType.PRODUCT_VIEWED),
    ],
)
def test_every_call_type_maps(call: Message, expected: EventType) -> None:
    assert mapped(call).type is expected


def test_e_commerce_names_match_ignoring_case_and_punctuation() -> None:
    for name, kind in TRACK_TYPES.items():
        assert track_type(name) is kind
        assert track_type(name.lower().replace(" ", "_")) is kind
        assert track_type(name.title().replace(" ", "")) is kind
    assert track_type("Order Complete") is EventType.CUSTOM  # near-misses are custom events


def test_an_unknown_track_event_is_kept_by_name() -> None:
    tp = mapped(
        {"type": "track", "userId": "u", "event": "Size Guide Viewed", "properties": {"size": "M"}}
    )
    assert (tp.type, tp.name, tp.properties["size"]) == (EventType.CUSTOM, "Size Guide Viewed", "M")


def test_identify_maps_ids_and_traits() -> None:
    tp = mapped(
        {
            "type": "identify",
            "userId": 1001,  # numeric ids are ids too
            "anonymousId": "anon-1",
            "traits": {
                "email": " Jane@Example.com ",
                "phone": "+47 912 34 567",
                "firstName": "Jane",
                "last_name": "Doe",
                "address": {"city": "Oslo", "postalCode": "0150", "street": "Karl Johans gate 1"},
                "plan": "gold",
                "age": 41,
                "company": {"name": "nested, not kept"},
                "preferences": {"sizes": ["M"]},
            },
        }
    )
    assert tp.identifiers.as_mapping() == {
        "customer_id": "1001",
        "email": "Jane@Example.com",
        "phone": "+47 912 34 567",
        "anonymous_id": "anon-1",
    }
    assert tp.traits is not None
    assert tp.traits.model_dump(exclude_none=True) == {
        "first_name": "Jane",
        "last_name": "Doe",
        "city": "Oslo",
        "postal_code": "0150",
        "preferences": {"sizes": ["M"]},
        "plan": "gold",
        "age": 41,
    }


def test_context_traits_count_for_every_call_and_identify_traits_win() -> None:
    # RudderStack's Python SDK sends identify traits in context.traits only
    rudder = mapped(
        {
            "type": "identify",
            "userId": "u",
            "context": {"traits": {"email": "a@b.no", "firstName": "A"}},
        }
    )
    assert rudder.identifiers.email == "a@b.no"
    assert rudder.traits is not None
    assert rudder.traits.first_name == "A"
    both = mapped(
        {
            "type": "identify",
            "userId": "u",
            "traits": {"email": "new@b.no"},
            "context": {"traits": {"email": "old@b.no"}},
        }
    )
    assert both.identifiers.email == "new@b.no"
    track = mapped(
        {
            "type": "track",
            "event": "X",
            "anonymousId": "a",
            "context": {"traits": {"email": "t@b.no"}},
            "traits": {"email": "no@b.no"},
        }
    )
    assert track.identifiers.email == "t@b.no"  # a track's own `traits` are not the person's


def test_group_traits_are_the_group_s_not_the_person_s() -> None:
    tp = mapped(
        {
            "type": "group",
            "userId": "u",
            "groupId": "acme",
            "traits": {"email": "billing@acme.example", "employees": 40},
        }
    )
    assert tp.identifiers.email is None
    assert tp.name == "group"
    assert tp.properties["group_id"] == "acme"
    assert tp.properties["traits"] == {"email": "billing@acme.example", "employees": 40}


def test_alias_links_the_user_id_with_the_previous_id() -> None:
    # the browser SDK's `analytics.alias("C-1")` of an anonymous visitor: previousId = its
    # anonymousId; a server's alias of a session id names no anonymousId
    for message in (
        {"type": "alias", "userId": "C-1", "previousId": "anon-9", "anonymousId": "anon-9"},
        {"type": "alias", "userId": "C-1", "previousId": "anon-9"},
    ):
        tp = mapped(message)
        assert tp.identifiers.as_mapping() == {"customer_id": "C-1", "anonymous_id": "anon-9"}
        assert tp.name == "alias"
    assert rejected({"type": "alias", "userId": "C-1"}).field == "previousId"


def test_an_alias_from_an_e_mail_address_links_the_device_instead() -> None:
    # Segment's spec: previousId may be "a User ID you previously identified them with", its
    # example an e-mail address: not a device of this profile. The message's own anonymousId
    # is linked instead (it was dropped: {'anonymous_id': 'jen@email.com'}).
    sdk = {"type": "alias", "userId": "C-new", "previousId": "jen@email.com", "anonymousId": "a-9"}
    assert mapped(sdk).identifiers.as_mapping() == {"customer_id": "C-new", "anonymous_id": "a-9"}
    spec = {"type": "alias", "previousId": "jen@email.com", "userId": "507f191e81"}
    assert mapped(spec).identifiers.as_mapping() == {"customer_id": "507f191e81"}


def test_an_alias_from_an_older_device_links_it() -> None:
    # what an alias is sent for (the browser journey of tests/e2e/test_gateway_browser_e2e.py):
    # the older device is linked, the current one is by the visitor's other calls
    sdk = {"type": "alias", "userId": "C-1", "previousId": "old-device", "anonymousId": "anon-9"}
    assert mapped(sdk).identifiers.as_mapping() == {
        "customer_id": "C-1",
        "anonymous_id": "old-device",
    }


def test_page_and_screen_keep_name_category_and_properties() -> None:
    page = mapped(
        {
            "type": "page",
            "anonymousId": "a",
            "name": "Shoes",
            "category": "catalog",
            "properties": {"path": "/shoes", "url": "https://shop.example/shoes"},
        }
    )
    assert page.name == "Shoes"
    assert page.properties["category"] == "catalog"
    assert page.properties["path"] == "/shoes"
    screen = mapped({"type": "screen", "anonymousId": "a", "name": "Cart"}, APP)
    assert (screen.type, screen.channel, screen.region) == (EventType.PAGE_VIEW, Channel.APP, "NO")


def test_a_page_whose_url_is_longer_than_a_free_form_string_is_kept() -> None:
    # The browser SDKs fill a page call's properties themselves (Segment: path, referrer,
    # search, title, url; RudderStack adds tab_url, initial_referrer...). A URL over the
    # contract's 2048 characters (an OAuth callback's query, a search with many filters) made
    # the whole page_view an invalid event: the sender cannot shorten what its SDK writes.
    url = "https://shop.example/search?" + "colour=red&" * 300
    assert len(url) > 2048
    page = mapped(
        {
            "type": "page",
            "anonymousId": "a",
            "properties": {"url": url, "search": url[26:], "referrer": url, "tab_url": url},
        }
    )
    for field in ("url", "search", "referrer", "tab_url"):
        assert page.properties[field] == (url if field != "search" else url[26:])[:2048]
    # other properties keep the contract's rule: the sender chose them
    assert rejected({"type": "page", "anonymousId": "a", "properties": {"note": url}}).field == (
        "properties"
    )


def test_the_library_and_device_type_never_push_an_event_over_the_contracts_key_count() -> None:
    # `$library` and `$device_type` are the gateway's additions to `properties`; an event whose
    # own properties were within the contract's 64 keys became an invalid event ("more than
    # 64 keys") once they were added: every such event of an SDK dead-lettered
    context = {
        "library": {"name": "analytics.js", "version": "next-1.70.0"},
        "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile",
    }
    own = {f"attribute_{i}": i for i in range(64)}
    full = mapped({"type": "track", "userId": "u", "event": "Quiz Finished",
                   "properties": own, "context": context})  # fmt: skip
    assert full.properties == own  # no room: the sender's properties win
    roomy = mapped({"type": "track", "userId": "u", "event": "Quiz Finished",
                    "properties": dict(list(own.items())[:63]), "context": context})  # fmt: skip
    assert roomy.properties["$library"] == "analytics.js/next-1.70.0"  # room for one
    assert "$device_type" not in roomy.properties
    assert len(roomy.properties) == 64


def test_product_events_get_a_sku_from_the_product_id() -> None:
    tp = mapped(
        {
            "type": "track",
            "event": "Product Added",
            "anonymousId": "a",
            "properties": {"product_id": "P-7", "category": "shoes"},
        }
    )
    assert (tp.type, tp.properties["sku"], tp.properties["category"]) == (
        EventType.CART_UPDATED,
        "P-7",
        "shoes",
    )


# --- orders and money ---------------------------------------------------------------------


def test_order_completed_has_lines_currency_and_exact_money() -> None:
    tp = mapped(order_completed())
    assert tp.type is EventType.ORDER_COMPLETED
    assert tp.order is not None
    assert (tp.order.order_id, tp.order.total, tp.order.currency) == ("O-1", Decimal("27.5"), "EUR")
    assert [(ln.sku, ln.quantity, ln.unit_price, ln.category) for ln in tp.order.lines] == [
        ("P-1", 1, Decimal("12.5"), "shoes"),
        ("S-2", 2, Decimal("7.5"), None),
    ]
    assert tp.properties["products"][0]["product_id"] == "P-1"  # the sender's props are kept


@pytest.mark.parametrize(
    ("change", "total"),
    [
        ({"total": None, "revenue": 25}, Decimal("25")),
        ({"total": None}, Decimal("27.5")),  # sum of the lines
        ({"total": "19.99"}, Decimal("19.99")),
        ({"total": 0.1 + 0.2}, Decimal("0.3000")),  # JavaScript's float noise, rounded
    ],
)
def test_order_total(change: dict[str, Any], total: Decimal) -> None:
    message = order_completed()
    message["properties"].update(change)
    message["properties"] = {k: v for k, v in message["properties"].items() if v is not None}
    tp = mapped(message)
    assert tp.order is not None
    assert tp.order.total == total


def test_default_currency_is_the_source_s() -> None:
    message = order_completed()
    del message["properties"]["currency"]
    tp = mapped(message, APP)
    assert tp.order is not None
    assert tp.order.currency == "NOK"


def test_refund_and_cancellation_are_order_events_with_positive_amounts() -> None:
    refund = order_completed(total=-27.5)
    refund["event"] = "Order Refunded"
    refund["properties"]["products"][0]["price"] = -12.5
    tp = mapped(refund)
    assert tp.type is EventType.ORDER_RETURNED
    assert tp.order is not None
    assert (tp.order.total, tp.order.lines[0].unit_price) == (Decimal("27.5"), Decimal("12.5"))
    assert tp.order.lines[0].restock is None  # a refund moves no stock by itself
    cancel = order_completed()
    cancel["event"] = "Order Canceled"
    assert mapped(cancel).type is EventType.ORDER_CANCELLED


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"products": []}, "properties.products"),
        ({"products": None}, "properties.products"),
        ({"order_id": None}, "properties.order_id"),
        ({"products": [{"price": 1}]}, "properties.products[0].sku"),
        ({"products": [{"sku": "A", "quantity": 1.5}]}, "properties.products[0].quantity"),
        ({"products": [{"sku": "A", "price": "cheap"}]}, "properties.products[0].price"),
        ({"products": [{"sku": "has space"}]}, "properties.products[0].sku"),
        ({"currency": "euros"}, "properties.currency"),
        ({"total": None, "products": [{"sku": "A"}]}, "properties.total"),
        ({"total": True}, "properties.total"),
    ],
)
def test_bad_orders_name_the_segment_field(change: dict[str, Any], field: str) -> None:
    message = order_completed()
    message["properties"].update(change)
    message["properties"] = {k: v for k, v in message["properties"].items() if v is not None}
    assert rejected(message).field == field


@given(st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False))
def test_money_from_a_json_number_is_the_decimal_written(amount: Decimal) -> None:
    assert money(float(amount), "x") == Decimal(repr(float(amount)))
    assert money(str(amount), "x") == amount


# --- ids and time -------------------------------------------------------------------------


def test_message_id_is_the_event_id_and_retries_without_one_get_the_same_id() -> None:
    assert mapped(order_completed()).event_id == "m-1"
    message: Message = {
        "type": "track",
        "event": "X",
        "anonymousId": "a",
        "timestamp": "2026-11-22T09:00:00Z",
    }
    first = mapped({**message, "sentAt": "2026-11-22T09:00:01Z"})
    retry = mapped({**message, "sentAt": "2026-11-22T09:05:00Z"}, received=Received(NOW))
    other = mapped({**message, "event": "Y"})
    assert first.event_id == retry.event_id != other.event_id
    assert first.event_id.startswith("seg-")
    long_id = mapped({**message, "messageId": "x" * 300})
    spaced = mapped({**message, "messageId": "a b"})
    assert len(long_id.event_id) <= 128
    assert spaced.event_id != mapped({**message, "messageId": "a c"}).event_id


def test_the_event_id_of_a_message_without_id_depends_on_the_source() -> None:
    message: Message = {"type": "track", "event": "X", "anonymousId": "a"}
    assert mapped(message, WEB).event_id != mapped(message, APP).event_id


instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
)
skews = st.timedeltas(min_value=timedelta(days=-2), max_value=timedelta(days=2))


@given(
    instants,
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=1)),
    skews,
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(seconds=30)),
)
def test_clock_skew_is_corrected_as_segment_does(
    happened: datetime, queued: timedelta, skew: timedelta, transit: timedelta
) -> None:
    """A client whose clock is off by ``skew`` stamps the event and the send with its clock;
    receivedAt - (sentAt - originalTimestamp) recovers the true time up to the transit time,
    whatever the skew, and is never later than receivedAt."""
    received = happened + queued + transit
    message = {
        "timestamp": (happened + skew).isoformat(),
        "sentAt": (happened + queued + skew).isoformat(),
    }
    corrected = occurred_at(message, Received(received))
    assert corrected == happened + transit
    assert corrected <= received


def test_time_without_sent_at_or_timestamp() -> None:
    assert occurred_at({"timestamp": "2026-11-22T08:00:00+01:00"}, AT) == datetime(
        2026, 11, 22, 7, tzinfo=UTC
    )
    assert occurred_at({}, AT) == NOW
    batch = Received(NOW, sent_at="2026-11-22T10:00:10Z")  # the batch's sentAt applies
    assert occurred_at({"timestamp": "2026-11-22T10:00:05Z"}, batch) == NOW - timedelta(seconds=5)
    future = {"timestamp": "2030-01-01T00:00:00Z"}  # a clock far ahead, no sentAt
    assert occurred_at(future, AT) == NOW
    naive = {"originalTimestamp": "2026-11-22T09:00:00", "timestamp": "2026-11-22T09:30:00Z"}
    assert occurred_at(naive, AT) == datetime(2026, 11, 22, 9, tzinfo=UTC)
    assert rejected({"type": "page", "anonymousId": "a", "timestamp": "yesterday"}).field == (
        "timestamp"
    )


# --- consent, context, privacy ------------------------------------------------------------


def test_consent_preferences_and_gpc() -> None:
    prefs = {"Analytics": True, "Advertising": False}
    message = {
        "type": "page",
        "anonymousId": "a",
        "context": {"consent": {"categoryPreferences": prefs}},
    }
    tp = mapped(message, received=Received(NOW, gpc=True))
    assert tp.consent_signals is not None
    assert tp.consent_signals.segment == prefs
    assert tp.gpc is True
    assert mapped(message).gpc is None  # no header: not stated (never read as granted)
    update = mapped(
        {**message, "type": "track", "userId": "u", "event": "Segment Consent Preference Updated"}
    )
    assert update.type is EventType.CONSENT_UPDATED
    bare = {"type": "track", "event": "Segment Consent Preference Updated", "userId": "u"}
    assert rejected(bare).field == "context.consent.categoryPreferences"


@pytest.mark.parametrize(
    ("agent", "kind"),
    [
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148", "mobile"),
        ("Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/120.0 Mobile Safari/537.36", "mobile"),
        ("Mozilla/5.0 (Linux; Android 13; SM-X700) Chrome/120.0 Safari/537.36", "tablet"),
        ("Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X)", "tablet"),
        ("Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/156.0 Safari/537.36", "bot"),
        ("Googlebot/2.1 (+http://www.google.com/bot.html)", "bot"),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0 Safari/537.36", "desktop"),
    ],
)
def test_device_type_from_the_user_agent(agent: str, kind: str) -> None:
    assert device_type({"userAgent": agent}) == kind


def test_ip_and_user_agent_are_never_stored() -> None:
    agent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) UniqueBrowser/9.9"
    message = {
        "type": "page",
        "anonymousId": "a",
        "context": {
            "ip": "203.0.113.77",
            "userAgent": agent,
            "userAgentData": {"platform": "Windows", "brands": [{"brand": "UniqueBrowser"}]},
            "library": {"name": "analytics.js", "version": "npm:next-1.84.3"},
        },
    }
    tp = mapped(message)
    stored = dump_touchpoint(tp)
    assert b"203.0.113.77" not in stored
    assert b"UniqueBrowser" not in stored
    assert tp.properties["$device_type"] == "desktop"
    assert tp.properties["$library"] == "analytics.js/npm:next-1.84.3"


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "reason", "field"),
    [
        ([1, 2], "schema_violation", None),
        ({"type": "teleport", "userId": "u"}, "unknown_type", "type"),
        ({"type": "track", "userId": "u"}, "schema_violation", "event"),
        ({"type": "page"}, "schema_violation", "userId"),
        ({"type": "page", "userId": ["u"]}, "schema_violation", "userId"),
        ({"type": "group", "userId": "u"}, "schema_violation", "groupId"),
        ({"type": "page", "userId": "u", "properties": "x"}, "schema_violation", "properties"),
        ({"type": "page", "userId": "u", "context": []}, "schema_violation", "context"),
        ({"type": "page", "userId": "u" * 2000}, "schema_violation", "userId"),
    ],
)
def test_errors_name_the_segment_field(message: object, reason: str, field: str | None) -> None:
    err = rejected(message)
    assert (err.reason, err.field) == (reason, field)


def test_error_messages_never_contain_the_values() -> None:
    secret = "jane.secret@example.com"
    bad = [
        {"type": "page", "userId": secret * 100},
        {
            "type": "track",
            "userId": "u",
            "event": secret,
            "properties": {"order_id": secret, "products": [{"sku": secret + " x"}]},
        },
        {"type": "identify", "userId": "u", "traits": {"email": [secret]}},
        {"type": "page", "anonymousId": "a", "timestamp": secret},
    ]
    for message in bad:
        bad_event = message.get("event")
        if bad_event is not None:
            message["event"] = "Order Completed"
        err = rejected(message)
        assert secret not in str(err)
        assert all(secret not in line for line in err.details)


def test_a_full_refund_naming_only_its_order_is_a_return_of_the_whole_order() -> None:
    # Segment's e-commerce spec: "For full refunds, fire this event whenever an
    # order/transaction gets refunded: analytics.track('Order Refunded', {order_id: ...})"
    full: Message = {
        "type": "track",
        "event": "Order Refunded",
        "userId": "C-1",
        "messageId": "m-r",
        "properties": {"order_id": "50314b8e9bcf000000000000"},
    }
    tp = mapped(full)
    assert tp.type is EventType.ORDER_RETURNED
    assert tp.order is not None
    assert (tp.order.order_id, tp.order.lines, tp.order.total) == (
        "50314b8e9bcf000000000000",
        (),
        None,
    )
    stated = mapped({**full, "properties": {"order_id": "O-1", "total": -30, "currency": "NOK"}})
    assert stated.order is not None
    assert (stated.order.total, stated.order.currency) == (Decimal(30), "NOK")
    # the other order events still need their products, and an empty list is not "none"
    assert rejected({**full, "event": "Order Completed"}).field == "properties.products"
    empty = {**full, "properties": {"order_id": "O-1", "products": []}}
    assert rejected(empty).field == "properties.products"


def test_a_derived_category_or_sku_never_pushes_an_event_over_the_contracts_key_count() -> None:
    # a page's `category` (a field of the call, not a property) and a product event's `sku`
    # (from its `product_id`) are the gateway's additions too: a page or a product view whose
    # own 64 properties fit the contract became an invalid event ("more than 64 keys")
    own = {f"attribute_{i}": i for i in range(63)}
    page = mapped({"type": "page", "anonymousId": "a", "category": "Shoes",
                   "properties": {**own, "url": "https://shop.example/"}})  # fmt: skip
    assert page.properties == {**own, "url": "https://shop.example/"}
    product = mapped({"type": "track", "anonymousId": "a", "event": "Product Viewed",
                      "properties": {**own, "product_id": "P-1"}})  # fmt: skip
    assert product.properties == {**own, "product_id": "P-1"}
    # with room, they come before the library and device type
    context = {"library": {"name": "analytics.js", "version": "1"}}
    roomy = mapped({"type": "page", "anonymousId": "a", "category": "Shoes", "context": context,
                    "properties": dict(list(own.items())[:62])})  # fmt: skip
    assert roomy.properties["category"] == "Shoes"
    assert roomy.properties["$library"] == "analytics.js/1"
