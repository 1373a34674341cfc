"""An identifier record read with ``HGETALL`` (ADR 0028) gives the wave load the row
``HMGET v p h s`` gave: each of those fields' value or None, in that order, whichever RESP
version answered (RESP2: field, value, ... in the hash's order; RESP3: a map)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from streams.wave_load import _id_rows

FIELDS = ("v", "p", "h", "s")
RECORDS = st.dictionaries(
    st.sampled_from([f.encode() for f in FIELDS]), st.binary(max_size=20)
).flatmap(lambda d: st.permutations(list(d.items())))


def hmget(record: list[tuple[bytes, bytes]]) -> list[Any]:
    """What ``HMGET v p h s`` answers for the hash ``record`` (no key: every value None)."""
    stored = dict(record) if any(f == b"v" for f, _ in record) else {}
    return [stored.get(f.encode()) for f in FIELDS]


@given(RECORDS)
def test_a_record_read_whole_is_the_row_hmget_gave(record: list[tuple[bytes, bytes]]) -> None:
    if not any(f == b"v" for f, _ in record):
        record = []  # every stored record has ``v``: a hash without it is no key at all
    resp2 = [x for pair in record for x in pair]
    resp3 = dict(record)
    assert _id_rows([resp2, resp3, [], {}]) == [hmget(record), hmget(record), *[hmget([])] * 2]
