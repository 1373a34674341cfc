"""A returned purchase does not make a buyer (the running-shoe reminder, issue 18).

"Bought running shoes 150-200 days ago: remind them a new pair is due" must not remind a
customer who sent the shoes back, and a second pair that went back must not move the clock of
the pair they kept. A return names its order (``order.order_id``) and the lines it gives back;
a category's purchase of an order counts until the order's returns give back as many units of
the category as the order bought.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pipeline_helpers import (
    NOW,
    REMINDER,
    make_context,
    one_snapshot,
    record,
    reminder_context,
    run_lanes,
)

from resolvers.lanes.stored_profile import decode
from resolvers.profile.render import held_transactions
from resolvers.store import InMemoryStore, Kind
from resolvers.timefmt import format_time


def _ev(event_id: str, type_: str, days_ago: float, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": type_,
        "channel": "web",
        "occurred_at": format_time(NOW - timedelta(days=days_ago)),
        "region": "NO",
        "identifiers": {"customer_id": "ANN"},
        "consent": {"analytics": True, "personalization": True, "marketing": True},
        **fields,
    }


Lines = tuple[tuple[str, int], ...]  # (category, quantity) of each line


def _tx(type_: str, event_id: str, days_ago: float, order_id: str, lines: Lines) -> dict[str, Any]:
    return _ev(event_id, type_, days_ago, order={
        "order_id": order_id, "total": "600.00", "currency": "NOK",
        "lines": [{"sku": f"SKU-{c}", "quantity": q, "unit_price": "600.00", "category": c}
                  for c, q in lines],
    })  # fmt: skip


def _order(event_id: str, days_ago: float, order_id: str, *lines: tuple[str, int]) -> Any:
    return _tx("order_completed", event_id, days_ago, order_id, lines)


def _return(event_id: str, days_ago: float, order_id: str, *lines: tuple[str, int]) -> Any:
    return _tx("order_returned", event_id, days_ago, order_id, lines)


def test_shoes_sent_back_are_not_a_purchase_to_remind_of() -> None:
    bought = _order("e1", 170, "o1", ("running", 1))
    returned = _return("e2", 165, "o1", ("running", 1))
    for events in ([bought, returned], [returned, bought]):
        doc = one_snapshot(events, reminder_context)
        assert "running" not in doc["category_purchases"]
        assert doc["audiences"] == []


def test_a_second_pair_sent_back_does_not_move_the_clock_of_the_pair_kept() -> None:
    first = _order("e1", 170, "o1", ("running", 1))
    second = _order("e2", 20, "o2", ("running", 1))
    returned = _return("e3", 15, "o2", ("running", 1))
    doc = one_snapshot([first, second, returned], reminder_context)
    running = doc["category_purchases"]["running"]
    assert (running["orders"], running["last_purchase"]) == (1, first["occurred_at"])
    assert doc["audiences"] == [REMINDER]


def test_one_pair_of_two_sent_back_or_another_category_keeps_the_purchase() -> None:
    two_pairs = _order("e1", 170, "o1", ("running", 2), ("socks", 1))
    one_back = _return("e2", 165, "o1", ("running", 1))
    socks_back = _return("e3", 165, "o1", ("socks", 1))
    doc = one_snapshot([two_pairs, one_back, socks_back], reminder_context)
    assert doc["category_purchases"]["running"]["orders"] == 1
    assert "socks" not in doc["category_purchases"]
    assert doc["audiences"] == [REMINDER]


def test_a_data_export_shows_the_order_a_return_names() -> None:
    store = InMemoryStore()
    events = [_order("e1", 170, "o1", ("running", 1)), _return("e2", 165, "o1", ("running", 1))]
    for i, e in enumerate(events):
        run_lanes([record(e, i)], store, reminder_context)
    (state,) = [
        decode(ref.name, entity.fields["s"], make_context().rules)
        for ref, entity in store.entities.items()
        if ref.kind is Kind.PROFILE and "s" in entity.fields
    ]
    held = held_transactions([g.facts for g in state.groups.values()])
    assert [(t["type"], t["order_id"]) for t in held] == [
        ("order_completed", "o1"),
        ("order_returned", "o1"),
    ]


def _cancel(event_id: str, days_ago: float, order_id: str, *lines: tuple[str, int]) -> Any:
    return _tx("order_cancelled", event_id, days_ago, order_id, lines)


def _by_sku(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` with its lines naming only their SKU (as Shopify's refunds and cancellations
    do: they carry no category)."""
    lines = [{k: v for k, v in ln.items() if k != "category"} for ln in event["order"]["lines"]]
    return {**event, "order": {**event["order"], "lines": lines}}


def test_a_cancelled_pair_is_not_a_purchase_to_remind_of() -> None:
    bought = _order("e1", 170, "o1", ("running", 1))
    cancelled = _cancel("e2", 169, "o1", ("running", 1))
    for events in ([bought, cancelled], [cancelled, bought]):
        doc = one_snapshot(events, reminder_context)
        assert "running" not in doc["category_purchases"]
        assert doc["audiences"] == []


def test_a_cancelled_second_pair_does_not_move_the_clock_and_socks_keep_the_shoes() -> None:
    first = _order("e1", 170, "o1", ("running", 1), ("socks", 1))
    second = _order("e2", 20, "o2", ("running", 1))
    socks = _cancel("e3", 169, "o1", ("socks", 1))
    pair = _cancel("e4", 19, "o2", ("running", 1))
    doc = one_snapshot([first, second, socks, pair], reminder_context)
    running = doc["category_purchases"]["running"]
    assert (running["orders"], running["last_purchase"]) == (1, first["occurred_at"])
    assert "socks" not in doc["category_purchases"]
    assert doc["audiences"] == [REMINDER]


def test_a_return_naming_only_its_skus_gives_back_the_order_lines_it_stored() -> None:
    bought = _order("e1", 170, "o1", ("running", 1))
    for give_back in (
        _by_sku(_return("e2", 165, "o1", ("running", 1))),
        _by_sku(_cancel("e2", 169, "o1", ("running", 1))),
    ):
        for events in ([bought, give_back], [give_back, bought]):
            doc = one_snapshot(events, reminder_context)
            assert "running" not in doc["category_purchases"], give_back["type"]
            assert doc["audiences"] == []


def test_a_return_by_sku_gives_back_only_the_units_and_the_lines_it_names() -> None:
    # two pairs bought, one sent back by SKU: still a running buyer; the socks' SKU given back
    # un-counts the socks only
    bought = _order("e1", 170, "o1", ("running", 2), ("socks", 1))
    one_pair = _by_sku(_return("e2", 165, "o1", ("running", 1)))
    socks = _by_sku(_return("e3", 165, "o1", ("socks", 1)))
    doc = one_snapshot([bought, one_pair, socks], reminder_context)
    assert doc["category_purchases"]["running"]["orders"] == 1
    assert "socks" not in doc["category_purchases"]
    assert doc["audiences"] == [REMINDER]
    # a SKU the order has no category for (a gift card), or that another order bought, gives
    # back nothing of this one
    gift = _ev("e1", "order_completed", 170, order={
        "order_id": "o1", "total": "700.00", "currency": "NOK",
        "lines": [{"sku": "SKU-running", "quantity": 1, "category": "running"},
                  {"sku": "GIFT", "quantity": 1}],
    })  # fmt: skip
    gift_back = _by_sku(_ev("e2", "order_returned", 165, order={
        "order_id": "o1", "currency": "NOK", "lines": [{"sku": "GIFT", "quantity": 1}],
    }))  # fmt: skip
    other_order = _by_sku(_return("e3", 165, "o9", ("running", 1)))
    doc = one_snapshot([gift, gift_back, other_order], reminder_context)
    assert doc["category_purchases"]["running"]["orders"] == 1
    assert doc["audiences"] == [REMINDER]
