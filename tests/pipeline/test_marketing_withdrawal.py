"""A marketing withdrawal keeps the person out of every marketing audience and unreachable,
whatever the order, batching and redelivery of their events (docs/consent.md: the current
choice is the person's latest statement by time, a denial winning a tie).

Unlike ``test_audience_membership`` (membership = the definition on the final snapshot), the
oracle here is independent of the snapshot: it reads the world's own marketing statements.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipeline_helpers import NOW, make_context, replayed_members, stored_snapshots
from test_order_independence import deliver, deliveries

from resolvers.audiences import Audiences, audience
from resolvers.context import Context

MARKETING = ("everyone-reachable", "shoe-buyers-to-remind")
AUDIENCES = Audiences(
    {
        a.name: a
        for a in (
            audience("everyone-reachable", "orders >= 0", marketing=True),
            audience("shoe-buyers-to-remind", "category_orders.shoes >= 1", marketing=True),
            audience("shoe-buyers", "category_orders.shoes >= 1"),
        )
    }
)
#: Ways the customer's statements reach Loom: by account, by e-mail, by both, by a device the
#: login tied to them.
VIA = (
    {"customer_id": "C1"},
    {"email": "ann@x.no"},
    {"customer_id": "C1", "email": "ann@x.no"},
    {"anonymous_id": "dev-ann"},
)


def _context() -> Context:
    return replace(make_context(), audiences=AUDIENCES)


def _at(minute: int) -> str:
    return f"2026-03-{1 + minute // 1440:02d}T{minute % 1440 // 60:02d}:{minute % 60:02d}:00Z"


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[dict[str, Any]], bool]:
    """Ann signs up granting marketing, logs in on her device, buys shoes, then states
    marketing consent some times (consent dialogs or a banner's state on a page view, through
    any of her identifiers, at any time); Bob is there too. Also: is her latest marketing
    statement a denial?"""
    region = draw(st.sampled_from(["NO", "US"]))
    base = {"channel": "web", "region": region}
    world: list[dict[str, Any]] = [
        {**base, "event_id": "signup", "type": "signup", "occurred_at": _at(0),
         "identifiers": {"customer_id": "C1", "email": "ann@x.no"},
         "consent": {"marketing": True, "analytics": True}},
        {**base, "event_id": "login", "type": "login", "occurred_at": _at(1),
         "identifiers": {"customer_id": "C1", "anonymous_id": "dev-ann"}},
        {**base, "event_id": "order", "type": "order_completed", "occurred_at": _at(2),
         "identifiers": {"customer_id": "C1"},
         "order": {"order_id": "o1", "total": "120.00", "currency": "NOK",
                   "lines": [{"sku": "S", "quantity": 1, "category": "shoes"}]}},
        {**base, "event_id": "bob", "type": "signup", "occurred_at": _at(3),
         "identifiers": {"customer_id": "C2", "email": "bob@x.no"},
         "consent": {"marketing": True}},
    ]  # fmt: skip
    statements: list[tuple[int, bool]] = [(0, True)]
    for i in range(draw(st.integers(1, 5))):
        minute = draw(st.integers(0, 4 * 1440))
        granted = draw(st.booleans())
        kind = draw(st.sampled_from(["consent_updated", "page_view"]))
        world.append(
            {**base, "event_id": f"m{i}", "type": kind, "occurred_at": _at(minute),
             "identifiers": draw(st.sampled_from(VIA)), "consent": {"marketing": granted}}
        )  # fmt: skip
        statements.append((minute, granted))
    # the latest by time; at the same time a denial wins
    latest = max(statements, key=lambda s: (s[0], not s[1]))
    return world, not latest[1]


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), world=worlds())
def test_after_a_withdrawal_ann_is_in_no_marketing_audience_in_any_order(
    data: st.DataObject, world: tuple[list[dict[str, Any]], bool]
) -> None:
    events, withdrawn = world
    order, batches = data.draw(deliveries(events))
    store = deliver(order, batches, _context)
    snapshots = stored_snapshots(store)
    [ann] = [p for p, d in snapshots.items() if "C1" in d["identifiers"].get("customer_id", [])]
    doc = snapshots[ann]
    assert doc["consent"]["marketing"]["granted"] is not withdrawn
    assert doc["reachable"]["email"] is not withdrawn
    assert "shoe-buyers" in doc["audiences"]  # not a marketing audience: she stays
    sets, replayed = store.audiences, replayed_members(store)
    later = AUDIENCES.members(doc, NOW.replace(year=NOW.year + 1))  # the scheduled pass
    for name in MARKETING:
        inside = {name in doc["audiences"], ann in sets.get(name, set()),
                  ann in replayed.get(name, set()), name in later}  # fmt: skip
        assert inside == {not withdrawn}, (name, inside)
