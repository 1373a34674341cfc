"""The stored JSON form of a group's facts (``resolvers.profile.codec``)."""

from __future__ import annotations

import json
from decimal import Decimal

from hypothesis import given, settings
from profile_worlds import EVERYTHING, obs, observe_all, order, returned, small_windows, worlds

from resolvers.consent import CONSENT_PURPOSES, ConsentPolicy, Gate
from resolvers.consent.signals import from_code
from resolvers.profile.codec import UNREADABLE_CONSENT, facts_from_json, facts_to_json
from resolvers.profile.facts import EMPTY_FACTS, WHOLE_ORDER, Facts, Observation, OrderFacts


def round_trip(facts: Facts) -> Facts:
    return facts_from_json(json.loads(json.dumps(facts_to_json(facts))))


@settings(max_examples=150, deadline=None)
@given(events=worlds())
def test_facts_round_trip_through_json(events: list[Observation]) -> None:
    with small_windows():  # digests, husks and partly pruned events in the stored form
        facts = observe_all(events)
    back = round_trip(facts)
    assert back == facts
    assert facts_to_json(back) == facts_to_json(facts)


def test_the_stored_form_is_compact_and_exact() -> None:
    facts = observe_all(
        [
            obs("v", 1, type="product_viewed", category="shoes", consent=EVERYTHING),
            order("a", 3, "o1", "10.50", store="oslo-1"),
            returned("r", 4, "o1", "10"),
        ]
    )
    doc = facts_to_json(facts)
    assert set(doc) == {"c", "o", "e", "l"}  # no traits, region, digests: nothing stored
    assert doc["o"]["order:o1"][:2] == ["2024-05-01T09:03:00Z", "a"]
    assert "10.50" in doc["o"]["order:o1"]  # money as exact decimal text
    assert doc["l"] == "2024-05-01T09:04:00Z"
    assert facts_to_json(EMPTY_FACTS) == {}
    assert facts_from_json({}) == EMPTY_FACTS


def test_an_unreadable_consent_history_decodes_to_everything_denied_for_good() -> None:
    facts = observe_all([obs("v", 1, consent=EVERYTHING)])
    doc = facts_to_json(facts)
    doc["c"] = {"f": 99}
    back = facts_from_json(doc)
    assert back.consent == UNREADABLE_CONSENT
    item = back.recent["v"]
    gate = Gate(ConsentPolicy(), back.consent, "US")
    assert gate.granted_now() == frozenset()
    consent = from_code(item.code)
    assert gate.serves(at=item.digest.first_at, consent=consent, region="US") == frozenset()
    assert all(UNREADABLE_CONSENT.of(p).last_denial is not None for p in CONSENT_PURPOSES)


def test_a_return_of_the_whole_order_round_trips() -> None:
    # a full refund (no lines): the render gives back the order it names (``whole``)
    whole = obs(
        "r",
        4,
        type="order_returned",
        order=OrderFacts("o1", Decimal(0), "NOK", whole=WHOLE_ORDER),
    )
    facts = observe_all([order("a", 3, "o1", "10.50", categories=["shoes"]), whole])
    back = round_trip(facts)
    assert back == facts
    assert (back.transactions["return:r"].whole, back.transactions["return:r"].order_id) == (
        WHOLE_ORDER,
        "o1",
    )


def test_a_stored_transaction_ends_order_id_units_whole_skus_loose_up_to_the_last_it_has() -> None:
    # whole (ADR 0003) stays at 16; a purchase's SKUs per category and a give-back's SKUs
    # without one (ADR 0009, 2026-12-04) follow at 17 and 18, written only where there are some
    def lines(*cats_skus: tuple[str, str]) -> OrderFacts:
        return OrderFacts(
            "o1",
            Decimal(10),
            "NOK",
            categories=tuple([c for c, _ in cats_skus]),
            category_skus=tuple([s for _, s in cats_skus]),
        )

    facts = observe_all(
        [
            obs("a", 1, type="order_completed", order=lines(("shoes", "s1"), ("socks", "s2"))),
            obs("p", 2, type="order_completed", order=OrderFacts("o2", Decimal(5), "NOK")),
            obs("w", 3, type="order_returned", order=OrderFacts("o2", Decimal(0), "NOK", whole=1)),
            obs(
                "c",
                4,
                type="order_cancelled",
                order=OrderFacts("o1", Decimal(0), "NOK", loose=(("s2", 1), ("s1", 2))),
            ),
            returned("r", 5, "o1", "1"),
        ]
    )
    stored = facts_to_json(facts)["o"]
    assert stored["order:o1"][14:] == [None, [], 0, [["s1"], ["s2"]]]
    assert len(stored["order:o2"]) == 14  # nothing optional: written as before
    assert stored["return:w"][14:] == ["o2", [], WHOLE_ORDER]
    assert stored["cancel:c"][14:] == ["o1", [], 0, [], [["s1", 2], ["s2", 1]]]
    assert len(stored["return:r"]) == 14  # no lines named: no order
    assert round_trip(facts) == facts


def test_transactions_stored_before_skus_and_loose_decode_as_they_were() -> None:
    # the forms written before 2026-12-04: 14 fields, 16 (a return's order and units), 17 (whole)
    facts = observe_all(
        [
            order("a", 3, "o1", "10.50", categories=["shoes"]),
            obs("w", 4, type="order_returned", order=OrderFacts("o1", Decimal(0), "NOK", whole=2)),
        ]
    )
    doc = json.loads(json.dumps(facts_to_json(facts)))
    assert len(doc["o"]["order:o1"]) == 14
    assert doc["o"]["return:w"][14:] == ["o1", [], 2]
    back = facts_from_json(doc)
    assert back == facts
    w = back.transactions["return:w"]
    assert (w.order_id, w.whole, w.skus, w.loose) == ("o1", 2, (), ())
    doc["o"]["return:w"] = doc["o"]["return:w"][:16]  # a return naming its order, no whole
    w = facts_from_json(doc).transactions["return:w"]
    assert (w.order_id, w.units, w.whole, w.skus, w.loose) == ("o1", (), 0, (), ())
