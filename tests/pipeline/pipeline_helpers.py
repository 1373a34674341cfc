"""Pipeline tier: both lanes' stage chains in-process on the in-memory store (no servers)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import orjson
import pytest
from builders import NOW, make_context

from resolvers.audiences import Audiences, audience
from resolvers.context import Context
from resolvers.pipeline import INVENTORY, PROFILES, BatchResult, run_batch
from resolvers.steps import RawRecord
from resolvers.store import InMemoryStore, Kind, StateStore
from schemas.normalize import DEFAULT

__all__ = ["NOW", "Runner", "make_context", "record", "run", "run_lanes", "store"]


def record(event: Mapping[str, Any] | bytes, offset: int = 0) -> RawRecord:
    value = event if isinstance(event, bytes) else orjson.dumps(event)
    return RawRecord(value=value, topic="touchpoints.raw", partition=0, offset=offset)


Runner = Callable[..., BatchResult]


def run_lanes(
    records: Sequence[RawRecord], store: StateStore, context: Callable[[], Context] = make_context
) -> BatchResult:
    """One batch through both lanes, as the two consumer groups see it; the profiles result."""
    result = run_batch(records, store, context, max_bytes=64 * 1024, config=DEFAULT, lane=PROFILES)
    run_batch(records, store, context, max_bytes=64 * 1024, config=DEFAULT, lane=INVENTORY)
    return result


@pytest.fixture
def store() -> InMemoryStore:
    return InMemoryStore()


@pytest.fixture
def run(store: InMemoryStore) -> Runner:
    def _run(
        events: Iterable[Mapping[str, Any] | bytes], target: StateStore | None = None
    ) -> BatchResult:
        return run_lanes([record(e, i) for i, e in enumerate(events)], target or store)

    return _run


#: The running-shoe buyer reminded when a new pair is due (the audiences' tests).
REMINDER = "running-shoe-reminder"
REMINDER_AUDIENCES = Audiences(
    {
        REMINDER: audience(
            REMINDER,
            "category_orders.running >= 1 and days_since_last_purchase.running between 150 and 200",
            marketing=True,
        )
    }
)


def reminder_context() -> Context:
    return replace(make_context(), audiences=REMINDER_AUDIENCES)


def one_snapshot(
    events: Iterable[Mapping[str, Any] | bytes], context: Callable[[], Context] = make_context
) -> dict[str, Any]:
    """The one profile snapshot the events make, each run in a batch of its own, in the order
    given."""
    store = InMemoryStore()
    for i, e in enumerate(events):
        run_lanes([record(e, i)], store, context)
    (doc,) = stored_snapshots(store).values()
    return doc


def stored_snapshots(store: InMemoryStore) -> dict[str, dict[str, Any]]:
    """Every profile's stored snapshot, by profile id."""
    return {
        ref.name: orjson.loads(entity.fields["d"])
        for ref, entity in store.entities.items()
        if ref.kind is Kind.PROFILE and "d" in entity.fields
    }


def replayed_members(store: InMemoryStore) -> dict[str, set[str]]:
    """The member sets a reader of ``audiences.changes`` builds by replaying it (each record
    keyed by its profile id); audiences left empty are left out."""
    members: dict[str, set[str]] = {}
    for rec in store.outbox:
        if rec.topic != "audiences.changes" or rec.value is None:
            continue
        change = orjson.loads(rec.value)
        assert rec.key == change["profile_id"].encode()
        names = members.setdefault(change["audience"], set())
        if change["change"] == "enter":
            names.add(change["profile_id"])
        else:
            names.discard(change["profile_id"])
    return {name: ids for name, ids in members.items() if ids}
