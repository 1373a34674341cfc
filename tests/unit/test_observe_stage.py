"""resolvers.stages.observe: what the profile sees of an event, whoever read its time and
consent (the profiles lane reads them once per batch and hands them over)."""

from __future__ import annotations

import itertools
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from resolvers.profile.facts import GIVE_BACK_TYPES, ORDER_TYPES, OrderFacts
from resolvers.stages import observe
from resolvers.stages.observe import event_consent, observation
from resolvers.timefmt import utc
from schemas.touchpoint import Channel, EventType, Touchpoint, dump_touchpoint, parse_touchpoint
from streams.simulate import Simulator


def test_an_observation_is_the_same_with_the_time_and_consent_read_by_the_lane() -> None:
    # parsed as the lane parses them: their times carry pydantic's UTC, not datetime.UTC
    events = [
        parse_touchpoint(dump_touchpoint(tp))
        for tp in itertools.islice(Simulator(3, 200, 3, 40).events(), 3000)
    ]
    assert any(tp.occurred_at.tzinfo is not utc(tp.occurred_at).tzinfo for tp in events)
    for tp in events:
        handed = observation(tp, utc(tp.occurred_at), event_consent(tp))
        assert handed == observation(tp), tp.event_id
        assert handed.at == tp.occurred_at
        assert handed.at.tzinfo is utc(handed.at).tzinfo  # normalized once, to UTC


def _order_by_attributes(tp: Touchpoint) -> OrderFacts | None:
    """``observe._order`` as it read the models' attributes (before the ninth pass's second
    cut read their instance dicts): the reference it must equal."""
    if tp.order is None or (tp.type not in ORDER_TYPES and tp.type not in GIVE_BACK_TYPES):
        return None
    o = tp.order
    total = o.total
    if total is None:
        total = sum(((ln.unit_price or Decimal(0)) * ln.quantity for ln in o.lines), Decimal(0))
    return OrderFacts(
        order_id=o.order_id,
        total=total,
        currency=o.currency or "XXX",
        payment_method=o.payment_method,
        location_id=o.location_id,
        categories=tuple([ln.category for ln in o.lines if ln.category]),
        skus=tuple([ln.sku for ln in o.lines]),
        in_store=tp.type is EventType.POS_SALE or tp.channel is Channel.POS,
        # since returns name their order (``tests/pipeline/test_audience_returns.py``)
        quantities=tuple([ln.quantity for ln in o.lines if ln.category]),
        # since cancellations and lines given back by their SKU alone un-count purchases too
        # (``tests/pipeline/test_audience_returns.py``)
        category_skus=tuple([ln.sku for ln in o.lines if ln.category]),
        loose=tuple([(ln.sku, ln.quantity) for ln in o.lines if not ln.category]),
    )


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_an_events_order_facts_are_those_its_attributes_give(seed: int) -> None:
    events = [
        parse_touchpoint(dump_touchpoint(tp))
        for tp in itertools.islice(Simulator(seed, 50, 3, 40).events(), 400)
    ]
    orders = [tp for tp in events if tp.order is not None]
    assert orders
    for tp in events:
        assert observe._order(tp) == _order_by_attributes(tp), tp.event_id
