"""Who is who: the partition of identifiers into people, as a function of the set of atoms.

:func:`cluster` replays atoms in one canonical order (by their earliest event: occurred_at,
then event id), never in arrival order, so the same set of events gives the same people and
the same profile ids however they were delivered, batched or partitioned. For each atom, its
identifiers that are shared (quarantined) or erased are left out first; then, best identifier
first (type priority, then value):

* an identifier not yet placed joins the atom's person if that keeps every type within its
  limit (``unique_types``: one value), else it is refused (``limit:`` / ``unique:`` rule);
* an identifier placed with another person brings that person in (a merge) unless their
  identifiers together would break a limit: two account ids never merge, and the identifier
  that bridged them is dropped from this atom instead (a *blocked merge*).

Because the best identifiers are placed first, what is dropped is always the least
trustworthy side of a conflict, and an atom always lands with the person of its best
identifier. A person's profile id derives from their earliest atom's first event
(:func:`~resolvers.identity.evidence.profile_id_for`); a merge keeps the earlier person's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from resolvers.identity.evidence import Atom, Stamp, profile_id_for
from resolvers.identity.rules import IdentityRules
from schemas.identifiers import Identifier

DROP_UNIQUE_CONFLICT: Final = "unique_conflict"
DROP_LIMIT_EXCEEDED: Final = "limit_exceeded"


@dataclass(frozen=True, slots=True)
class Blocked:
    """Audit: an atom linked two people a rule keeps apart; ``dropped`` were left out."""

    atom: Atom
    rule: str  # "unique:<type>" or "limit:<type>"
    reason: str  # DROP_UNIQUE_CONFLICT or DROP_LIMIT_EXCEEDED
    dropped: tuple[Identifier, ...]


@dataclass(frozen=True, slots=True)
class Person:
    profile_id: str
    first: Stamp
    identifiers: Mapping[str, tuple[str, ...]]  # type -> sorted values

    def all_identifiers(self) -> tuple[Identifier, ...]:
        return tuple(Identifier(t, v) for t, vs in self.identifiers.items() for v in vs)


@dataclass(frozen=True, slots=True)
class Clustering:
    people: Mapping[str, Person]  # profile id -> person
    owner: Mapping[Identifier, str]  # placed identifier -> profile id
    blocked: tuple[Blocked, ...] = ()

    def person_of(self, ident: Identifier) -> str | None:
        return self.owner.get(ident)


@dataclass
class _Building:
    first: Stamp
    ids: dict[str, set[str]] = field(default_factory=dict)


def _rule(id_type: str, rules: IdentityRules) -> tuple[str, str]:
    if rules.is_unique(id_type):
        return f"unique:{id_type}", DROP_UNIQUE_CONFLICT
    return f"limit:{id_type}", DROP_LIMIT_EXCEEDED


def _conflict(
    combined: Mapping[str, set[str]], theirs: Mapping[str, set[str]], rules: IdentityRules
) -> tuple[str, str] | None:
    """The first rule (type priority) that joining ``theirs`` to ``combined`` would break."""
    for id_type in sorted(theirs, key=rules.rank):
        ours = combined.get(id_type)
        total = len(theirs[id_type]) if not ours else len(ours | theirs[id_type])
        if total > rules.limit(id_type):
            return _rule(id_type, rules)
    return None


class _Replay:
    def __init__(self, rules: IdentityRules) -> None:
        self.rules = rules
        self.parent: dict[int, int] = {}
        self.people: dict[int, _Building] = {}
        self.owner: dict[Identifier, int] = {}
        self.blocked: list[Blocked] = []

    def find(self, node: int) -> int:
        root = node
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[node] != root:  # path compression
            self.parent[node], node = root, self.parent[node]
        return root

    def place(self, atom: Atom, ids: tuple[Identifier, ...]) -> None:
        rules = self.rules
        joined: list[int] = []
        combined: dict[str, set[str]] = {}
        to_link: list[Identifier] = []
        blocked: dict[tuple[str, str], list[Identifier]] = {}
        for ident in ids:
            node = self.owner.get(ident)
            if node is None:
                have = combined.setdefault(ident.type, set())
                if ident.value in have:
                    to_link.append(ident)
                elif len(have) + 1 > rules.limit(ident.type):
                    blocked.setdefault(_rule(ident.type, rules), []).append(ident)
                else:
                    have.add(ident.value)
                    to_link.append(ident)
                continue
            root = self.find(node)
            if root in joined:
                continue
            theirs = self.people[root].ids
            conflict = _conflict(combined, theirs, rules)
            if conflict is not None:
                blocked.setdefault(conflict, []).append(ident)
                continue
            joined.append(root)
            for id_type, values in theirs.items():
                combined.setdefault(id_type, set()).update(values)
        if joined:
            target = min(joined, key=lambda r: self.people[r].first)
            for root in joined:
                if root != target:
                    self._merge(target, root)
        elif to_link:
            target = len(self.parent)
            self.parent[target] = target
            self.people[target] = _Building(atom.first)
        else:
            target = -1
        if target >= 0:
            building = self.people[target]
            for ident in to_link:
                self.owner[ident] = target
                building.ids.setdefault(ident.type, set()).add(ident.value)
        self.blocked.extend(
            Blocked(atom, rule, reason, tuple(idents))
            for (rule, reason), idents in sorted(blocked.items())
        )

    def _merge(self, target: int, absorbed: int) -> None:
        self.parent[absorbed] = target
        gone = self.people.pop(absorbed)
        into = self.people[target]
        for id_type, values in gone.ids.items():
            into.ids.setdefault(id_type, set()).update(values)


def cluster(
    atoms: Iterable[Atom], excluded: frozenset[Identifier], rules: IdentityRules
) -> Clustering:
    """The people the atoms make, leaving out ``excluded`` identifiers (shared or erased) and
    values ``rules.is_blocked`` refuses (placeholders normalization should have dropped)."""
    replay = _Replay(rules)
    blocked = rules.is_blocked
    for atom in sorted(atoms, key=lambda a: a.first):
        ids = tuple(i for i in atom.ids if i not in excluded and not blocked(i.type, i.value))
        if ids:
            replay.place(atom, ids)
    people: dict[str, Person] = {}
    ids_of: dict[int, str] = {}
    for root, building in replay.people.items():
        pid = profile_id_for(building.first.event_id)
        ids_of[root] = pid
        people[pid] = Person(
            pid,
            building.first,
            {t: tuple(sorted(vs)) for t, vs in sorted(building.ids.items())},
        )
    owner = {ident: ids_of[replay.find(node)] for ident, node in replay.owner.items()}
    return Clustering(people, owner, tuple(replay.blocked))
