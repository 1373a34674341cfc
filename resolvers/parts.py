"""A batch split into independent parts: events that share no loaded entity.

Two workers reading different partitions of the raw topic touch the same person or SKU now and
then (a person's web events are keyed by their device, their store purchases by their loyalty
id; every till sells the best-selling SKU). With one commit per batch, one such entity made the
whole batch conflict and be computed again (ADR 0013: 56 % of the profiles lane's batches and
85 % of the inventory lane's with two workers each). So the batch is split into parts that
share nothing, each computed and committed on its own in the same atomic store call
(``StateStore.commit_parts``): a conflict costs its part, not the batch.

Two events belong to the same part when they are connected through what the load returned:

* profiles lane: an event and its identifiers' records, the profile id a new person of the
  event would get, the tombstones of its suppression hashes; a record and the profile it links
  to (``p``) and the profiles holding atoms that carry it (``h``); a profile and its redirect
  target (``r``) and the identifier records of the atoms it holds (``i``); a tombstone and the
  profiles holding atoms with its ghost (``h``). These are exactly the edges the load walks
  (``streams/lua/load.lua``), so whatever a part's computation can consult is in the part.
* inventory lane: an event and the SKUs it moves.

And two copies of one event id always share a part. Since every profile and stock position is
a function of the set of its events (ADR 0005), computing a part on its own gives the same
state as computing the whole batch.

The components are packed into at most ``max_parts`` parts of about equal numbers of events
(each part costs one pass of the lane's stages; the written parts share one outbox entry), the
events of a part in batch order; components holding what recent conflicts named (``hot``) get
parts of their own first.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import orjson

from resolvers.identity.evidence import profile_id_for
from resolvers.stages import inventory
from resolvers.steps import Event
from resolvers.store import (
    HELD_FIELD,
    HOLDERS_FIELD,
    Entity,
    Kind,
    Loaded,
    Ref,
)

#: Parts a batch is split into at most, unless configured (``LOOM_COMMIT_PARTS``).
DEFAULT_MAX_PARTS = 16
#: Parts of their own for components that hold what recent conflicts named, at most.
MAX_HOT_PARTS = 32


@dataclass(frozen=True, slots=True)
class Part:
    """Events that share no loaded entity with the rest of the batch, and what they loaded."""

    events: tuple[Event, ...]
    loaded: Loaded
    hashes: tuple[str, ...]  # the suppression hashes of the events (profiles lane)


#: A union-find node: an event's index in the batch, or a key naming what it shares (below).
_Node = int | str | tuple[str, str]


IDENTIFIER, PROFILE, STOCK = Kind.IDENTIFIER, Kind.PROFILE, Kind.STOCK


def _key(kind: Kind, name: str) -> str:
    """An entity's node, spelled as ``str(Ref)`` and ``CommitResult.detail`` spell it (cheaper
    to hash and compare than a ``Ref``, whose dataclass ``__hash__``/``__eq__`` are Python)."""
    return f"{kind.value}:{name}"


class _Components:
    """Union-find over the batch's events (nodes ``0..n-1``) and the keys they share, each
    numbered on first sight (path halving, union by size over lists of ints)."""

    def __init__(self, events: int) -> None:
        self.index: dict[_Node, int] = {n: n for n in range(events)}
        self.parent: list[int] = list(range(events))
        self.size: list[int] = [1] * events

    def _number(self, node: _Node) -> int:
        i = self.index.get(node)
        if i is None:
            i = self.index[node] = len(self.parent)
            self.parent.append(i)
            self.size.append(1)
        return i

    def root(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = i = parent[parent[i]]
        return i

    def find(self, node: _Node) -> int:
        return self.root(self._number(node))

    def root_of(self, node: _Node) -> int | None:
        """``node``'s root, or None when nothing joined it."""
        i = self.index.get(node)
        return None if i is None else self.root(i)

    def union(self, a: _Node, b: _Node) -> None:
        self.join(a, (b,))

    def join(self, node: _Node, others: Iterable[_Node]) -> None:
        """``node`` and each of ``others`` in one set (:meth:`union`'s loop, inlined: it runs
        a few times per event)."""
        index, parent, size = self.index, self.parent, self.size
        ra = self.find(node)
        for other in others:
            rb = index.get(other)
            if rb is None:  # new: a set of its own, joined below
                rb = index[other] = len(parent)
                parent.append(rb)
                size.append(1)
            while parent[rb] != rb:
                parent[rb] = rb = parent[parent[rb]]
            if ra == rb:
                continue
            if size[ra] < size[rb]:
                ra, rb = rb, ra
            parent[rb] = ra
            size[ra] += size[rb]


def split(
    events: Sequence[Event],
    loaded: Loaded,
    *,
    identity: bool,
    max_parts: int = DEFAULT_MAX_PARTS,
    links: Sequence[tuple[str, Ref]] = (),
    hot: Collection[str] = (),
) -> list[Part]:
    """``events`` in independent parts, each with its share of ``loaded``: at most
    ``max_parts`` packed ones, plus the hot ones below (one part when ``max_parts`` is 1 or the
    batch has at most one event). ``links``: (event id, ref)
    pairs that belong together beyond what ``loaded`` says (profiles a part asked for).
    ``hot``: what recent conflicts named (``CommitResult.detail``: refs as ``kind:name``,
    ``suppressed:<hash>``, event ids); a component holding one gets a part of its own (at most
    :data:`MAX_HOT_PARTS` of them), so that another conflict on it costs only its events."""
    if max_parts <= 1 or len(events) <= 1:
        return [Part(tuple(events), loaded, _hashes(events) if identity else ())]
    uf = _connect(events, loaded, identity=identity, links=links)
    components: dict[int, list[int]] = {}
    for n in range(len(events)):
        components.setdefault(uf.root(n), []).append(n)
    if len(components) == 1:
        return [Part(tuple(events), loaded, _hashes(events) if identity else ())]
    hot_roots = {uf.root_of(node) for node in map(_node, hot)} - {None}
    alone = [g for root, g in components.items() if root in hot_roots][:MAX_HOT_PARTS]
    isolated = {id(g) for g in alone}
    rest = [g for g in components.values() if id(g) not in isolated]
    packed = [[g] for g in alone] + (_pack(rest, max_parts) if rest else [])
    part_of_root = {uf.root(group[0]): p for p, groups in enumerate(packed) for group in groups}
    entities: list[dict[Ref, Entity]] = [{} for _ in packed]
    for ref, entity in loaded.entities.items():
        root = uf.root_of(_key(ref.kind, ref.name))
        p = None if root is None else part_of_root.get(root)
        if p is not None:  # else no event of the batch leads to it
            entities[p][ref] = entity
    out: list[Part] = []
    for p, groups in enumerate(packed):
        part_events = tuple(events[n] for n in sorted(n for g in groups for n in g))
        hashes = _hashes(part_events) if identity else ()
        suppressed = {h: loaded.suppressed[h] for h in hashes if h in loaded.suppressed}
        out.append(
            Part(
                part_events,
                Loaded(entities[p], loaded.seen, suppressed, truncated=loaded.truncated),
                hashes,
            )
        )
    return out


def merged(part: Part, subs: Sequence[Part]) -> Part:
    """``subs`` (parts :func:`split` made of ``part``) as one part, its events in ``part``'s
    order: what of a part may be computed while the rest waits (``resolvers.claims``)."""
    if len(subs) == 1:
        return subs[0]
    keep = {id(e) for sub in subs for e in sub.events}
    entities: dict[Ref, Entity] = {}
    suppressed: dict[str, bytes] = {}
    for sub in subs:
        entities.update(sub.loaded.entities)
        suppressed.update(sub.loaded.suppressed)
    loaded = part.loaded
    return Part(
        tuple(e for e in part.events if id(e) in keep),
        Loaded(entities, loaded.seen, suppressed, truncated=loaded.truncated),
        tuple(dict.fromkeys(h for sub in subs for h in sub.hashes)),
    )


def _connect(
    events: Sequence[Event],
    loaded: Loaded,
    *,
    identity: bool,
    links: Sequence[tuple[str, Ref]],
) -> _Components:
    """Event indexes joined with everything they share (module docstring)."""
    uf = _Components(len(events))
    for n, event in enumerate(events):
        if not identity:
            own: _Node = ("event", inventory.event_id(event))
            uf.join(n, [own, *(_key(STOCK, sku) for sku in inventory.event_skus(event))])
            continue
        tp = event.tp
        shared: list[_Node] = [("event", tp.event_id)]
        if event.identifiers:
            shared.extend(_key(IDENTIFIER, ident.key) for ident in event.identifiers)
            shared.append(_key(PROFILE, profile_id_for(tp.event_id)))
        shared.extend(_SUPPRESSED + digest for digest in event.suppression_hashes)
        uf.join(n, shared)
    if identity:
        _link_loaded(uf, loaded)
    for event_id, ref in links:
        uf.union(("event", event_id), _key(ref.kind, ref.name))
    return uf


def _pack(components: list[list[int]], max_parts: int) -> list[list[list[int]]]:
    """Components into at most ``max_parts`` parts of about equal numbers of events: the
    largest first, each onto the part with the fewest events so far."""
    components.sort(key=len, reverse=True)
    n_parts = min(max_parts, len(components))
    heap = [(0, p) for p in range(n_parts)]
    packed: list[list[list[int]]] = [[] for _ in range(n_parts)]
    for group in components:
        size, p = heapq.heappop(heap)
        packed[p].append(group)
        heapq.heappush(heap, (size + len(group), p))
    return packed


def _node(detail: str) -> _Node:
    """The union-find node a conflict's detail names (``CommitResult.detail``: an entity as
    ``kind:name``, a tombstone as ``suppressed:<hash>``, else an event id)."""
    kind, _, _name = detail.partition(":")
    if kind in _KINDS or kind == _SUPPRESSED[:-1]:
        return detail
    return ("event", detail)


_KINDS = frozenset(k.value for k in Kind)
#: A suppression hash's node: its tombstone, as conflicts name it.
_SUPPRESSED = "suppressed:"


def _hashes(events: Sequence[Event]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(h for e in events for h in e.suppression_hashes))


def _link_loaded(uf: _Components, loaded: Loaded) -> None:
    """The edges of the identity evidence the load walked (module docstring)."""
    for ref, entity in loaded.entities.items():
        fields = entity.fields
        shared: list[_Node] = []
        if ref.kind is IDENTIFIER:
            pid = fields.get("p")
            if pid is not None:
                shared.append(_key(PROFILE, pid.decode()))
            holders = fields.get(HOLDERS_FIELD)
            if holders:
                shared.extend(_key(PROFILE, holder) for holder in orjson.loads(holders))
        elif ref.kind is PROFILE:
            target = fields.get("r")
            if target is not None:
                shared.append(_key(PROFILE, target.decode()))
            held = fields.get(HELD_FIELD)
            if held:
                shared.extend(_key(IDENTIFIER, key) for key in orjson.loads(held))
        if shared:
            uf.join(_key(ref.kind, ref.name), shared)
    for digest, tombstone in loaded.suppressed.items():
        erased_holders = orjson.loads(tombstone).get("h", ())
        uf.join(_SUPPRESSED + digest, [_key(PROFILE, holder) for holder in erased_holders])
