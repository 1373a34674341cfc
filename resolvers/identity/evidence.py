"""The evidence identity is computed from: atoms, identifier records, and groups.

* An :class:`Atom` is a distinct set of (normalized, not blocked) identifiers that events
  carried together, stamped with the earliest of those events (``first``: occurred_at, then
  event id). Events with the same set share an atom: the atoms of a set of events do not
  depend on their order.
* An :class:`IdentifierRecord` remembers, per non-unique identifier, the distinct values of
  each unique type (account ids) it was seen with in one event, capped just above the rules'
  threshold: enough to know whether it is shared (quarantined). It also names the profile it
  links to (``profile_id``) and the profiles holding atoms that carry it (``holders``: up to
  ``HOLDERS_KEPT``; a load follows the first ``MAX_HOLDERS``).
* A *group* is the unit profile facts are kept in (``resolvers.profile.facts``): the events
  whose atom's best identifier is an account id (a unique type) belong to that account, for
  good, whatever else is learned later; any other atom is a group of its own, because shared
  devices and contested emails can move it to another person, or to nobody.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from resolvers.identity.rules import IdentityRules
from resolvers.store import HOLDERS_WALKED, MAX_LOAD_PROFILES
from resolvers.timefmt import format_time, parse_stored
from resolvers.tuples import new_tuple
from schemas.identifiers import Identifier

RECORD_FORMAT: Final = 2
#: Holders a load follows per identifier (a shop's kiosk could be carried by thousands of
#: atoms): the first of its record's, which keeps more (an erasure must reach them all).
MAX_HOLDERS: Final = HOLDERS_WALKED
#: Holders a record keeps: as many as an erasing batch can load again (``LaneOutcome.need``,
#: at most ``MAX_LOAD_PROFILES``), so a record of a kiosk thousands of customers used stays a
#: few kilobytes that every batch touching it reads and rewrites (an erasure of an identifier
#: held by more profiles than one load reaches misses the ones past them: ADR 0018's note).
HOLDERS_KEPT: Final = MAX_LOAD_PROFILES


class Stamp(NamedTuple):
    """When something was first seen: occurred_at, ties broken by event id. A named tuple:
    replay sorts and compares stamps all the time, and tuples compare in C."""

    at: datetime
    event_id: str


def ranked(identifiers: Iterable[Identifier], rules: IdentityRules) -> tuple[Identifier, ...]:
    """Distinct identifiers, most trustworthy first (type priority, then value); of equal
    ones, the first."""
    index = rules.rank_index
    unlisted = len(index)
    if type(identifiers) is tuple and len(identifiers) < 3:  # most events: no dict, no sort
        if len(identifiers) < 2:
            return identifiers
        first, second = identifiers
        t1, v1 = first
        t2, v2 = second
        k1, k2 = (index.get(t1, unlisted), t1, v1), (index.get(t2, unlisted), t2, v2)
        if k1 < k2:
            return identifiers
        return (first,) if k1 == k2 else (second, first)
    keyed: dict[tuple[int, str, str], Identifier] = {}
    for ident in identifiers:
        id_type = ident.type
        keyed.setdefault((index.get(id_type, unlisted), id_type, ident.value), ident)
    if len(keyed) < 2:
        return tuple(keyed.values())
    return tuple([keyed[k] for k in sorted(keyed)])


class Atom(NamedTuple):
    """A distinct identifier set and the earliest event that carried it. ``ghosts``: salted
    hashes of members an erasure absorbed (``resolvers.identity.erasure``). A named tuple
    (built for each new set and each decoded one; compared field by field in C)."""

    ids: tuple[Identifier, ...]  # ranked (see :func:`ranked`)
    first: Stamp
    ghosts: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return atom_key(self.ids)

    def joined(self, other: Atom) -> Atom:
        """The same set seen by more events: the earliest stamp, every ghost (``self`` when
        that is what it already was)."""
        first = self.first if self.first <= other.first else other.first
        ghosts = tuple(sorted({*self.ghosts, *other.ghosts})) if self.ghosts or other.ghosts else ()
        if first is self.first and ghosts == self.ghosts:
            return self
        return Atom(self.ids, first, ghosts)

    def to_json(self) -> list[Any]:
        at, event_id = self.first
        out: list[Any] = [
            [f"{t}:{v}" for t, v in self.ids],  # each ``Identifier.key`` (unpacked in C)
            format_time(at),
            event_id,
        ]
        if self.ghosts:
            out.append(list(self.ghosts))
        return out

    @classmethod
    def from_json(cls, raw: list[Any], rules: IdentityRules) -> Atom:
        """Decode :meth:`to_json` (its identifiers ranked again: the rules may have changed).
        Built with ``new_tuple`` (``cls(ids, Stamp(at, event_id), ghosts)``); a list of one
        or two keys is ranked without a generator (:func:`ranked`'s tuple path, the same
        answer as its general one)."""
        keys, at, event_id = raw[:3]
        ghosts = tuple(raw[3]) if len(raw) > 3 else ()
        n = len(keys) if type(keys) is list else 0
        if n == 1:  # ``(parse_key(keys[0]),)``, inline
            id_type, _, value = keys[0].partition(":")
            ids: tuple[Identifier, ...] = (new_tuple(Identifier, (id_type, value)),)
        elif n == 2:
            ids = ranked((parse_key(keys[0]), parse_key(keys[1])), rules)
        else:
            ids = ranked((parse_key(k) for k in keys), rules)
        return new_tuple(cls, (ids, new_tuple(Stamp, (parse_stored(at), event_id)), ghosts))


def parse_key(key: str) -> Identifier:
    id_type, _, value = key.partition(":")
    return new_tuple(Identifier, (id_type, value))  # ``Identifier(id_type, value)``


def atom_key(ids: Iterable[Identifier]) -> str:
    return "|".join(sorted([f"{i.type}:{i.value}" for i in ids]))


def is_account(ids: tuple[Identifier, ...], rules: IdentityRules) -> bool:
    """Is the atom's best identifier an account id (its group key starts with ``u:``)?"""
    return bool(ids) and rules.is_unique(ids[0].type)


def group_key(ids: tuple[Identifier, ...], rules: IdentityRules) -> str:
    """``u:<type:value>`` when the atom's best identifier is an account id (its events belong
    to that account for good), else ``a:<hash of the set>`` (the atom is its own group)."""
    return keys(ids, rules)[0]


@lru_cache(maxsize=4096)
def _anonymous_group_key(key: str) -> str:
    """The group key of a non-account atom, by atom key (a digest each; memoized, bounded:
    returning visitors' sets come back batch after batch)."""
    return f"a:{hashlib.blake2b(key.encode(), digest_size=10).hexdigest()}"


def keys(ids: tuple[Identifier, ...], rules: IdentityRules) -> tuple[str, str]:
    """(:func:`group_key`, :func:`atom_key`) of a ranked identifier set, computed together."""
    if len(ids) == 1:
        first = ids[0]
        key = f"{first.type}:{first.value}"
        if first.type in rules.unique_types:
            return f"u:{key}", key
    else:
        key = "|".join(sorted([f"{i.type}:{i.value}" for i in ids]))
        if ids and ids[0].type in rules.unique_types:
            first = ids[0]
            return f"u:{first.type}:{first.value}", key
    return _anonymous_group_key(key), key


#: A record's ``seen_with`` when it has learned none (shared, read only).
_NOTHING_SEEN: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType({})


class IdentifierRecord(NamedTuple):
    """What the store keeps per identifier (see the module docstring). A named tuple: built
    for each record loaded and each one the batch changes, compared when written back."""

    profile_id: str | None = None
    seen_with: Mapping[str, tuple[str, ...]] = _NOTHING_SEEN
    quarantined: bool = False
    holders: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return self.profile_id is None and not self.seen_with and not self.holders

    def with_cooccurrence(
        self, ident: Identifier, uniques: Sequence[Identifier], rules: IdentityRules
    ) -> IdentifierRecord:
        """``uniques`` seen with ``ident`` in one event; a new record only if it learned
        something. The kept values are the smallest ``cap`` of the union: order-free."""
        if not self.seen_with:
            if len(uniques) == 1:  # its first value (most): kept as it is, under every cap
                u = uniques[0]  # and one value is never more than a threshold (>= 1)
                return new_tuple(
                    IdentifierRecord, (self.profile_id, {u.type: (u.value,)}, False, self.holders)
                )
        elif self._knows(uniques):
            return self
        cap = rules.cooccurrence_cap(ident.type)
        seen = {t: set(vs) for t, vs in self.seen_with.items()}
        for u in uniques:
            seen.setdefault(u.type, set()).add(u.value)
        kept = {t: tuple(sorted(vs)[:cap]) for t, vs in sorted(seen.items())}
        if kept == dict(self.seen_with):
            return self
        # shared: more values of a type than the threshold (the threshold asked once)
        shared = max(map(len, kept.values()), default=0) > rules.threshold(ident.type)
        return new_tuple(IdentifierRecord, (self.profile_id, kept, shared, self.holders))

    def _knows(self, uniques: Sequence[Identifier]) -> bool:
        """Would :meth:`with_cooccurrence` learn nothing? Yes when every value is already
        kept and what is kept is already in its kept form (one value per type is, as the
        cap is at least 2; longer lists are left to the general case)."""
        seen_with = self.seen_with
        for u in uniques:
            values = seen_with.get(u.type)
            if values is None or u.value not in values:
                return False
        return all(len(values) == 1 for values in seen_with.values())

    def with_holders(self, holders: Iterable[str]) -> IdentifierRecord:
        """The first ``HOLDERS_KEPT`` holders, sorted (a load follows the first
        ``MAX_HOLDERS``; a batch that erases the identifier has the others loaded too:
        ``LaneOutcome.need``)."""
        kept = tuple(sorted(set(holders)))[:HOLDERS_KEPT]
        if kept == self.holders:
            return self
        return new_tuple(
            IdentifierRecord, (self.profile_id, self.seen_with, self.quarantined, kept)
        )

    def linked_to(self, profile_id: str | None) -> IdentifierRecord:
        if profile_id == self.profile_id:
            return self
        return new_tuple(
            IdentifierRecord, (profile_id, self.seen_with, self.quarantined, self.holders)
        )

    def to_json(self) -> dict[str, Any]:
        """The record's state (``profile_id`` and ``holders`` are stored in fields of their
        own, which the store's load reads without decoding this)."""
        out: dict[str, Any] = {"v": RECORD_FORMAT}
        if self.seen_with:
            out["w"] = {t: list(vs) for t, vs in self.seen_with.items()}
        if self.quarantined:
            out["q"] = True
        return out

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], profile_id: str | None, holders: Iterable[str] = ()
    ) -> IdentifierRecord:
        if data.get("v") != RECORD_FORMAT:
            raise ValueError(f"unsupported identifier record format {data.get('v')!r}")
        return new_tuple(  # ``cls(profile_id, seen_with, quarantined, holders)``
            cls,
            (
                profile_id,
                {t: tuple(vs) for t, vs in data.get("w", {}).items()},
                bool(data.get("q", False)),
                tuple(holders),
            ),
        )


EMPTY_RECORD: Final = IdentifierRecord()


@lru_cache(maxsize=8192)
def profile_id_for(event_id: str) -> str:
    """The id of the profile whose earliest event is ``event_id``: a function of the events,
    so a replay into an empty store rebuilds the same ids. Memoized, bounded (the batch asks
    for each event's possible new person's id, the replay for each person's)."""
    digest = hashlib.blake2b(f"{event_id}\x001".encode(), digest_size=12).hexdigest()
    return f"p_{digest}"
