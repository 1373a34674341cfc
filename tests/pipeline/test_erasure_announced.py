"""Every erasure request is announced on ``privacy.erasures``, also one that found no profile.

The privacy worker forgets the customer ids an announcement names (``customer_digests``) in the
gateway's Shopify memory (ADR 0007). Only erased profiles were announced: a request that found
no identifier record (``erasure_nothing_to_erase``) said nothing, so the gateway kept the
customer id of a customer Loom holds no profile of: one whose webhook's events the lane
dead-lettered, or who asked (``loom erase``, support) before her first events reached the lane
(the same batch, or the request first: her events are then suppressed). Now such a request is
announced with ``profile_id`` null and the digests of the customer ids the batch erased that
no erased profile held (its own, and its suppressed events'); it is also the requester's
answer that the request was carried out. Also here: each erased profile's record names the
request that named it (a shop's redact sends many in one batch), and an erased customer who
comes back is not named again on the kept trail.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from pipeline_helpers import record, run_lanes

from resolvers.context import suppression_hash
from resolvers.store import InMemoryStore
from resolvers.timefmt import format_time
from schemas.identifiers import Identifier
from schemas.inbound.shopify_model import RememberCustomer
from streams.privacy_worker import erased_customers
from streams.shopify_memory import InMemoryShopifyMemory

SALT = b"test-salt"  # the pipeline tier's context (builders.make_context) and the memory's
SHOP = "jsmith"


def _event(event_id: str, kind: str, at: str, **identifiers: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": kind,
        "channel": "support" if kind == "erasure_requested" else "web",
        "occurred_at": at,
        "region": "NO",
        "identifiers": identifiers,
        "consent": {"analytics": True, "personalization": True},
    }


def _announced(store: InMemoryStore) -> list[dict[str, Any]]:
    return [
        orjson.loads(r.value)
        for r in store.outbox
        if r.topic == "privacy.erasures" and r.value is not None
    ]


def _digest(customer_id: str) -> str:
    return suppression_hash(Identifier("customer_id", customer_id), SALT)


def test_a_request_that_finds_no_profile_is_announced_with_the_customer_ids_it_names() -> None:
    store = InMemoryStore()
    run_lanes(
        [record(_event("ask", "erasure_requested", "2026-11-10T10:00:00+01:00",
                       customer_id="C-404", email="nobody.here@example.no"))],
        store,
    )  # fmt: skip
    [announced] = _announced(store)
    assert announced == {
        "profile_id": None,  # none found
        "event_id": "ask",
        "identifiers_suppressed": 2,
        "merged_from": [],
        "customer_digests": [_digest("C-404")],
    }
    # and the privacy worker forgets her in the gateway's memory with it
    memory = InMemoryShopifyMemory(SALT)
    memory.apply(SHOP, [RememberCustomer("C-404"), RememberCustomer("C-200")])
    for shop in list(memory.shops()):
        memory.forget_customers(shop, erased_customers(orjson.dumps(announced)))
    assert sorted(memory.customers(SHOP)) == ["C-200"]


def test_asked_again_after_her_profile_was_erased_the_request_is_announced_again() -> None:
    store = InMemoryStore()
    offset = iter(range(100))

    def run(*events: dict[str, Any]) -> None:
        run_lanes([record(e, next(offset)) for e in events], store)

    run(_event("v1", "page_view", "2026-11-01T10:00:00+01:00",
               customer_id="C-7", email="kari@example.no"))  # fmt: skip
    run(_event("er1", "erasure_requested", "2026-11-02T10:00:00+01:00", email="kari@example.no"))
    [first] = _announced(store)
    assert first["profile_id"] is not None
    assert first["customer_digests"] == [_digest("C-7")]
    # a late event of hers (suppressed: no profile), then she asks again, by customer id
    run(_event("v2", "page_view", "2026-11-03T10:00:00+01:00", customer_id="C-7"))
    run(_event("er2", "erasure_requested", "2026-11-04T10:00:00+01:00", customer_id="C-7"))
    second = _announced(store)[1:]
    assert [(a["profile_id"], a["event_id"], a["customer_digests"]) for a in second] == [
        (None, "er2", [_digest("C-7")])
    ]
    # the same request delivered again is a duplicate: nothing announced twice
    run(_event("er2", "erasure_requested", "2026-11-04T10:00:00+01:00", customer_id="C-7"))
    assert len(_announced(store)) == 2


def test_an_erased_profiles_announcement_is_unchanged_and_alone() -> None:
    store = InMemoryStore()
    run_lanes([record(_event("v1", "page_view", "2026-11-01T10:00:00+01:00",
                             customer_id="C-9", email="ola@example.no"), 0)], store)  # fmt: skip
    run_lanes([record(_event("er", "erasure_requested", "2026-11-02T10:00:00+01:00",
                             customer_id="C-9"), 1)], store)  # fmt: skip
    [announced] = _announced(store)
    assert announced["profile_id"] is not None
    assert (announced["event_id"], announced["customer_digests"]) == ("er", [_digest("C-9")])


def test_a_request_in_the_batch_of_her_first_event_is_announced() -> None:
    # the batch's erasure suppresses her event before any profile is made of it: nothing
    # found, the customer id she named announced all the same
    store = InMemoryStore()
    run_lanes(
        [
            record(_event("v1", "page_view", "2026-11-01T10:00:00+01:00",
                          customer_id="C-9", email="ola@example.no"), 0),
            record(_event("er", "erasure_requested", "2026-11-02T10:00:00+01:00",
                          customer_id="C-9"), 1),
        ],
        store,
    )  # fmt: skip
    assert [(a["profile_id"], a["customer_digests"]) for a in _announced(store)] == [
        (None, [_digest("C-9")])
    ]


CUSTOMER_DIGESTS = {_digest(f"C-{k}"): f"C-{k}" for k in (1, 2, 3)}
#: (kind, customer k, which of their identifiers the event carries)
EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["page_view", "page_view", "erasure_requested"]),
        st.integers(1, 3),
        st.sampled_from(["customer_id", "email", "both"]),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(EVENTS, st.lists(st.integers(1, 7), max_size=4))
def test_every_customer_id_the_lane_suppresses_is_announced_however_the_events_are_batched(
    events: list[tuple[str, int, str]], cuts: list[int]
) -> None:
    """The gateway forgets what ``privacy.erasures`` names: each customer id the lane erases
    (its suppression hash in the store) is named there, whether the erasure found her profile
    (a later batch) or suppressed her events before a profile was made of them (the same
    batch). Before, the second case named only the customer ids the request itself named."""
    day = datetime(2026, 11, 1, 10, tzinfo=UTC)
    values = []
    for n, (kind, k, which) in enumerate(events):
        ids = {"customer_id": f"C-{k}", "email": f"c{k}@example.no"}
        if which != "both":
            ids = {which: ids[which]}
        values.append(_event(f"e{n}", kind, format_time(day + timedelta(hours=n)), **ids))
    store = InMemoryStore()
    bounds = sorted({0, *(c for c in cuts if c < len(values)), len(values)})
    for start, end in itertools.pairwise(bounds):
        run_lanes([record(v, i) for i, v in enumerate(values[start:end], start)], store)
    announced = {d for a in _announced(store) for d in a["customer_digests"]}
    erased = {CUSTOMER_DIGESTS[h] for h in store.suppressed if h in CUSTOMER_DIGESTS}
    assert {CUSTOMER_DIGESTS[d] for d in announced} == erased


def test_an_erased_customer_coming_back_is_not_announced_again() -> None:
    # her customer id was announced when she was erased; her later events (suppressed, the
    # erasure continuing through a new device) add no record naming her again to the trail
    store = InMemoryStore()
    offset = iter(range(100))

    def run(event: dict[str, Any]) -> None:
        run_lanes([record(event, next(offset))], store)

    run(_event("v1", "page_view", "2026-11-01T10:00:00+01:00",
               customer_id="C-9", email="ola@example.no"))  # fmt: skip
    run(_event("er", "erasure_requested", "2026-11-02T10:00:00+01:00", email="ola@example.no"))
    assert [a["customer_digests"] for a in _announced(store)] == [[_digest("C-9")]]
    run(_event("v2", "page_view", "2026-11-03T10:00:00+01:00", customer_id="C-9"))
    run(_event("v3", "page_view", "2026-11-03T11:00:00+01:00",
               customer_id="C-9", anonymous_id="dev-1"))  # fmt: skip
    assert len(_announced(store)) == 1


def test_each_erased_profile_is_announced_with_the_request_that_named_it() -> None:
    # a shop's redact sends one request per customer: in one batch, each erased profile's
    # record names its own request (before: every record named the batch's first request)
    store = InMemoryStore()
    run_lanes(
        [
            record(_event(f"v{k}", "page_view", "2026-11-01T10:00:00+01:00",
                          customer_id=f"C-{k}", email=f"c{k}@example.no"), k)
            for k in (1, 2, 3)
        ],
        store,
    )  # fmt: skip
    run_lanes(
        [
            record(_event(f"er{k}", "erasure_requested", "2026-11-02T10:00:00+01:00",
                          **({"customer_id": f"C-{k}"} if k != 2 else {"email": "c2@example.no"})),
                   10 + k)
            for k in (3, 1, 2)
        ],
        store,
    )  # fmt: skip
    named = {_digest(f"C-{k}"): f"er{k}" for k in (1, 2, 3)}
    announced = _announced(store)
    assert len(announced) == 3
    assert all(a["profile_id"] is not None for a in announced)
    assert {a["event_id"]: a["customer_digests"] for a in announced} == {
        event_id: [digest] for digest, event_id in named.items()
    }
