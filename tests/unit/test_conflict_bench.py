"""The conflict bench's model (``bench.conflict_bench``, ADR 0017): its session router keys an
order's follow-up where the order's visit went (its partitions: ``test_partitioner``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from schemas.touchpoint import Touchpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(ROOT))  # `python -m bench...` runs from the checkout
    import bench.conflict_bench as module

    return module


def event(n: int, ids: dict[str, str], type_: str = "page_view") -> Touchpoint:
    return Touchpoint.model_validate(
        {
            "event_id": f"e{n}",
            "type": type_,
            "channel": "web",
            "occurred_at": f"2026-11-20T10:{n:02d}:00+00:00",
            "identifiers": ids,
        }
    )


def test_keyings_of_one_visit_and_its_follow_up(bench: Any) -> None:
    visit = "4f1c2b1e-0000-4000-8000-000000000001"
    tps = [
        event(1, {"anonymous_id": visit}),  # browsing before login
        event(2, {"anonymous_id": visit, "customer_id": "C1"}, "login"),
        event(3, {"customer_id": "C1"}, "profile_updated"),  # later, from the back office
        event(4, {"customer_id": "C2"}, "profile_updated"),  # someone never seen in a visit
    ]
    truth = bench.Truth(keys={tp.event_id: [] for tp in tps})
    truth.keys.update(
        e1=[f"anonymous_id:{visit}"],
        e2=[f"anonymous_id:{visit}", "customer_id:C1"],
        e3=["customer_id:C1"],
        e4=["customer_id:C2"],
    )
    session = f"anonymous_id:{visit}".encode()
    # today: the visit is split between its anonymous id and the customer id
    assert bench.keys_for("record-key", tps, truth) == [
        session, b"customer_id:C1", b"customer_id:C1", b"customer_id:C2"
    ]  # fmt: skip
    # stateless session keys keep the visit together, not its follow-up
    assert bench.keys_for("session", tps, truth) == [
        session, session, b"customer_id:C1", b"customer_id:C2"
    ]  # fmt: skip
    # the router remembers where C1's visit went
    assert bench.keys_for("session-router", tps, truth) == [
        session, session, session, b"customer_id:C2"
    ]  # fmt: skip
