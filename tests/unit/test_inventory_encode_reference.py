"""A SKU ledger's stored bytes are what they were before issue 17's nineteenth pass.

The old encoding is kept verbatim in ``inventory_encode_reference`` (main 887a301). Property:
over any movements (every kind, tied and old times, compaction by any policy, counts, stocks
read back from their stored state), written after any of them, ``inventory.encode`` gives the
old state and snapshot bytes and ``SkuStock.to_dict`` the old dict. ``encode`` keeps each
location's parts on it, so each side encodes its own stock, folded alike.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import inventory_encode_reference as reference
import orjson
from builders import stock_movements
from hypothesis import given, settings
from hypothesis import strategies as st

from resolvers import inventory
from resolvers.inventory import LedgerPolicy, Movement, SkuStock

SKU = "SKU-1"
T0 = datetime(2026, 11, 22, 8, tzinfo=UTC)


def movements() -> st.SearchStrategy[Movement]:
    return stock_movements(
        st.sampled_from(["a", "b", "c", "d", "e1", "e2", "e10", "z"]),
        ["oslo", "online", "bergen"],
        # ties (the event id orders them), old entries (compaction), microseconds
        st.builds(
            lambda h, us: T0 + timedelta(hours=9 * h, microseconds=us),
            st.integers(0, 8),
            st.sampled_from([0, 5]),
        ),
        sku=SKU,
    )


@settings(max_examples=300, deadline=None)
@given(
    moves=st.lists(movements(), max_size=40),
    writes=st.sets(st.integers(0, 39)),
    reread=st.booleans(),
    max_entries=st.integers(1, 8),
    max_age=st.sampled_from([timedelta(hours=20), timedelta(days=30)]),
)
def test_the_stored_bytes_are_the_old_ones(
    moves: list[Movement], writes: set[int], reread: bool, max_entries: int, max_age: timedelta
) -> None:
    policy = LedgerPolicy(max_entries=max_entries, max_age=max_age)
    new, old = SkuStock.empty(SKU), SkuStock.empty(SKU)
    for i, movement in enumerate(moves):
        new, _ = inventory.apply(new, movement, policy)
        old, _ = inventory.apply(old, movement, policy)
        if i in writes or i == len(moves) - 1:  # a write: each side's parts kept from here
            state, doc = inventory.encode(new, i)
            assert (state, doc) == reference.encode(old, i)
            assert new.to_dict() == reference.to_dict(new)
            assert orjson.loads(doc) == inventory.snapshot(new) | {"version": i}
            if reread:  # what a worker loads after another one wrote it
                new = SkuStock.from_dict(orjson.loads(state))
                old = SkuStock.from_dict(orjson.loads(state))
