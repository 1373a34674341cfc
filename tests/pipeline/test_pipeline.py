"""The whole stage chain in-process, on the in-memory store."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pipeline_helpers import Runner

from resolvers import pipeline
from resolvers.store import InMemoryStore, Kind

T0 = "2026-11-20T10:00:00+01:00"


def ev(event_id: str, type_: str, at: str = T0, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": type_,
        "channel": fields.pop("channel", "web"),
        "occurred_at": at,
        **fields,
    }


def sale(
    event_id: str,
    at: str,
    ids: dict[str, str],
    *,
    sku: str = "SKU-1",
    qty: int = 1,
    total: str = "49.90",
    location: str = "oslo-1",
    **extra: Any,
) -> dict[str, Any]:
    return ev(
        event_id,
        "pos_sale",
        at,
        channel="pos",
        region="NO",
        identifiers=ids,
        consent={"analytics": True, "personalization": True},
        order={
            "order_id": f"o-{event_id}",
            "total": total,
            "currency": "NOK",
            "payment_method": "card",
            "location_id": location,
            "lines": [{"sku": sku, "quantity": qty, "unit_price": total, "category": "shoes"}],
        },
        **extra,
    )


def profiles(store: InMemoryStore) -> dict[str, dict[str, Any]]:
    return {
        ref.name: orjson.loads(e.fields["d"])
        for ref, e in store.entities.items()
        if ref.kind is Kind.PROFILE and "d" in e.fields
    }


def stock(store: InMemoryStore, sku: str) -> dict[str, Any]:
    for ref, e in store.entities.items():
        if ref.kind is Kind.STOCK and ref.name == sku:
            return dict(orjson.loads(e.fields["d"]))
    raise KeyError(sku)


def partition(store: InMemoryStore) -> set[frozenset[str]]:
    return {
        frozenset(f"{t}:{v}" for t, vs in p["identifiers"].items() for v in vs)
        for p in profiles(store).values()
    }


CONSENT_ALL = {"analytics": True, "personalization": True, "marketing": True, "ads": False}

JOURNEY = [
    ev(
        "j1",
        "page_view",
        "2026-11-01T09:00:00+01:00",
        region="NO",
        identifiers={"anonymous_id": "dev-77"},
        consent=CONSENT_ALL,
        properties={"category": "shoes", "sku": "SKU-1"},
    ),
    ev(
        "j2",
        "signup",
        "2026-11-01T09:05:00+01:00",
        region="NO",
        identifiers={"anonymous_id": "dev-77", "email": " Kari.Nordmann@Example.NO "},
        consent=CONSENT_ALL,
        traits={"first_name": "Kari"},
    ),
    ev(
        "j3",
        "login",
        "2026-11-02T19:00:00+01:00",
        channel="app",
        region="NO",
        identifiers={"email": "kari.nordmann@example.no", "customer_id": "C-1001"},
        consent=CONSENT_ALL,
    ),
    sale(
        "j4",
        "2026-11-03T12:00:00+01:00",
        {"loyalty_id": "LOY-9", "customer_id": "C-1001"},
        total="799.00",
    ),
    ev(
        "j5",
        "order_returned",
        "2026-11-05T12:00:00+01:00",
        channel="pos",
        region="NO",
        identifiers={"loyalty_id": "LOY-9"},
        consent=CONSENT_ALL,
        order={
            "order_id": "o-j4",
            "total": "799.00",
            "currency": "NOK",
            "location_id": "oslo-1",
            "lines": [{"sku": "SKU-1", "quantity": 1, "restock": True}],
        },
    ),
]


def test_stage_order_is_pinned() -> None:
    assert pipeline.PROFILES.normalizes
    assert pipeline.PROFILES.stages == ("dedupe", "identity", "facts", "render")
    assert not pipeline.INVENTORY.normalizes
    assert pipeline.INVENTORY.stages == ("dedupe", "inventory")


def test_journey_ends_in_one_omnichannel_profile(run: Runner, store: InMemoryStore) -> None:
    result = run(JOURNEY)
    assert not result.dead_letters
    [p] = profiles(store).values()
    assert p["identifiers"] == {
        "anonymous_id": ["dev-77"],
        "email": ["kari.nordmann@example.no"],
        "customer_id": ["C-1001"],
        "loyalty_id": ["LOY-9"],
    }
    assert p["orders_in_store"] == 1
    assert p["revenue"] == {"NOK": "799.00"}
    assert p["returns"]["count"] == 1
    assert set(p["channels"]) == {"web", "app", "pos"}
    assert p["traits"]["first_name"] == "Kari"
    # the return restocked what the sale took
    assert stock(store, "SKU-1")["locations"]["oslo-1"]["on_hand"] == 0


def test_same_journey_in_many_batches_gives_the_same_profile(run: Runner) -> None:
    one, many = InMemoryStore(), InMemoryStore()
    run(JOURNEY, one)
    for event in JOURNEY:
        run([event], many)
    assert partition(one) == partition(many)
    strip = ("version",)
    [a], [b] = profiles(one).values(), profiles(many).values()
    assert {k: v for k, v in a.items() if k not in strip} == {
        k: v for k, v in b.items() if k not in strip
    }


def test_redelivery_changes_nothing(run: Runner, store: InMemoryStore) -> None:
    run(JOURNEY)
    before = dict(store.entities)
    outbox = len(store.outbox)
    again = run(JOURNEY)
    assert store.entities == before
    assert len(store.outbox) == outbox
    assert again.outcomes == {(e["type"], "duplicate"): 1 for e in JOURNEY}


def test_duplicates_inside_one_batch_count_once(run: Runner, store: InMemoryStore) -> None:
    run([JOURNEY[3], JOURNEY[3]])
    [p] = profiles(store).values()
    assert p["orders_in_store"] == 1
    assert stock(store, "SKU-1")["locations"]["oslo-1"]["on_hand"] == -1


def test_a_custom_event_links_identity_and_counts_as_activity_without_moving_stock(
    run: Runner, store: InMemoryStore
) -> None:
    custom = ev(
        "c1",
        "custom",
        "2026-11-01T09:10:00+01:00",
        name="Size Guide Viewed",
        region="NO",
        identifiers={"anonymous_id": "dev-77", "customer_id": "C-1001"},
        consent=CONSENT_ALL,
        properties={"category": "shoes", "sku": "SKU-1"},
    )
    result = run([JOURNEY[0], custom])
    assert result.outcomes[("custom", "ok")] == 1
    [p] = profiles(store).values()
    assert p["identifiers"] == {"anonymous_id": ["dev-77"], "customer_id": ["C-1001"]}
    assert [a["type"] for a in p["recent_activity"]] == ["custom", "page_view"]
    assert [a.get("name") for a in p["recent_activity"]] == ["Size Guide Viewed", None]
    assert p["category_affinities"] == {"shoes": 2}  # the page view's and the custom event's
    assert p["orders_online"] == 0
    assert not any(r.kind is Kind.STOCK for r in store.entities)


BAD = {
    b"{not json": "malformed_json",
    b"\xff\xfe garbage": "invalid_utf8",
    orjson.dumps(
        {"event_id": "x", "type": "teleported", "channel": "web", "occurred_at": T0}
    ): "unknown_type",
    orjson.dumps(
        {
            "event_id": "x",
            "type": "page_view",
            "channel": "web",
            "occurred_at": "2026-11-20T10:00:00",
        }
    ): "schema_violation",
    orjson.dumps(
        {
            "event_id": "x",
            "type": "page_view",
            "channel": "web",
            "occurred_at": T0,
            "properties": {"blob": "a" * 70_000},
        }
    ): "oversize",
    b'{"event_id": "\\ud800", "type": "page_view"}': "invalid_utf8",
}


@pytest.mark.parametrize(("raw", "reason"), list(BAD.items()), ids=list(BAD.values()))
def test_bad_input_goes_to_the_dlq_with_its_reason_and_good_input_flows(
    run: Runner, store: InMemoryStore, raw: bytes, reason: str
) -> None:
    result = run([raw, JOURNEY[0]])
    [dead] = result.dead_letters
    assert dead.reason == reason
    assert dead.record.value == raw  # original bytes kept
    assert dead.stage == "parse"
    assert len(profiles(store)) == 1


def test_eu_visitor_without_consent_leaves_no_behavioural_data(
    run: Runner, store: InMemoryStore
) -> None:
    run(
        [
            ev(
                "eu1",
                "product_viewed",
                region="DE",
                identifiers={"anonymous_id": "de-1"},
                properties={"category": "bags"},
            ),
            sale("eu2", "2026-11-20T11:00:00+01:00", {"anonymous_id": "de-1"}, sku="SKU-DE")
            | {"region": "DE", "consent": None},
        ]
    )
    [p] = profiles(store).values()
    assert p["orders_in_store"] == 0
    assert p["revenue"] == {}
    assert p["recent_activity"] == []
    assert p["category_affinities"] == {}
    assert p["first_seen"] is None
    assert p["channels"] == []
    # the sale still moved stock: operational facts flow without identity or consent
    assert stock(store, "SKU-DE")["locations"]["oslo-1"]["on_hand"] == -1


def test_revoking_analytics_purges_metrics_in_the_same_commit(
    run: Runner, store: InMemoryStore
) -> None:
    run(JOURNEY[:4])
    [p] = profiles(store).values()
    assert p["orders_in_store"] == 1
    run(
        [
            ev(
                "rv",
                "consent_updated",
                "2026-11-06T10:00:00+01:00",
                region="NO",
                identifiers={"customer_id": "C-1001"},
                consent={"analytics": False, "personalization": True},
            )
        ]
    )
    [p] = profiles(store).values()
    assert p["orders_in_store"] == 0
    assert p["revenue"] == {}
    assert p["last_order"] is None
    assert p["consent"]["analytics"]["granted"] is False


def test_erasure_forgets_the_person_and_suppresses_late_events(
    run: Runner, store: InMemoryStore
) -> None:
    run(JOURNEY)
    run(
        [
            ev(
                "er",
                "erasure_requested",
                "2026-11-10T10:00:00+01:00",
                identifiers={"email": "KARI.NORDMANN@example.no"},
            )
        ]
    )
    assert profiles(store) == {}
    assert not any(ref.kind is Kind.IDENTIFIER for ref in store.entities)
    tombstones = [r for r in store.outbox if r.topic == "profiles.changes" and r.value is None]
    assert len(tombstones) == 1
    assert any(r.topic == "privacy.erasures" for r in store.outbox)
    # a late POS purchase with the erased loyalty id (and a new card) moves stock only
    run(
        [
            sale(
                "late",
                "2026-11-11T10:00:00+01:00",
                {"loyalty_id": "LOY-9", "card_token": "tok-new"},
                sku="SKU-2",
            )
        ]
    )
    assert profiles(store) == {}
    assert stock(store, "SKU-2")["locations"]["oslo-1"]["on_hand"] == -1
    # erasing again is a no-op (idempotent), and replaying the journey rebuilds nothing
    run(
        [
            ev(
                "er2",
                "erasure_requested",
                "2026-11-12T10:00:00+01:00",
                identifiers={"email": "kari.nordmann@example.no"},
            )
        ]
    )
    run([{**e, "event_id": e["event_id"] + "-replay"} for e in JOURNEY])
    assert profiles(store) == {}


def test_junk_identifier_never_links_customers(run: Runner, store: InMemoryStore) -> None:
    run(
        [
            sale(
                f"cashier-{i}",
                "2026-11-20T11:00:00+01:00",
                {"phone": "1234567890", "loyalty_id": f"L-{i}"},
            )
            for i in range(50)
        ]
    )
    assert len(profiles(store)) == 50
    assert all("phone" not in p["identifiers"] for p in profiles(store).values())


def test_merge_is_announced_and_redirects_the_absorbed_id(
    run: Runner, store: InMemoryStore
) -> None:
    run([JOURNEY[0]])
    run([ev("c0", "login", "2026-10-01T09:00:00+01:00", identifiers={"customer_id": "C-1001"})])
    assert len(profiles(store)) == 2
    run(
        [
            JOURNEY[2],
            ev(
                "m1",
                "login",
                "2026-11-04T09:00:00+01:00",
                identifiers={"customer_id": "C-1001", "anonymous_id": "dev-77"},
            ),
        ]
    )
    [(survivor, p)] = profiles(store).items()
    merges = [
        orjson.loads(r.value)
        for r in store.outbox
        if r.topic == "identity.merges" and r.value is not None
    ]
    merged = [m for m in merges if m["kind"] == "merged"]
    assert len(merged) == 1
    assert merged[0]["survivor"] == survivor
    absorbed = merged[0]["absorbed"]
    assert p["merged_from"] == [absorbed]
    redirect = [e for ref, e in store.entities.items() if ref.name == absorbed]
    assert redirect
    assert redirect[0].fields["r"].decode() == survivor


def test_default_region_normalizes_phones_of_events_without_one(store: InMemoryStore) -> None:
    from dataclasses import replace

    from pipeline_helpers import make_context, record, run_lanes

    event = ev("reg1", "signup", identifiers={"phone": "912 34 567"}, consent={"analytics": True})
    run_lanes([record(event)], store, lambda: replace(make_context(), default_region="NO"))
    [p] = profiles(store).values()
    assert p["identifiers"] == {"phone": ["+4791234567"]}
    # without a default region the local number is not an identifier at all
    other = InMemoryStore()
    run_lanes([record(event | {"event_id": "reg2"})], other)
    assert profiles(other) == {}


def test_region_default_grants_show_in_the_snapshot(run: Runner, store: InMemoryStore) -> None:
    us = sale("us1", "2026-11-20T11:00:00-05:00", {"loyalty_id": "L-US"}) | {
        "region": "US",
        "consent": None,
    }
    eu = sale("eu9", "2026-11-20T11:00:00+01:00", {"loyalty_id": "L-EU"}) | {
        "region": "DE",
        "consent": None,
    }
    run([us, eu])
    by_loyalty = {p["identifiers"]["loyalty_id"][0]: p for p in profiles(store).values()}
    us_p, eu_p = by_loyalty["L-US"], by_loyalty["L-EU"]
    assert us_p["orders_in_store"] == 1
    assert us_p["consent"]["analytics"] == {"granted": True, "at": None, "source": "default"}
    assert us_p["consent"]["ads"]["granted"] is False
    assert eu_p["orders_in_store"] == 0
    assert eu_p["consent"]["analytics"]["granted"] is False


def test_decode_cache_changes_nothing_but_the_work(run: Runner) -> None:
    from dataclasses import replace

    from pipeline_helpers import make_context, record, run_lanes

    from resolvers.decode_cache import DecodeCache

    cache = DecodeCache()
    plain, cached = InMemoryStore(), InMemoryStore()
    events = [
        *JOURNEY,
        *[sale(f"x{i}", "2026-11-06T12:00:00+01:00", {"loyalty_id": "LOY-9"}) for i in range(3)],
    ]
    for event in events:  # one event per batch: every batch reloads the same entities
        run([event], plain)
        run_lanes([record(event)], cached, lambda: replace(make_context(), cache=cache))
    assert cached.entities == plain.entities
    assert cache.hits > 0


def test_the_decode_cache_is_asked_for_profiles_not_identifier_records(run: Runner) -> None:
    """A record's state parses in about the time a lookup takes: it is decoded, and the
    cache's budget left to profiles (``ProfilesBatch.from_loaded``)."""
    from dataclasses import replace

    from pipeline_helpers import make_context, record, run_lanes

    from resolvers.decode_cache import DecodeCache

    asked: list[Kind] = []

    class Asked(DecodeCache):
        def get(self, key: Any, raw: bytes, decode: Any) -> Any:
            asked.append(key.kind)
            return super().get(key, raw, decode)

    cache, cached, plain = Asked(), InMemoryStore(), InMemoryStore()
    for event in JOURNEY:  # one event per batch: each reloads the records of the one before
        run([event], plain)
        run_lanes([record(event)], cached, lambda: replace(make_context(), cache=cache))
    assert cached.entities == plain.entities
    loaded = [ref.kind for ref in cached.entities]
    assert Kind.IDENTIFIER in loaded  # records were there to be loaded
    assert Kind.PROFILE in asked
    assert Kind.IDENTIFIER not in asked


def test_data_allowed_by_a_region_default_is_purged_when_the_region_changes(
    run: Runner, store: InMemoryStore
) -> None:
    us = sale("r1", "2026-11-20T11:00:00-05:00", {"loyalty_id": "L-MOVE"}) | {
        "region": "US",
        "consent": None,
    }
    run([us])
    [p] = profiles(store).values()
    assert p["orders_in_store"] == 1
    moved = ev(
        "r2",
        "page_view",
        "2026-11-21T11:00:00+01:00",
        region="DE",
        identifiers={"loyalty_id": "L-MOVE"},
    )
    run([moved])
    [p] = profiles(store).values()
    assert p["consent"]["analytics"] == {"granted": False, "at": None, "source": "default"}
    assert p["orders_in_store"] == 0
    assert p["revenue"] == {}
    assert p["first_seen"] is None
    # the sale itself stays in the transaction ledger (the retailer's books, whatever the
    # consent: docs/consent.md); only a grant of analytics would show it again
    [entity] = [e for r, e in store.entities.items() if r.kind is Kind.PROFILE]
    [group] = orjson.loads(entity.fields["s"])["g"].values()
    assert list(group["x"]["o"]) == ["order:o-r1"]


def test_behaviour_a_purpose_can_never_serve_is_not_stored(
    run: Runner, store: InMemoryStore
) -> None:
    denied = ev(
        "b1",
        "product_viewed",
        region="DE",
        identifiers={"customer_id": "C-9"},
        consent={"analytics": False, "personalization": False},
        properties={"category": "shoes"},
    )
    revoked_later = ev(
        "b2",
        "page_view",
        "2026-11-20T09:00:00+01:00",
        region="DE",
        identifiers={"customer_id": "C-9"},
        consent={"analytics": True, "personalization": True},
        properties={"category": "kids"},
    )
    revocation = ev(
        "b3",
        "consent_updated",
        "2026-11-20T12:00:00+01:00",
        region="DE",
        identifiers={"customer_id": "C-9"},
        consent={"analytics": False, "personalization": False},
    )
    run([denied, revoked_later, revocation])
    [entity] = [e for r, e in store.entities.items() if r.kind is Kind.PROFILE]
    stored = orjson.loads(entity.fields["s"])
    [group] = stored["g"].values()
    kept = {item[0]: item[4:] for item in group["x"].get("e", [])}
    husk = [False, [], False, {}, [], {}]  # no channel, interest, activity or preference
    assert kept["b1"] == husk  # its own statement denied both purposes
    assert kept["b2"] == husk  # revoked for good by b3
    [p] = profiles(store).values()
    assert p["category_affinities"] == {}
    assert p["channels"] == []


def test_replaying_the_topic_into_an_empty_store_rebuilds_the_same_state() -> None:
    """Kafka is the source of truth: wipe the store, replay, get byte-identical entities."""
    import itertools

    from pipeline_helpers import record, run_lanes

    from schemas.touchpoint import dump_touchpoint
    from streams.simulate import Simulator

    topic = [
        dump_touchpoint(tp)
        for tp in itertools.islice(Simulator(seed=3, customers=300).events(), 2000)
    ]

    def rebuild() -> InMemoryStore:
        store = InMemoryStore()
        for start in range(0, len(topic), 500):
            batch = [record(raw, start + i) for i, raw in enumerate(topic[start : start + 500])]
            run_lanes(batch, store)
        return store

    first, replayed = rebuild(), rebuild()
    assert len(profiles(first)) > 50
    assert any(r.kind is Kind.STOCK for r in first.entities)
    assert replayed.entities == first.entities  # same profile ids, versions and bytes


def test_dead_letters_are_counted_in_the_batch_commit(run: Runner, store: InMemoryStore) -> None:
    run([b"{not json", b"\xff"])  # a batch of nothing but bad records still commits its count
    run([b"[]", JOURNEY[0]])
    assert store.counters["dlq"] == 3


def _lane(lane: pipeline.Lane, events: list[Any], store: InMemoryStore) -> pipeline.BatchResult:
    from pipeline_helpers import make_context, record

    from schemas.normalize import DEFAULT

    records = [e if isinstance(e, bytes) else orjson.dumps(e) for e in events]
    return pipeline.run_batch(
        [record(r, i) for i, r in enumerate(records)],
        store,
        make_context,
        max_bytes=65536,
        config=DEFAULT,
        lane=lane,
    )


def test_prepare_follows_the_lane_prepare_and_takes_fields() -> None:
    from dataclasses import replace

    from pipeline_helpers import record

    from schemas.normalize import DEFAULT

    records = [record(e, i) for i, e in enumerate(JOURNEY)]

    def prep(lane: pipeline.Lane) -> list[str]:
        events, dead = pipeline.prepare(
            records, max_bytes=65536, config=DEFAULT, salt=b"s", lane=lane
        )
        assert dead == []
        return [f"{e.tp.event_id}:{len(e.identifiers)}" for e in events]

    # normalizing lane: identifiers normalized (and hashed); every event taken
    assert prep(pipeline.PROFILES) == ["j1:1", "j2:2", "j3:2", "j4:2", "j5:1"]
    # not normalizing: nothing normalized, even on a lane that loads identity state
    assert prep(replace(pipeline.PROFILES, normalizes=False)) == [
        "j1:0",
        "j2:0",
        "j3:0",
        "j4:0",
        "j5:0",
    ]
    # takes filters the decoded events
    signups = replace(pipeline.PROFILES, takes=lambda e: e if e.tp.type.value == "signup" else None)
    assert prep(signups) == ["j2:2"]
    # the inventory lane takes only stock types, and of those only events that move stock
    assert prep(pipeline.INVENTORY) == ["j4:0", "j5:0"]
    kept = JOURNEY[4]
    line = {**kept["order"]["lines"][0], "restock": False}
    records.append(record({**kept, "event_id": "j6", "order": {**kept["order"], "lines": [line]}}))
    assert prep(replace(pipeline.INVENTORY, takes=None)) == ["j4:0", "j5:0", "j6:0"]
    assert prep(pipeline.INVENTORY) == ["j4:0", "j5:0"]  # a return without restock moves none


def test_inventory_lane_moves_stock_and_touches_nothing_else() -> None:
    store = InMemoryStore()
    result = _lane(pipeline.INVENTORY, [*JOURNEY, sale("s2", T0, {"loyalty_id": "L-2"})], store)
    assert stock(store, "SKU-1")["locations"]["oslo-1"]["on_hand"] == -1  # 2 sales, 1 return
    assert {r.kind for r in store.entities} == {Kind.STOCK}  # no identifier, no profile
    # only events that move stock are marked processed, in the lane's own scope
    stock_events = {e["event_id"] for e in JOURNEY if e["type"] in {"pos_sale", "order_returned"}}
    assert store.seen == {"inventory": stock_events | {"s2"}}
    assert result.outcomes[("pos_sale", "ok")] == 2
    assert not any(t == "page_view" for t, _ in result.outcomes)


def test_profiles_lane_keeps_stock_out_of_its_transaction() -> None:
    store = InMemoryStore()
    _lane(pipeline.PROFILES, JOURNEY, store)
    assert {r.kind for r in store.entities} == {Kind.IDENTIFIER, Kind.PROFILE}
    assert not store.streams.get("inventory")
    assert set(store.seen) == {"profiles"}


def test_lanes_commute_whatever_order_the_groups_run_in() -> None:
    a, b = InMemoryStore(), InMemoryStore()
    for lane in (pipeline.PROFILES, pipeline.INVENTORY):
        _lane(lane, JOURNEY, a)
    for lane in (pipeline.INVENTORY, pipeline.PROFILES):
        _lane(lane, JOURNEY, b)
    assert a.entities == b.entities
    assert a.seen == b.seen


def test_a_bad_record_reaches_the_dlq_once_across_both_lanes() -> None:
    store = InMemoryStore()
    bad_sale = sale("bad", T0, {"loyalty_id": "L-3"}) | {"occurred_at": "yesterday"}
    records: list[Any] = [bad_sale, b"{not json", sale("good", T0, {"loyalty_id": "L-3"})]
    profiles_result = _lane(pipeline.PROFILES, records, store)
    inventory_result = _lane(pipeline.INVENTORY, records, store)
    assert len(profiles_result.dead_letters) == 2
    assert inventory_result.dead_letters == []
    # the inventory lane counts the invalid sale it skipped (the junk is not a stock event)
    assert inventory_result.outcomes[("unknown", pipeline.INVALID)] == 1
    assert store.counters["dlq"] == 2
    assert stock(store, "SKU-1")["locations"]["oslo-1"]["on_hand"] == -1  # the good sale only
