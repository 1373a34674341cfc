"""An identifier record's write (``resolvers.commit_codec``): the state is the record's JSON, the
one of a record without co-occurrences or quarantine written from its encoding kept once."""

from __future__ import annotations

from collections import Counter

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from resolvers import commit_codec
from resolvers.effects import IdentifierWritten
from resolvers.identity.evidence import IdentifierRecord
from resolvers.store import HOLDERS_FIELD, identifier_ref
from schemas.identifiers import Identifier

_RECORDS = st.builds(
    IdentifierRecord,
    profile_id=st.none() | st.sampled_from(["p_1", "p_2"]),
    seen_with=st.sampled_from([{}, {"customer_id": ("C1",)}, {"customer_id": ("C1", "C2")}]),
    quarantined=st.booleans(),
    holders=st.sampled_from([(), ("p_1",), ("p_1", "p_2")]),
)


@settings(max_examples=100, deadline=None)
@given(record=st.none() | _RECORDS, version=st.integers(0, 3))
def test_a_record_is_written_as_its_json_under_its_key(
    record: IdentifierRecord | None, version: int
) -> None:
    ident = Identifier("email", "a@x", raw=" A@X")
    ref = identifier_ref("email:a@x")
    commit = commit_codec.encode(
        versions={ref: version},
        effects=[IdentifierWritten(ident, record)],
        event_ids=["e1"],
        counts=Counter(),
        profile_topic="profiles",
    )
    (write,) = commit.writes
    assert (write.ref, write.version) == (ref, version + 1)
    expected: dict[str, bytes] = {}
    if record is not None:
        expected["s"] = orjson.dumps(record.to_json())
        if record.profile_id is not None:
            expected["p"] = record.profile_id.encode()
        if record.holders:
            expected[HOLDERS_FIELD] = orjson.dumps(record.holders)
    assert dict(write.fields) == expected
