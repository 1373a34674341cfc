"""Pipeline tier: both lanes' stage chains in-process on the in-memory store (no servers)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson
import pytest
from builders import NOW, make_context

from resolvers.context import Context
from resolvers.pipeline import INVENTORY, PROFILES, BatchResult, run_batch
from resolvers.steps import RawRecord
from resolvers.store import InMemoryStore, StateStore
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
