"""A profile's and an identifier record's writes (issue 17.2, sixteenth pass) against main
f728e20's encoders kept verbatim in ``commit_codec_reference``: the same writes (entity,
version, every field's bytes, in the same order), the same outbox records and change-stream
entries, for any profile, snapshot and record.

What changed: a profile of one group of one atom is encoded without a set, a loop or a sort
of its own (its atom's JSON inline, its keys sorted as its held keys), the state's document
is one literal (a profile's identifiers of one type as they are), and the per-write calls
(``profile_ref``, ``_json``) are inline; an identifier record is unpacked in C and its
co-occurrences written as they are (orjson writes tuples as arrays)."""

from __future__ import annotations

import dataclasses
import gc
import tracemalloc
from collections import Counter
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import commit_codec_reference as reference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stored_profile_worlds import EXTRA, GROUPS
from stored_profile_worlds import stored_profile as stored_profile_of

from resolvers import commit_codec
from resolvers.effects import IdentifierWritten, ProfileWritten
from resolvers.identity.evidence import IdentifierRecord, Stamp
from resolvers.lanes.stored_profile import Group, StoredProfile
from resolvers.store import identifier_ref
from schemas.identifiers import Identifier

#: Texts JSON must escape or that are not ASCII, beside plain ones.
_TEXTS = st.sampled_from(["a", "b@x", "c1", 'q"uote', "back\\slash", "tab\t", "é", "日本", ""])
_TYPES = st.sampled_from(["email", "phone", "customer_id", "anonymous_id"])
_VALUES = st.lists(_TEXTS, max_size=3).map(tuple)


def _maybe_proxy(draw: st.DrawFn, mapping: dict[str, Any]) -> Any:
    """``mapping`` as it is, or read-only (a ``Mapping`` that is not a ``dict``)."""
    return MappingProxyType(mapping) if draw(st.booleans()) else mapping


@st.composite
def _profiles(draw: st.DrawFn) -> StoredProfile:
    """Stored profiles of 1-3 folded groups, half of them cut to one group of one atom (the
    path most writes take), atoms with and without ghosts, identifiers of 0-3 types (a
    ``dict`` or not), audiences and merged-from ids."""
    profile = stored_profile_of(draw(GROUPS), draw(EXTRA))
    groups = dict(profile.groups)
    if draw(st.booleans()):  # one group of (at most) one atom
        key = draw(st.sampled_from(sorted(groups)))
        atoms = dict(list(groups[key].atoms.items())[:1])
        groups = {key: Group(atoms, groups[key].facts)}
    ghosts = draw(st.lists(st.sampled_from(["g1", "g0", 'g"']), max_size=2, unique=True))
    if ghosts:
        groups = {
            k: Group(
                {a: atom._replace(ghosts=tuple(ghosts)) for a, atom in g.atoms.items()}, g.facts
            )
            for k, g in groups.items()
        }
    identifiers = draw(st.dictionaries(_TYPES, _VALUES, max_size=3))
    return dataclasses.replace(
        profile,
        groups=groups,
        identifiers=_maybe_proxy(draw, identifiers),
        audiences=tuple(draw(st.lists(_TEXTS, max_size=2, unique=True))),
        merged_from=tuple(draw(st.lists(st.sampled_from(["p_0", "p_9"]), max_size=2))),
    )


#: A snapshot: JSON values, sometimes with keys that are not strings (a counter's).
_SNAPSHOTS = st.dictionaries(
    _TEXTS | st.integers(0, 3),
    st.recursive(
        st.none() | st.booleans() | st.integers(-5, 5) | _TEXTS,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXTS, inner, max_size=3),
        max_leaves=8,
    ),
    max_size=4,
)


def _written(encoder: commit_codec._Encoder) -> Any:
    """Everything an encoder built, with each write's fields in their order."""
    return (
        [(w.ref, w.version, list(w.fields.items())) for w in encoder.writes],
        encoder.outbox,
        [(s.stream, list(s.fields.items())) for s in encoder.streams],
        [(ref, state, value) for ref, state, value in encoder.states],
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profile=_profiles(), snapshot=_SNAPSHOTS, version=st.integers(1, 12))
def test_a_profile_is_written_as_main_wrote_it(
    profile: StoredProfile, snapshot: dict[Any, Any], version: int
) -> None:
    effect = ProfileWritten(profile, version, snapshot)
    old = reference.Encoder({}, "profiles")
    old.profile_written(effect)
    new = commit_codec._Encoder({}, "profiles")
    new.profile_written(effect)  # the facts encoded (and remembered on them)
    assert _written(new) == _written(old)
    # the snapshot record is the stored d at the written version (ADR 0033: packed as a
    # reference, which records do not compare)
    (record,) = new.outbox
    assert record.snapshot_version == version
    assert record.value is new.writes[0].fields["d"]
    again = commit_codec._Encoder({}, "profiles")
    again.profile_written(effect)  # the facts' remembered encoding
    assert _written(again) == _written(old)


def test_a_profile_write_keeps_its_values_right_sized() -> None:
    # orjson.dumps returns bytes that keep its whole buffer (>= 4 KiB since orjson 3.12): a
    # commit keeps a write's d, s and i (and the outbox record its d) until it is done
    at = datetime(2026, 1, 1, tzinfo=UTC)
    effects = [
        ProfileWritten(
            StoredProfile(f"p_{i}", Stamp(at, f"e{i}"), {"email": (f"a{i}@x",)}),
            1,
            {"profile_id": f"p_{i}"},
        )
        for i in range(2_000)
    ]
    encoder = commit_codec._Encoder({}, "profiles")
    gc.collect()
    tracemalloc.start()
    try:
        for effect in effects:
            encoder.profile_written(effect)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # a write's objects and its three short values, not 3 x 4 KiB
    assert held / len(effects) < 4096
    assert [w.fields["d"] for w in encoder.writes] == [
        commit_codec._json(e.snapshot) for e in effects
    ]


_RECORDS = st.builds(
    IdentifierRecord,
    profile_id=st.none() | st.sampled_from(["p_1", "p_2"]),
    seen_with=st.dictionaries(_TYPES, _VALUES, max_size=3).flatmap(
        lambda m: st.sampled_from([m, MappingProxyType(m)])
    ),
    quarantined=st.booleans(),
    holders=st.lists(st.sampled_from(["p_1", "p_2", "p_3"]), max_size=3, unique=True).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(
    records=st.lists(st.tuples(_TYPES, _TEXTS, st.none() | _RECORDS, st.integers(0, 3)), max_size=4)
)
def test_identifier_records_are_written_as_main_wrote_them(
    records: list[tuple[str, str, IdentifierRecord | None, int]],
) -> None:
    effects = [IdentifierWritten(Identifier(t, v), r) for t, v, r, _ in records]
    versions = {identifier_ref(f"{t}:{v}"): n for t, v, _, n in records}
    old = reference.Encoder(versions, "profiles")
    new = commit_codec._Encoder(versions, "profiles")
    for effect in effects:
        old.identifier_written(effect)
        new.identifier_written(effect)
    assert _written(new) == _written(old)
    commit = commit_codec.encode(
        versions=versions,
        effects=effects,
        event_ids=["e1"],
        counts=Counter(),
        profile_topic="profiles",
    )
    assert [(w.ref, w.version, list(w.fields.items())) for w in commit.writes] == _written(old)[0]
