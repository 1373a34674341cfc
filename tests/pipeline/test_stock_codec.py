"""The SKU ledgers a commit writes (``resolvers.commit_codec``, ``inventory.encode``): over a
simulated run, the inventory lane stores exactly each ledger's state and snapshot encoded,
remembers what it wrote decoded (``DecodeCache.put``), so its next loads parse nothing, and
computes with the cache exactly what it computes without one."""

from __future__ import annotations

import itertools
from dataclasses import replace

import orjson
from builders import make_context
from pipeline_helpers import record

from resolvers import inventory
from resolvers.decode_cache import DecodeCache
from resolvers.pipeline import INVENTORY, run_batch
from resolvers.store import InMemoryStore, Kind
from schemas.normalize import DEFAULT
from schemas.touchpoint import dump_touchpoint
from streams.simulate import Simulator


def test_the_inventory_lane_remembers_the_ledgers_it_wrote() -> None:
    topic = [
        dump_touchpoint(tp)
        for tp in itertools.islice(Simulator(seed=5, customers=150, skus=40).events(), 3000)
    ]
    cached, plain = InMemoryStore(), InMemoryStore()
    cache = DecodeCache()
    ctx = replace(make_context(), cache=cache)
    for start in range(0, len(topic), 250):
        batch = [record(raw, start + i) for i, raw in enumerate(topic[start : start + 250])]
        for store, context in ((cached, lambda: ctx), (plain, make_context)):
            run_batch(batch, store, context, max_bytes=64 * 1024, config=DEFAULT, lane=INVENTORY)

    assert (cached.entities, cached.outbox, cached.streams, cached.counters) == (
        plain.entities,
        plain.outbox,
        plain.streams,
        plain.counters,
    )
    ledgers = {ref: e for ref, e in cached.entities.items() if ref.kind is Kind.STOCK}
    assert len(ledgers) == 40
    # every load found the ledger this worker last wrote, remembered: nothing parsed again
    assert cache.misses == 0
    assert cache.hits > 200
    for ref, entity in ledgers.items():
        stock = inventory.SkuStock.from_dict(orjson.loads(entity.fields["s"]))
        assert entity.fields["s"] == orjson.dumps(stock.to_dict())
        document = {**inventory.snapshot(stock), "version": entity.version}
        assert entity.fields["d"] == orjson.dumps(document)
        remembered = cache.get(ref, entity.fields["s"], lambda raw: None)
        assert remembered == stock
        assert inventory.encode(remembered, entity.version) == (
            entity.fields["s"],
            entity.fields["d"],
        )
