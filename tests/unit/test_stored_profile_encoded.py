"""A decoded profile keeps each group's stored facts encoding (``codec.facts_from_stored``):
written back unchanged, it is its stored bytes, without ``facts_to_json``; a group the batch
changed is encoded afresh; facts whose consent could not be read keep no encoding."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest.mock import patch

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from identity_worlds import SMALL_RULES
from stored_profile_worlds import EXTRA, GROUPS
from stored_profile_worlds import stored_profile as stored_profile_of

from resolvers.lanes import stored_profile
from resolvers.lanes.stored_profile import Group
from resolvers.profile import codec
from resolvers.profile.codec import UNREADABLE_CONSENT, facts_to_json

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@contextmanager
def encodings() -> Iterator[list[Any]]:
    """The facts ``facts_to_json`` encodes meanwhile."""
    seen: list[Any] = []

    def counted(facts: Any) -> dict[str, Any]:
        seen.append(facts)
        return facts_to_json(facts)

    with patch.object(codec, "facts_to_json", counted):
        yield seen


@PROPS
@given(groups=GROUPS, extra=EXTRA)
def test_a_decoded_profile_written_back_unchanged_is_its_stored_bytes(
    groups: list[Any], extra: list[str]
) -> None:
    state = stored_profile.encode(stored_profile_of(groups, extra))
    decoded = stored_profile.decode("p_1", state, SMALL_RULES)
    for group in decoded.groups.values():  # each fragment is what a re-encode writes
        assert group.facts.encoded is not None
        assert orjson.dumps(group.facts.encoded) == orjson.dumps(facts_to_json(group.facts))
    with encodings() as encoded:
        again = stored_profile.encode_with_held(decoded)
    assert encoded == []  # no group encoded again
    assert again == stored_profile.encode_with_held(stored_profile_of(groups, extra))
    assert again[0] == state


@PROPS
@given(groups=GROUPS, extra=EXTRA, data=st.data())
def test_a_changed_group_is_encoded_afresh(
    groups: list[Any], extra: list[str], data: st.DataObject
) -> None:
    state = stored_profile.encode(stored_profile_of(groups, extra))
    decoded = stored_profile.decode("p_1", state, SMALL_RULES)
    gkey = data.draw(st.sampled_from(sorted(decoded.groups)))
    group = decoded.groups[gkey]
    # new facts (as a fold makes them): their ``encoded`` is not carried over
    changed = dataclasses.replace(group.facts, latest=None, transactions={})
    assert changed.encoded is None
    profile = dataclasses.replace(
        decoded, groups={**decoded.groups, gkey: Group(group.atoms, changed)}
    )
    with encodings() as encoded:
        written = stored_profile.encode(profile)
    assert encoded == [changed]  # that group only
    body = orjson.loads(written)["g"][gkey]["x"]
    assert orjson.dumps(body) == orjson.dumps(facts_to_json(changed))
    unchanged = {k: g for k, g in orjson.loads(state)["g"].items() if k != gkey}
    assert {k: g for k, g in orjson.loads(written)["g"].items() if k != gkey} == unchanged


@PROPS
@given(groups=GROUPS)
def test_facts_whose_consent_cannot_be_read_keep_no_encoding(groups: list[Any]) -> None:
    doc = orjson.loads(stored_profile.encode(stored_profile_of(groups, [])))
    gkey = sorted(doc["g"])[0]
    doc["g"][gkey]["x"]["c"] = {"f": 2, "ads": {"g": [[False, "2024-05-01T09:00:00Z", "event"]]}}
    decoded = stored_profile.decode("p_1", orjson.dumps(doc), SMALL_RULES)
    facts = decoded.groups[gkey].facts
    assert facts.consent is UNREADABLE_CONSENT
    assert facts.encoded is None  # encoded afresh at the next write (every purpose denied)
