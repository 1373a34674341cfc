"""Stage: fold the event into its profile's merge-friendly aggregate (consent-gated)."""

from __future__ import annotations

from decimal import Decimal

from resolvers import profile
from resolvers.batch import BatchState
from resolvers.steps import Event, Ok
from schemas.touchpoint import EventType, Touchpoint

NAME = "aggregate"

_ORDER_TYPES = frozenset({EventType.ORDER_COMPLETED, EventType.POS_SALE, EventType.ORDER_RETURNED})


def observation(tp: Touchpoint, purposes: frozenset[str]) -> profile.Observation:
    """The profile's view of a touchpoint."""
    traits: dict[str, str] = {}
    preferences: dict[str, object] = {}
    if tp.traits is not None:
        for name, value in tp.traits.model_dump(exclude_none=True).items():
            if name == "preferences":
                preferences = dict(value)
            elif isinstance(value, str | int | float | bool):
                traits[name] = str(value)
    order = None
    if tp.type in _ORDER_TYPES and tp.order is not None:
        o = tp.order
        total = o.total
        if total is None:
            total = sum(((ln.unit_price or Decimal(0)) * ln.quantity for ln in o.lines), Decimal(0))
        order = profile.OrderFacts(
            order_id=o.order_id,
            total=total,
            currency=o.currency or "XXX",
            payment_method=o.payment_method,
            location_id=o.location_id,
            categories=tuple(ln.category for ln in o.lines if ln.category),
            skus=tuple(ln.sku for ln in o.lines),
            is_return=tp.type is EventType.ORDER_RETURNED,
            in_store=tp.type is EventType.POS_SALE or tp.channel.value == "pos",
        )
    return profile.Observation(
        event_id=tp.event_id,
        type=tp.type.value,
        channel=tp.channel.value,
        occurred_at=tp.occurred_at,
        traits=traits,
        preferences=preferences,
        properties=dict(tp.properties),
        order=order,
        purposes=purposes,
    )


def run(event: Event, state: BatchState) -> Ok:
    pid = event.profile_id
    if pid is None:
        return Ok(event)
    data = state.profile_data(pid)
    data.aggregate = profile.observe(data.aggregate, observation(event.tp, event.purposes))
    state.touch_profile(pid)
    return Ok(event)
