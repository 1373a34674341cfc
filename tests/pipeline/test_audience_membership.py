"""Audience membership is real time and order-independent (issue 18).

Property: after any delivery of any world (the generators of ``test_order_independence``:
partitions, interleavings, batches, redeliveries, merges, erasures, consent withdrawals),

* every live profile's snapshot lists exactly the audiences its definition gives on that
  snapshot at the batch clock;
* the member sets hold exactly the live profiles whose snapshot lists the audience (a profile
  merged away or erased is in none);
* the ``audiences.changes`` records, replayed in commit order, end in the same membership;
* and all of it equals the single-batch reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipeline_helpers import NOW, make_context, replayed_members, stored_snapshots
from test_order_independence import deliver, deliveries, events

from resolvers.audiences import Audiences, audience
from resolvers.context import Context
from resolvers.store import InMemoryStore

AUDIENCES = Audiences(
    {
        a.name: a
        for a in (
            audience("shoe-buyers", "category_orders.shoes >= 1"),
            audience(
                "shoe-reminder",
                "days_since_last_purchase.shoes between 150 and 400",
                marketing=True,
            ),
            audience("big-spenders", "lifetime_value.NOK > 300 and orders >= 2"),
            audience("no-analytics", "not consent.analytics"),
            audience("store-shoppers", 'shopping_mode in ["in_store", "omnichannel"]'),
            audience("named-ann", 'traits.first_name == "Ann" and reachable.email'),
        )
    }
)


def _context() -> Context:
    return replace(make_context(), audiences=AUDIENCES)


def _run(values: Sequence[bytes], batches: Sequence[int]) -> InMemoryStore:
    return deliver(values, batches, _context)


def _check(store: InMemoryStore) -> dict[str, set[str]]:
    snapshots = stored_snapshots(store)
    expected: dict[str, set[str]] = {}
    for pid, doc in snapshots.items():
        assert doc["audiences"] == sorted(AUDIENCES.members(doc, NOW)), pid
        for name in doc["audiences"]:
            expected.setdefault(name, set()).add(pid)
    sets = {name: ids for name, ids in store.audiences.items() if ids}
    assert sets == expected
    assert replayed_members(store) == expected
    return expected


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), world=events())
def test_membership_is_the_definition_on_the_final_snapshot_in_any_order(
    data: st.DataObject, world: list[Any]
) -> None:
    values = [orjson.dumps(e) for e in world]
    reference = _check(_run(values, [len(values)]))
    order, batches = data.draw(deliveries(world))
    assert _check(_run(order, batches)) == reference


def _event(event_id: str, type_: str, day: str, **extra: Any) -> bytes:
    return orjson.dumps(
        {"event_id": event_id, "type": type_, "channel": "web", "occurred_at": day, **extra}
    )


def test_the_generated_worlds_do_reach_the_audiences() -> None:
    """A buyer with marketing consent enters the shoe audiences; a withdrawal makes them exit
    the marketing one at once and an erasure every one (the property over worlds nobody
    enters would prove little)."""
    signup = _event(
        "s", "signup", "2026-03-02T09:00:00Z",
        identifiers={"customer_id": "C1", "email": "ann@x.no"},
        consent={"marketing": True, "analytics": True}, traits={"first_name": "Ann"},
    )  # fmt: skip
    order = _event(
        "o", "order_completed", "2026-03-02T10:00:00Z",
        identifiers={"customer_id": "C1"},
        order={"order_id": "o1", "total": "120.00", "currency": "NOK",
               "lines": [{"sku": "S", "quantity": 1, "category": "shoes"}]},
    )  # fmt: skip
    store = _run([signup, order], [2])
    members = _check(store)
    (pid,) = stored_snapshots(store)
    assert members == {name: {pid} for name in ("named-ann", "shoe-buyers", "shoe-reminder")}
    withdraw = _event(
        "w", "consent_updated", "2026-03-03T09:00:00Z",
        identifiers={"customer_id": "C1"}, consent={"marketing": False},
    )  # fmt: skip
    store = _run([signup, order, withdraw], [2, 1])
    assert set(_check(store)) == {"shoe-buyers"}  # reminder: marketing; named-ann: reachable
    erase = _event("x", "erasure_requested", "2026-03-04T09:00:00Z",
                   identifiers={"customer_id": "C1"})  # fmt: skip
    store = _run([signup, order, erase], [2, 1])
    assert _check(store) == {}
    exits = [orjson.loads(r.value) for r in store.outbox if r.topic == "audiences.changes"]
    assert sorted((e["audience"], e["change"]) for e in exits) == sorted(
        [(n, c) for n in ("named-ann", "shoe-buyers", "shoe-reminder") for c in ("enter", "exit")]
    )
