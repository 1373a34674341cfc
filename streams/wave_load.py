"""A batch's load without Lua: ``load.lua``'s breadth-first walk in Python, one pipelined
round trip per wave, made consistent by a seqlock on the lane's commit sequence (ADR 0022).

``load.lua`` reads everything a batch can touch in one atomic call, but this Redis (7.0)
hashes every byte of every Lua string, and the walk pulls each profile's large state blob
through Lua. :class:`WaveLoad` sends the same reads as plain commands instead:

* wave 1: ``GET`` of the commit sequence (first), ``TIME`` and the marker layout, the
  suppression ``HMGET`` per 500 hashes, ``HMGET v p h s`` of the requested identifier records,
  ``HMGET v s r i`` of the requested profiles, one ``EXISTS`` per 500 of the "versions" ids
  (ids a batch may give a new person: nearly always absent; if any exists, a round trip of
  ``HMGET v r`` of each follows, ADR 0027), ``HMGET v s`` of the stocks;
* each next wave: ``HMGET`` of every identifier record and profile the walk has queued and not
  read yet (redirects, holders, held keys, the tombstones' holders); wave 2 also ``EXISTS`` of
  each marker hash a lookup reads (generations ``gen - k .. gen``, ``markers.lua``'s
  arithmetic), wave 3 the ``HMGET`` of the batch's ids in each existing one (per 500); each
  wave ends with a ``GET`` of the commit sequence.

The walk itself (:class:`Walk`) runs ``load.lua``'s loop over what has been read, in its
order (FIFO queues, identifiers drained before profiles, at most ``max_profiles`` profiles),
stopping where it needs a record not read yet; so what it visits, in which order, and where it
truncates are ``load.lua``'s. A profile queued when the walk truncates may have been read for
nothing; nothing read and not visited is returned.

**Consistency** (ADR 0022): ``load.lua`` is an atomic snapshot, waves are not. Every commit of
a lane ``INCR``s ``P:v1:commit-seq:{segment}`` in the same atomic unit as its writes; a load
whose first and last ``GET`` of it differ may have read across a commit (a record pointing at
a profile already merged away) and is read again, at most ``attempts`` times, then
:class:`LoadContendedError` (retryable). A torn read could never be committed anyway (every
commit compare-and-sets what the batch loaded); the seqlock keeps the pipeline from computing
on a state that never existed.

The commands go out on one connection of the client's pool (redis-py's, so TLS, AUTH and
Sentinel work as for every other call), written into one buffer per wave
(``streams.resp.Resp``, as the watch commit's), its replies read in one loop
(``streams.replies.read_replies``).
During layout 1's marker hand-over (ADR 0016) the caller uses ``load.lua``
(:meth:`WaveLoad.load` returns None).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from itertools import chain
from operator import attrgetter
from typing import Any, Final, Literal

import orjson
import redis

from resolvers.frozen import fast_new
from resolvers.pipeline import CommitConflictError
from resolvers.store import (
    ABSENT,
    HELD_FIELD,
    HOLDERS_FIELD,
    HOLDERS_WALKED,
    Entity,
    Kind,
    Loaded,
    LoadRequest,
    Ref,
    stock_ref,
)
from resolvers.tuples import new_tuple
from streams.commit_commands import CHUNK, EXISTS, MarkerClock
from streams.load_snapshot import LoadSnapshot
from streams.redis_keys import Keys
from streams.replies import Borrowed, Meanwhile, round_trip
from streams.resp import Resp, hmget_head

#: Loads of one call before :class:`LoadContendedError`.
ATTEMPTS: Final = 5

_ID_FIELDS: Final = ("v", "p", HOLDERS_FIELD, "s")
_PROFILE_FIELDS: Final = ("v", "s", "r", HELD_FIELD)


class LoadContendedError(CommitConflictError):
    """Commits of the lane kept landing between a load's first and last wave (retryable)."""


@dataclass
class Walk:
    """``load.lua``'s breadth-first walk, resumable: :meth:`advance` goes as far as the
    records read so far (:meth:`read`) allow; :meth:`unread` names what it waits for."""

    max_profiles: int
    id_queue: list[str] = field(default_factory=list)
    pid_queue: list[str] = field(default_factory=list)
    #: what was read: key -> (v, p, h, s); profile id -> (v, s, r, i)
    ids_read: dict[str, list[Any]] = field(default_factory=dict)
    pids_read: dict[str, list[Any]] = field(default_factory=dict)
    #: what was visited, in order: (key, v, p, h, s) and (pid, v, s, r, i)
    ids: list[tuple[str, list[Any]]] = field(default_factory=list)
    profiles: list[tuple[str, list[Any]]] = field(default_factory=list)
    seen_pids: set[str] = field(default_factory=set)
    truncated: bool = False
    _id_head: int = 0
    _pid_head: int = 0
    #: it stopped in the profiles' loop (waiting for a profile): it goes on there
    _in_pids: bool = False
    _seen_ids: set[str] = field(default_factory=set)

    def unread(self) -> tuple[list[str], list[str]]:
        """The queued identifier keys and profile ids not read yet (each once)."""
        ids_read, pids_read = self.ids_read, self.pids_read
        ids = [k for k in self.id_queue[self._id_head :] if k not in ids_read]
        pids = [p for p in self.pid_queue[self._pid_head :] if p not in pids_read]
        return list(dict.fromkeys(ids)), list(dict.fromkeys(pids))

    def read(self, ids: Sequence[str], id_rows: Sequence[list[Any]],
             pids: Sequence[str], pid_rows: Sequence[list[Any]]) -> None:  # fmt: skip
        self.ids_read.update(zip(ids, id_rows, strict=True))
        self.pids_read.update(zip(pids, pid_rows, strict=True))

    def advance(self) -> bool:
        """Walk on; True when the walk is done, False when it waits for :meth:`unread`.
        It goes on in the loop it stopped in: ``load.lua`` drains the profiles' queue,
        redirects and holders it adds included, before it turns to the records again, so a
        walk that stopped for a profile must not visit the records queued meanwhile first
        (what it visits, in which order, and where it truncates do not depend on how its
        reads came in waves). (The heads and collections in locals: ~1 record and profile
        per event.)"""
        id_queue, pid_queue = self.id_queue, self.pid_queue
        ids_read, pids_read = self.ids_read, self.pids_read
        seen_ids, seen_pids = self._seen_ids, self.seen_pids
        visit_id, visit_pid = self.ids.append, self.profiles.append
        max_profiles, loads = self.max_profiles, orjson.loads
        id_head, pid_head, in_pids = self._id_head, self._pid_head, self._in_pids
        try:
            while id_head < len(id_queue) or pid_head < len(pid_queue):
                while not in_pids and id_head < len(id_queue):
                    key = id_queue[id_head]
                    if key in seen_ids:
                        id_head += 1
                        continue
                    row = ids_read.get(key)
                    if row is None:
                        return False
                    id_head += 1
                    seen_ids.add(key)
                    visit_id((key, row))
                    if row[1] is not None:
                        pid_queue.append(row[1].decode())
                    if row[2] is not None:  # the first holders (``load.lua``'s max_holders)
                        pid_queue.extend(loads(row[2])[:HOLDERS_WALKED])
                in_pids = True
                while pid_head < len(pid_queue):
                    pid = pid_queue[pid_head]
                    if pid in seen_pids:
                        pid_head += 1
                        continue
                    if len(seen_pids) >= max_profiles:
                        self.truncated = True
                        pid_head = len(pid_queue)
                        break
                    row = pids_read.get(pid)
                    if row is None:
                        return False
                    pid_head += 1
                    seen_pids.add(pid)
                    visit_pid((pid, row))
                    if row[2] is not None:
                        pid_queue.append(row[2].decode())
                    elif row[3] is not None:
                        id_queue.extend(loads(row[3]))
                in_pids = False
            return True
        finally:
            self._id_head, self._pid_head, self._in_pids = id_head, pid_head, in_pids


@dataclass
class _Markers:
    """The processed-marker lookup of one load (``markers.lua``'s ``found``)."""

    groups: dict[str, list[str]]
    keys: list[tuple[str, str]] = field(default_factory=list)  # (hash, bucket) looked up
    existing: list[tuple[str, str]] = field(default_factory=list)
    chunks: list[list[str]] = field(default_factory=list)  # one per HMGET, in order
    seen: frozenset[str] = frozenset()  # the ids found processed

    def at(self, clock: MarkerClock) -> None:
        # markers.lua's order: per bucket, per chunk of 500 ids, generations newest first
        self.keys = [(key, b) for b in self.groups for key in clock.lookup_keys(b)]

    def add_to(self, wave: Resp, n: int) -> int:
        """Into round trip ``n`` + 1 (1: the first after wave 1), the lookup's commands: the
        ``EXISTS`` of each hash, then the ``HMGET`` per 500 ids in each existing one; how
        many."""
        before = wave.count
        if n == 1:
            wave.keyed_all(EXISTS, "", [key for key, _bucket in self.keys])
        elif n == 2:
            self.chunks = []
            for bucket, ids in self.groups.items():
                for j in range(0, len(ids), CHUNK):
                    chunk = ids[j : j + CHUNK]
                    for key, b in self.existing:
                        if b == bucket:
                            wave.command(_HMGET, (key, *chunk))
                            self.chunks.append(chunk)
        return wave.count - before

    def take(self, n: int, replies: list[Any]) -> None:
        """The replies to :meth:`add_to`'s commands of round trip ``n`` + 1."""
        if n == 1:
            self.existing = [k for k, hit in zip(self.keys, replies, strict=True) if hit]
        elif n == 2:
            hits = {e for chunk, row in zip(self.chunks, replies, strict=True)
                    for e, hit in zip(chunk, row, strict=True) if hit is not None}  # fmt: skip
            if hits:  # else none was processed (nearly always): no pass over the ids
                self.seen = frozenset(e for ids in self.groups.values() for e in ids if e in hits)


def _hmgets(wave: Resp, root: str, names: Sequence[str], fields: tuple[bytes, bytes]) -> None:
    """``HMGET root+name *fields`` per name (``fields``: the command's head and its fields,
    in RESP): the bulk of a load's commands (~2 per event), one format each."""
    if names:
        wave.keyed_all(fields[0], root, names, fields[1])


_ID_PACKED: Final = hmget_head(*_ID_FIELDS)
_PROFILE_PACKED: Final = hmget_head(*_PROFILE_FIELDS)
_VERSION_PACKED: Final = hmget_head("v", "r")
_STOCK_PACKED: Final = hmget_head("v", "s")


class WaveLoad:
    """``load.lua`` as waves of pipelined reads (module docstring), on ``client``'s pool."""

    def __init__(self, client: redis.Redis, keys: Keys, ttl_s: int, *, attempts: int = ATTEMPTS):
        self.client = client
        self.keys = keys
        self.ttl_s = ttl_s
        self.attempts = attempts
        #: figures of the last call: round trips, loads (> 1: the sequence moved)
        self.round_trips = 0
        self.loads = 0
        #: told of each load torn by a commit (the sequence moved; ``loom_loads_torn_total``)
        self.on_torn: Callable[[], None] | None = None
        #: what the last call read, consistent at one commit sequence (ADR 0027; None: the
        #: last call returned nothing or raised)
        self.snapshot: LoadSnapshot | None = None
        #: work done while each wave is answered (ADR 0038)
        self.meanwhile: Meanwhile | None = None

    def load(self, request: LoadRequest, groups: dict[str, list[str]]) -> Loaded | None:
        """``request``'s :class:`Loaded`, its event ids grouped by marker bucket as
        ``groups``; None while layout 1's markers are handed over (use ``load.lua``)."""
        self.round_trips = self.loads = 0
        self.snapshot = None
        with Borrowed(self.client) as borrowed:
            for _ in range(self.attempts):
                self.loads += 1
                found = self._attempt(borrowed.conn, request, groups)
                if found is not False:
                    return found
                if self.on_torn is not None:
                    self.on_torn()
        raise LoadContendedError(
            f"the commit sequence moved during each of {self.attempts} loads in a row"
        )

    def between_waves(self) -> None:
        """Called before each round trip after the first (a test's hook: does nothing)."""

    def _call(self, conn: Any, wave: Resp) -> list[Any]:
        """One round trip: ``wave`` in one buffer, its replies (a reply that is an error
        raises once all are read)."""
        if self.round_trips:
            self.between_waves()
        self.round_trips += 1
        return round_trip(conn, wave.packed(), wave.count, decode=True, meanwhile=self.meanwhile)

    def _attempt(
        self, conn: Any, request: LoadRequest, groups: dict[str, list[str]]
    ) -> Loaded | Literal[False] | None:
        """One load; False if the commit sequence moved during it."""
        seq_key = self.keys.commit_seq(request.scope)
        walk = Walk(request.max_profiles, list(request.identifiers), list(request.profiles))
        markers = _Markers(groups)
        first = self._first_wave(conn, request, walk, markers)
        if first is None:
            return None
        last = first.last
        if first.versions is None:  # a "versions" id exists: their HMGETs, in the seqlock
            wave = Resp()
            _hmgets(wave, self.keys.kinds[Kind.PROFILE], request.versions, _VERSION_PACKED)
            wave.add("GET", seq_key)
            replies = self._call(conn, wave)
            last = replies[-1]
            first = replace(first, versions=replies[:-1])
        n = 1
        while True:
            done = walk.advance()
            wave = Resp()
            n_marker = markers.add_to(wave, n)
            if done and not n_marker:
                break
            ids, pids = self._walk_reads(wave, walk)
            wave.add("GET", seq_key)
            replies = self._call(conn, wave)
            last = replies[-1]
            markers.take(n, replies[:n_marker])
            walk.read(ids, replies[n_marker : n_marker + len(ids)], pids,
                      replies[n_marker + len(ids) : -1])  # fmt: skip
            n += 1
        if last != first.sequence:
            return False
        loaded = _loaded(request, walk, first, markers.seen)
        entities = loaded.entities
        self.snapshot = LoadSnapshot(
            scope=request.scope,
            sequence=last if last is None or isinstance(last, bytes) else str(last).encode(),
            versions=dict(zip(entities, map(_VERSION, entities.values()), strict=True)),
            hashes=frozenset(request.suppression_hashes),
            suppressed=dict(loaded.suppressed),
            looked_up=frozenset(chain.from_iterable(markers.groups.values())),
            seen=markers.seen,
            existing=frozenset(key for key, _bucket in markers.existing),
            entities=entities,
        )
        return loaded

    def _walk_reads(self, wave: Resp, walk: Walk) -> tuple[list[str], list[str]]:
        """Into ``wave``, the ``HMGET`` of what the walk waits for; the keys and ids."""
        ids, pids = walk.unread()
        kinds = self.keys.kinds
        _hmgets(wave, kinds[Kind.IDENTIFIER], ids, _ID_PACKED)
        _hmgets(wave, kinds[Kind.PROFILE], pids, _PROFILE_PACKED)
        return ids, pids

    def _first_wave(
        self, conn: Any, request: LoadRequest, walk: Walk, markers: _Markers
    ) -> _First | None:
        """Round trip 1 (module docstring); None during the marker hand-over."""
        keys, scope = self.keys, request.scope
        seq_key = keys.commit_seq(scope)
        hashes = list(request.suppression_hashes)
        hash_chunks = [hashes[j : j + CHUNK] for j in range(0, len(hashes), CHUNK)]
        profile_root = keys.kinds[Kind.PROFILE]
        versions = list(request.versions)
        version_chunks = [versions[j : j + CHUNK] for j in range(0, len(versions), CHUNK)]
        wave = Resp()
        wave.add("GET", seq_key)
        wave.add("TIME")
        wave.add("HMGET", keys.markers_layout(scope), "width", "since")
        for chunk in hash_chunks:
            wave.command(_HMGET, (keys.suppressed, *chunk))
        for chunk in version_chunks:  # ids a batch may give a new person: nearly all absent
            wave.keyed_command(_EXISTS, profile_root, chunk)
        _hmgets(wave, keys.kinds[Kind.STOCK], request.stocks, _STOCK_PACKED)
        ids, pids = self._walk_reads(wave, walk)
        wave.add("GET", seq_key)
        replies = self._call(conn, wave)
        (now, _), (width, since) = replies[1], replies[2]
        at = 3 + len(hash_chunks)
        n_chunks, n_stocks = len(version_chunks), len(request.stocks)
        found = any(replies[at : at + n_chunks])
        first = _First(
            sequence=replies[0],
            last=replies[-1],
            tombs=[t for row in replies[3:at] for t in row],
            versions=None if found else [_NO_VERSION] * len(versions),
            stocks=replies[at + n_chunks : at + n_chunks + n_stocks],
        )
        at += n_chunks + n_stocks
        walk.read(ids, replies[at : at + len(ids)], pids, replies[at + len(ids) : -1])
        clock = MarkerClock.at(keys, scope, self.ttl_s, now=int(now),
                               width=None if width is None else int(width),
                               since=None if since is None else int(since))  # fmt: skip
        if clock.legacy:
            return None  # layout 1's keys are still looked up: load.lua does that
        markers.at(clock)
        for tomb in first.tombs:  # the tombstones' holders join the walk (after the profiles)
            if tomb is not None:
                walk.pid_queue.extend(orjson.loads(tomb).get("h") or ())
        return first


#: a "versions" id's row when none of them exists (no key: no ``v``, no ``r``)
_NO_VERSION: Final[list[Any]] = [None, None]
_EXISTS: Final = b"$6\r\nEXISTS\r\n"
_HMGET: Final = b"$5\r\nHMGET\r\n"
_VERSION: Final = attrgetter("version")
#: ``Entity(version, fields)``, cheaper (``resolvers.frozen.fast_new``): ~1.5 per event
_new_entity: Final = fast_new(Entity)


@dataclass(frozen=True, slots=True)
class _First:
    """What round trip 1 read besides the walk's records."""

    sequence: bytes | None  # the commit sequence before every read
    last: bytes | None  # and after them
    tombs: list[bytes | None]  # per suppression hash
    #: v, r per "versions" id (None: one of them exists, :meth:`WaveLoad._versions` reads them)
    versions: list[list[Any]] | None
    stocks: list[list[Any]]  # v, s per sku


def _loaded(request: LoadRequest, walk: Walk, first: _First, seen: frozenset[str]) -> Loaded:
    """What ``RedisStore.load`` makes of ``load.lua``'s reply, from the walk's rows: the
    records in visit order, then the profiles, the "versions" ids not visited, the stocks.
    (A row's fields are taken one by one, in the row's order: ~1.5 rows per event.)"""
    entities: dict[Ref, Entity] = {}
    new = new_tuple
    identifier, profile = Kind.IDENTIFIER, Kind.PROFILE
    fields: dict[str, bytes]
    for name, (v, p, h, s) in walk.ids:
        ref = new(Ref, (identifier, name))
        if not v:
            entities[ref] = ABSENT
            continue
        fields = {}
        if p is not None:
            fields["p"] = p
        if h is not None:
            fields[HOLDERS_FIELD] = h
        if s is not None:
            fields["s"] = s
        entities[ref] = _new_entity(int(v), fields)
    for name, (v, s, r, i) in walk.profiles:
        ref = new(Ref, (profile, name))
        if not v:
            entities[ref] = ABSENT
            continue
        fields = {}
        if s is not None:
            fields["s"] = s
        if r is not None:
            fields["r"] = r
        if i is not None:
            fields[HELD_FIELD] = i
        entities[ref] = _new_entity(int(v), fields)
    visited = walk.seen_pids
    assert first.versions is not None
    for pid, (v, r) in zip(request.versions, first.versions, strict=True):
        if pid not in visited:
            visited.add(pid)
            entities[new(Ref, (profile, pid))] = (
                _new_entity(int(v), {} if r is None else {"r": r}) if v else ABSENT
            )
    for sku, (v, s) in zip(request.stocks, first.stocks, strict=True):
        entities[stock_ref(sku)] = (
            _new_entity(int(v), {} if s is None else {"s": s}) if v else ABSENT
        )
    return Loaded(
        entities=entities,
        seen=seen,
        suppressed={
            h: tomb
            for h, tomb in zip(request.suppression_hashes, first.tombs, strict=True)
            if tomb is not None
        },
        truncated=walk.truncated,
    )
