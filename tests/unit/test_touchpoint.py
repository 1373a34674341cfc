"""Touchpoint v1 contract: accept/reject tables, error reasons and fields, round trips, keys."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.errors import InvalidEvent, LoomError
from schemas.touchpoint import (
    MAX_EVENT_BYTES,
    Channel,
    EventType,
    Touchpoint,
    dump_touchpoint,
    parse_touchpoint,
    record_key,
    validate_touchpoint,
)

Event = dict[str, Any]


def page_view() -> Event:
    return {
        "event_id": "evt-1",
        "type": "page_view",
        "channel": "web",
        "occurred_at": "2024-05-01T12:00:00+02:00",
        "identifiers": {"anonymous_id": "anon-1"},
        "properties": {"url": "/shoes", "ref": {"utm": ["a", "b"]}},
    }


def pos_sale() -> Event:
    return {
        "event_id": "evt-2",
        "type": "pos_sale",
        "channel": "pos",
        "occurred_at": "2024-05-01T10:00:00Z",
        "source": "pos-oslo-01",
        "region": "NO",
        "identifiers": {"loyalty_id": "L-100", "card_token": "tok_1"},
        "consent": {"analytics": True, "marketing": False},
        "order": {
            "order_id": "o-1",
            "total": "99.80",
            "currency": "NOK",
            "payment_method": "card",
            "location_id": "oslo-1",
            "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price": 49.9, "category": "shoes"}],
        },
    }


def inventory(kind: str = "inventory_adjusted", **inv: Any) -> Event:
    return {
        "event_id": "evt-3",
        "type": kind,
        "channel": "backoffice",
        "occurred_at": "2024-05-01T10:00:00+00:00",
        "inventory": {"sku": "SKU-1", "location_id": "oslo-1", **inv},
    }


def reject(data: Event | bytes) -> InvalidEvent:
    raw = data if isinstance(data, bytes) else orjson.dumps(data)
    with pytest.raises(InvalidEvent) as info:
        parse_touchpoint(raw)
    return info.value


def test_all_20_event_types_and_8_channels() -> None:
    assert len(EventType) == 20
    assert {c.value for c in Channel} == {
        "web", "app", "pos", "email", "social", "support", "loyalty", "backoffice",
    }  # fmt: skip


def test_valid_events_parse() -> None:
    tp = parse_touchpoint(orjson.dumps(pos_sale()))
    assert tp.type is EventType.POS_SALE
    assert tp.order is not None
    assert tp.order.total == Decimal("99.80")
    assert tp.order.lines[0].unit_price == Decimal("49.9")  # JSON number -> exact decimal
    assert tp.occurred_at == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert tp.consent is not None
    assert tp.consent.ads is None
    pv = parse_touchpoint(orjson.dumps(page_view()))
    assert pv.properties["ref"] == {"utm": ["a", "b"]}
    assert parse_touchpoint(orjson.dumps(inventory(delta=-2, reason="damage"))).inventory
    assert parse_touchpoint(orjson.dumps(inventory("inventory_counted", on_hand=0))).inventory


def mutate(base: Callable[[], Event], fn: Callable[[Event], object]) -> Event:
    event = copy.deepcopy(base())
    fn(event)
    return event


def _set(path: str, value: object) -> Callable[[Event], None]:
    def apply(event: Event) -> None:
        node: Any = event
        parts = path.split(".")
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node[part]
        last = parts[-1]
        if value is _DELETE:
            del node[last]
        else:
            node[int(last) if last.isdigit() else last] = value

    return apply


_DELETE = object()

ACCEPT = [
    ("region lower-cased", pos_sale, _set("region", "no")),
    ("uk alias", pos_sale, _set("region", "uk")),
    ("money as number", pos_sale, _set("order.total", 99.8)),
    ("money as int", pos_sale, _set("order.total", 100)),
    ("zero total", pos_sale, _set("order.total", "0")),
    ("offset -05:00", pos_sale, _set("occurred_at", "2024-05-01T05:00:00-05:00")),
    ("fractional seconds", pos_sale, _set("occurred_at", "2024-05-01T10:00:00.123456Z")),
    ("unknown top-level key ignored", pos_sale, _set("x_vendor", {"a": 1})),
    ("blank identifier kept for normalizer", page_view, _set("identifiers.email", "")),
    ("custom identifier type", page_view, _set("identifiers.member_no", "M1")),
    ("extra trait", page_view, _set("traits", {"first_name": "Kari", "shoe_size": 42})),
    ("preferences dict", page_view, _set("traits", {"preferences": {"sizes": ["M"]}})),
    ("segment signals", page_view, _set("consent_signals", {"segment": {"advertising": False}})),
    ("gcm signals", page_view, _set("consent_signals", {"gcm": {"ad_storage": "denied"}})),
    ("tcf string", page_view, _set("consent_signals", {"tcf": "CPXxRfAPXxRfAAfKABENB-CgAAAA"})),
    ("no identifiers page view", page_view, _set("identifiers", {})),
    ("gpc", page_view, _set("gpc", True)),
    ("event id 128", page_view, _set("event_id", "e" * 128)),
    ("pos sale without identifiers", pos_sale, _set("identifiers", {})),
    ("custom event", page_view, lambda e: e.update(type="custom", name="Wishlist Viewed")),
    ("name on a typed event", page_view, _set("name", "Shoes")),
]


@pytest.mark.parametrize(("name", "base", "change"), ACCEPT, ids=[a[0] for a in ACCEPT])
def test_accept_table(
    name: str, base: Callable[[], Event], change: Callable[[Event], None]
) -> None:
    tp = parse_touchpoint(orjson.dumps(mutate(base, change)))
    assert parse_touchpoint(dump_touchpoint(tp)) == tp


def test_region_normalized_and_unknown_top_level_dropped() -> None:
    tp = parse_touchpoint(orjson.dumps(mutate(pos_sale, _set("region", "uk"))))
    assert tp.region == "GB"
    tp = parse_touchpoint(orjson.dumps(mutate(pos_sale, _set("x_vendor", 1))))
    assert b"x_vendor" not in dump_touchpoint(tp)


REJECT = [
    # (name, base, change, reason, field)
    ("naive time", pos_sale, _set("occurred_at", "2024-05-01T10:00:00"), "occurred_at"),
    ("unix time", pos_sale, _set("occurred_at", 1714557600), "occurred_at"),
    ("date only", pos_sale, _set("occurred_at", "2024-05-01"), "occurred_at"),
    ("year 1970", pos_sale, _set("occurred_at", "1970-01-01T00:00:00Z"), "occurred_at"),
    ("empty event id", pos_sale, _set("event_id", ""), "event_id"),
    ("event id 129", pos_sale, _set("event_id", "e" * 129), "event_id"),
    ("event id with space", pos_sale, _set("event_id", "a b"), "event_id"),
    ("missing event id", pos_sale, _set("event_id", _DELETE), "event_id"),
    ("bad channel", pos_sale, _set("channel", "fax"), "channel"),
    ("quantity 0", pos_sale, _set("order.lines.0.quantity", 0), "order.lines[0].quantity"),
    ("quantity 1.5", pos_sale, _set("order.lines.0.quantity", 1.5), "order.lines[0].quantity"),
    ("quantity str", pos_sale, _set("order.lines.0.quantity", "2"), "order.lines[0].quantity"),
    ("quantity bool", pos_sale, _set("order.lines.0.quantity", True), "order.lines[0].quantity"),
    ("quantity huge", pos_sale, _set("order.lines.0.quantity", 10**9), "order.lines[0].quantity"),
    ("typo in line", pos_sale, _set("order.lines.0.quantiy", 1), "order.lines[0].quantiy"),
    ("NaN total", pos_sale, _set("order.total", "NaN"), "order.total"),
    ("inf total", pos_sale, _set("order.total", "Infinity"), "order.total"),
    ("negative total", pos_sale, _set("order.total", "-1"), "order.total"),
    ("bool total", pos_sale, _set("order.total", True), "order.total"),
    ("5 decimals", pos_sale, _set("order.total", "1.00001"), "order.total"),
    ("19 digits", pos_sale, _set("order.total", "1" * 19), "order.total"),
    ("lowercase currency", pos_sale, _set("order.currency", "nok"), "order.currency"),
    ("currency 4 letters", pos_sale, _set("order.currency", "NOKK"), "order.currency"),
    ("missing currency", pos_sale, _set("order.currency", _DELETE), "order.currency"),
    ("region 3 letters", pos_sale, _set("region", "NOR"), "region"),
    ("pos sale no location", pos_sale, _set("order.location_id", _DELETE), "order.location_id"),
    ("pos sale no order", pos_sale, _set("order", _DELETE), "order"),
    ("pos sale no lines", pos_sale, _set("order.lines", []), "order.lines"),
    ("pos sale no total", pos_sale, _set("order.total", _DELETE), "order.total"),
    ("consent not bool", pos_sale, _set("consent.ads", "yes"), "consent.ads"),
    ("unknown purpose", pos_sale, _set("consent.profiling", True), "consent.profiling"),
    ("gpc not bool", pos_sale, _set("gpc", "1"), "gpc"),
    ("identifier too long", page_view, _set("identifiers.email", "x" * 2000), "identifiers.email"),
    ("identifier not str", page_view, _set("identifiers.email", 5), "identifiers.email"),
    ("bad custom id name", page_view, _set("identifiers.Bad-Name", "x"), "identifiers"),
    (
        "login blank ids",
        page_view,
        lambda e: e.update(type="login", identifiers={"email": " ", "phone": None}),
        "identifiers",
    ),
    ("deep properties", page_view, _set("properties", {"a": {"b": {"c": {"d": 1}}}}), "properties"),
    ("long property", page_view, _set("properties", {"a": "x" * 5000}), "properties"),
    (
        "many properties",
        page_view,
        _set("properties", {str(i): i for i in range(65)}),
        "properties",
    ),
    ("too many traits", page_view, _set("traits", {f"t{i}": 1 for i in range(33)}), "traits"),
    ("nested trait", page_view, _set("traits", {"shoe": {"size": 42}}), "traits"),
    ("long first name", page_view, _set("traits", {"first_name": "x" * 300}), "traits.first_name"),
    ("consent update empty", page_view, _set("type", "consent_updated"), "consent"),
    ("custom without name", page_view, _set("type", "custom"), "name"),
    ("empty name", page_view, lambda e: e.update(type="custom", name=""), "name"),
    ("long name", page_view, lambda e: e.update(type="custom", name="n" * 257), "name"),
]


@pytest.mark.parametrize(("name", "base", "change", "field"), REJECT, ids=[r[0] for r in REJECT])
def test_reject_table_names_the_field(
    name: str, base: Callable[[], Event], change: Callable[[Event], None], field: str
) -> None:
    err = reject(mutate(base, change))
    assert err.reason == "schema_violation"
    assert err.field == field
    assert str(err).startswith(f"schema_violation: {field}: ")


@pytest.mark.parametrize(
    ("kind", "inv", "field"),
    [
        ("inventory_adjusted", {}, "inventory.delta"),
        ("inventory_adjusted", {"delta": 0}, "inventory.delta"),
        ("inventory_adjusted", {"delta": 1.0}, "inventory.delta"),
        ("inventory_counted", {"delta": 3}, "inventory.on_hand"),
        ("inventory_counted", {"on_hand": -1}, "inventory.on_hand"),
        ("inventory_counted", {"on_hand": 1, "reason": "theft"}, "inventory.reason"),
    ],
)
def test_inventory_requirements(kind: str, inv: dict[str, Any], field: str) -> None:
    err = reject(inventory(kind, **inv))
    assert (err.reason, err.field) == ("schema_violation", field)


def test_inventory_without_block_and_location() -> None:
    event = inventory()
    del event["inventory"]
    assert reject(event).field == "inventory"
    event = inventory(delta=1)
    del event["inventory"]["location_id"]
    assert reject(event).field == "inventory.location_id"


def test_quantity_message_is_readable() -> None:
    err = reject(mutate(pos_sale, _set("order.lines.0.quantity", 0)))
    assert str(err) == "schema_violation: order.lines[0].quantity: must be >= 1"


@pytest.mark.parametrize(
    "order_type", ["order_completed", "order_fulfilled", "order_cancelled", "order_returned"]
)
def test_order_types_need_an_order(order_type: str) -> None:
    event = mutate(page_view, _set("type", order_type))
    assert reject(event).field == "order"


def test_unknown_type_distinguished() -> None:
    err = reject(mutate(page_view, _set("type", "page_viewed")))
    assert (err.reason, err.field) == ("unknown_type", "type")
    # even with other errors, the unknown type is what is reported first
    event = mutate(page_view, _set("type", "nope"))
    event["occurred_at"] = "yesterday"
    err = reject(event)
    assert err.reason == "unknown_type"
    assert len(err.details) == 2
    # a missing type is a plain schema violation
    assert reject(mutate(page_view, _set("type", _DELETE))).reason == "schema_violation"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "malformed_json"),
        (b"{", "malformed_json"),
        (b"not json", "malformed_json"),
        (b'{"a": 1} trailing', "malformed_json"),
        (b'{"event_id": "\xff\xfe"}', "invalid_utf8"),
        (b'{"event_id": "\xc3"}', "invalid_utf8"),
        (b'{"event_id": "\\ud800"}', "invalid_utf8"),
        (b'{"event_id": "a\\udc00b"}', "invalid_utf8"),
        (b"[1, 2]", "schema_violation"),
        (b'"string"', "schema_violation"),
        (b"null", "schema_violation"),
    ],
)
def test_raw_byte_failures(raw: bytes, reason: str) -> None:
    err = reject(raw)
    assert err.reason == reason
    assert isinstance(err, LoomError)


def test_oversize_checked_on_raw_bytes() -> None:
    event = page_view()
    event["properties"] = {f"k{i}": "x" * 1500 for i in range(50)}  # ~75 KB, valid otherwise
    raw = orjson.dumps(event)
    assert len(raw) > MAX_EVENT_BYTES
    assert reject(raw).reason == "oversize"
    assert parse_touchpoint(raw, max_bytes=len(raw)).event_id == "evt-1"


def test_messages_never_contain_the_input_value() -> None:
    secret = "jane.secret@example.com"
    for change in (
        _set("occurred_at", secret),
        _set("identifiers.email", secret * 100),
        _set("channel", secret),
        _set("region", secret),
    ):
        err = reject(mutate(page_view, change))
        assert "secret" not in str(err)
        assert all("secret" not in d for d in err.details)


def test_models_are_frozen() -> None:
    tp = parse_touchpoint(orjson.dumps(pos_sale()))
    with pytest.raises(ValidationError):
        tp.event_id = "other"  # type: ignore[misc]
    assert tp.order is not None
    with pytest.raises(ValidationError):
        tp.order.total = Decimal(1)


def test_validate_touchpoint_maps_to_invalid_event() -> None:
    with pytest.raises(InvalidEvent) as info:
        validate_touchpoint({**page_view(), "channel": "fax"})
    assert info.value.field == "channel"


def test_dump_round_trips_and_money_is_string() -> None:
    tp = parse_touchpoint(orjson.dumps(pos_sale()))
    raw = dump_touchpoint(tp)
    data = orjson.loads(raw)
    assert data["order"]["total"] == "99.80"
    assert data["order"]["lines"][0]["unit_price"] == "49.9"
    assert "traits" not in data  # None fields left out
    assert parse_touchpoint(raw) == tp


def test_lone_surrogate_built_in_python() -> None:
    with pytest.raises(InvalidEvent) as info:
        validate_touchpoint({**page_view(), "source": "pos-\ud800"})
    assert (info.value.reason, info.value.field) == ("invalid_utf8", "source")
    # free-form values are not str-validated by pydantic; dumping catches them
    tp = Touchpoint.model_validate({**page_view(), "properties": {"a": "x\ud800"}})
    with pytest.raises(InvalidEvent) as info:
        dump_touchpoint(tp)
    assert info.value.reason == "invalid_utf8"


@pytest.mark.parametrize(
    ("identifiers", "region", "key"),
    [
        (
            {"anonymous_id": "a1", "email": " Jane@X.COM ", "customer_id": "C1"},
            None,
            b"customer_id:C1",
        ),
        ({"anonymous_id": "a1", "email": " Jane@X.COM "}, None, b"email:jane@x.com"),
        ({"phone": "912 34 567", "card_token": "t1"}, "NO", b"phone:+4791234567"),
        ({"loyalty_id": "L1", "email": "a@b.no"}, None, b"loyalty_id:L1"),
        ({"customer_id": "guest", "email": "a@b.no"}, None, b"email:a@b.no"),  # blocked skipped
        ({"social_handle": "@Kari", "anonymous_id": "a"}, None, b"social_handle:kari"),
        ({"anonymous_id": "a9"}, None, b"anonymous_id:a9"),
        ({}, None, None),
        ({"email": "noemail@store.com"}, None, None),
    ],
)
def test_record_key(identifiers: dict[str, str], region: str | None, key: bytes | None) -> None:
    event = {**page_view(), "identifiers": identifiers}
    if region:
        event["region"] = region
    assert record_key(parse_touchpoint(orjson.dumps(event))) == key


def test_record_key_inventory_falls_back_to_stock_position() -> None:
    tp = parse_touchpoint(orjson.dumps(inventory(delta=5)))
    assert record_key(tp) == b"inventory:SKU-1@oslo-1"


_text = st.text(max_size=40)
_json_leaf = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | _text


@settings(max_examples=120, deadline=None)
@given(
    event_id=st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=128
    ),
    minutes=st.integers(-14 * 60, 14 * 60),
    seconds=st.integers(0, 10**9),
    total=st.decimals(min_value=0, max_value=10**12, places=2, allow_nan=False),
    qty=st.integers(1, 1000),
    props=st.dictionaries(st.text(max_size=20), _json_leaf, max_size=10),
    email=st.text(st.characters(exclude_categories=("Cc", "Cf", "Zl", "Zp", "Cs")), max_size=40),
)
def test_round_trip_property(
    event_id: str,
    minutes: int,
    seconds: int,
    total: Decimal,
    qty: int,
    props: dict[str, Any],
    email: str,
) -> None:
    when = datetime(2001, 1, 1, tzinfo=timezone(timedelta(minutes=minutes))) + timedelta(
        seconds=seconds
    )
    event = pos_sale()
    event.update(event_id=event_id, occurred_at=when.isoformat(), properties=props)
    event["order"]["total"] = str(total)
    event["order"]["lines"][0]["quantity"] = qty
    event["identifiers"]["email"] = email
    tp = parse_touchpoint(orjson.dumps(event))
    assert tp.occurred_at == when
    assert parse_touchpoint(dump_touchpoint(tp)) == tp


@settings(max_examples=150, deadline=None)
@given(raw=st.binary(max_size=200))
def test_garbage_bytes_only_raise_invalid_event(raw: bytes) -> None:
    reason = None
    try:
        parse_touchpoint(raw)
    except InvalidEvent as err:
        reason = err.reason
    assert reason in {
        None,
        "malformed_json",
        "invalid_utf8",
        "schema_violation",
        "unknown_type",
        "control_characters",
    }


@pytest.mark.parametrize(
    "value",
    [
        "jane\x00@example.com",  # NUL
        "jane@example.com\r\nSET x 1",  # CR/LF
        "\x1b[31mjane",  # ESC
        "jane\u202e@moc.elpmaxe",  # right-to-left override
        "L-1\u2066",  # left-to-right isolate
        "L-1\u200b",  # zero-width space
        "C-1\u2028",  # line separator
        "C-1\x85",  # C1 control (next line)
    ],
)
@pytest.mark.parametrize("id_type", ["email", "loyalty_id", "anonymous_id", "store_card"])
def test_identifier_values_with_control_characters_are_refused_with_their_own_reason(
    id_type: str, value: str
) -> None:
    event = {**page_view(), "identifiers": {id_type: value}}
    with pytest.raises(InvalidEvent) as err:
        parse_touchpoint(orjson.dumps(event))
    assert err.value.reason == "control_characters"
    assert err.value.field == f"identifiers.{id_type}"
    assert value not in str(err.value)  # the message never carries the value


@pytest.mark.parametrize(
    "value",
    [
        "Jørgen.Ødegård@example.no",
        "+47 912 34 567",
        "用户@例子.中国",
        # not printable, yet allowed: the check of all values at once must not refuse them
        "Anne\u00a0Berg",  # no-break space
        "T-1\u3000",  # ideographic space
        "card-\ue000",  # private use
        "anon-\U000e01f0",  # unassigned
    ],
)
def test_ordinary_unicode_identifiers_still_pass(value: str) -> None:
    event = {
        **page_view(),
        "identifiers": {"email": value, "loyalty_id": "L-1", "store_card": value},
    }
    identifiers = parse_touchpoint(orjson.dumps(event)).identifiers
    assert identifiers.email == value
    assert identifiers.as_mapping()["store_card"] == value


def test_the_first_identifier_with_a_control_character_is_named_in_priority_order() -> None:
    ids = {"anonymous_id": "a\x00", "email": "ok@example.com", "phone": "1\u202e", "vip": "\x1b"}
    with pytest.raises(InvalidEvent) as err:
        parse_touchpoint(orjson.dumps({**page_view(), "identifiers": ids}))
    assert err.value.field == "identifiers.phone"  # phone ranks before anonymous_id and custom


def test_type_requirement_kinds_are_disjoint() -> None:
    """``_type_requirements`` checks one kind per type: a type in two of the sets would lose
    one of its checks."""
    from schemas import touchpoint

    sets = (
        touchpoint.ORDER_TYPES,
        touchpoint.INVENTORY_TYPES,
        touchpoint.IDENTIFIED_TYPES,
        {touchpoint.EventType.CUSTOM},
    )
    assert len(touchpoint._REQUIREMENTS) == sum(len(set(s)) for s in sets)
