"""``parse_touchpoint`` through pydantic-core's ``validate_json`` against the old path
(``orjson.loads`` + ``validate_python``, kept verbatim in ``parse_reference``): every record is
accepted alike, with the same values (types and reprs included: ``Decimal('1.10')``, ``-0.0``,
an integer against a float), or refused alike, with the same reason, message, field and details.

The records are generated touchpoints of every type, valid and not, with raw number tokens put
where any value goes (``NaN``, ``Infinity``, numbers that overflow a double, integers beyond 64
bits, random decimal texts), unknown top-level keys, other whitespace and escapes, and now and
then one byte changed."""

from __future__ import annotations

import json
import sys
import unicodedata
from collections.abc import Callable
from typing import Any, Final

import orjson
import parse_reference
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from pydantic_core import SchemaValidator, core_schema

from schemas.errors import InvalidEvent
from schemas.touchpoint import (
    _FORBIDDEN_CATEGORIES,
    _SAFE_IDENTIFIER,
    _VALIDATE_JSON,
    INVENTORY_TYPES,
    ORDER_TYPES,
    Channel,
    EventType,
    InventoryReason,
    OrderLine,
    dump_touchpoint,
    parse_touchpoint,
)
from streams.simulate import Simulator

#: Number (and a few string) tokens the two parsers may read differently, put in raw.
_TOKENS: Final = (
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e400",
    b"-1e400",
    b"1E+309",
    b"1e0309",
    b"9" * 400,
    b"-" + b"9" * 310,
    b"18446744073709551616",
    b"18446744073709551615",
    b"9223372036854775808",
    b"-9223372036854775809",
    b"-9223372036854775808",
    b"1234567890123456789",
    b"123456789012345678",
    b"0.1234567890123456789",
    b"1.5e-400",
    b"4.9e-324",
    b"1.7976931348623157e308",
    b"1.7976931348623159e308",
    b"0.1",
    b"1.10",
    b"1.0",
    b"1e2",
    b"1E1",
    b"-0",
    b"-0.0",
    b"12.3456",
    b"1.23456",
    b"100000000000000.0",
    b"99999999999999.9999",
    b"5",
    b"0",
    b'"\\ud800"',
    b'"\\ud83d\\ude00"',
    b'"\\u0000"',
    b'"\\u202e"',
    b"true",
    b"null",
    b"[NaN]",
    b'{"a": Infinity}',
)

_DIGITS: Final = "0123456789"


@st.composite
def _number_text(draw: st.DrawFn) -> bytes:
    """A JSON number of any size: sign, integer part, fraction, exponent."""
    sign = draw(st.sampled_from(["", "", "-"]))
    head = str(draw(st.integers(0, 10**25) | st.integers(0, 999) | st.integers(9 * 10**18, 10**20)))
    frac = draw(st.text(_DIGITS, max_size=22))
    exp = ""
    if draw(st.booleans()):
        exp = draw(st.sampled_from("eE")) + draw(st.sampled_from(["", "+", "-"]))
        exp += str(draw(st.integers(0, 420) | st.integers(0, 30)))
    return (sign + head + ("." + frac if frac else "") + exp).encode()


class _Raw:
    """Raw tokens to put in place of marker strings once the event is serialized."""

    def __init__(self) -> None:
        self.tokens: list[bytes] = []

    def marker(self, token: bytes) -> str:
        self.tokens.append(token)
        return f"@@{len(self.tokens) - 1}@@"

    def fill(self, raw: bytes) -> bytes:
        for i, token in enumerate(self.tokens):
            raw = raw.replace(f'"@@{i}@@"'.encode(), token)
        return raw


_text = st.text(st.characters(codec="utf-8"), max_size=12)


def _leaf(draw: st.DrawFn, raw: _Raw) -> Any:
    kind = draw(st.integers(0, 11))
    if kind == 0:
        return None
    if kind == 1:
        return draw(st.booleans())
    if kind == 2:
        return draw(st.integers(-(2**63), 2**63 - 1))
    if kind == 3:
        return draw(st.floats(allow_nan=False, allow_infinity=False))
    if kind in (4, 5):
        return draw(_text)
    if kind == 6:
        return raw.marker(draw(st.sampled_from(_TOKENS)))
    return raw.marker(draw(_number_text()))


def _value(draw: st.DrawFn, raw: _Raw, depth: int = 0) -> Any:
    kind = draw(st.integers(0, 5)) if depth < 3 else 0
    if kind == 4:
        return [_value(draw, raw, depth + 1) for _ in range(draw(st.integers(0, 3)))]
    if kind == 5:
        return _object(draw, raw, depth + 1)
    return _leaf(draw, raw)


def _object(draw: st.DrawFn, raw: _Raw, depth: int = 0) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(["a", "b", "url", "x" * 129, ""]) | _text, max_size=4))
    return {k: _value(draw, raw, depth) for k in keys}


def _maybe(draw: st.DrawFn, raw: _Raw, good: st.SearchStrategy[Any]) -> Any:
    """Mostly a good value; now and then a number token or any value."""
    kind = draw(st.integers(0, 39))
    if kind == 0:
        return raw.marker(draw(st.sampled_from(_TOKENS) | _number_text()))
    if kind == 1:
        return _value(draw, raw)
    return draw(good)


def _money(draw: st.DrawFn, raw: _Raw) -> Any:
    if draw(st.integers(0, 2)) == 0:  # a number as written: the parsers' floats
        return raw.marker(draw(_number_text()))
    return _maybe(
        draw,
        raw,
        st.decimals(min_value=0, max_value=10**6, places=2).map(str)
        | st.sampled_from(["1.10", "0", "-1", "1.12345", "1e3", "NaN"])
        | st.floats(0, 10**6)
        | st.integers(0, 10**6),
    )


def _order(draw: st.DrawFn, raw: _Raw) -> dict[str, Any]:
    order: dict[str, Any] = {
        "order_id": _maybe(draw, raw, st.just("O-1")),
        "total": _money(draw, raw),
        "currency": _maybe(draw, raw, st.sampled_from(["NOK", "EUR"])),
        "location_id": _maybe(draw, raw, st.just("oslo-1")),
    }
    lines = []
    for _ in range(draw(st.integers(1, 3))):
        line: dict[str, Any] = {
            "sku": _maybe(draw, raw, st.just("SKU-1")),
            "quantity": _maybe(draw, raw, st.integers(1, 100_000)),
        }
        if draw(st.booleans()):
            line["unit_price"] = _money(draw, raw)
        if draw(st.booleans()):
            line["restock"] = _maybe(draw, raw, st.booleans())
        if draw(st.integers(0, 19)) == 0:
            line["quantiy"] = 1
        lines.append(line)
    order["lines"] = lines
    for key in draw(st.lists(st.sampled_from(["total", "currency", "location_id"]), max_size=1)):
        del order[key]
    return order


#: Identifier values: text, or now and then what ``Identifiers``' check refuses (a control,
#: DEL, a C1 control, a format character: escaped by the dumps, or raw).
_id_text: Final = st.text(st.characters(categories=("L", "N", "P", "Zs")), max_size=8) | st.text(
    st.sampled_from("ab\x00\x07\x1f\x7f\x85\u200b\u202e\u2028"), max_size=3
)


def _identifiers(draw: st.DrawFn, raw: _Raw) -> Any:
    names = ["customer_id", "email", "phone", "loyalty_id", "card_token", "anonymous_id"]
    ids: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True)):
        ids[name] = _maybe(draw, raw, _id_text)
    for name in draw(
        st.lists(st.sampled_from(["member_no"] * 8 + ["Bad-Name", "x" * 40]), max_size=1)
    ):
        ids[name] = _maybe(draw, raw, st.just("m-1") | st.none())
    return ids


def _free(draw: st.DrawFn, raw: _Raw) -> dict[str, Any]:
    """A free-form part: mostly flat, its leaves often number tokens."""
    return {k: _value(draw, raw, 2) for k in draw(st.lists(_text, max_size=4))}


@st.composite
def _records(draw: st.DrawFn) -> bytes:
    raw = _Raw()
    t = draw(st.sampled_from(list(EventType)))
    event: dict[str, Any] = {
        "event_id": _maybe(draw, raw, st.sampled_from(["evt-1", "sim-1-0000000001"])),
        "type": _maybe(draw, raw, st.sampled_from([t.value] * 19 + ["bogus"])),
        "channel": _maybe(draw, raw, st.sampled_from([c.value for c in Channel])),
        "occurred_at": _maybe(
            draw,
            raw,
            st.sampled_from(
                ["2024-05-01T10:00:00+02:00", "2024-05-01T10:00:00.123456Z"] * 4
                + ["2024-05-01T10:00:00", "1999-12-31T23:00:00+00:00"]
            ),
        ),
        "identifiers": _identifiers(draw, raw),
        "properties": _free(draw, raw),
    }
    if t in ORDER_TYPES:
        event["order"] = _order(draw, raw)
    if t in INVENTORY_TYPES:
        event["inventory"] = {
            "sku": "SKU-1",
            "location_id": "oslo-1",
            "delta": _maybe(draw, raw, st.integers(-5, 5)),
            "on_hand": _maybe(draw, raw, st.integers(0, 5)),
            "reason": _maybe(draw, raw, st.sampled_from([r.value for r in InventoryReason])),
        }
    if t is EventType.CUSTOM:
        event["name"] = _maybe(draw, raw, st.just("Wishlist Viewed"))
    optional: dict[str, Callable[[], Any]] = {
        "name": lambda: _maybe(draw, raw, st.sampled_from(["Wishlist Viewed", ""])),
        "source": lambda: _maybe(draw, raw, st.just("pos-1")),
        "region": lambda: _maybe(draw, raw, st.sampled_from(["NO", "uk", " se ", "ZZZ"])),
        "consent": lambda: {
            k: _maybe(draw, raw, st.booleans())
            for k in draw(st.lists(st.sampled_from(["analytics", "ads", "adz"]), max_size=2))
        },
        "consent_signals": lambda: {
            k: _free(draw, raw)
            for k in draw(st.lists(st.sampled_from(["gcm", "segment", "usp"]), max_size=2))
        },
        "gpc": lambda: _maybe(draw, raw, st.booleans()),
        "traits": lambda: {
            k: _value(draw, raw, 2)
            for k in draw(st.lists(st.sampled_from(["first_name", "vip", "score"]), max_size=2))
        },
        "zz_unknown": lambda: _value(draw, raw),
        "zz_other": lambda: raw.marker(draw(st.sampled_from(_TOKENS) | _number_text())),
    }
    for key in draw(st.lists(st.sampled_from(sorted(optional)), max_size=4, unique=True)):
        event[key] = optional[key]()
    dump = draw(st.integers(0, 3))
    if dump == 0:
        out = json.dumps(event, ensure_ascii=True).encode()  # \\u escapes, ", " separators
    elif dump == 1:
        out = orjson.dumps(event, option=orjson.OPT_INDENT_2)
    else:
        out = orjson.dumps(event)
    out = raw.fill(out)
    if draw(st.integers(0, 19)) == 0:  # one byte changed or inserted
        at = draw(st.integers(0, len(out)))
        byte = bytes([draw(st.sampled_from(b'\x00\x0b\x0c\x7f\x80\xed",:{}[]0e-N '))])
        out = draw(st.sampled_from([out[:at] + byte + out[at + 1 :], out[:at] + byte + out[at:]]))
    return out


def _shape(value: Any) -> Any:
    """Everything a touchpoint holds, its types and reprs included."""
    if isinstance(value, BaseModel):
        extra = value.__pydantic_extra__
        return (
            type(value).__name__,
            tuple((k, _shape(v)) for k, v in value.__dict__.items()),
            tuple(sorted(value.__pydantic_fields_set__)),
            None if extra is None else _shape(extra),
        )
    if isinstance(value, dict):
        return ("dict", tuple((k, _shape(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(map(_shape, value)))
    return (type(value).__name__, repr(value))


def _outcome(parse: Any, raw: bytes) -> tuple[Any, ...]:
    try:
        tp = parse(raw)
    except InvalidEvent as err:
        return ("refused", err.reason, err.message, err.field, err.details)
    return ("accepted", _shape(tp))


@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_records())
def test_json_path_matches_reference(raw: bytes) -> None:
    assert _outcome(parse_touchpoint, raw) == _outcome(parse_reference.parse_touchpoint, raw)


def _in_properties(number: bytes) -> bytes:
    return (
        b'{"event_id":"e-1","type":"page_view","channel":"web",'
        b'"occurred_at":"2024-05-01T10:00:00Z","properties":{"n":%s}}' % number
    )


@settings(max_examples=300, deadline=None)
@example(raw=_in_properties(b"-9223372036854775809"))  # orjson: a float; 19 digits
@example(raw=_in_properties(b"18446744073709551616"))  # orjson: a float; 20 digits
@example(raw=_in_properties(b"1e400"))  # orjson: not JSON; pydantic-core: inf
@given(raw=st.binary(max_size=120) | _number_text().map(_in_properties))
def test_json_path_matches_reference_on_any_bytes(raw: bytes) -> None:
    assert _outcome(parse_touchpoint, raw) == _outcome(parse_reference.parse_touchpoint, raw)


def test_simulator_records_take_the_json_path_and_match() -> None:
    stream = Simulator(seed=3, customers=200, stores=3, skus=50).events()
    for _ in range(1500):
        raw = dump_touchpoint(next(stream))  # as the producer SDK sends it
        assert _shape(_VALIDATE_JSON(raw)) == _shape(parse_reference.parse_touchpoint(raw))
        assert _outcome(parse_touchpoint, raw) == _outcome(parse_reference.parse_touchpoint, raw)


@pytest.mark.parametrize("value", ["a\x7f", "\x7f", "a\x1f", "\x85", "\u202e", "\u2028", "ok"])
@pytest.mark.parametrize("dumps", [orjson.dumps, lambda e: json.dumps(e).encode()])
def test_identifier_characters_refused_alike(value: str, dumps: Callable[[Any], bytes]) -> None:
    """DEL is printable ASCII's one neighbour a JSON string holds raw; the others come escaped
    (or not ASCII): each is refused alike (``control_characters``), ``ok`` accepted alike."""
    event = {
        "event_id": "evt-1",
        "type": "signup",
        "channel": "web",
        "occurred_at": "2024-05-01T10:00:00Z",
        "identifiers": {"email": "a@b.no", "customer_id": value},
    }
    raw = dumps(event)
    expected = _outcome(parse_reference.parse_touchpoint, raw)
    assert expected[0] == ("accepted" if value == "ok" else "refused")
    assert _outcome(parse_touchpoint, raw) == expected


#: Every place a free-form value is kept (``_ints_read_alike`` looks at each), nested or not.
_FREE_PLACES: Final = (
    b'"properties":{"n":%s}',
    b'"properties":{"a":"x","l":[1,[2,%s]]}',
    b'"properties":{"d":{"e":{"n":%s}}}',
    b'"traits":{"vip":%s}',
    b'"traits":{"preferences":{"l":[%s]}}',
    b'"consent_signals":{"usp":{"n":%s}}',
    b'"consent_signals":{"segment":{"n":%s}}',
    b'"consent_signals":{"gcm":{"l":[%s]}}',
)


@pytest.mark.parametrize("place", _FREE_PLACES)
@pytest.mark.parametrize(
    "number",
    [
        b"-9223372036854775809",  # orjson: a float
        b"-9223372036854775808",  # orjson: an integer
        b"18446744073709551615",  # orjson: an integer
        b"18446744073709551616",  # orjson: a float
        b"9" * 400,  # orjson: not JSON
    ],
)
def test_integers_beyond_64_bits_read_alike_in_every_free_form_place(
    place: bytes, number: bytes
) -> None:
    """pydantic-core keeps an integer outside [-2**63, 2**64) exact; ``orjson.loads`` does not:
    wherever a free-form part keeps one, the record is decided as the old path decides it."""
    raw = (
        b'{"event_id":"e-1","type":"page_view","channel":"web",'
        b'"occurred_at":"2024-05-01T10:00:00Z",%s}' % (place % number)
    )
    assert _outcome(parse_touchpoint, raw) == _outcome(parse_reference.parse_touchpoint, raw)


# --- region as a core constraint, occurred_at around its bounds (twentieth pass) ----------------


@st.composite
def _timestamps(draw: st.DrawFn) -> Any:
    """RFC 3339-ish texts around every bound ``_rfc3339``, the datetime and ``_sane_year`` draw:
    years 0001..9999 (2000 and 2100 in local time but not in UTC), offsets, 40 characters and
    more, other separators; now and then not a string at all."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.sampled_from([1714550400, 1714550400.5, True, None, [], {}, "", " "]))
    if kind < 6:  # accepted: the region and the rest decide
        return draw(
            st.sampled_from(
                [
                    "2024-05-01T10:00:00+02:00",
                    "2000-01-01T00:30:00+01:00",  # 1999 in UTC
                    "2100-12-31T23:59:59-01:00",  # 2101 in UTC
                    "2024-05-01T10:00:00.12345678901234+02:00",  # 40 characters
                ]
            )
        )
    year = draw(st.sampled_from([1, 999, 1999, 2000, 2024, 2100, 2101, 9999]))
    date = draw(st.sampled_from(["01-01", "12-31", "05-01", "02-30"]))
    sep = draw(st.sampled_from("TTt _"))
    clock = draw(st.sampled_from(["00:00:00", "00:30:00", "23:59:59", "10:00", "24:00:00"]))
    fraction = draw(st.sampled_from(["", "", ".", ",5"]) | st.text("0123456789", max_size=24))
    if fraction and fraction[0] in "0123456789":
        fraction = "." + fraction
    offset = draw(
        st.sampled_from(["Z", "z", "+00:00", "-00:00", "+01:00", "-01:00", "+02:00", "+0200"])
        | st.sampled_from(["+23:59", "-23:59", "+24:00", "", "+1", " Z", "Z "])
    )
    text = f"{year:04d}-{date}{sep}{clock}{fraction}{offset}"
    if draw(st.integers(0, 9)) == 0:  # other digits, other characters
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["\u0661", "\uff10", "\x00", "é", "0"])) + text[at:]
    return text


#: Region texts around ``_region``'s ``strip().upper()``, ``UK`` -> ``GB`` and ``^[A-Z]{2}$``:
#: ASCII letters in any case, the ``UK`` forms, spaces, and letters whose upper case is ASCII.
_regions: Final = st.sampled_from(
    ["UK", "uk", "Uk", "uK", "GB", "NO", "no", "Se", " NO", "NO ", "\tgb\n", "ZZZ", "", "N"]
) | st.text(st.sampled_from("AaKkUuZzGgTtVvJjLl ß\u0131\u017f\uff21\u1e9e\x1c"), max_size=3)


@st.composite
def _dated_records(draw: st.DrawFn) -> bytes:
    kinds = ["page_view"] * 4 + ["signup", "custom", "consent_updated", "pos_sale"]
    event: dict[str, Any] = {
        "event_id": "evt-1",
        "type": draw(st.sampled_from(kinds)),
        "channel": "web",
        "occurred_at": draw(_timestamps()),
        "identifiers": draw(st.sampled_from([{"email": "a@b.no"}] * 4 + [{}, {"email": " "}])),
    }
    if draw(st.integers(0, 3)):
        event["name"] = "Wishlist Viewed"
    if draw(st.integers(0, 3)):
        event["gpc"] = True
    if draw(st.integers(0, 4)):
        event["region"] = draw(_regions | st.sampled_from([None, 1, True, ["NO"]]))
    if draw(st.booleans()):
        return json.dumps(event, ensure_ascii=True).encode()
    return orjson.dumps(event)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(raw=b'{"event_id":"e","type":"page_view","channel":"web","occurred_at":"x","region":"uk"}')
@given(raw=_dated_records())
def test_regions_and_timestamps_read_alike(raw: bytes) -> None:
    """``region`` is a core constraint in the JSON path's schema, and the JSON path has its own
    after-validator: every record is still decided as the old path decides it, with the same
    region and the same datetime (offset included), types required alike."""
    assert _outcome(parse_touchpoint, raw) == _outcome(parse_reference.parse_touchpoint, raw)


@pytest.mark.parametrize(
    ("occurred_at", "region"),
    [
        ("2024-05-01T10:00:00+02:00", "NO"),
        ("2000-01-01T00:30:00+01:00", "no"),  # 1999 in UTC: the local year is checked
        ("2100-12-31T23:59:59.12345678901234-01:00", "Gb"),  # 2101 in UTC; 40 characters
        ("2024-05-01 10:00Z", "US"),
    ],
)
def test_plain_timestamps_and_regions_take_the_json_path(occurred_at: str, region: str) -> None:
    """What producers send (an offset, a year in range, two letters in any case but ``UK``)
    is decided by the JSON path's schema itself, not handed to the old path (the old path's
    ``_region`` builds two strings: what the core constraint saves)."""
    raw = orjson.dumps(
        {
            "event_id": "evt-1",
            "type": "page_view",
            "channel": "web",
            "occurred_at": occurred_at,
            "region": region,
        }
    )
    assert _shape(_VALIDATE_JSON(raw)) == _shape(parse_reference.parse_touchpoint(raw))


def test_a_record_without_its_optional_parts_takes_the_json_path() -> None:
    """No ``region``, ``properties`` or ``identifiers``: their defaults, from the JSON path
    (a field's schema replaced there keeps its default)."""
    raw = b'{"event_id":"e-1","type":"page_view","channel":"web","occurred_at":"2024-05-01T10:00Z"}'
    assert _shape(_VALIDATE_JSON(raw)) == _shape(parse_reference.parse_touchpoint(raw))


# --- properties as core constraints (twentieth pass) ------------------------------------------

_PROPERTY_VALUES: Final = (
    b"null",
    b"true",
    b"false",
    b"0",
    b"-0",
    b"1.0",
    b"1.5",
    b"1e2",
    b"-9223372036854775808",
    b"-9223372036854775809",
    b"18446744073709551615",
    b"18446744073709551616",
    b'"1"',
    b'"true"',
    b"[]",
    b'[1, "a"]',
    b"{}",
    b'{"a": 18446744073709551616}',
    b"NaN",
)


@st.composite
def _flat_properties(draw: st.DrawFn) -> bytes:
    """A ``properties`` object around every bound ``_freeform``'s flat look and its JSON
    schema draw: 63..65 keys, and at most a few edits, each at a drawn place: a key of 127..129
    characters, a repeated key, a string of 2047..2049 (ASCII or two bytes a character), an
    integer at either end of orjson's range, a float, a string that reads as a number, a list,
    an object, a ``NaN``."""
    count = draw(st.sampled_from([0, 1, 2, 3, 63, 64, 65]))
    keys: list[str] = [f"k{i}" for i in range(count)]
    values: list[bytes] = [
        orjson.dumps(draw(st.sampled_from(["v", "", 7, True, None]) | _text)) for _ in keys
    ]
    for _ in range(draw(st.integers(0, 2)) if count else 0):
        at = draw(st.integers(0, count - 1))
        edit = draw(st.integers(0, 3))
        if edit == 0:
            keys[at] = draw(st.sampled_from(["x", "é"])) * draw(st.integers(127, 129))
        elif edit == 1:
            keys[at] = draw(st.sampled_from(["k0", "k1"]))  # repeated
        elif edit == 2:
            text = draw(st.sampled_from(["y", "é"])) * draw(st.integers(2047, 2049))
            values[at] = orjson.dumps(text)
        else:
            values[at] = draw(st.sampled_from(_PROPERTY_VALUES))
    pairs = b",".join(orjson.dumps(k) + b":" + v for k, v in zip(keys, values, strict=True))
    return (
        b'{"event_id":"e-1","type":"page_view","channel":"web",'
        b'"occurred_at":"2024-05-01T10:00:00Z","properties":{%s}}' % pairs
    )


_NAN_A_DUPLICATE_HIDES: Final = (
    b'{"event_id":"e-1","type":"page_view","channel":"web",'
    b'"occurred_at":"2024-05-01T10:00:00Z","properties":{"k1":NaN,"k1":"v"}}'
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(raw=_NAN_A_DUPLICATE_HIDES)  # a fresh session's run: the JSON path accepted it
@given(raw=_flat_properties())
def test_properties_read_alike(raw: bytes) -> None:
    """``properties`` is a core schema in the JSON path (flat, bounded, integers in orjson's
    range; anything else through ``_freeform`` and a look at its integers): every record is
    still decided as the old path decides it, with the same values, types and key order."""
    assert _outcome(parse_touchpoint, raw) == _outcome(parse_reference.parse_touchpoint, raw)


#: Where a duplicate key can hide a value from the model: each place's JSON with ``%s`` for the
#: hidden value, then the same key again with a value the model takes.
_HIDING_PLACES: Final = {
    "properties": b'"properties":{"k":%s,"k":"v"}',
    "traits": b'"traits":{"a":%s,"a":1}',
    "identifiers": b'"identifiers":{"email":%s,"email":"a@example.com"}',
    "top level": b'"session_id":%s,"session_id":"s-1"',
    "order line": b'"type":"order_completed","order":{"order_id":"o-1","currency":"EUR",'
    b'"total":"5.00","lines":[{"sku":"A","quantity":%s,"quantity":1,"unit_price":"5.00"}]}',
}
#: What pydantic-core's parser reads and orjson refuses (not JSON).
_NOT_JSON: Final = (b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1E+309", b"9" * 400)


@pytest.mark.parametrize("place", sorted(_HIDING_PLACES))
@pytest.mark.parametrize("value", _NOT_JSON)
def test_a_value_a_duplicate_key_hides_is_still_read_as_json(place: str, value: bytes) -> None:
    """Both parsers keep a repeated key's last value, so the model never validates the first:
    a record whose hidden value is not JSON is refused as not JSON, as the old path refuses it,
    and the same record with a JSON value there is accepted by both."""
    head = b'{"event_id":"e-1","type":"page_view","channel":"web",'
    head += b'"occurred_at":"2024-05-01T10:00:00Z",'
    if place == "order line":  # the type is the order's
        head = head.replace(b'"type":"page_view",', b"")
    raw = head + _HIDING_PLACES[place] % value + b"}"
    with pytest.raises(InvalidEvent) as refused:
        parse_touchpoint(raw)
    assert refused.value.reason == "malformed_json"
    assert _outcome(parse_touchpoint, raw) == _outcome(parse_reference.parse_touchpoint, raw)
    json_raw = head + _HIDING_PLACES[place] % b"2" + b"}"
    assert _outcome(parse_touchpoint, json_raw)[0] == "accepted"
    assert _outcome(parse_touchpoint, json_raw) == _outcome(
        parse_reference.parse_touchpoint, json_raw
    )


def test_flat_properties_take_the_json_path() -> None:
    """A flat ``properties`` of the largest size ``_freeform`` takes without a look further is
    decided by the JSON path's core schema, not handed to the old path."""
    properties: dict[str, Any] = {f"k{i}": "v" for i in range(58)}
    properties |= {"é" * 128: "é" * 2048, "x" * 128: "x" * 2048}  # 128 and 2048 code points
    properties |= {"a": 18446744073709551615, "b": -9223372036854775808, "c": None, "d": True}
    raw = orjson.dumps(
        {
            "event_id": "e-1",
            "type": "page_view",
            "channel": "web",
            "occurred_at": "2024-05-01T10:00:00Z",
            "properties": properties,
        }
    )
    assert _shape(_VALIDATE_JSON(raw)) == _shape(parse_reference.parse_touchpoint(raw))


# --- identifiers' check as core constraints (twentieth pass) ----------------------------------

#: Identifier values: any character, those ``Identifiers``' check refuses among them (controls,
#: format and bidi characters, separators), unassigned and private-use ones, long values.
_any_id_text: Final = st.one_of(
    *[st.text(st.characters(exclude_categories=("Cs", "Cc", "Cf", "Zl", "Zp")), max_size=6)] * 6,
    st.text(st.characters(exclude_categories=("Cs",)), max_size=6),
    st.text(st.sampled_from("a\x00\x1f\x7f\x85\xad\u061c\u200b\u202e\u2028\u2029\ue000\u0378")),
    st.sampled_from(["é" * 1024, "x" * 1025, "ok"]),
)
_id_names: Final = st.sampled_from(
    [
        *("member_no", "member_no2", "a", "a" * 32, "a" * 33, "Member", "1a", "member-no"),
        *("é", "", "member_no\n", "email", "phone"),
    ]
)


@st.composite
def _identified_records(draw: st.DrawFn) -> bytes:
    ids: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(["email", "customer_id", "anonymous_id"]))):
        ids[name] = draw(_any_id_text | st.sampled_from([None, None, None, 1, True, ["a"]]))
    for i in range(draw(st.sampled_from([0, 1, 2, 8, 9]))):
        ids[f"type_{i}"] = draw(st.sampled_from(["m-1", "wert-ü-漢", "", None]))
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        ids[draw(_id_names)] = draw(_any_id_text | st.sampled_from([None, 1, ["a"], {}]))
    event = {
        "event_id": "evt-1",
        "type": draw(st.sampled_from(["signup", "page_view"])),
        "channel": "web",
        "occurred_at": "2024-05-01T10:00:00Z",
        "identifiers": ids,
    }
    if draw(st.booleans()):
        return json.dumps(event, ensure_ascii=draw(st.booleans())).encode()
    return orjson.dumps(event)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_identified_records())
def test_identifiers_read_alike(raw: bytes) -> None:
    """``Identifiers``' check is core constraints in the JSON path (a pattern on every value,
    on the custom types' names, their count in the after-validator): every record is still
    decided as the old path decides it, refused for the same character, name or count."""
    assert _outcome(parse_touchpoint, raw) == _outcome(parse_reference.parse_touchpoint, raw)


def test_every_character_the_identifier_check_refuses_is_refused_by_the_pattern() -> None:
    """The pattern's Unicode tables are Rust's, the check's are Python's, and the two can be of
    different versions: every character Python's put in a refused category (a surrogate aside:
    no JSON string reaches the pattern with one) is refused by the pattern too, so the JSON path
    never lets one through. The pattern takes printable text of every script."""
    check = SchemaValidator(core_schema.str_schema(pattern=_SAFE_IDENTIFIER))
    refused = [
        chr(c)
        for c in range(0x110000)
        if unicodedata.category(chr(c)) in _FORBIDDEN_CATEGORIES - {"Cs"}
    ]
    assert len(refused) > 200  # Cc, Cf, Zl, Zp
    for char in refused:
        with pytest.raises(ValidationError):
            check.validate_python(f"a{char}b")
    assert (
        check.validate_python("noah.berg+1@example.no ÅØ 漢字 😀")
        == "noah.berg+1@example.no ÅØ 漢字 😀"
    )


def test_custom_identifiers_take_the_json_path() -> None:
    """Eight custom types (the most there may be), values of any script and a null: decided by
    the JSON path's schema, not handed to the old path."""
    ids: dict[str, Any] = {f"type_{i}": "wert-ü-漢" for i in range(7)}
    ids |= {"a" * 32: None, "email": "Ålesund@example.no", "customer_id": "x" * 1024}
    raw = orjson.dumps(
        {
            "event_id": "evt-1",
            "type": "signup",
            "channel": "web",
            "occurred_at": "2024-05-01T10:00:00Z",
            "identifiers": ids,
        }
    )
    assert _shape(_VALIDATE_JSON(raw)) == _shape(parse_reference.parse_touchpoint(raw))


# --- money's strings read by ``Decimal`` from core (twenty-first pass) --------------------------


@st.composite
def _money_token(draw: st.DrawFn) -> bytes:
    """A money value as raw JSON, around every bound the decimal validator and ``_reject_bool``
    draw: strings of 0-16 whole digits (leading zeros, 14 and 15 of them) and 0-6 decimals,
    with a sign, an exponent, spaces, an underscore, a lone dot or other digits (Arabic-Indic,
    full-width); the same as JSON numbers (``1e3``, ``-0``, ``1.10``, huge exponents);
    booleans, null, objects."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(
            st.sampled_from(
                [
                    *(b"true", b"false", b"null", b"[]", b"{}", b'"NaN"', b'"Infinity"', b'"-0"'),
                    *(b'"1e3"', b'"1E+3"', b'"0E-5"', '"١٢"'.encode(), '"\uff11"'.encode()),
                    *(b'"1_0"', b'" 1"', b'"1 "', b'"+1"', b'"1."', b'".5"', b'""', b'"."'),
                ]
            )
        )
    if kind == 1:
        return draw(_number_text())
    whole = draw(
        st.text(_DIGITS, min_size=1, max_size=3)
        | st.text(_DIGITS, min_size=13, max_size=16)
        | st.sampled_from(["0", "00", "0" * 14, "9" * 14, "1" + "0" * 13, "9" * 15])
    )
    places = draw(st.sampled_from(["", "", "0", "1", "10", "1234", "0000", "12345", "100000"]))
    text = whole + ("." + places if places else "")
    if kind == 2:
        text = draw(st.sampled_from(["-", "+", " ", ""])) + text
        text += draw(st.sampled_from(["e3", "E-2", "e400", " ", "\n", ""]))
    if kind == 3:  # the same digits as a JSON number
        return text.encode()
    return orjson.dumps(text)


@st.composite
def _money_records(draw: st.DrawFn) -> bytes:
    lines = [
        b'{"sku":"SKU-1","quantity":1%s}'
        % (b',"unit_price":%s' % draw(_money_token()) if draw(st.booleans()) else b"")
        for _ in range(draw(st.integers(1, 3)))
    ]
    total = b'"total":%s,' % draw(_money_token()) if draw(st.integers(0, 3)) else b""
    currency = b'"currency":"NOK",' if draw(st.integers(0, 5)) else b""
    return (
        b'{"event_id":"e-1","type":"%s","channel":"pos","occurred_at":"2024-05-01T10:00:00Z",'
        b'"order":{"order_id":"O-1",%s%s"location_id":"oslo-1","lines":[%s]}}'
        % (
            draw(st.sampled_from([b"pos_sale", b"order_fulfilled", b"page_view"])),
            total,
            currency,
            b",".join(lines),
        )
    )


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(raw=b'{"event_id":"e","type":"page_view","channel":"web","occurred_at":"x","order":1}')
@given(raw=_money_records())
def test_money_reads_alike(raw: bytes) -> None:
    """Money's strings of at most 14 digits and 4 decimals are ``Decimal`` of the text, from
    core, in the JSON path; everything else is read by the field's own schema, as before: every
    record is still decided as the old path decides it, the same values (``Decimal('1.10')``,
    ``Decimal('1000.0')`` from the number ``1e3``), refused for the same reason."""
    assert _outcome(parse_touchpoint, raw) == _outcome(parse_reference.parse_touchpoint, raw)


def test_money_strings_take_core_s_decimal() -> None:
    """The amounts of an order, its lines' included, are read by ``Decimal`` from core: no call
    of ``_reject_bool`` (the field's own schema). ``OrderLine``'s own validator, which
    pydantic-core would take for its lines (prebuilt), is not; the class is complete again."""
    raw = (
        b'{"event_id":"e-1","type":"pos_sale","channel":"pos","occurred_at":"2024-05-01T10:00:00Z",'
        b'"order":{"order_id":"O-1","total":"1.10","currency":"NOK","location_id":"oslo-1",'
        b'"lines":[{"sku":"SKU-1","quantity":1,"unit_price":"0.0000"},'
        b'{"sku":"SKU-2","quantity":2,"unit_price":"99999999999999.9999"}]}}'
    )
    called: list[str] = []

    def watch(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            called.append(frame.f_code.co_name)

    sys.setprofile(watch)
    try:
        tp = _VALIDATE_JSON(raw)
    finally:
        sys.setprofile(None)
    assert "_json_checks" in called
    assert "_reject_bool" not in called
    assert _shape(tp) == _shape(parse_reference.parse_touchpoint(raw))
    assert [repr(line.unit_price) for line in tp.order.lines] == [
        "Decimal('0.0000')",
        "Decimal('99999999999999.9999')",
    ]
    assert OrderLine.__pydantic_complete__ is True
