"""An erasure reaches every profile holding the erased identifier on Redis too, with each load
(``load.lua`` and the wave load): a record keeps every holder, a load follows the first
``HOLDERS_WALKED`` of them, and the erasing batch loads again from the others (ADR 0018's
note of 2026-12-04; the in-memory case: ``tests/pipeline/test_identity_truncated_load.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
import pytest
import redis
from builders import make_context

from resolvers.pipeline import PROFILES, run_batch
from resolvers.steps import RawRecord
from resolvers.store import HOLDERS_WALKED
from schemas.normalize import DEFAULT
from streams.redis_store import RedisStore

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
KIOSK = "anonymous_id:kiosk"


def _event(event_id: str, minute: int, **fields: Any) -> bytes:
    at = (START + timedelta(minutes=minute)).isoformat()
    return orjson.dumps(
        {"event_id": event_id, "type": "page_view", "channel": "web", "occurred_at": at} | fields
    )


def _batch(store: RedisStore, values: list[bytes], offset: int) -> None:
    records = [
        RawRecord(value=v, topic="touchpoints.raw", partition=0, offset=offset + i)
        for i, v in enumerate(values)
    ]
    run_batch(records, store, make_context, max_bytes=65536, config=DEFAULT, lane=PROFILES)


@pytest.mark.parametrize("load", ["script", "waves"])
def test_an_erased_kiosk_leaves_every_holder_past_the_walk(
    redis_client: redis.Redis, redis_prefix: str, load: Literal["script", "waves"]
) -> None:
    store = RedisStore(redis_client, prefix=redis_prefix, load=load)
    n = HOLDERS_WALKED + 8
    kiosk = [
        _event(f"k{i:03d}", i, identifiers={"email": f"c{i}@x.no", "anonymous_id": "kiosk"})
        for i in range(n)
    ]
    _batch(store, kiosk, 0)
    id_key = f"{store.keys.root}:id:{KIOSK}"
    kept = len(orjson.loads(redis_client.hget(id_key, "h") or b"[]"))

    erase = _event("erase", 1_000, type="erasure_requested", identifiers={"email": "c0@x.no"})
    _batch(store, [erase], n)

    profiles = list(redis_client.scan_iter(match=f"{store.keys.root}:profile:*", count=1000))
    holding = [
        key for key in profiles if KIOSK in orjson.loads(redis_client.hget(key, "i") or b"[]")
    ]
    assert len(profiles) >= n - 5  # (the other customers live on, each a profile)
    assert holding == []
    assert not redis_client.exists(id_key)
    assert kept == n - 4  # the record kept every holder (the kiosk's person and 35 others)
