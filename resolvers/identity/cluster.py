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

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Final

from resolvers.frozen import fast_init
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


@fast_init
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
    owners: Mapping[tuple[str, str], str]  # (type, value) of a placed identifier -> profile id
    blocked: tuple[Blocked, ...] = ()

    @property
    def owner(self) -> dict[Identifier, str]:
        """Placed identifier -> profile id."""
        return {Identifier(t, v): pid for (t, v), pid in self.owners.items()}

    def person_of(self, ident: Identifier) -> str | None:
        return self.owners.get((ident.type, ident.value))


@dataclass(slots=True)
class _Building:
    first: Stamp
    ids: dict[str, set[str]] = field(default_factory=dict)


def _rule(id_type: str, rules: IdentityRules) -> tuple[str, str]:
    if rules.is_unique(id_type):
        return f"unique:{id_type}", DROP_UNIQUE_CONFLICT
    return f"limit:{id_type}", DROP_LIMIT_EXCEEDED


class _Replay:
    """The replay's state. Identifiers are keyed by ``(type, value)`` here: an
    :class:`Identifier` is that tuple (equal to it, hashed as it, in C), so an identifier is
    its own key, without building the pair (two attribute reads through the instance's
    ``__dict__`` hook and a tuple)."""

    def __init__(self, rules: IdentityRules) -> None:
        self.rules = rules
        self.parent: list[int] = []  # union-find over people, by creation
        self.people: dict[int, _Building] = {}
        self.owner: dict[tuple[str, str], int] = {}
        self.blocked: list[Blocked] = []
        self.limits: dict[str, int] = {}  # rules.limit, by type
        self.ranks: dict[str, tuple[int, str]] = {}  # rules.rank, by type (of placed ones)

    def find(self, node: int) -> int:
        parent = self.parent
        root = node
        while parent[root] != root:
            root = parent[root]
        while parent[node] != root:  # path compression
            parent[node], node = root, parent[node]
        return root

    def _limit(self, id_type: str) -> int:
        limit = self.limits[id_type] = self.rules.limit(id_type)
        self.ranks[id_type] = self.rules.rank(id_type)
        return limit

    def _conflict(
        self, combined: Mapping[str, set[str]], theirs: Mapping[str, set[str]]
    ) -> tuple[str, str] | None:
        """The first rule (type priority) that joining ``theirs`` to ``combined`` would
        break."""
        limits = self.limits
        for id_type in sorted(theirs, key=self.ranks.__getitem__) if len(theirs) > 1 else theirs:
            ours = combined.get(id_type)
            total = len(theirs[id_type]) if not ours else len(ours | theirs[id_type])
            if total > limits[id_type]:
                return _rule(id_type, self.rules)
        return None

    def place(self, atom: Atom, ids: tuple[Identifier, ...]) -> None:
        owner, limits, people = self.owner, self.limits, self.people
        if len(ids) == 1:  # most atoms (a device or an email alone): no conflict possible
            self._place_alone(atom, ids[0])
            return
        joined: list[int] = []
        combined: dict[str, set[str]] = {}
        to_link: list[Identifier] = []
        blocked: dict[tuple[str, str], list[Identifier]] = {}
        for ident in ids:
            id_type = ident.type
            node = owner.get(ident)
            if node is None:
                have = combined.get(id_type)
                if have is None:
                    have = combined[id_type] = set()
                limit = limits.get(id_type)
                if limit is None:
                    limit = self._limit(id_type)
                if ident.value in have:
                    to_link.append(ident)
                elif len(have) >= limit:
                    blocked.setdefault(_rule(id_type, self.rules), []).append(ident)
                else:
                    have.add(ident.value)
                    to_link.append(ident)
                continue
            root = self.find(node)
            if root in joined:
                continue
            theirs = people[root].ids
            if combined:
                conflict = self._conflict(combined, theirs)
                if conflict is not None:
                    blocked.setdefault(conflict, []).append(ident)
                    continue
            joined.append(root)
            for id_type, values in theirs.items():
                have = combined.get(id_type)
                if have is None:
                    combined[id_type] = set(values)
                else:
                    have.update(values)
        self._settle(atom, joined, to_link)
        if blocked:
            self.blocked.extend(
                Blocked(atom, rule, reason, tuple(idents))
                for (rule, reason), idents in sorted(blocked.items())
            )

    def _place_alone(self, atom: Atom, ident: Identifier) -> None:
        """:meth:`place` of an atom of one identifier: placed already, it joins that person
        and links nothing; else it makes a new person (every limit is at least 1)."""
        owner = self.owner
        if ident in owner:
            return
        id_type, value = ident
        if id_type not in self.limits:
            self._limit(id_type)  # (and its rank, which ``_conflict`` reads later)
        target = len(self.parent)
        self.parent.append(target)
        self.people[target] = _Building(atom.first, {id_type: {value}})
        owner[ident] = target

    def _settle(self, atom: Atom, joined: list[int], to_link: list[Identifier]) -> None:
        """The people ``atom`` joined become one (the earliest's), or it makes a new person;
        its identifiers ``to_link`` are placed with them."""
        people = self.people
        if joined:
            target = joined[0]
            if len(joined) > 1:
                target = min(joined, key=lambda r: people[r].first)
                for root in joined:
                    if root != target:
                        self._merge(target, root)
        elif to_link:
            target = len(self.parent)
            self.parent.append(target)
            people[target] = _Building(atom.first)
        else:
            return
        owner, building = self.owner, people[target].ids
        for ident in to_link:
            owner[ident] = target
            placed = building.get(ident.type)
            if placed is None:
                building[ident.type] = {ident.value}
            else:
                placed.add(ident.value)

    def _merge(self, target: int, absorbed: int) -> None:
        self.parent[absorbed] = target
        gone = self.people.pop(absorbed)
        into = self.people[target]
        for id_type, values in gone.ids.items():
            into.ids.setdefault(id_type, set()).update(values)


def _sorted_ids(ids: dict[str, set[str]]) -> dict[str, tuple[str, ...]]:
    """A person's identifiers, type -> sorted values, types in order (most people: one type
    of one value, without a sort)."""
    if len(ids) == 1:
        ((id_type, values),) = ids.items()
        return {id_type: tuple(values) if len(values) == 1 else tuple(sorted(values))}
    return {t: tuple(sorted(vs)) for t, vs in sorted(ids.items())}


#: An atom's stamp (the replay's order), read in C.
_first: Final[Callable[[Atom], Stamp]] = attrgetter("first")


def cluster(
    atoms: Iterable[Atom], excluded: frozenset[Identifier], rules: IdentityRules
) -> Clustering:
    """The people the atoms make, leaving out ``excluded`` identifiers (shared or erased) and
    values ``rules.is_blocked`` refuses (placeholders normalization should have dropped)."""
    replay = _Replay(rules)
    # each identifier is its own ``(type, value)`` key (see ``_Replay``): ``excluded`` as it is
    left_out: frozenset[tuple[str, str]] = excluded
    memo, blocks = rules.blocked_memo, rules.blocks
    owner, place, place_alone = replay.owner, replay.place, replay._place_alone
    for atom in sorted(atoms, key=_first):
        ids = atom.ids
        for ident in ids:  # each identifier its own ``(type, value)`` key (see ``_Replay``)
            if ident in left_out:
                break
            blocked = memo.get(ident)
            if blocked or (blocked is None and blocks((ident.type, ident.value))):
                break
        else:  # most atoms: nothing to leave out
            if len(ids) == 1:  # ``place``'s lone identifier: placed already, nothing to do
                if ids[0] not in owner:
                    place_alone(atom, ids[0])
            elif ids:
                place(atom, ids)
            continue
        ids = tuple(i for i in ids if (k := (i.type, i.value)) not in left_out and not blocks(k))
        if ids:
            replay.place(atom, ids)
    people: dict[str, Person] = {}
    ids_of: dict[int, str] = {}
    for root, building in replay.people.items():
        first, held = building.first, building.ids
        pid = profile_id_for(first.event_id)
        ids_of[root] = pid
        if len(held) == 1:  # most people: one type (``_sorted_ids``' first case, inline)
            ((id_type, values),) = held.items()
            sorted_ids = {id_type: (*values,) if len(values) == 1 else tuple(sorted(values))}
        else:
            sorted_ids = _sorted_ids(held)
        people[pid] = Person(pid, first, sorted_ids)
    parent, find = replay.parent, replay.find
    # a root is its own profile (most nodes: no ``find`` call)
    profile_of = [
        ids_of[node] if parent[node] == node else ids_of[find(node)] for node in range(len(parent))
    ]
    owners = {key: profile_of[node] for key, node in replay.owner.items()}
    return Clustering(people, owners, tuple(replay.blocked))
