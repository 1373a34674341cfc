"""A profile's write (issue 17.2, fourteenth pass) against the code main 0ce3b22 ran, kept
verbatim below: the stored state and its held-identifier keys
(``lanes.stored_profile.encode_with_held``) and the snapshot (``profile.render.render``) are
the same bytes for any profile.

What changed: a profile of one group and a group of one atom are encoded without a sort; a
type with one identifier is rendered without a set and a sort; the objects of a write are
built with ``fast_new`` (positional: their fields' order is pinned below). The facts' own
encoding (``facts_to_json``) is compared in ``test_profile_codec_out``, the totals in
``test_profile_render_totals``; the reference here calls ``facts_fragment`` as main did."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from profile_worlds import GRANT_ALL, T0, observe_all, person_gate, small_windows, worlds
from stored_profile_worlds import EXTRA, GROUPS
from stored_profile_worlds import stored_profile as stored_profile_of

from resolvers.consent import Gate
from resolvers.effects import ProfileWritten
from resolvers.lanes import stored_profile
from resolvers.lanes.stored_profile import STATE_FORMAT, StoredProfile
from resolvers.profile import render as render_module
from resolvers.profile.codec import facts_fragment
from resolvers.profile.facts import Stamped, lww
from resolvers.profile.render import SNAPSHOT_SCHEMA, Person
from resolvers.store import OutboxRecord, StreamEntry, Write
from resolvers.timefmt import format_time

# --------------------------------------------------------------------------- main 0ce3b22


def _old_encode_with_held(profile: StoredProfile) -> tuple[bytes, bytes]:
    held: set[str] = set()
    groups: dict[str, Any] = {}
    for key in sorted(profile.groups):
        group = profile.groups[key]
        atoms = group.atoms
        encoded = []
        for akey in sorted(atoms):
            atom = atoms[akey].to_json()
            held.update(atom[0])
            encoded.append(atom)
        groups[key] = {"a": encoded, "x": facts_fragment(group.facts)}
    doc: dict[str, Any] = {"v": STATE_FORMAT}
    if profile.audiences:
        doc["au"] = profile.audiences
    doc["ids"] = dict(sorted(profile.identifiers.items()))
    first = profile.first
    doc["f"] = (format_time(first.at), first.event_id)
    doc["mf"] = profile.merged_from
    doc["g"] = groups
    return orjson.dumps(doc), orjson.dumps(sorted(held))


def _old_render(person: Person, gate: Gate) -> dict[str, Any]:
    region = gate.region
    granted = gate.granted_now()
    asked = granted & render_module._TOTALS_PURPOSES
    identifiers = person.identifiers
    marketing = render_module._P_MARKETING in granted
    reachable = {
        "email": marketing and bool(identifiers.get("email")),
        "phone": marketing and bool(identifiers.get("phone")),
    }
    if asked:
        fields = render_module._totals_fields(
            render_module._totals(gate, person.groups, region, asked)
        )
        fields["reachable"] = reachable
        fields["audiences"] = sorted(person.audiences)
        fields["ad_identifiers"] = sorted(person.ad_identifiers)
        fields.update(orjson.loads(render_module._hidden(granted)))
    else:
        template, shown = render_module._untotalled(granted)
        fields = orjson.loads(template)
        if "reachable" in shown:
            fields["reachable"] = reachable
        if "audiences" in shown:
            fields["audiences"] = sorted(person.audiences)
        if "ad_identifiers" in shown:
            fields["ad_identifiers"] = sorted(person.ad_identifiers)
    groups = person.groups
    traits: Mapping[str, Stamped] = groups[0].traits if len(groups) == 1 else {}
    if len(groups) != 1:
        for facts in groups:
            traits = lww(traits, facts.traits)
    currents = gate.currents()
    return {
        "schema": SNAPSHOT_SCHEMA,
        "profile_id": person.profile_id,
        "version": person.version,
        "created_at": format_time(person.created_at),
        "region": region,
        "merged_from": sorted(set(merged_from)) if (merged_from := person.merged_from) else [],
        "identifiers": {t: sorted(set(v)) for t, v in sorted(identifiers.items()) if v},
        "consent": {
            name: {
                "granted": c.granted,
                "at": None if (at := c.at) is None else format_time(at),
                "source": c.source,
            }
            for p, name in render_module._SORTED_PURPOSES
            if (c := currents[p])
        },
        "traits": {k: s.value for k, s in sorted(traits.items())},
        **fields,
        **person.extra,
    }


# --------------------------------------------------------------------------- the properties


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(groups=GROUPS, extra=EXTRA)
def test_a_stored_profile_is_written_as_main_wrote_it(groups: list[Any], extra: list[str]) -> None:
    """Profiles of one to three groups of zero to four atoms (one of each, most often in
    Loom): the same state and held keys, byte for byte."""
    profile = stored_profile_of(groups, extra)
    assert stored_profile.encode_with_held(profile) == _old_encode_with_held(profile)


#: Identifier values by type as a person may carry them: one or several, repeated, unsorted,
#: none (a type without values is left out).
_IDENTIFIERS = st.dictionaries(
    st.sampled_from(["email", "phone", "anonymous_id", "customer_id"]),
    st.lists(st.sampled_from(["b", "a", "c", "a@x"]), max_size=3).map(tuple),
    max_size=4,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=worlds(20),
    identifiers=_IDENTIFIERS,
    granted_all=st.booleans(),
    merged_from=st.lists(st.sampled_from(["p_0", "p_2"]), max_size=3),
)
def test_a_snapshot_is_rendered_as_main_rendered_it(
    events: Any, identifiers: dict[str, Sequence[str]], granted_all: bool, merged_from: list[str]
) -> None:
    with small_windows():
        groups = [observe_all(events)]
    gate = person_gate(groups, GRANT_ALL if granted_all else None)
    person = Person(
        profile_id="p_1",
        version=3,
        identifiers=identifiers,
        groups=groups,
        created_at=T0 + timedelta(minutes=1),
        merged_from=merged_from,
        audiences=("b", "a"),
        ad_identifiers=("x",),
    )
    new, old = render_module.render(person, gate), _old_render(person, gate)
    assert new == old
    assert orjson.dumps(new) == orjson.dumps(old)  # the same key order, all the way down


def test_the_objects_a_write_builds_positionally_have_the_fields_in_that_order() -> None:
    """``ProfilesBatch._write`` and the commit codec build these with ``fast_new`` (every
    field, positional): a field added or moved must change those calls too."""
    expected = {
        Person: [
            "profile_id",
            "version",
            "identifiers",
            "groups",
            "created_at",
            "merged_from",
            "audiences",
            "ad_identifiers",
            "extra",
        ],
        ProfileWritten: ["profile", "version", "snapshot"],
        Write: ["ref", "version", "fields"],
        OutboxRecord: ["topic", "key", "value", "snapshot_version"],
        StreamEntry: ["stream", "fields"],
    }
    for cls, names in expected.items():
        assert [f.name for f in dataclasses.fields(cls) if f.init] == names, cls
