"""Which identifiers erasures cover: a closure over the evidence, whatever the order.

``erasure_requested`` events name identifiers. Together, all requests cover (*absorb*) the
named identifiers and, transitively, what appears in an atom with an absorbed identifier that
*relays*:

* every identifier but a device relays (an account id, an email, a phone, a card: what is
  seen with them is the person's); a device (``rules.device_types``) is absorbed but does not
  relay: devices are shared, so what else was seen on one is no evidence about the person;
* an identifier that is not an account id joins when it shares an atom with a relaying
  absorbed one;
* an account id (a unique type) joins only when its atom also carries a *named* identifier or
  an absorbed account id: the person's loyalty id seen with their customer id goes with it,
  but an email a couple shares does not carry the erasure of one spouse's account over to
  the other's (a request naming that email itself covers both accounts that used it).

Every condition only gets easier as more is absorbed, so the covered set is the least fixed
point of a monotone rule: the same whatever the order of requests and events.

This depends only on the atoms and the set of named identifiers, never on how people were
clustered when a request arrived, so it gives the same answer whatever the order: an atom that
links a device to the person after the erasure (a late login) erases the profile built from
that device's browsing, as if it had come first.

What is kept of an absorbed identifier is a :class:`Tombstone` under its salted hash. Atoms
keep the hashes of their absorbed members (*ghosts*), and a tombstone names the profiles
holding atoms with its ghost, so that a later request naming an identifier absorbed earlier
still finds the account ids it sat next to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress, count, repeat
from operator import contains, itemgetter
from typing import Any, Final

from resolvers.identity.evidence import Atom
from resolvers.identity.rules import IdentityRules
from schemas.identifiers import Identifier

#: Profiles a tombstone remembers as holding atoms with its ghost.
MAX_HOLDERS: Final = 32

#: ``Atom.ids`` and ``Atom.ghosts`` (a named tuple's fields), read in C.
_IDS: Final = itemgetter(0)
_GHOSTS: Final = itemgetter(2)
#: Identifiers ``Closure.expand_known`` follows by a scan of the atoms (each ~0.1 ms over
#: 1,300 atoms) before it indexes them (~0.4 ms) for the rest.
_SCANS: Final = 4


def _index(id_sets: list[tuple[Identifier, ...]]) -> dict[Identifier, list[int]]:
    """The positions of the identifier sets carrying each identifier, in order."""
    index: dict[Identifier, list[int]] = {}
    for n, ids in enumerate(id_sets):
        for ident in ids:
            found = index.get(ident)
            if found is None:
                index[ident] = [n]
            else:
                found.append(n)
    return index


@dataclass(frozen=True, slots=True)
class Tombstone:
    """What is kept of an erased identifier, under its salted hash."""

    relays: bool
    named: bool = False  # a request named it
    account: bool = False  # an account id (unique type)
    holders: tuple[str, ...] = ()  # profiles holding atoms with its ghost

    @property
    def pulls_accounts(self) -> bool:
        """An atom carrying it brings the account ids it carries along."""
        return self.named or self.account

    def merged(self, other: Tombstone) -> Tombstone:
        holders = tuple(sorted(set(self.holders) | set(other.holders)))[:MAX_HOLDERS]
        return Tombstone(
            self.relays or other.relays,
            self.named or other.named,
            self.account or other.account,
            holders,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"r": self.relays}
        if self.named:
            out["n"] = True
        if self.account:
            out["a"] = True
        if self.holders:
            out["h"] = list(self.holders)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Tombstone:
        return cls(
            bool(data.get("r", True)),
            bool(data.get("n", False)),
            bool(data.get("a", False)),
            tuple(data.get("h", ())),
        )


@dataclass
class Closure:
    """The erasures' closure under way in one batch, by salted hash (``absorbed``); the
    identifiers of the absorbed hashes this batch knows by value are in ``known``."""

    rules: IdentityRules
    hash_of: Callable[[Identifier], str]
    absorbed: dict[str, Tombstone] = field(default_factory=dict)
    known: dict[str, Identifier] = field(default_factory=dict)

    def tombstone(self, digest: str, tomb: Tombstone) -> None:
        """An identifier erased earlier (its tombstone was loaded)."""
        self.absorbed[digest] = tomb

    def request(self, named: Iterable[Identifier]) -> None:
        for ident in named:
            self._absorb(ident, self.hash_of(ident), named=True)

    def _absorb(self, ident: Identifier, digest: str, *, named: bool = False) -> bool:
        self.known[digest] = ident
        relays = not self.rules.is_device(ident.type)
        new = Tombstone(relays, named, self.rules.is_unique(ident.type))
        old = self.absorbed.get(digest)
        merged = new if old is None else old.merged(new)
        if merged == old:
            return False
        self.absorbed[digest] = merged
        return True

    def is_absorbed(self, ident: Identifier) -> bool:
        return bool(self.absorbed) and self.hash_of(ident) in self.absorbed

    def expand(self, atoms: Iterable[Atom]) -> None:
        """Absorb what the relaying absorbed identifiers reach through ``atoms`` (the live
        ones and their ghosts), until nothing changes."""
        queue = [d for d, t in self.absorbed.items() if t.relays]
        if not queue:  # most batches: nothing to relay, no need to hash every atom
            return
        index: dict[str, list[Atom]] = {}
        hash_of = self.hash_of
        for atom in atoms:
            for ident in atom.ids:
                index.setdefault(hash_of(ident), []).append(atom)
            for digest in atom.ghosts:
                index.setdefault(digest, []).append(atom)
        while queue:
            digest = queue.pop()
            for atom in index.get(digest, ()):
                self._relay(atom, queue)

    def learn(self, idents: Iterable[Identifier]) -> None:
        """Know by value the absorbed hashes among ``idents``' (a loaded tombstone is known
        only by its hash; the store loaded it because an event of the batch carries its
        identifier: the events' identifiers, given here, name it). Hashing ``idents`` is
        cheap when they are the events' (they carry their hashes, see the profiles lane's
        ``_Digests``): in C, a memo's lookup each."""
        unknown = self.absorbed.keys() - self.known.keys()
        if not unknown:
            return
        idents = list(idents)
        digests = list(map(self.hash_of, idents))
        known = self.known
        for digest in unknown.intersection(digests):
            known[digest] = idents[digests.index(digest)]

    def absorbed_values(self) -> frozenset[Identifier] | None:
        """The absorbed identifiers by value, when every absorbed hash is known by value
        (:meth:`learn`), else None. An atom carries an absorbed identifier exactly when it
        carries one of these (the salted hash of ``type:value`` tells identifiers apart), so
        an atom that carries none is left as it is by :meth:`reduce`, without hashing it."""
        known = self.known
        if len(known) != len(self.absorbed):  # (``known``'s hashes are absorbed ones)
            return None
        return frozenset(known.values())

    def expand_known(self, atoms: Sequence[Atom]) -> bool:
        """:meth:`expand`, the same steps in the same order, without hashing the atoms that
        no absorbed identifier reaches: each relaying hash is followed by its identifier's
        value, to the atoms carrying it or its ghost. False (nothing done) when a relaying
        absorbed hash is not known by value: the caller runs :meth:`expand`.

        Why: once tombstones build up, most batches load one, and :meth:`expand` hashes every
        identifier of every loaded atom (a salted SHA-256 each) to index them, although the
        few absorbed identifiers reach a handful of atoms. Here each hash followed costs a
        scan of ``atoms``' identifier sets in C (a batch follows a few), and only the atoms
        it reaches are hashed."""
        queue = [d for d, t in self.absorbed.items() if t.relays]
        if not queue:
            return True
        known = self.known
        if not known.keys() >= set(queue):
            return False
        id_sets = list(map(_IDS, atoms))
        with_ghosts = list(compress(count(), map(_GHOSTS, atoms)))  # (few have any)
        index: dict[Identifier, list[int]] | None = None
        scans = 0
        while queue:
            digest = queue.pop()
            ident = known[digest]
            # ``expand``'s ``index[digest]``: the atoms carrying the identifier or the ghost,
            # in ``atoms``' order, an atom carrying both twice (once per entry). A scan for
            # the first few; past them (a long erasure), positions by identifier, indexed once
            if index is None and scans < _SCANS:
                scans += 1
                found = list(compress(count(), map(contains, id_sets, repeat(ident))))
            else:
                if index is None:
                    index = _index(id_sets)
                found = list(index.get(ident, ()))
            if with_ghosts:
                found += [n for n in with_ghosts if digest in atoms[n].ghosts]
                found.sort()
            for n in found:
                self._relay(atoms[n], queue)
        return True

    def _relay(self, atom: Atom, queue: list[str]) -> None:
        """Absorb ``atom``'s identifiers (its account ids only when it pulls them); queue
        the relaying ones newly absorbed or changed."""
        pulls = self._pulls_accounts(atom)
        for ident in atom.ids:
            if self.rules.is_unique(ident.type) and not pulls:
                continue
            other = self.hash_of(ident)
            if self._absorb(ident, other) and self.absorbed[other].relays:
                queue.append(other)

    def _pulls_accounts(self, atom: Atom) -> bool:
        members = (*(self.hash_of(i) for i in atom.ids), *atom.ghosts)
        return any((t := self.absorbed.get(d)) is not None and t.pulls_accounts for d in members)

    def reduce(self, atom: Atom, *, anchored: bool) -> Atom | None:
        """``atom`` with its absorbed members turned into ghosts; None when it is an erased
        person's event: its account id is absorbed (``anchored``), or it carries a relaying
        absorbed identifier (any other atom)."""
        absorbed = self.absorbed
        if not absorbed:
            return atom
        hash_of = self.hash_of
        gone = [i for i in atom.ids if hash_of(i) in absorbed]  # each ``is_absorbed``
        if not gone:
            return atom
        if anchored:
            if gone[0] == atom.ids[0]:
                return None
        elif any(self.absorbed[self.hash_of(i)].relays for i in gone):
            return None
        kept = tuple(i for i in atom.ids if i not in gone)
        if not kept:
            return None
        ghosts = tuple(sorted({*atom.ghosts, *(self.hash_of(i) for i in gone)}))
        return Atom(kept, atom.first, ghosts)

    def hold(self, ghosts: Iterable[str], profile_id: str) -> None:
        """``profile_id`` holds atoms with these ghosts (a later request looks there)."""
        for digest in ghosts:
            tomb = self.absorbed.get(digest)
            if tomb is not None and profile_id not in tomb.holders:
                self.absorbed[digest] = tomb.merged(
                    Tombstone(tomb.relays, tomb.named, tomb.account, (profile_id,))
                )
