"""Touchpoint v1: the event contract every channel producer writes to ``touchpoints.raw``.

Strict where a mistake corrupts downstream state, permissive where producers legitimately differ:

* strict: ``occurred_at`` is an RFC 3339 string WITH an offset (naive times and unix numbers are
  rejected); money is ``Decimal`` (JSON string or number; NaN/inf rejected, at most 18 digits,
  4 decimals); currency is 3 upper-case letters; quantities are real integers (``1.5``, ``"1"``
  and ``true`` are rejected); every string is length-bounded; models are frozen; each event
  type's required parts are checked (``pos_sale`` needs an order with lines and a
  ``location_id``, ``inventory_counted`` needs ``inventory.on_hand``, ``custom`` needs a
  ``name``, ...).
* permissive: ``properties`` and ``consent_signals`` keep unknown keys (bounded in count, depth
  and string length); ``traits`` allows extra scalar traits (bounded); ``identifiers`` allows
  custom identifier types (snake_case names, bounded); ``region`` is upper-cased (``"uk"`` is
  accepted as ``GB``).
* unknown TOP-LEVEL keys are ignored (dropped), not rejected: a producer on a later minor version
  of the contract (or one adding its own envelope field) must not have its events dead-lettered
  by older workers, and nothing downstream reads a field the model does not know. Producer-side
  extras belong in ``properties``. Unknown keys inside the typed sub-objects (``order``,
  ``inventory``, ``consent``) ARE rejected, because a typo there (``quantiy``) silently changes
  stock or consent.

The size limit (``MAX_EVENT_BYTES``) is checked on the raw bytes by :func:`parse_touchpoint`.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from itertools import chain
from typing import Annotated, Any, Final, Self

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import CoreSchema, PydanticCustomError, SchemaValidator, core_schema

from schemas.errors import (
    CONTROL_CHARACTERS,
    INVALID_UTF8,
    MALFORMED_JSON,
    OVERSIZE,
    SCHEMA_VIOLATION,
    UNKNOWN_TYPE,
    InvalidEvent,
    Reason,
)
from schemas.identifiers import BUILTIN_TYPES, Identifier
from schemas.normalize import DEFAULT, NormalizeConfig, normalize_one

SCHEMA_VERSION: Final = 1
MAX_EVENT_BYTES: Final = 64 * 1024

#: Bounds of the free-form parts.
MAX_FREEFORM_KEYS: Final = 64
MAX_FREEFORM_DEPTH: Final = 4
MAX_FREEFORM_STRING: Final = 2048
MAX_FREEFORM_LIST: Final = 100
MAX_EXTRA_TRAITS: Final = 32
MAX_CUSTOM_IDENTIFIERS: Final = 8
MAX_ORDER_LINES: Final = 500
MAX_QUANTITY: Final = 100_000
MAX_STOCK: Final = 1_000_000_000


class EventType(StrEnum):
    PAGE_VIEW = "page_view"
    PRODUCT_VIEWED = "product_viewed"
    CART_UPDATED = "cart_updated"
    SIGNUP = "signup"
    LOGIN = "login"
    PROFILE_UPDATED = "profile_updated"
    SURVEY_ANSWERED = "survey_answered"
    SUPPORT_CONTACTED = "support_contacted"
    SOCIAL_ENGAGED = "social_engaged"
    LOYALTY_ENROLLED = "loyalty_enrolled"
    CONSENT_UPDATED = "consent_updated"
    ERASURE_REQUESTED = "erasure_requested"
    ORDER_COMPLETED = "order_completed"
    ORDER_FULFILLED = "order_fulfilled"
    ORDER_CANCELLED = "order_cancelled"
    POS_SALE = "pos_sale"
    ORDER_RETURNED = "order_returned"
    INVENTORY_ADJUSTED = "inventory_adjusted"
    INVENTORY_COUNTED = "inventory_counted"
    #: Any other event a channel tracks (a Segment ``track`` call outside the e-commerce spec,
    #: "Wishlist Viewed", "Store Locator Used" ...): kept, with its ``name``, so nothing a channel
    #: sends is dropped. Resolves identity like any event; no stock or order effect.
    CUSTOM = "custom"


class Channel(StrEnum):
    WEB = "web"
    APP = "app"
    POS = "pos"
    EMAIL = "email"
    SOCIAL = "social"
    SUPPORT = "support"
    LOYALTY = "loyalty"
    BACKOFFICE = "backoffice"


class InventoryReason(StrEnum):
    RESTOCK = "restock"
    DAMAGE = "damage"
    SHRINKAGE = "shrinkage"
    CORRECTION = "correction"
    TRANSFER = "transfer"
    COUNT = "count"


#: Types that carry an order (with at least one line; an ``order_returned`` without lines
#: returns the whole order its ``order_id`` names: a full refund).
ORDER_TYPES: Final[frozenset[EventType]] = frozenset(
    {
        EventType.ORDER_COMPLETED,
        EventType.ORDER_FULFILLED,
        EventType.ORDER_CANCELLED,
        EventType.POS_SALE,
        EventType.ORDER_RETURNED,
    }
)
#: Types that carry an inventory change.
INVENTORY_TYPES: Final[frozenset[EventType]] = frozenset(
    {EventType.INVENTORY_ADJUSTED, EventType.INVENTORY_COUNTED}
)
#: Types that are about a person and so need at least one non-blank identifier.
IDENTIFIED_TYPES: Final[frozenset[EventType]] = frozenset(
    {
        EventType.SIGNUP,
        EventType.LOGIN,
        EventType.PROFILE_UPDATED,
        EventType.LOYALTY_ENROLLED,
        EventType.CONSENT_UPDATED,
        EventType.ERASURE_REQUESTED,
    }
)

# --- field types ---------------------------------------------------------------------------

_ID_TEXT = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces: safe in keys and logs
_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Unicode categories never allowed in an identifier value: controls (NUL, CR, LF, ESC, C1),
#: format characters (bidi overrides and isolates, zero-width joiners, soft hyphen), line and
#: paragraph separators, lone surrogates.
_FORBIDDEN_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def has_control_characters(value: str) -> bool:
    """Whether ``value`` holds a character that has no place in an identifier (see above)."""
    if value.isascii():
        return _ASCII_CONTROL.search(value) is not None
    return any(unicodedata.category(c) in _FORBIDDEN_CATEGORIES for c in value)


_CUSTOM_ID_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


Code = Annotated[str, Field(min_length=1, max_length=128, pattern=_ID_TEXT.pattern)]
ShortText = Annotated[str, Field(max_length=256)]
EventName = Annotated[str, Field(min_length=1, max_length=256)]
Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=18, decimal_places=4, allow_inf_nan=False),
]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
IdentifierValue = Annotated[str, Field(max_length=1024)]


def _reject_bool(value: object) -> object:
    # pydantic's lax Decimal accepts True as 1; money must never come from a boolean.
    if isinstance(value, bool):
        raise PydanticCustomError("decimal_type", "must be a decimal string or number")
    return value


StrictMoney = Annotated[Money, BeforeValidator(_reject_bool)]


def _region(value: object) -> object:
    if isinstance(value, str):
        upper = value.strip().upper()
        return "GB" if upper == "UK" else upper
    return value


def _unpublished_pattern(schema: dict[str, Any]) -> None:
    schema.pop("pattern", None)  # producers may send "uk" or "no": upper-cased, then checked


#: The pattern is checked after ``_region`` (metadata applies inner first): as a constraint of
#: the string schema itself, not pydantic's wrapper function around it (the same errors).
Region = Annotated[
    str,
    Field(pattern=r"^[A-Z]{2}$", json_schema_extra=_unpublished_pattern),
    BeforeValidator(_region),
]


def _rfc3339(value: object) -> object:
    if not isinstance(value, str):
        raise PydanticCustomError("rfc3339", "must be an RFC 3339 timestamp string with offset")
    if len(value) > 40:
        raise PydanticCustomError("rfc3339", "timestamp too long")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]


def _check_freeform(value: object, depth: int) -> None:
    if depth > MAX_FREEFORM_DEPTH:
        raise PydanticCustomError(
            "freeform", "nested deeper than {max}", {"max": MAX_FREEFORM_DEPTH}
        )
    if isinstance(value, dict):
        if len(value) > MAX_FREEFORM_KEYS:
            raise PydanticCustomError(
                "freeform", "more than {max} keys", {"max": MAX_FREEFORM_KEYS}
            )
        for key, item in value.items():
            if not isinstance(key, str) or len(key) > 128:
                raise PydanticCustomError("freeform", "keys must be strings of <= 128 chars")
            _check_freeform(item, depth + 1)
    elif isinstance(value, list):
        if len(value) > MAX_FREEFORM_LIST:
            raise PydanticCustomError(
                "freeform", "list longer than {max}", {"max": MAX_FREEFORM_LIST}
            )
        for item in value:
            _check_freeform(item, depth + 1)
    elif isinstance(value, str):
        if len(value) > MAX_FREEFORM_STRING:
            raise PydanticCustomError(
                "freeform", "string longer than {max}", {"max": MAX_FREEFORM_STRING}
            )
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise PydanticCustomError("freeform", "NaN and infinity are not allowed")
    elif value is not None and not isinstance(value, (bool, int)):
        raise PydanticCustomError("freeform", "only JSON values are allowed")


#: Values of a flat free-form part that need no further check (a ``bool`` is an ``int``).
_FLAT_SCALARS: Final = frozenset({int, bool, type(None)})


def _freeform(value: dict[str, Any]) -> dict[str, Any]:
    # The common case, a flat object of short strings and integers, without a call per value;
    # anything else (nested, floats, long or odd keys) gets the full check and its errors.
    if len(value) <= MAX_FREEFORM_KEYS:
        for key, item in value.items():
            if type(key) is not str or len(key) > 128:
                break
            kind = type(item)
            if kind is str:
                if len(item) > MAX_FREEFORM_STRING:
                    break
            elif kind not in _FLAT_SCALARS:
                break
        else:
            return value
    _check_freeform(value, 1)
    return value


FreeForm = Annotated[dict[str, Any], AfterValidator(_freeform)]

_FROZEN: Final = ConfigDict(frozen=True, extra="forbid", str_max_length=4096)


# --- models --------------------------------------------------------------------------------


def _check_custom_types(extra: dict[str, Any]) -> None:
    if len(extra) > MAX_CUSTOM_IDENTIFIERS:
        raise PydanticCustomError(
            "identifiers",
            "more than {max} custom identifier types",
            {"max": MAX_CUSTOM_IDENTIFIERS},
        )
    for name, value in extra.items():
        if not _CUSTOM_ID_NAME.fullmatch(name):
            raise PydanticCustomError(
                "identifiers", "custom identifier type names must be snake_case (<= 32 chars)"
            )
        if value is not None and (not isinstance(value, str) or len(value) > 1024):
            raise PydanticCustomError(
                "identifiers", "custom identifier values must be strings of <= 1024 chars"
            )


class Identifiers(BaseModel):
    """Raw identifiers as the producer sent them; normalization happens downstream.

    Blank strings are allowed here (normalization reports them as ``empty``). Custom identifier
    types (snake_case names from the identity configuration) are allowed as extra keys.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    customer_id: IdentifierValue | None = None
    email: IdentifierValue | None = None
    phone: IdentifierValue | None = None
    loyalty_id: IdentifierValue | None = None
    card_token: IdentifierValue | None = None
    anonymous_id: IdentifierValue | None = None
    social_handle: IdentifierValue | None = None

    @model_validator(mode="after")
    def _custom_types(self) -> Self:
        extra = self.__pydantic_extra__
        # All the values at once: a string of printable characters has none of the forbidden
        # ones (every forbidden category is unprintable), so the common case is one C call;
        # otherwise the exact check looks for the first offender, in ``as_mapping`` order.
        text = "".join(filter(None, self.__dict__.values()))
        if extra:
            text += "".join(v for v in extra.values() if isinstance(v, str))
        if not text.isprintable():
            self._no_control_characters()
        if extra:
            _check_custom_types(extra)
        return self

    def _no_control_characters(self) -> None:
        for name, value in self.as_mapping().items():
            if isinstance(value, str) and has_control_characters(value):
                raise PydanticCustomError(
                    "control_characters",
                    "identifier values must not contain control, format or bidi characters",
                    {"field": name},
                )

    def builtin(self) -> Mapping[str, str | None]:
        """The built-in identifiers, ``type -> raw value`` or None, every one of
        ``BUILTIN_TYPES`` (read only: the model's own fields, no copy)."""
        return self.__dict__

    def as_mapping(self) -> dict[str, str | None]:
        """Every identifier present (built-in and custom), ``type -> raw value``."""
        out: dict[str, str | None] = {
            name: getattr(self, name) for name in BUILTIN_TYPES if getattr(self, name) is not None
        }
        for name, value in (self.__pydantic_extra__ or {}).items():
            if value is not None:
                out[name] = value
        return out

    def any_present(self) -> bool:
        """Whether a value is not blank (the values are str or None: checked by the model's
        validation; a blank one strips to ``""``; C calls only, no generator)."""
        extra = self.__pydantic_extra__ or {}
        return any(map(str.strip, filter(None, chain(self.__dict__.values(), extra.values()))))


class Consent(BaseModel):
    """The CMP state at event time. ``None`` = not stated (never read as granted)."""

    model_config = _FROZEN

    analytics: StrictBool | None = None
    personalization: StrictBool | None = None
    marketing: StrictBool | None = None
    ads: StrictBool | None = None
    necessary: StrictBool | None = None


class ConsentSignals(BaseModel):
    """Consent in other vendors' formats, kept raw for the consent decoder.

    ``segment``: Segment ``categoryPreferences``; ``gcm``: Google Consent Mode flags
    (``ad_storage: "granted"`` ...); ``tcf``: an IAB TCF v2 TC string. Other formats (``usp``,
    ``gpp`` ...) are allowed as extra keys, bounded like ``properties``.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    segment: FreeForm | None = None
    gcm: FreeForm | None = None
    tcf: Annotated[str, Field(max_length=8192)] | None = None

    @model_validator(mode="after")
    def _bounded_extra(self) -> Self:
        extra = self.__pydantic_extra__ or {}
        if len(extra) > 8:
            raise PydanticCustomError("consent_signals", "more than 8 signal formats")
        _check_freeform(extra, 1)
        return self


class Traits(BaseModel):
    """Profile traits. Extra scalar traits are allowed (at most ``MAX_EXTRA_TRAITS``)."""

    model_config = ConfigDict(frozen=True, extra="allow", str_max_length=256)

    first_name: ShortText | None = None
    last_name: ShortText | None = None
    city: ShortText | None = None
    postal_code: Annotated[str, Field(max_length=32)] | None = None
    preferences: FreeForm | None = None

    @model_validator(mode="after")
    def _bounded_extra(self) -> Self:
        extra = self.__pydantic_extra__ or {}
        if len(extra) > MAX_EXTRA_TRAITS:
            raise PydanticCustomError(
                "traits", "more than {max} extra traits", {"max": MAX_EXTRA_TRAITS}
            )
        for name, value in extra.items():
            if len(name) > 64:
                raise PydanticCustomError("traits", "trait names must be <= 64 chars")
            if isinstance(value, str):
                if len(value) > 256:
                    raise PydanticCustomError("traits", "extra trait strings must be <= 256 chars")
            elif isinstance(value, float):
                if not math.isfinite(value):
                    raise PydanticCustomError("traits", "NaN and infinity are not allowed")
            elif value is not None and not isinstance(value, (bool, int)):
                raise PydanticCustomError("traits", "extra traits must be scalars")
        return self


class OrderLine(BaseModel):
    model_config = _FROZEN

    sku: Code
    quantity: Annotated[StrictInt, Field(ge=1, le=MAX_QUANTITY)]
    unit_price: StrictMoney | None = None
    category: ShortText | None = None
    #: ``order_returned`` only: the item goes back to sellable stock at ``order.location_id``.
    restock: StrictBool | None = None
    #: ``false``: the seller does not track this item's stock (e.g. a Shopify variant with
    #: inventory tracking off): the line is part of the purchase and moves no stock.
    tracked: StrictBool | None = None


class Order(BaseModel):
    model_config = _FROZEN

    order_id: Code
    total: StrictMoney | None = None
    currency: Currency | None = None
    payment_method: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    location_id: Code | None = None
    lines: Annotated[tuple[OrderLine, ...], Field(max_length=MAX_ORDER_LINES)] = ()

    @model_validator(mode="after")
    def _currency_with_money(self) -> Self:
        has_money = self.total is not None or any(ln.unit_price is not None for ln in self.lines)
        if has_money and self.currency is None:
            raise PydanticCustomError(
                "missing_for_type", "required when an amount is given", {"field": "currency"}
            )
        return self


class InventoryChange(BaseModel):
    model_config = _FROZEN

    sku: Code
    location_id: Code
    delta: Annotated[StrictInt, Field(ge=-MAX_STOCK, le=MAX_STOCK)] | None = None
    on_hand: Annotated[StrictInt, Field(ge=0, le=MAX_STOCK)] | None = None
    reason: InventoryReason | None = None


class Touchpoint(BaseModel):
    """One touchpoint event (contract version 1). Frozen."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_max_length=4096)

    event_id: Code
    type: EventType
    channel: Channel
    occurred_at: Timestamp
    #: The producer's own name of the event ("Order Completed", "Wishlist Viewed", a page's
    #: name): required for ``custom``, informational for the other types.
    name: EventName | None = None
    source: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    region: Region | None = None
    identifiers: Identifiers = Field(default_factory=Identifiers)
    consent: Consent | None = None
    consent_signals: ConsentSignals | None = None
    gpc: StrictBool | None = None
    traits: Traits | None = None
    properties: FreeForm = Field(default_factory=dict)
    order: Order | None = None
    inventory: InventoryChange | None = None

    @field_validator("occurred_at")
    @classmethod
    def _sane_year(cls, value: datetime) -> datetime:
        if not 2000 <= value.year <= 2100:
            raise PydanticCustomError("rfc3339", "year must be between 2000 and 2100")
        return value

    @model_validator(mode="after")
    def _type_requirements(self) -> Self:
        # the fields from the instance dict, where pydantic keeps them: each attribute read
        # of a model goes through ``BaseModel.__getattr__``'s hook (~0.1 µs more on CPython 3.11)
        fields = self.__dict__
        t = fields["type"]
        kind = _REQUIREMENTS.get(t)  # one lookup (a ``StrEnum`` member hashes as its str, in C)
        if kind is None:  # nothing to check: most events (70 % of the simulator's)
            return self
        if kind is _ORDER:
            _check_order(fields["order"], t)
        elif kind is _INVENTORY:
            _check_inventory(fields["inventory"], t)
        elif kind is _CUSTOM:
            if fields["name"] is None:
                raise _missing("name", t)
        else:  # _IDENTIFIED
            if not fields["identifiers"].any_present():
                raise _missing("identifiers", t, "at least one identifier is required for {type}")
            if (
                t is _T_CONSENT_UPDATED
                and fields["consent"] is None
                and fields["consent_signals"] is None
                and fields["gpc"] is None
            ):
                raise _missing(
                    "consent", t, "consent, consent_signals or gpc is required for {type}"
                )
        return self


# Enum members read per event, bound once (prefix: T_ event type): on CPython
# 3.11 a member read off its class costs ~0.1 µs (its metaclass's attribute hook), a
# constant ~0.01 (ADR 0019).
_T_CONSENT_UPDATED: Final = EventType.CONSENT_UPDATED
_T_INVENTORY_ADJUSTED: Final = EventType.INVENTORY_ADJUSTED
_T_INVENTORY_COUNTED: Final = EventType.INVENTORY_COUNTED
_T_ORDER_COMPLETED: Final = EventType.ORDER_COMPLETED
_T_ORDER_RETURNED: Final = EventType.ORDER_RETURNED
_T_POS_SALE: Final = EventType.POS_SALE


_ORDER: Final = "order"
_INVENTORY: Final = "inventory"
_IDENTIFIED: Final = "identified"  # ``consent_updated`` also needs a consent part
_CUSTOM: Final = "custom"
#: The types :meth:`Touchpoint._type_requirements` checks, by kind (the kinds are disjoint);
#: a type that is not here has nothing to check.
_REQUIREMENTS: Final[Mapping[EventType, str]] = {
    **dict.fromkeys(ORDER_TYPES, _ORDER),
    **dict.fromkeys(INVENTORY_TYPES, _INVENTORY),
    **dict.fromkeys(IDENTIFIED_TYPES, _IDENTIFIED),
    EventType.CUSTOM: _CUSTOM,
}


def _check_order(order: Order | None, t: EventType) -> None:
    if order is None:
        raise _missing("order", t)
    if not order.lines and t is not _T_ORDER_RETURNED:  # no lines: the whole order returned
        raise _missing("order.lines", t)
    if t in (_T_ORDER_COMPLETED, _T_POS_SALE) and order.total is None:
        raise _missing("order.total", t)
    if t is _T_POS_SALE and order.location_id is None:
        raise _missing("order.location_id", t)


def _check_inventory(inv: InventoryChange | None, t: EventType) -> None:
    if inv is None:
        raise _missing("inventory", t)
    if t is _T_INVENTORY_COUNTED and inv.on_hand is None:
        raise _missing("inventory.on_hand", t)
    if t is _T_INVENTORY_ADJUSTED:
        if inv.delta is None:
            raise _missing("inventory.delta", t)
        if inv.delta == 0:
            raise PydanticCustomError(
                "missing_for_type", "must not be 0", {"field": "inventory.delta"}
            )


def _missing(
    field: str, t: EventType, message: str = "required for type {type}"
) -> PydanticCustomError:
    return PydanticCustomError("missing_for_type", message, {"field": field, "type": t.value})


# --- parse / dump / key --------------------------------------------------------------------

_SHORT_MESSAGES: Final[Mapping[str, str]] = {
    "greater_than_equal": "must be >= {ge}",
    "less_than_equal": "must be <= {le}",
    "greater_than": "must be > {gt}",
    "less_than": "must be < {lt}",
    "string_too_long": "must be at most {max_length} characters",
    "string_too_short": "must be at least {min_length} characters",
    "too_long": "must have at most {max_length} items",
    "missing": "required",
    "extra_forbidden": "unknown field",
    "timezone_aware": "must have a timezone offset (RFC 3339)",
    "int_type": "must be an integer",
    "bool_type": "must be true or false",
    "decimal_max_digits": "at most {max_digits} digits",
    "decimal_max_places": "at most {decimal_places} decimal places",
    "finite_number": "must be finite",
}


def _dotted(loc: tuple[int | str, ...]) -> str | None:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or None


def invalid_event_from(exc: ValidationError) -> InvalidEvent:
    """Turn a pydantic ``ValidationError`` into an :class:`InvalidEvent` without input values."""
    details: list[tuple[str | None, str]] = []
    reason: Reason = SCHEMA_VIOLATION
    for err in exc.errors(include_url=False, include_input=False):
        loc = tuple(err["loc"])
        ctx = err.get("ctx") or {}
        field = _dotted(loc)
        if "field" in ctx:  # raised by a model validator: loc is the model, ctx names the field
            field = f"{field}.{ctx['field']}" if field else str(ctx["field"])
        template = _SHORT_MESSAGES.get(err["type"])
        try:
            message = template.format(**ctx) if template else err["msg"]
        except (KeyError, IndexError):
            message = err["msg"]
        if loc == ("type",) and err["type"] == "enum":
            reason = UNKNOWN_TYPE
            message = "unknown event type"
        if err["type"] == "string_unicode" or "surrogate" in message:
            reason = INVALID_UTF8
        if err["type"] == CONTROL_CHARACTERS and reason == SCHEMA_VIOLATION:
            reason = CONTROL_CHARACTERS
        details.append((field, message))
    details.sort(key=lambda d: d[0] != "type")  # an unknown type explains everything else
    field, message = details[0] if details else (None, "invalid event")
    lines = tuple(f"{f}: {m}" if f else m for f, m in details)
    return InvalidEvent(reason, message, field=field, details=lines)


def validate_touchpoint(data: Mapping[str, Any]) -> Touchpoint:
    """Validate an already-decoded event; raises :class:`InvalidEvent`."""
    if not isinstance(data, Mapping):
        raise InvalidEvent(SCHEMA_VIOLATION, "event must be a JSON object")
    return _validated(data)


#: ``Touchpoint.model_validate`` without its wrapper (a call per event).
_VALIDATE: Final = Touchpoint.__pydantic_validator__.validate_python


def _validated(data: Mapping[str, Any]) -> Touchpoint:
    try:
        tp: Touchpoint = _VALIDATE(data)
    except ValidationError as exc:
        raise invalid_event_from(exc) from None
    return tp


#: The integers ``orjson.loads`` reads as integers: [-2**63, 2**64).
_INT_MIN: Final = -(2**63)
_INT_END: Final = 2**64


def _orjson_ints(value: Any) -> bool:
    """Whether every integer in a decoded JSON value is in [-2**63, 2**64)."""
    kind = type(value)
    if kind is int:
        number: int = value
        return _INT_MIN <= number < _INT_END
    if kind is dict:
        return all(map(_orjson_ints, value.values()))
    if kind is list:
        return all(map(_orjson_ints, value))
    return True


def _ints_read_alike(tp: Touchpoint) -> bool:
    """Whether the free-form parts of ``tp`` (the only ones that keep any integer) hold no
    integer ``orjson.loads`` would have read otherwise, ``properties`` aside (its JSON schema
    sees to it: :data:`_JSON_PROPERTIES`). It replaced a byte scan for 19 digits in a row
    (``raw.translate`` and a substring search; parse alone -2.5k, nineteenth pass)."""
    fields = tp.__dict__
    traits = fields["traits"]
    if traits is not None and not (
        _orjson_ints(traits.__pydantic_extra__) and _orjson_ints(traits.__dict__["preferences"])
    ):
        return False
    signals = fields["consent_signals"]
    if signals is not None:
        parts = signals.__dict__
        return (
            _orjson_ints(signals.__pydantic_extra__)
            and _orjson_ints(parts["segment"])
            and _orjson_ints(parts["gcm"])
        )
    return True


def _json_checks(tp: Touchpoint) -> Touchpoint:
    """The JSON validator's after-validator (:func:`_json_validator`): the custom identifier
    types' count (``_check_custom_types``' first check), :func:`_ints_read_alike` (where it has
    anything to look at) and ``_type_requirements``, in one call. Its refusals, like all that
    validator's, are the old path's to explain, in the model's words."""
    fields = tp.__dict__
    if len(fields["identifiers"].__pydantic_extra__) > MAX_CUSTOM_IDENTIFIERS:
        raise PydanticCustomError("identifiers", "too many custom identifier types")
    if (
        fields["traits"] is not None or fields["consent_signals"] is not None
    ) and not _ints_read_alike(tp):
        raise PydanticCustomError("freeform", "an integer orjson.loads reads otherwise")
    if fields["type"] in _REQUIREMENTS:  # 30 % of the simulator's events
        return _TYPE_REQUIREMENTS(tp)
    return tp


#: ``Touchpoint._type_requirements`` as the plain function pydantic leaves on the class (to
#: mypy the attribute is the decorator's proxy, which it does not see as callable).
_TYPE_REQUIREMENTS: Final[Callable[[Touchpoint], Touchpoint]] = vars(Touchpoint)[
    "_type_requirements"
]


def _freeform_json(value: dict[str, Any]) -> dict[str, Any]:
    """``_freeform``, and no integer ``orjson.loads`` reads otherwise: ``properties`` in the
    JSON validator when :data:`_JSON_FLAT` does not take them (nested, floats, long keys)."""
    _freeform(value)
    if not _orjson_ints(value):
        raise PydanticCustomError("freeform", "an integer orjson.loads reads otherwise")
    return value


#: A flat ``properties`` object as ``_freeform`` accepts it without a look further, in core: at
#: most 64 keys of at most 128 characters, each value a string of at most 2048, an integer
#: ``orjson.loads`` reads as one (:data:`_INT_MIN`, :data:`_INT_END`), a boolean or null, all
#: kept as the JSON parser read them. ``strict``: no string read as a number or a boolean.
_JSON_FLAT: Final[CoreSchema] = core_schema.dict_schema(
    core_schema.str_schema(max_length=128),
    core_schema.nullable_schema(
        core_schema.union_schema(
            [
                core_schema.str_schema(max_length=MAX_FREEFORM_STRING),
                core_schema.int_schema(strict=True, ge=_INT_MIN, lt=_INT_END),
                core_schema.bool_schema(strict=True),
            ],
            mode="left_to_right",
        )
    ),
    max_length=MAX_FREEFORM_KEYS,
)
#: ``properties`` in the JSON validator: flat in core, or else (either refused) as the model
#: reads it, and its integers looked at, so :func:`_ints_read_alike` need not. ``_freeform``
#: and the look at the integers were two calls into Python per event, a loop each: ``run_batch``
#: -5.4k instructions per event (twentieth pass, ``bench/README.md``).
_JSON_PROPERTIES: Final[CoreSchema] = core_schema.union_schema(
    [
        _JSON_FLAT,
        core_schema.no_info_after_validator_function(
            _freeform_json,
            core_schema.dict_schema(core_schema.str_schema(), core_schema.any_schema()),
        ),
    ],
    mode="left_to_right",
)


#: An identifier value ``Identifiers``' check lets through: no character of the categories it
#: refuses (:data:`_FORBIDDEN_CATEGORIES`; no ``Cs`` in the pattern: a string the JSON parser
#: hands over has no lone surrogate). Rust's Unicode tables can be newer than Python's: a test
#: checks every character Python's refuse is refused here too.
_SAFE_IDENTIFIER: Final = r"^[^\p{Cc}\p{Cf}\p{Zl}\p{Zp}]*$"


def _json_identifiers(identifiers: CoreSchema) -> CoreSchema:
    """``Identifiers`` as the JSON validator reads it: its after-validator (``_custom_types``)
    as core constraints, a pattern on each value (:data:`_SAFE_IDENTIFIER`), on the custom
    types' names (``_CUSTOM_ID_NAME``) and their values (strings of at most 1024 characters, or
    null); the custom types' count is :func:`_json_checks`' to check. ``_custom_types`` was
    a call into Python per event, a join of the values and two more calls: ``run_batch`` -3.2k
    instructions per event (twentieth pass, ``bench/README.md``)."""
    model = dict(identifiers["schema"])  # function-after(_custom_types, model) -> model
    fields_schema = dict(model["schema"])
    safe = core_schema.str_schema(max_length=1024, pattern=_SAFE_IDENTIFIER)
    fields_schema["fields"] = {
        name: {**field, "schema": {**field["schema"], "schema": core_schema.nullable_schema(safe)}}
        for name, field in fields_schema["fields"].items()  # model-field(default(nullable(str)))
    }
    fields_schema["extras_schema"] = core_schema.nullable_schema(safe)
    fields_schema["extras_keys_schema"] = core_schema.str_schema(pattern=_CUSTOM_ID_NAME.pattern)
    model["schema"] = fields_schema
    return model


#: ``region`` as ``_region`` reads it, for the inputs it keeps as they are but upper-cased: two
#: ASCII letters but ``UK`` in any case (``_region`` makes that ``GB``). The pattern is checked
#: before ``to_upper``. Anything else (spaces, ``uk``, other letters) is refused here and read by
#: the old path, ``_region`` and all. ``_region``'s ``strip`` and ``upper`` build two strings:
#: parse alone -1.75k instructions per event (twentieth pass, ``bench/README.md``).
_JSON_REGION: Final[CoreSchema] = core_schema.str_schema(
    pattern=r"^(?:[A-TV-Za-tv-z][A-Za-z]|[Uu][A-JL-Za-jl-z])$", to_upper=True
)


#: Money as the decimal validator reads the strings producers send (``"477.75"``): at most 14
#: ASCII digits, and at most 4 decimals after a dot. Every such text is a finite decimal >= 0
#: of at most 18 digits and 4 places after ``normalize()`` (the validator's count), so the
#: model accepts it, as ``Decimal(text)``: the value the validator builds (``"1.10"`` stays
#: ``Decimal('1.10')``).
_MONEY_TEXT: Final = r"^[0-9]{1,14}(?:\.[0-9]{1,4})?$"


def _json_money(money: CoreSchema) -> CoreSchema:
    """A money field (``StrictMoney``: ``function-before(_reject_bool, decimal)``) in the JSON
    validator: a string of :data:`_MONEY_TEXT` is ``Decimal`` of it, called from core;
    anything else (a number, ``1e3`` read as ``Decimal('1000.0')``, a sign, an exponent, more
    digits) is read by the field's own schema, as before. ``_reject_bool`` and the decimal
    validator's checks (``normalize``, ``as_tuple`` and its named tuple, the bound's comparison,
    through Python's method calls) cost ~5k instructions per amount, ~0.6 amounts per event:
    ``run_batch`` -3.1k instructions per event (twenty-first pass, ``bench/README.md``)."""
    text = core_schema.str_schema(pattern=_MONEY_TEXT, strict=True)
    return core_schema.union_schema(
        [core_schema.no_info_after_validator_function(Decimal, text), money],
        mode="left_to_right",
    )


def _with_json_money(schema: Any) -> Any:
    """A copy of ``schema`` with each money field's schema as :func:`_json_money` reads it."""
    if isinstance(schema, dict):
        if schema.get("type") == "function-before" and schema["function"]["function"] is (
            _reject_bool
        ):
            return _json_money(schema)
        return {key: _with_json_money(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_with_json_money(item) for item in schema]
    return schema


def _json_validator() -> SchemaValidator:
    """``Touchpoint``'s own validator, but unknown top-level keys refused instead of dropped
    (the nested models are their own classes' validators, but ``Identifiers``, ``Order`` and
    ``OrderLine``, rebuilt here): see :func:`parse_touchpoint`.

    Where the model's Python validators can be core constraints exactly, they are here, for
    the inputs producers send (twentieth and twenty-first passes, ``bench/README.md``):
    ``region`` (:data:`_JSON_REGION`), ``properties`` (:data:`_JSON_PROPERTIES`),
    ``identifiers``' check (:func:`_json_identifiers`) and money (:func:`_json_money`). Each
    accepts a subset of what the model accepts, with the same values; a record it refuses goes
    to the old path, which gives the verdict in the model's words. The model's after-validator
    is :func:`_json_checks` (``_type_requirements`` and the rest of the checks, in one call)."""
    schema = dict(Touchpoint.__pydantic_core_schema__)  # function-after(model)
    schema["function"] = {"type": "no-info", "function": _json_checks}
    model = dict(schema["schema"])
    model["config"] = {**model["config"], "extra_fields_behavior": "forbid"}
    fields_schema = dict(model["schema"])
    fields = dict(fields_schema["fields"])
    # each field is model-field(default(...)): its default kept, the schema inside replaced
    region = fields["region"]  # default(nullable(function-before(_region, str)))
    fields["region"] = {
        **region,
        "schema": {**region["schema"], "schema": core_schema.nullable_schema(_JSON_REGION)},
    }
    identifiers = fields["identifiers"]  # default(function-after(_custom_types, model))
    fields["identifiers"] = {
        **identifiers,
        "schema": {
            **identifiers["schema"],
            "schema": _json_identifiers(identifiers["schema"]["schema"]),
        },
    }
    properties = fields["properties"]  # default(function-after(_freeform, dict))
    fields["properties"] = {
        **properties,
        "schema": {**properties["schema"], "schema": _JSON_PROPERTIES},
    }
    fields["order"] = _with_json_money(fields["order"])  # the amounts: order.total, its lines
    fields_schema["fields"] = fields
    model["schema"] = fields_schema
    schema["schema"] = model
    # pydantic-core takes a complete model class's own validator for a ``model`` schema of that
    # class (prebuilt), not the schema given: ``OrderLine`` (no validator of its own around its
    # model) would be read by its own validator, its ``unit_price`` not as :func:`_json_money`.
    # So it is marked incomplete while this validator is built (at import, once).
    OrderLine.__pydantic_complete__ = False
    try:
        return SchemaValidator(schema)
    finally:
        OrderLine.__pydantic_complete__ = True


#: ``validate_json`` of the bytes: pydantic-core's parser builds the touchpoint without the
#: intermediate dicts and strings of ``orjson.loads`` (``run_batch``: -3.8k instructions per
#: event, eighteenth pass, ``bench/README.md``). It differs
#: from ``orjson.loads`` on numbers only: it reads ``NaN``/``Infinity`` literals and numbers
#: that overflow a double (orjson: not JSON) and keeps integers outside [-2**63, 2**64) exact
#: (orjson: a float, or not JSON past a double's range). A non-finite float is refused
#: wherever the model keeps a value (money, integers, free-form parts and traits check it), but
#: a value the model never sees can carry one: an unknown top-level key (this validator refuses
#: them) or, anywhere, a key a later duplicate replaces (both parsers keep the last; that value
#: is never validated). So a record the validator accepts is still read by ``orjson.loads``
#: (:func:`parse_touchpoint`; parse alone 43.2k -> 54.3k instructions per event, the old path
#: 59.0k: twenty-ninth pass, ``bench/README.md``): what orjson refuses, and anything refused,
#: takes the old path for its verdict and texts. An integer out of that range is refused by
#: every typed field (bounds, digits), so only the free-form parts can keep one:
#: ``properties``' schema refuses one (:data:`_JSON_PROPERTIES`), and :func:`_json_checks`
#: looks at the others (:func:`_ints_read_alike`): the old path decides.
_VALIDATE_JSON: Final = _json_validator().validate_json
_LOADS: Final = orjson.loads


def parse_touchpoint(raw: bytes, *, max_bytes: int = MAX_EVENT_BYTES) -> Touchpoint:
    """Decode and validate one raw record. Raises :class:`InvalidEvent` (never anything else)."""
    if len(raw) > max_bytes:
        raise InvalidEvent(OVERSIZE, f"record is {len(raw)} bytes, limit {max_bytes}")
    if type(raw) is bytes:
        try:
            tp: Touchpoint = _VALIDATE_JSON(raw)
        except ValidationError:
            pass  # refused (or an unknown key): the old path says why, in its words
        else:
            try:  # JSON as orjson reads it: a duplicate key can hide a NaN from the model
                _LOADS(raw)
            except orjson.JSONDecodeError:
                pass  # not JSON: the old path says where
            else:
                return tp
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        text = str(exc)
        if "UTF-8" in text or "surrogate" in text:
            raise InvalidEvent(INVALID_UTF8, "not valid UTF-8 (or a lone surrogate)") from None
        try:
            bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEvent(INVALID_UTF8, "not valid UTF-8") from None
        pos = getattr(exc, "pos", None)
        where = f" at byte {pos}" if isinstance(pos, int) else ""
        raise InvalidEvent(MALFORMED_JSON, f"not valid JSON{where}") from None
    if not isinstance(data, dict):
        raise InvalidEvent(SCHEMA_VIOLATION, "event must be a JSON object")
    try:  # ``_validated(data)``, inline (once per record)
        tp = _VALIDATE(data)
    except ValidationError as exc:
        raise invalid_event_from(exc) from None
    return tp


def touchpoint_to_json(tp: Touchpoint) -> dict[str, Any]:
    """The JSON-ready dict of ``tp`` (``None`` fields left out, money as strings)."""
    return tp.model_dump(mode="json", exclude_none=True)


def dump_touchpoint(tp: Touchpoint) -> bytes:
    """Serialize ``tp`` to JSON bytes; ``parse_touchpoint(dump_touchpoint(tp)) == tp``."""
    try:
        return orjson.dumps(touchpoint_to_json(tp))
    except orjson.JSONEncodeError as exc:  # a lone surrogate in a str built in Python
        raise InvalidEvent(INVALID_UTF8, "a string is not valid UTF-8") from exc


def record_key(tp: Touchpoint, *, config: NormalizeConfig = DEFAULT) -> bytes | None:
    """The Kafka record key: ``type:value`` of the most stable identifier that normalizes.

    Order: customer_id > loyalty_id > email > phone > card_token > social_handle >
    anonymous_id > custom types (configured ones only). Inventory events without a usable
    identifier are keyed by ``inventory:<sku>@<location_id>`` so one stock position stays on one
    partition. Events with neither get ``None`` (the producer's partitioner spreads them).
    """
    ids = tp.identifiers.as_mapping()
    for id_type in config.known_types:  # most stable first; stop at the first usable one
        raw = ids.get(id_type)
        if raw is not None:
            result = normalize_one(id_type, raw, region=tp.region, config=config)
            if isinstance(result, Identifier):
                return result.key.encode()
    if tp.inventory is not None:
        return f"inventory:{tp.inventory.sku}@{tp.inventory.location_id}".encode()
    return None


__all__ = [
    "INVENTORY_TYPES",
    "MAX_EVENT_BYTES",
    "ORDER_TYPES",
    "SCHEMA_VERSION",
    "Channel",
    "Consent",
    "ConsentSignals",
    "EventType",
    "Identifiers",
    "InventoryChange",
    "InventoryReason",
    "Order",
    "OrderLine",
    "Touchpoint",
    "Traits",
    "dump_touchpoint",
    "invalid_event_from",
    "parse_touchpoint",
    "record_key",
    "touchpoint_to_json",
    "validate_touchpoint",
]
