"""A profile as stored: its groups (atoms and facts), its identifiers, its history of ids.

This is the internal state ``s`` of a profile entity (format 2), never read by downstream
services (they read the snapshot ``d``). A profile is one person of the clustering
(``resolvers.identity.cluster``): the groups of events that belong to them, each with the atoms
that carried them (identity evidence) and their facts (``resolvers.profile.facts``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

import orjson

from resolvers.frozen import fast_init, fast_new
from resolvers.identity.evidence import Atom, Stamp
from resolvers.identity.rules import IdentityRules
from resolvers.profile.codec import facts_fragment, facts_from_stored
from resolvers.profile.facts import EMPTY_FACTS, Facts
from resolvers.timefmt import format_time, parse_stored
from resolvers.tuples import new_tuple
from schemas.identifiers import Identifier

STATE_FORMAT: Final = 2


class StateFormatError(ValueError):
    """Stored profile state in a format this version cannot read (rebuild from Kafka)."""


@fast_init
@dataclass(frozen=True, slots=True)
class Group:
    atoms: Mapping[str, Atom]  # atom key -> atom
    facts: Facts = EMPTY_FACTS

    def earliest(self) -> Stamp:
        return min(a.first for a in self.atoms.values())


@fast_init
@dataclass(frozen=True, slots=True)
class StoredProfile:
    profile_id: str
    first: Stamp
    identifiers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    groups: Mapping[str, Group] = field(default_factory=dict)
    merged_from: tuple[str, ...] = ()
    #: the audiences its last snapshot was a member of (what enter/exit records compare with)
    audiences: tuple[str, ...] = ()

    def atoms(self) -> Iterator[tuple[str, Atom]]:
        """(group key, atom) of every atom the profile holds."""
        for gkey, group in self.groups.items():
            for atom in group.atoms.values():
                yield gkey, atom

    def held_keys(self) -> list[str]:
        """Every identifier key its atoms carry (the store loads their records with it)."""
        return sorted(
            {i.key for group in self.groups.values() for a in group.atoms.values() for i in a.ids}
        )

    def all_identifiers(self) -> tuple[Identifier, ...]:
        return tuple(Identifier(t, v) for t, vs in self.identifiers.items() for v in vs)

    def with_merged_from(self, ids: set[str]) -> StoredProfile:
        merged = tuple(sorted(set(self.merged_from) | ids - {self.profile_id}))
        return self if merged == self.merged_from else replace(self, merged_from=merged)


#: ``Cls(*every field)``, cheaper (``resolvers.frozen.fast_new``): decode builds them.
_new_group: Final = fast_new(Group)
_new_profile: Final = fast_new(StoredProfile)


def encode(profile: StoredProfile) -> bytes:
    """The state ``s``."""
    return encode_with_held(profile)[0]


def encode_with_held(profile: StoredProfile) -> tuple[bytes, bytes]:
    """The state ``s`` and the held-identifier keys field (``StoredProfile.held_keys`` as
    JSON), from one pass over the atoms: an atom's JSON starts with its identifier keys.
    orjson writes tuples as arrays: the profile's tuples go in as they are. A profile of one
    group of one atom (most writes) takes a path without a set, a loop or a sort of its
    own: an atom's identifiers are distinct, so its keys sorted are its held keys."""
    profile_groups = profile.groups
    if len(profile_groups) == 1:
        ((gkey, group),) = profile_groups.items()
        atoms = group.atoms
        if len(atoms) == 1:
            # ``Atom.to_json``, inline (unpacked in C: ids, first stamp, ghosts)
            ((ids, (at, event_id), ghosts),) = atoms.values()
            keys = [f"{t}:{v}" for t, v in ids]
            atom: list[Any] = [keys, format_time(at), event_id]
            if ghosts:
                atom.append(list(ghosts))
            held = orjson.dumps(sorted(keys) if len(keys) > 1 else keys)
            groups: dict[str, Any] = {gkey: {"a": [atom], "x": facts_fragment(group.facts)}}
            return _state(profile, groups), held
    held_keys: set[str] = set()
    groups = {}
    for key in sorted(profile_groups) if len(profile_groups) > 1 else profile_groups:
        group = profile_groups[key]
        atoms = group.atoms
        if len(atoms) == 1:  # one atom, nothing to sort
            (only,) = atoms.values()
            atom = only.to_json()
            held_keys.update(atom[0])
            encoded = [atom]
        else:
            encoded = []
            for akey in sorted(atoms):
                atom = atoms[akey].to_json()
                held_keys.update(atom[0])
                encoded.append(atom)
        groups[key] = {"a": encoded, "x": facts_fragment(group.facts)}
    return _state(profile, groups), orjson.dumps(sorted(held_keys))


def _state(profile: StoredProfile, groups: dict[str, Any]) -> bytes:
    """The state's document around its encoded ``groups``, in its one key order (``au``
    only when the profile is in an audience); a profile's identifiers of one type need no
    sort (a ``dict`` goes in as it is, anything else as a ``dict`` of it)."""
    identifiers = profile.identifiers
    ids = (
        dict(sorted(identifiers.items()))
        if len(identifiers) > 1 or type(identifiers) is not dict
        else identifiers
    )
    at, event_id = profile.first
    first = (format_time(at), event_id)
    audiences = profile.audiences
    if audiences:
        doc: dict[str, Any] = {
            "v": STATE_FORMAT,
            "au": audiences,
            "ids": ids,
            "f": first,
            "mf": profile.merged_from,
            "g": groups,
        }
    else:
        doc = {"v": STATE_FORMAT, "ids": ids, "f": first, "mf": profile.merged_from, "g": groups}
    return orjson.dumps(doc)


def decode(profile_id: str, raw: bytes, rules: IdentityRules) -> StoredProfile:
    data: dict[str, Any] = orjson.loads(raw)
    if data.get("v") != STATE_FORMAT:
        raise StateFormatError(
            f"profile state format {data.get('v')!r}, expected {STATE_FORMAT}: "
            "rebuild the profiles lane from Kafka"
        )
    groups = {}
    from_json = Atom.from_json
    for key, body in data["g"].items():
        atoms = {}
        for raw_atom in body["a"]:
            atom = from_json(raw_atom, rules)
            atoms[atom.key] = atom
        # with its stored encoding: written back as it is while the group stays unchanged
        groups[key] = _new_group(atoms, facts_from_stored(body["x"]))
    at, event_id = data["f"]
    return _new_profile(
        profile_id,
        new_tuple(Stamp, (parse_stored(at), event_id)),  # ``Stamp(at, event_id)``
        {t: tuple(vs) for t, vs in data["ids"].items()},
        groups,
        tuple(data.get("mf", ())),
        tuple(data.get("au", ())),
    )
