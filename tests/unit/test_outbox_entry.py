"""The outbox entry format (streams.outbox): a batch's records round-trip in order, keys and
values absent or empty alike, and the older one-record entries still read."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolvers.store import OutboxRecord
from streams import outbox

records = st.builds(
    OutboxRecord,
    st.text(min_size=1, max_size=40),
    st.none() | st.binary(max_size=40),
    st.none() | st.binary(max_size=300),
)


@given(st.lists(records, max_size=50))
def test_packed_records_come_back_in_order(items: list[OutboxRecord]) -> None:
    packed = outbox.pack(items)
    assert outbox.records({b"records": packed}) == items
    assert outbox.entry_triples({b"records": packed}) == [(r.topic, r.key, r.value) for r in items]


def test_an_entry_in_the_older_one_record_format_still_reads() -> None:
    assert outbox.records({b"topic": b"t", b"value": b"v"}) == [OutboxRecord("t", None, b"v")]
    assert outbox.records({b"topic": b"t", b"key": b"k"}) == [OutboxRecord("t", b"k", None)]
    assert outbox.records({}) == []  # deleted while pending
    assert outbox.entry_triples({b"topic": b"t", b"key": b"k"}) == [("t", b"k", None)]
    assert outbox.entry_triples({}) == []


def test_a_truncated_entry_is_refused() -> None:
    packed = outbox.pack([OutboxRecord("topic", b"key", b"value")])
    with pytest.raises(ValueError, match="truncated"):
        outbox.unpack(packed[:-2])
