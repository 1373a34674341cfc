"""The outbox entry format (streams.outbox): a batch's records round-trip in order, keys and
values absent or empty alike, snapshot references with their version, and the older
one-record entries still read; references resolved as the relay sends them (ADR 0033)."""

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
#: a profile's snapshot record: packed as a reference to its stored version
snapshots = st.builds(
    OutboxRecord,
    st.text(min_size=1, max_size=40),
    st.binary(max_size=40),
    st.binary(max_size=300),
    st.integers(1, 2**64 - 1),
)


@given(st.lists(records | snapshots, max_size=50))
def test_packed_records_come_back_in_order(items: list[OutboxRecord]) -> None:
    packed = outbox.pack(items)
    # a reference comes back without the value (the relay reads it from the profile's hash)
    expected = [
        (r.topic, r.key, None, r.snapshot_version)
        if r.snapshot_version is not None
        else (r.topic, r.key, r.value, None)
        for r in items
    ]
    # an entry with a reference is never taken for one without (the relay would skip resolve)
    assert outbox.may_reference({b"records": packed}) or all(
        r.snapshot_version is None for r in items
    )
    back = outbox.records({b"records": packed})
    assert [(r.topic, r.key, r.value, r.snapshot_version) for r in back] == expected
    assert outbox.entry_triples({b"records": packed}) == [
        (topic, key, value if version is None else version)
        for topic, key, value, version in expected
    ]


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


def test_an_entry_of_whole_records_needs_no_resolving() -> None:
    whole = outbox.pack([OutboxRecord("t", b"k", b"v"), OutboxRecord("t", None, None)])
    assert not outbox.may_reference({b"records": whole})
    assert not outbox.may_reference({b"topic": b"t", b"value": b"v"})  # the older format
    assert outbox.may_reference({b"records": outbox.pack([OutboxRecord("t", b"k", b"v", 1)])})


def test_a_truncated_snapshot_reference_is_refused() -> None:
    packed = outbox.pack([OutboxRecord("topic", b"p_1", b"{}", 7)])
    assert outbox.triples(packed) == [("topic", b"p_1", 7)]
    with pytest.raises(ValueError, match="truncated"):
        outbox.triples(packed[:-1])


_T = "profiles.changes"
_IDS = [b"p_1", b"p_2", b"p_3"]
#: what befalls a profile: written (a new snapshot), erased, merged into another; or a relay pass
_OPS = st.lists(
    st.tuples(
        st.sampled_from(["write", "write", "erase", "merge", "relay"]), st.sampled_from(_IDS)
    ),
    max_size=40,
)


def _last(records: list[outbox.Triple]) -> dict[bytes | None, bytes | None]:
    return {key: value for _, key, value in records}


def _in_order_within(sent: list[outbox.Triple], literal: list[outbox.Triple]) -> bool:
    """Each profile's records as sent are some of its records in outbox order, none twice."""
    for key in _IDS:
        mine = iter([r for r in literal if r[1] == key])
        if not all(r in mine for r in sent if r[1] == key):  # ``in`` consumes the iterator
            return False
    return True


@given(_OPS, st.integers(1, 4))
def test_snapshot_references_end_every_profile_on_its_stored_state(
    ops: list[tuple[str, bytes]], per_entry: int
) -> None:
    """A model of the profiles' hashes (``v``, ``d``) and of the outbox, whatever happens
    between a commit and the relay's pass: every snapshot sent is the one its version stored,
    each profile's records go out in commit order with only superseded snapshots left out,
    and the last record of each profile is the one an outbox of whole records would end on."""
    stored: dict[bytes, outbox.Stored] = {}
    versions: dict[bytes, int] = {}
    gone: set[bytes] = set()  # erased or merged: an erased person's profile id is not reused
    entries: list[bytes] = []
    batch: list[OutboxRecord] = []
    literal: list[outbox.Triple] = []  # what an outbox of whole records would send
    sent: list[outbox.Triple] = []
    left_out = 0

    def commit() -> None:
        if batch:
            entries.append(outbox.pack(batch))
            batch.clear()

    def relay() -> None:
        nonlocal left_out
        commit()
        for entry in entries:  # as the relay does: an entry without references as it is
            items = outbox.triples(entry)
            if not outbox.may_reference({b"records": entry}):
                sent.extend(items)  # type: ignore[arg-type]  # no reference among them
                continue
            wanted = outbox.references(items)
            got, n = outbox.resolve(items, {k: stored.get(k, (None, None)) for k in wanted})
            sent.extend(got)
            left_out += n
        entries.clear()

    for op, key in ops:
        if op == "relay":
            relay()
            continue
        if key in gone:
            continue
        version = versions[key] = versions.get(key, 0) + 1
        if op == "write":
            doc = b"%b@%d" % (key, version)
            stored[key] = (b"%d" % version, doc)
            record = OutboxRecord(_T, key, doc, version)
        elif op == "erase":
            stored.pop(key, None)
            gone.add(key)
            record = OutboxRecord(_T, key, None)
        else:  # merged: the hash holds ``r`` only, and a blind write may set its v to 1 again
            stored[key] = (b"1", None)
            gone.add(key)
            record = OutboxRecord(_T, key, b'{"merged_into":"p_9"}')
        batch.append(record)
        literal.append((_T, key, record.value))
        if len(batch) >= per_entry:
            commit()
    relay()
    assert _last(sent) == _last(literal)
    assert _in_order_within(sent, literal)
    assert len(sent) + left_out == len(literal)
    kept = set(sent)
    assert all(r in kept for r in literal if r[2] is None or r[2].startswith(b"{"))
