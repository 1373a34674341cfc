"""``Touchpoint._type_requirements`` against its previous body, kept here verbatim as the
reference: every event is accepted or refused alike, with the same reason, message and field."""

from __future__ import annotations

from itertools import product
from typing import Any, Final, Self

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError, model_validator

from schemas.errors import InvalidEvent
from schemas.touchpoint import (
    EventType,
    Touchpoint,
    _check_inventory,
    _check_order,
    _missing,
    invalid_event_from,
    validate_touchpoint,
)

_ORDER_TYPES = {
    EventType.ORDER_COMPLETED,
    EventType.ORDER_FULFILLED,
    EventType.ORDER_CANCELLED,
    EventType.POS_SALE,
    EventType.ORDER_RETURNED,
}
_INVENTORY_TYPES = {EventType.INVENTORY_ADJUSTED, EventType.INVENTORY_COUNTED}
_IDENTIFIED_TYPES = {
    EventType.SIGNUP,
    EventType.LOGIN,
    EventType.PROFILE_UPDATED,
    EventType.LOYALTY_ENROLLED,
    EventType.CONSENT_UPDATED,
    EventType.ERASURE_REQUESTED,
}


class _OldTouchpoint(Touchpoint):
    @model_validator(mode="after")
    def _type_requirements(self) -> Self:
        t = self.type
        if t in _ORDER_TYPES:
            _check_order(self.order, t)
        elif t in _INVENTORY_TYPES:
            _check_inventory(self.inventory, t)
        elif t in _IDENTIFIED_TYPES:
            extra = self.identifiers.__pydantic_extra__ or {}
            values = (*self.identifiers.__dict__.values(), *extra.values())
            if not any(v is not None and v.strip() for v in values):
                raise _missing("identifiers", t, "at least one identifier is required for {type}")
        if t is EventType.CUSTOM and self.name is None:
            raise _missing("name", t)
        if (
            t is EventType.CONSENT_UPDATED
            and self.consent is None
            and self.consent_signals is None
            and self.gpc is None
        ):
            raise _missing("consent", t, "consent, consent_signals or gpc is required for {type}")
        return self


def _outcome(validate: Any, data: dict[str, Any]) -> tuple[Any, ...]:
    try:
        tp = validate(data)
    except ValidationError as exc:
        err = invalid_event_from(exc)
        return ("refused", err.reason, err.message, err.field, err.details)
    except InvalidEvent as err:
        return ("refused", err.reason, err.message, err.field, err.details)
    return ("accepted", tp.model_dump())


_LINES: Final = {"lines": [{"sku": "S-1", "quantity": 1}]}
_TOTAL: Final = {"total": "1", "currency": "NOK"}
_ORDERS: list[dict[str, Any]] = [
    {},
    *(
        {"order": {"order_id": "o-1", **lines, **total, **where}}
        for lines in ({}, _LINES)
        for total in ({}, _TOTAL)
        for where in ({}, {"location_id": "L1"})
    ),
]
_INVENTORIES: list[dict[str, Any]] = [
    {},
    {"inventory": {"sku": "S-1", "location_id": "L1"}},
    {"inventory": {"sku": "S-1", "location_id": "L1", "delta": 0}},
    {"inventory": {"sku": "S-1", "location_id": "L1", "delta": -1}},
    {"inventory": {"sku": "S-1", "location_id": "L1", "on_hand": 0}},
]
_CONSENTS: list[dict[str, Any]] = [
    {**consent, **signals, **gpc}
    for consent in ({}, {"consent": {"marketing": True}})
    for signals in ({}, {"consent_signals": {"tcf": "CO"}})
    for gpc in ({}, {"gpc": False})
]
_IDENTIFIERS: list[dict[str, Any]] = [
    {},
    {"identifiers": {}},
    {"identifiers": {"email": "", "phone": None, "store_card": "  "}},
    {"identifiers": {"email": " ", "anonymous_id": "a-1"}},
    {"identifiers": {"store_card": "c-1"}},
]


def test_every_event_type_and_combination_of_parts_is_checked_as_before() -> None:
    """Exhaustive: 20 types x 9 orders x 5 stock changes x 2 names x 8 consents x 5
    identifier sets (72,000 events)."""
    for event_type, order, inventory, name, consent, identifiers in product(
        [t.value for t in EventType],
        _ORDERS,
        _INVENTORIES,
        [{}, {"name": "Wishlist Viewed"}],
        _CONSENTS,
        _IDENTIFIERS,
    ):
        data = {
            "event_id": "e-1",
            "type": event_type,
            "channel": "web",
            "occurred_at": "2026-11-30T12:00:00Z",
            **order,
            **inventory,
            **name,
            **consent,
            **identifiers,
        }
        old = _outcome(_OldTouchpoint.__pydantic_validator__.validate_python, data)
        assert _outcome(validate_touchpoint, data) == old, data


@settings(max_examples=300, deadline=None)
@given(
    identifiers=st.dictionaries(
        st.sampled_from(["email", "phone", "anonymous_id", "store_card", "member_no"]),
        st.one_of(st.none(), st.text(st.sampled_from(" \t\u00a0\u3000ax"), max_size=3)),
        max_size=4,
    )
)
def test_an_identified_type_needs_a_value_that_is_not_blank_as_before(
    identifiers: dict[str, Any],
) -> None:
    data = {
        "event_id": "e-1",
        "type": "login",
        "channel": "web",
        "occurred_at": "2026-11-30T12:00:00Z",
        "identifiers": identifiers,
    }
    old = _outcome(_OldTouchpoint.__pydantic_validator__.validate_python, data)
    assert _outcome(validate_touchpoint, data) == old
