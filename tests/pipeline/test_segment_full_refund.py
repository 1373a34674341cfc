"""A Segment full refund (``Order Refunded`` naming only its ``order_id``, as the e-commerce
spec has it) is a return of the whole order the profile holds: it counts as a return of the
order's amount and gives back each of its categories, in whichever order the two arrive."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from pipeline_helpers import NOW, one_snapshot

from schemas.inbound.base import Source
from schemas.inbound.segment import Received, map_message
from schemas.touchpoint import Channel, dump_touchpoint

WEB = Source("web-shop", Channel.WEB, "NO", "NOK")
GRANTED = {"categoryPreferences": {"analytics": True, "personalization": True}}


def _segment(message_id: str, days_ago: int, event: str, props: dict[str, Any]) -> bytes:
    message = {
        "type": "track",
        "event": event,
        "userId": "C-1",
        "messageId": message_id,
        "timestamp": (NOW - timedelta(days=days_ago)).isoformat(),
        "context": {"consent": GRANTED},
        "properties": props,
    }
    return dump_touchpoint(map_message(message, WEB, Received(at=NOW)))


ORDER = _segment(
    "m-1",
    10,
    "Order Completed",
    {
        "order_id": "O-1",
        "total": 49.9,
        "products": [{"sku": "SKU-1", "price": 49.9, "quantity": 1, "category": "running"}],
    },
)


def test_a_full_refund_returns_the_whole_order_in_either_order() -> None:
    refund = _segment("m-2", 5, "Order Refunded", {"order_id": "O-1"})
    for events in ([ORDER, refund], [refund, ORDER]):
        doc = one_snapshot(events)
        assert doc["returns"] == {"count": 1, "value": {"NOK": "49.90"}}
        assert doc["category_purchases"] == {}


def test_a_full_refund_stating_its_amount_returns_that_amount() -> None:
    # refunded in part before: what this refund gives back is what it says
    refund = _segment("m-2", 5, "Order Refunded", {"order_id": "O-1", "total": 40})
    doc = one_snapshot([ORDER, refund])
    assert doc["returns"] == {"count": 1, "value": {"NOK": "40.00"}}
    assert doc["category_purchases"] == {}


def test_a_full_refund_of_an_order_the_profile_does_not_hold_counts_what_it_states() -> None:
    unknown = _segment("m-3", 5, "Order Refunded", {"order_id": "O-9", "total": 12})
    doc = one_snapshot([ORDER, unknown])
    assert doc["returns"] == {"count": 1, "value": {"NOK": "12.00"}}
    assert "running" in doc["category_purchases"]  # O-1 was not given back


def test_a_full_refund_after_partial_ones_gives_back_only_what_they_left() -> None:
    """Refunded in part (one line), then in full naming only the order: the full refund is
    what the partial one left, not the whole order again (returns counted 69.90 of a 59.90
    order), in every order of arrival. A second full refund gives back nothing more."""
    order = _segment(
        "m-10",
        10,
        "Order Completed",
        {
            "order_id": "O-2",
            "total": 59.9,
            "products": [
                {"sku": "SKU-1", "price": 49.9, "quantity": 1, "category": "running"},
                {"sku": "SKU-2", "price": 10, "quantity": 1, "category": "socks"},
            ],
        },
    )
    partial = _segment(
        "m-11",
        6,
        "Order Refunded",
        {
            "order_id": "O-2",
            "total": 10,
            "products": [{"sku": "SKU-2", "price": 10, "quantity": 1, "category": "socks"}],
        },
    )
    full = _segment("m-12", 5, "Order Refunded", {"order_id": "O-2"})
    again = _segment("m-13", 4, "Order Refunded", {"order_id": "O-2"})
    for events in itertools.permutations([order, partial, full]):
        doc = one_snapshot(list(events))
        assert doc["returns"] == {"count": 2, "value": {"NOK": "59.90"}}, events
        assert doc["category_purchases"] == {}
    for events in itertools.permutations([order, partial, full, again]):
        doc = one_snapshot(list(events))
        assert doc["returns"] == {"count": 3, "value": {"NOK": "59.90"}}
