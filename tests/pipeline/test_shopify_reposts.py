"""A signed Shopify body posted again under its own topic with a new ``X-Shopify-Webhook-Id``
(and a new ``X-Shopify-Event-Id``: neither header is signed) is a new delivery to the gateway,
which maps it again. For orders, refunds and fulfilments that is harmless: their event ids come
from the body (``shopify:<shop>:order:<order id>``, ``...:refund:<refund id>:...``), so the
second delivery's touchpoints are the first's, and both lanes drop them as duplicates; the
order is counted once in the profile and its units committed once (a review of 2026-12-04
asked whether an order could count twice: it cannot)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pipeline_helpers import record, run_lanes
from shopify_shop import ONLINE_MEMO, SHOP, delivery, payload

from resolvers.store import InMemoryStore
from schemas.inbound.shopify import map_webhook
from schemas.touchpoint import dump_touchpoint


def delivered(topic: str, n: int) -> list[dict[str, Any]]:
    """The touchpoints of delivery ``n`` of the fixture body of ``topic`` (its own webhook and
    event ids), as the gateway maps it (with the order remembered, for a refund)."""
    memo = ONLINE_MEMO if topic == "refunds/create" else None
    sent = delivery(topic, webhook_id=f"w-repost-{n}", event_id=f"e-repost-{n}")
    mapped = map_webhook(SHOP, sent, payload(topic), memo)
    assert mapped.touchpoints
    return [orjson.loads(dump_touchpoint(tp)) for tp in mapped.touchpoints]


@pytest.mark.parametrize("topic", ["orders/create", "refunds/create"])
def test_a_body_reposted_under_a_new_webhook_id_is_a_duplicate_for_the_workers(
    topic: str,
) -> None:
    store = InMemoryStore()
    first, again = delivered(topic, 1), delivered(topic, 2)
    assert [e["event_id"] for e in again] == [e["event_id"] for e in first]
    run_lanes([record(e, i) for i, e in enumerate(first)], store)
    before = dict(store.entities)
    result = run_lanes([record(e, 100 + i) for i, e in enumerate(again)], store)
    assert store.entities == before
    assert set(result.outcomes) == {(e["type"], "duplicate") for e in again}
    assert sum(result.outcomes.values()) == len(again)
