"""Input bounds through both lanes: what used to corrupt state goes to the DLQ with its own
reason, and the state is what the good records alone make."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipeline_helpers import NOW, Runner, record, run_lanes
from test_pipeline import ev, profiles, sale, stock

from resolvers.pipeline import INVENTORY, PROFILES, prepare
from resolvers.store import InMemoryStore
from schemas.normalize import DEFAULT

COUNT_AT = "2026-11-10T08:00:00+01:00"


def counted(event_id: str, at: str, on_hand: int, sku: str = "SKU-1") -> dict[str, Any]:
    return ev(
        event_id,
        "inventory_counted",
        at,
        channel="backoffice",
        inventory={"sku": sku, "location_id": "oslo-1", "on_hand": on_hand, "reason": "count"},
    )


def adjusted(event_id: str, delta: int) -> dict[str, Any]:
    return ev(
        event_id,
        "inventory_adjusted",
        COUNT_AT,
        channel="backoffice",
        inventory={"sku": "SKU-1", "location_id": "oslo-1", "delta": delta, "reason": "damage"},
    )


def reasons(result: Any) -> list[str]:
    return sorted(d.reason for d in result.dead_letters)


def test_a_count_stamped_in_2099_is_dead_lettered_and_later_sales_and_counts_still_count(
    run: Runner, store: InMemoryStore
) -> None:
    result = run(
        [
            counted("c1", COUNT_AT, 10),
            counted("c-2099", "2099-01-01T00:00:00+00:00", 500),
            sale("s1", "2026-11-11T12:00:00+01:00", {}),
            counted("c2", "2026-11-12T08:00:00+01:00", 7),
            sale("s2", "2026-11-13T12:00:00+01:00", {}),
        ]
    )
    assert reasons(result) == ["future_timestamp"]
    assert stock(store, "SKU-1")["locations"]["oslo-1"]["on_hand"] == 6


def test_a_consent_grant_stamped_in_the_future_cannot_outrank_a_real_revocation(
    run: Runner, store: InMemoryStore
) -> None:
    ids = {"customer_id": "C-7"}
    grant = ev(
        "g-2099",
        "consent_updated",
        "2099-01-01T00:00:00+00:00",
        region="NO",
        identifiers=ids,
        consent={"marketing": True},
    )
    revoke = ev(
        "r1",
        "consent_updated",
        "2026-11-21T10:00:00+01:00",
        region="NO",
        identifiers=ids,
        consent={"marketing": False},
    )
    result = run([grant, revoke])
    assert reasons(result) == ["future_timestamp"]
    (profile,) = profiles(store).values()
    assert profile["consent"]["marketing"]["granted"] is False


def test_events_within_the_clock_skew_are_accepted(run: Runner, store: InMemoryStore) -> None:
    soon = NOW.replace(minute=NOW.minute + 4).isoformat()  # 4 minutes ahead of the worker
    result = run([counted("c-soon", soon, 3)])
    assert result.dead_letters == []
    assert stock(store, "SKU-1")["locations"]["oslo-1"]["on_hand"] == 3


def test_stock_movements_beyond_the_bound_are_dead_lettered(
    run: Runner, store: InMemoryStore
) -> None:
    bad = [adjusted(f"a{i}", -1_000_000_000) for i in range(10)]
    result = run([counted("c1", "2026-11-09T08:00:00+01:00", 5), *bad, adjusted("ok", -2)])
    assert reasons(result) == ["out_of_bounds"] * 10
    assert stock(store, "SKU-1")["locations"]["oslo-1"]["on_hand"] == 3
    result = run([counted("c-huge", "2026-11-09T09:00:00+01:00", 1_000_001)])
    assert reasons(result) == ["out_of_bounds"]


def test_identifier_control_characters_are_dead_lettered_and_never_reach_a_key(
    run: Runner, store: InMemoryStore
) -> None:
    bad = ev("x1", "signup", identifiers={"email": "a@b.no\r\nFLUSHALL"}, region="NO")
    good = ev("x2", "signup", identifiers={"email": "a@b.no"}, region="NO")
    result = run([bad, good])
    assert reasons(result) == ["control_characters"]
    keys = [ref.name for ref in store.entities]
    assert not any("\r" in k or "\n" in k for k in keys)


def test_a_type_that_is_not_a_string_is_the_profiles_lanes_to_report_and_crashes_no_lane() -> None:
    store = InMemoryStore()
    poison = b'{"event_id":"x","type":["pos_sale"],"channel":"pos"}'
    result = run_lanes([record(poison, 0)], store)
    assert reasons(result) == ["unknown_type"]  # once, by the profiles lane


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
fields = st.fixed_dictionaries(
    {},
    optional={
        "event_id": json_values | st.text(max_size=10),
        "type": json_values | st.sampled_from(["pos_sale", "inventory_counted", "signup"]),
        "channel": json_values | st.just("pos"),
        "occurred_at": json_values | st.just("2026-11-01T10:00:00+00:00"),
        "identifiers": json_values,
        "order": json_values,
        "inventory": json_values,
        "consent": json_values,
        "traits": json_values,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=fields)
def test_any_json_object_is_decoded_or_dead_lettered_never_raised(event: dict[str, Any]) -> None:
    """Never raised, and never lost: the profiles lane takes or dead-letters every record (the
    inventory lane skips what is not its own and counts its bad ones: ``run_batch`` never
    dead-letters a record twice)."""
    raw = record(orjson.dumps(event, option=orjson.OPT_NON_STR_KEYS))
    decided: dict[str, int] = {}
    for lane in (PROFILES, INVENTORY):
        events, dead = prepare(
            [raw], max_bytes=65536, config=DEFAULT, salt=b"s", lane=lane, now=NOW
        )
        assert len(events) + len(dead) <= 1
        decided[lane.name] = len(events) + len(dead)
    assert decided[PROFILES.name] == 1
