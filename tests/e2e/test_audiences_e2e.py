"""Issue 18's journey on real Kafka and Redis: a running-shoe buyer enters the reminder
audience when the (injected) clock passes 150 days since the purchase, without any new event,
and leaves it on a new purchase or at once on a marketing withdrawal.

The workers run with the real clock; the scheduled pass (``loom audiences refresh --now``)
takes the injected one, as an operator or the worker's periodic task would run it later.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from e2e_harness import Loom

from resolvers.timefmt import format_time

pytestmark = pytest.mark.e2e

AUDIENCES = """
[audiences.running-shoe-reminder]
description = "Bought running shoes 150-200 days ago"
expression = "category_orders.running >= 1 and days_since_last_purchase.running between 150 and 200"
marketing = true

[audiences.runners]
expression = "category_orders.running >= 1"
"""
NAME = "running-shoe-reminder"
NOW = datetime.now(UTC).replace(microsecond=0)


def ev(event_id: str, type_: str, days_ago: float, customer: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": type_,
        "channel": fields.pop("channel", "web"),
        "occurred_at": format_time(NOW - timedelta(days=days_ago)),
        "region": "NO",
        "identifiers": {"customer_id": customer, **fields.pop("identifiers", {})},
        **fields,
    }


def signup(event_id: str, days_ago: float, customer: str) -> dict[str, Any]:
    grants = {"analytics": True, "personalization": True, "marketing": True}
    return ev(event_id, "signup", days_ago, customer, consent=grants,
              identifiers={"email": f"{customer.lower()}@example.com"})  # fmt: skip


def shoes(event_id: str, days_ago: float, customer: str) -> dict[str, Any]:
    return ev(event_id, "order_completed", days_ago, customer, order={
        "order_id": f"o-{event_id}", "total": "1200.00", "currency": "NOK",
        "lines": [{"sku": "RUN-42", "quantity": 1, "unit_price": "1200.00",
                   "category": "running"}],
    })  # fmt: skip


@pytest.fixture
def deployment(loom: Loom) -> Loom:
    path = loom.tmp / "audiences.toml"
    path.write_text(AUDIENCES)
    loom.env["LOOM_AUDIENCES_FILE"] = str(path)
    loom.start_worker("profiles")
    return loom


def member_set(loom: Loom) -> set[str]:
    return {m.decode() for m in loom.redis.smembers(f"{loom.root}:audience:{NAME}")}  # type: ignore[union-attr]


def profile_of(loom: Loom, customer: str) -> dict[str, Any]:
    (doc,) = [
        p for p in loom.profiles().values() if customer in p["identifiers"].get("customer_id", [])
    ]
    return doc


def changes(loom: Loom, pid: str) -> list[tuple[str, str]]:
    return [
        (value["audience"], value["change"])
        for key, value in loom.decoded(loom.settings.topics.audience_changes)
        if key == pid
    ]


def refresh(loom: Loom, at: datetime) -> str:
    done = loom.cli("audiences", "refresh", "--now", format_time(at))
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_reminder_audience_follows_the_clock_and_a_new_purchase(deployment: Loom) -> None:
    loom = deployment
    loom.produce([signup("a1", 141, "ANN"), shoes("a2", 140, "ANN")])
    loom.wait_idle("profiles")
    ann = profile_of(loom, "ANN")
    pid = ann["profile_id"]
    assert ann["category_purchases"]["running"]["orders"] == 1
    assert ann["audiences"] == ["runners"]  # 140 days: not yet
    assert member_set(loom) == set()

    assert "0 moved" in refresh(loom, NOW + timedelta(days=9))  # 149 days: still not
    assert member_set(loom) == set()
    refresh(loom, NOW + timedelta(days=10, hours=1))  # 150 days: in, without any event
    loom.wait_drained()
    assert member_set(loom) == {pid}
    assert profile_of(loom, "ANN")["audiences"] == ["runners", NAME]
    assert changes(loom, pid) == [("runners", "enter"), (NAME, "enter")]

    loom.produce([shoes("a3", 0, "ANN")])  # a new pair: the reminder is moot
    loom.wait_idle("profiles")
    assert member_set(loom) == set()
    assert profile_of(loom, "ANN")["audiences"] == ["runners"]
    assert changes(loom, pid)[-1] == (NAME, "exit")


def test_a_marketing_withdrawal_removes_the_buyer_at_once(deployment: Loom) -> None:
    loom = deployment
    loom.produce([signup("b1", 171, "BOB"), shoes("b2", 170, "BOB")])
    loom.wait_idle("profiles")
    pid = profile_of(loom, "BOB")["profile_id"]
    assert member_set(loom) == {pid}  # 170 days at the worker's clock: in at once

    withdrawal = ev("b3", "consent_updated", 0, "BOB", consent={"marketing": False})
    loom.produce([withdrawal])
    loom.wait_idle("profiles")
    assert member_set(loom) == set()
    bob = profile_of(loom, "BOB")
    assert (bob["audiences"], bob["reachable"]["email"]) == (["runners"], False)
    assert changes(loom, pid) == [("runners", "enter"), (NAME, "enter"), (NAME, "exit")]

    refresh(loom, NOW + timedelta(days=10))  # the pass does not put them back
    assert member_set(loom) == set()
    members = loom.cli("audiences", "members", NAME, "--count")
    assert (members.returncode, members.stdout) == (0, "0\n")


def test_the_cli_lists_shows_and_previews(deployment: Loom) -> None:
    loom = deployment
    loom.produce([signup("c1", 171, "CID"), shoes("c2", 170, "CID"), signup("d1", 5, "DAN")])
    loom.wait_idle("profiles")
    listed = loom.cli("audiences", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == ["runners\t1\t-", f"{NAME}\t1\tmarketing, time"]
    shown = loom.cli("audiences", "show", NAME)
    assert "reads: category_orders.running, days_since_last_purchase.running" in shown.stdout
    assert "members: 1" in shown.stdout
    cid = profile_of(loom, "CID")["profile_id"]
    preview = loom.cli("audiences", "preview", "orders == 0 or category_orders.running >= 1")
    assert preview.returncode == 0, preview.stderr
    assert preview.stdout.splitlines()[0] == "2 of 2 profiles match"
    preview = loom.cli("audiences", "preview", "days_since_last_purchase.running > 170")
    assert preview.stdout.splitlines() == ["0 of 2 profiles match"]
    preview = loom.cli(
        "audiences", "preview", "days_since_last_purchase.running >= 170",
        "--now", format_time(NOW),
    )  # fmt: skip
    assert preview.stdout.splitlines() == ["1 of 2 profiles match", cid]
    bad = loom.cli("audiences", "preview", "orders >= 'x'")
    assert (bad.returncode, bad.stderr) == (
        2,
        'loom audiences preview: column 11: unexpected character "\'"\n',
    )
    missing = loom.cli("audiences", "members", "nope")
    assert missing.returncode == 1
    assert "no audience 'nope'" in missing.stderr


def test_the_worker_runs_the_pass_and_keeps_the_category_medians(loom: Loom) -> None:
    path = loom.tmp / "audiences.toml"
    path.write_text(AUDIENCES)
    loom.start_worker("profiles", env={"LOOM_AUDIENCES_FILE": str(path),
                                       "LOOM_AUDIENCES_REFRESH_S": "0.5"})  # fmt: skip
    loom.produce([signup("e0", 301, "EVE"), shoes("e1", 300, "EVE"), shoes("e2", 200, "EVE"),
                  signup("f0", 11, "FAY"), shoes("f1", 10, "FAY")])  # fmt: skip
    loom.wait_idle("profiles")
    key = f"{loom.root}:audience-medians"
    medians = loom.wait_for(lambda: loom.redis.hgetall(key) or None, "the pass's medians")
    assert medians == {b"running": b"100.0"}  # EVE's own interval; FAY has one purchase
