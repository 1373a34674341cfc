"""The profiles lane's suppression hashes (``resolvers.lanes.profiles._Digests``) take the
hashes the batch's events carry instead of hashing their identifiers again: every answer is
the one main's (``profiles_digests_reference``) gives, which hashes each identifier asked.
That holds because an event's ``suppression_hashes`` are its identifiers' hashes under the
lane's salt, one each, in order: the normalize stage's contract, checked here too."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st
from identity_worlds import POOL, i
from profiles_digests_reference import _Digests as _ReferenceDigests

from resolvers.context import suppression_hash
from resolvers.lanes.profiles import _Digests
from resolvers.stages import normalize
from resolvers.steps import Event, RawRecord
from schemas.normalize import DEFAULT
from schemas.touchpoint import parse_touchpoint

SALTS = st.sampled_from([b"", b"bench", b"another salt"])
IDENTS = st.sampled_from([i(k) for k in POOL])


@st.composite
def events(draw: st.DrawFn, salt: bytes) -> Event:
    """An event as the pipeline builds it: its identifiers and their hashes under ``salt``
    (or, as a test may build one, none of the hashes)."""
    ids = tuple(draw(st.lists(IDENTS, max_size=4, unique=True)))
    hashes = tuple(suppression_hash(ident, salt) for ident in ids)
    if draw(st.booleans()) and ids and draw(st.booleans()):
        hashes = ()
    return Event(RawRecord(b"{}"), None, ids, hashes)


@given(st.data(), SALTS)
def test_digests_answer_as_main(data: st.DataObject, salt: bytes) -> None:
    batch = data.draw(st.lists(events(salt), max_size=6))
    asked = data.draw(st.lists(IDENTS, max_size=12))
    new, old = _Digests(salt, batch).__getitem__, _ReferenceDigests(salt).__getitem__
    for ident in asked:
        assert new(ident) == old(ident)
    # (asked again: from the dict now, the same)
    assert [new(ident) for ident in asked] == [old(ident) for ident in asked]


@given(SALTS, st.sampled_from(["a@x.no", " B@X.no ", "not an email"]), st.booleans())
def test_normalize_hashes_are_the_identifiers_hashes(
    salt: bytes, email: str, with_phone: bool
) -> None:
    """The contract ``_Digests`` relies on: the normalize stage's hashes are
    ``suppression_hash`` of its identifiers under the salt it is given, one each, in order."""
    identifiers = {"email": email, "customer_id": "C1"}
    if with_phone:
        identifiers["phone"] = "+47 912 34 567"
    tp = parse_touchpoint(
        orjson.dumps(
            {
                "event_id": "e1",
                "type": "page_view",
                "channel": "web",
                "occurred_at": "2024-05-01T10:00:00+02:00",
                "identifiers": identifiers,
            }
        )
    )
    ids, hashes = normalize.identifiers(tp, config=DEFAULT, salt=salt)
    assert ids  # the customer id at least
    assert hashes == tuple(suppression_hash(ident, salt) for ident in ids)
