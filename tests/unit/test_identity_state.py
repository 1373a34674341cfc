"""Persisted identity formats and the working state's change tracking."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from resolvers.identity import (
    IdentifierLinked,
    IdentifierRecord,
    IdentityEffect,
    InMemoryIdentityState,
    MergeEvidence,
    MissingRecordError,
    ProfileCreated,
    ProfileIdentity,
    ProfilesMerged,
    apply,
)
from schemas.identifiers import Identifier

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def test_identifier_record_json_format_is_pinned() -> None:
    rec = IdentifierRecord("p1", False, {"customer_id": ("b", "a")})
    assert rec.to_dict() == {
        "v": 1,
        "profile_id": "p1",
        "quarantined": False,
        "seen_with": {"customer_id": ["b", "a"]},
    }
    back = IdentifierRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert back == IdentifierRecord("p1", False, {"customer_id": ("a", "b")})
    assert IdentifierRecord.from_dict({}) == IdentifierRecord()
    assert IdentifierRecord().is_empty


def test_profile_identity_json_format_is_pinned() -> None:
    oslo = timezone(timedelta(hours=1))
    prof = ProfileIdentity(
        "p1", datetime(2025, 1, 1, 13, 0, tzinfo=oslo), {"email": ("a@x.no",)}, ("p0",)
    )
    data = prof.to_dict()
    assert data == {
        "v": 1,
        "profile_id": "p1",
        "created_at": "2025-01-01T12:00:00+00:00",
        "identifiers": {"email": ["a@x.no"]},
        "merged_from": ["p0"],
    }
    assert ProfileIdentity.from_dict(json.loads(json.dumps(data))) == prof
    with pytest.raises(ValueError, match="format"):
        ProfileIdentity.from_dict({**data, "v": 2})
    with pytest.raises(ValueError, match="offset"):
        ProfileIdentity.from_dict({**data, "created_at": "2025-01-01T12:00:00"})


def test_changes_are_tracked_and_merge_repoints_without_redirect_chains() -> None:
    a, b = Identifier("email", "a@x.no"), Identifier("phone", "+4791234567")
    state = InMemoryIdentityState.from_records(
        {a: IdentifierRecord("p1"), b: IdentifierRecord("p2", False, {"customer_id": ("c",)})},
        {
            "p1": ProfileIdentity("p1", T0, {"email": ("a@x.no",)}),
            "p2": ProfileIdentity("p2", T0 + timedelta(1), {"phone": ("+4791234567",)}, ("p0",)),
        },
    )
    assert not state.dirty_identifiers
    evidence = MergeEvidence("e1", (a.key, b.key), "shared_event", T0)
    apply(state, [ProfilesMerged("p1", "p2", evidence)])
    assert state.dirty_identifiers == {b}
    assert state.dirty_profiles == {"p1"}
    assert state.removed_profiles == {"p2"}
    assert state.redirects == {"p2": "p1", "p0": "p1"}
    assert state.identifier(b) == IdentifierRecord("p1", False, {"customer_id": ("c",)})
    assert state.profile("p1").merged_from == ("p0", "p2")
    assert state.changed_profiles() == {"p1": state.profile("p1")}
    state.clear_changes()
    assert state.dirty_identifiers == set()
    assert state.dirty_profiles == set()
    assert state.redirects == {}


def test_reducer_is_idempotent_per_effect() -> None:
    ident = Identifier("email", "a@x.no")
    effects: list[IdentityEffect] = [ProfileCreated("p1", T0), IdentifierLinked(ident, "p1")]
    state = InMemoryIdentityState()
    apply(state, effects)
    once = (state.identifier_records(), state.profiles())
    apply(state, effects[1:])
    assert (state.identifier_records(), state.profiles()) == once


def test_merge_with_an_unloaded_record_fails_loudly() -> None:
    state = InMemoryIdentityState.from_records(
        {},
        {
            "p1": ProfileIdentity("p1", T0),
            "p2": ProfileIdentity("p2", T0, {"email": ("a@x.no",)}),
        },
    )
    evidence = MergeEvidence("e1", (), "shared_event", T0)
    with pytest.raises(MissingRecordError):
        apply(state, [ProfilesMerged("p1", "p2", evidence)])
