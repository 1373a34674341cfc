"""``bench.commit_digest`` is how issue 17's passes showed that the pipeline computes the same
bytes after a change: its canonical form must ignore only what carries no meaning (a mapping's
or set's iteration order, a value's Python type when its fields are the same) and see the rest."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import pytest

from resolvers.store import Commit, InMemoryStore, Kind, Ref, Write

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def digest(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT))  # `python -m bench...` runs from the checkout
    return importlib.import_module("bench.commit_digest")


class _Pair(NamedTuple):
    a: int
    b: str


def _commit(value: bytes, event_ids: tuple[str, ...] = ("e1", "e2")) -> Commit:
    ref = Ref(Kind.PROFILE, "p1")
    return Commit(
        expect={ref: 0},
        event_ids=event_ids,
        writes=[Write(ref, 1, {"d": value, "s": b"{}"})],
        counters={"events": 2, "profiles": 1},
    )


def test_mapping_and_set_order_do_not_count(digest: ModuleType) -> None:
    canonical = digest.canonical
    assert canonical({"x": 1, "y": 2}) == canonical({"y": 2, "x": 1})
    assert canonical(frozenset({"a", "b"})) == canonical({"b", "a"})


def test_sequence_order_and_values_count(digest: ModuleType) -> None:
    canonical = digest.canonical
    assert canonical(["a", "b"]) != canonical(["b", "a"])
    assert canonical(_Pair(1, "x")) == canonical((1, "x"))  # a named tuple is its values
    assert canonical(_commit(b'{"a":1}')) != canonical(_commit(b'{"a":2}'))
    assert canonical(_commit(b"{}", ("e1", "e2"))) != canonical(_commit(b"{}", ("e2", "e1")))


def test_a_ref_is_its_text(digest: ModuleType) -> None:
    ref = Ref(Kind.STOCK, "sku-1")
    assert digest.canonical(ref) == f"Ref:{ref}"


def test_the_recording_store_hashes_every_part_and_still_commits(digest: ModuleType) -> None:
    one, other = digest._RecordingStore(), digest._RecordingStore()
    assert one.commit_parts([_commit(b"{}")])[0].ok
    other.commit_parts([_commit(b"{ }")])
    assert one.commits.hexdigest() != other.commits.hexdigest()
    assert isinstance(one, InMemoryStore)
    assert Ref(Kind.PROFILE, "p1") in one.entities  # committed as the in-memory store does
