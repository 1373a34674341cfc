"""A commit's writes as plain Redis commands, and its checks in Python: the pure halves of the
commit without Lua (``streams.watch_commit``, ADR 0021), written with ``streams.resp.Resp``.
No IO.

* :func:`part_commands` and :class:`MarkerWriter`: what ``commit.lua``'s ``apply(part)`` does
  for a part whose checks passed, command for command (``DEL``/``HSET`` per written entity, the
  index and audience sets' ``SADD``/``SREM`` runs, the processed markers' ``HSET`` into their
  generation hashes with ``markers.lua``'s hashtable creation, ``UNLINK`` of the stale
  generation and ``EXPIREAT ... NX``, the suppression ``HSET``, the change streams' ``XADD``,
  the counters' ``HINCRBY``), and :func:`outbox_command` the one outbox entry per call;
* :class:`MarkerClock`: ``markers.lua``'s generation arithmetic from Redis ``TIME`` and the
  layout hash (``width``, ``since``), and whether layout 1's keys must still be looked up;
* :func:`overwrites`: whether a rewrite's ``HSET`` alone leaves the hash a ``DEL`` first would,
  given the hash as the batch's load read it (ADR 0029);
* :func:`first_failure`: ``commit.lua``'s ``check(part)`` on values read beforehand (versions,
  the suppression hash, the markers found), naming what failed as ``RedisStore`` does.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, TypeVar

from resolvers.store import HELD_FIELD, Commit, CommitResult, CommitStatus, Entity, Kind, Ref
from streams import outbox
from streams.redis_keys import MARKER_BUCKETS, STREAM_MAXLEN, Keys, marker_groups, seen_segment
from streams.resp import INTS, NAMES, SIZES, Resp, bulk

#: markers.lua: generations per TTL, the value that makes a new hash a hashtable, and how long
#: after ``since`` + the TTL layout 1's keys are still looked up
GENERATIONS_PER_TTL: Final = 4
HASHTABLE: Final = "-" * 65
HANDOVER_S: Final = 3600
#: commit.lua's chunk for SADD/SREM runs, marker HSETs, EXISTS and HMGET
CHUNK: Final = 500

#: heads of :meth:`Resp.keyed_all` commands
DEL: Final = b"*2\r\n$3\r\nDEL\r\n"
EXISTS: Final = b"*2\r\n$6\r\nEXISTS\r\n"
HGET_V: Final = (b"*3\r\n$4\r\nHGET\r\n", b"$1\r\nv\r\n")
#: a part's change-stream entries are appended without ``MAXLEN``, and each stream is trimmed
#: once after them (``XTRIM ... MAXLEN ~``, ADR 0028), when the part appends at most this many
#: entries to it; more, and each entry trims as ``commit.lua``'s do (``MAXLEN ~`` per ``XADD``).
#: The same stream results while the limit ``XTRIM ~`` sets itself (100 x
#: ``stream-node-max-entries``) cannot bind: true for any count up to 98 x that setting, i.e.
#: up to this bound with the setting at 10 or more (Redis's default: 100) or 0 (no limit).
TRIM_ONCE_MAX: Final = 980
_MAXLEN: Final = b"$%d\r\n%d\r\n" % (len(str(STREAM_MAXLEN)), STREAM_MAXLEN)
_STREAM_HEAD: Final = b"$6\r\nMAXLEN\r\n$1\r\n~\r\n" + _MAXLEN + b"$1\r\n*\r\n"
_XTRIM_TAIL: Final = b"$6\r\nMAXLEN\r\n$1\r\n~\r\n" + _MAXLEN


_SADD: Final = b"$4\r\nSADD\r\n"
_SREM: Final = b"$4\r\nSREM\r\n"


@dataclass(frozen=True, slots=True)
class MarkerClock:
    """What ``markers.lua`` computes when a script call first needs a segment's markers."""

    root: str  # P:v1:markers:{segment}:
    layout_key: str
    now: int  # Redis TIME, seconds
    width: int
    gen: int
    k: int  # generations looked up: gen - k .. gen
    width_stored: bool
    since_stored: bool
    #: layout 1's keys are still looked up (``since`` absent, or the hand-over not over)
    legacy: bool

    @classmethod
    def at(
        cls, keys: Keys, scope: str, ttl: int, *, now: int, width: int | None, since: int | None
    ) -> MarkerClock:
        """``width``/``since``: the layout hash's fields (None: absent)."""
        segment = seen_segment(scope)
        w = width if width is not None else max(1, math.ceil(ttl / GENERATIONS_PER_TTL))
        return cls(
            root=f"{keys.root}:markers:{segment}:",
            layout_key=keys.markers_layout(scope),
            now=now,
            width=w,
            gen=now // w,
            k=math.ceil(ttl / w),
            width_stored=width is not None,
            since_stored=since is not None,
            legacy=since is None or now < since + ttl + HANDOVER_S,
        )

    def key(self, gen: int, bucket: str) -> str:
        return f"{self.root}{gen}:{bucket}"

    def lookup_keys(self, bucket: str) -> list[str]:
        """The hashes a lookup of ``bucket`` reads, newest first."""
        return [self.key(g, bucket) for g in range(self.gen, self.gen - self.k - 1, -1)]


@dataclass
class MarkerWriter:
    """``markers.lua``'s ``mark`` over one commit call and segment: the layout written once, the
    stale generation unlinked once, each hash's expiry set once; ``present`` = the marker
    hashes known to exist (a new one is created as a hashtable)."""

    clock: MarkerClock
    present: set[str] = field(default_factory=set)
    expiring: set[str] = field(default_factory=set)
    unlinked: bool = False

    def mark(
        self, event_ids: Sequence[str], out: Resp, groups: Mapping[str, list[str]] | None = None
    ) -> None:
        """``event_ids`` marked (``groups``: them by bucket, if the caller has that already)."""
        c = self.clock
        if not c.width_stored:
            out.add("HSET", c.layout_key, "width", c.width)
        if not c.since_stored:
            out.add("HSET", c.layout_key, "since", c.now)
        self.clock = c = replace(c, width_stored=True, since_stored=True)
        if not self.unlinked:
            stale = c.gen - c.k - 1
            out.add("UNLINK", *(c.key(stale, str(b)) for b in range(MARKER_BUCKETS)))
            self.unlinked = True
        expire_at = (c.gen + c.k + 2) * c.width
        for bucket, ids in (marker_groups(event_ids) if groups is None else groups).items():
            key = c.key(c.gen, bucket)
            new = key not in self.present
            for j in range(0, len(ids), CHUNK):
                chunk = ids[j : j + CHUNK]
                first = new and j == 0
                out.head(2 + 2 * len(chunk) + (2 if first else 0), b"HSET", key)
                if first:
                    out.raw(b"$0\r\n\r\n" + bulk(HASHTABLE))
                out.ids_marked(chunk)
            if new:
                out.add("HDEL", key, "")
            self.present.add(key)
            if key not in self.expiring:
                out.add("EXPIREAT", key, expire_at, "NX")
                self.expiring.add(key)


def part_commands(
    part: Commit,
    keys: Keys,
    markers: Mapping[str, MarkerWriter],
    out: Resp,
    groups: Mapping[str, list[str]] | None = None,
    *,
    stored: Mapping[Ref, Entity] | None = None,
) -> None:
    """The commands ``commit.lua``'s ``apply(part)`` runs, in its order, added to ``out``
    (``markers``: the call's writer per scope; ``groups``: the part's event ids by marker
    bucket, if known; ``stored``: the entities as Redis holds them at ``EXEC``, proven by the
    batch's load (ADR 0029): a write over one of them leaves the same hash with less)."""
    ops = _entity_writes(part, keys, out, stored)
    for change in part.memberships:
        ops.append((keys.audience(change.audience), change.member, change.profile_id.encode()))
    for command, set_key, members in set_runs(ops):
        out.command(_SADD if command == "SADD" else _SREM, (set_key,), members)
    markers[part.scope].mark(part.event_ids, out, groups)
    if part.suppress:
        out.head(2 + 2 * len(part.suppress), b"HSET", keys.suppressed)
        out.pairs(part.suppress.items(), names=False)  # digests: one each
    if part.streams:
        _stream_commands(part, keys, out)
    if part.counters:
        stats = bulk(keys.stats)
        out.raw(
            b"".join(
                [
                    b"*4\r\n$7\r\nHINCRBY\r\n%b%b%b" % (stats, bulk(name), bulk(str(n)))
                    for name, n in part.counters.items()
                ]
            )
        )
        out.count += len(part.counters)


def _stream_commands(part: Commit, keys: Keys, out: Resp) -> None:
    """The part's change-stream entries, in order: ``XADD key * fields`` and one ``XTRIM key
    MAXLEN ~ n`` per stream after them, or ``XADD key MAXLEN ~ n * fields`` each for a stream
    given more than :data:`TRIM_ONCE_MAX` entries (ADR 0028)."""
    counts = Counter(entry.stream for entry in part.streams)
    heads: dict[str, tuple[bytes, int]] = {}  # per stream: XADD's head after its name, args
    for entry in part.streams:
        fields = entry.fields
        head = heads.get(entry.stream)
        if head is None:
            key = bulk(keys.streams[entry.stream])
            if counts[entry.stream] <= TRIM_ONCE_MAX:
                head = heads[entry.stream] = (key + b"$1\r\n*\r\n", 3)
            else:
                head = heads[entry.stream] = (key + _STREAM_HEAD, 6)
        out.raw(b"*%d\r\n$4\r\nXADD\r\n%b" % (head[1] + 2 * len(fields), head[0]))
        out.pairs(fields.items())
    out.count += len(part.streams)
    for stream, n in counts.items():
        if n <= TRIM_ONCE_MAX:
            out.raw(b"*5\r\n$5\r\nXTRIM\r\n%b%b" % (bulk(keys.streams[stream]), _XTRIM_TAIL))
            out.count += 1


#: A profile hash holds ``v`` and either ``d s i`` (or ``d s`` before ADR 0013) or ``r`` (the
#: key layout, ``streams.redis_store``; every writer replaces it whole). The load reads ``s r
#: i`` of a profile it visits (``v r`` of a "versions" id): read as exactly ``s i``, the hash is
#: ``v d s i``, which a write of ``d s i`` overwrites field for field.
_PROFILE_READ: Final = frozenset({"s", HELD_FIELD})
_PROFILE_WRITTEN: Final = frozenset({"d", "s", HELD_FIELD})
#: A stock hash holds ``v d s`` (its one writer writes both, none deletes it); the load reads
#: ``v s``: read with ``s``, the hash is ``v d s``, which a write of ``d s`` overwrites.
_STOCK_READ: Final = frozenset({"s"})
_STOCK_WRITTEN: Final = frozenset({"d", "s"})


def overwrites(kind: Kind, fields: Mapping[str, bytes], old: Entity) -> bool:
    """Whether ``HSET v ... fields`` over the existing hash ``old`` (as the load read it)
    leaves what ``DEL`` + ``HSET`` would: no field the hash may hold is left out of
    ``fields``. An identifier record's hash is ``v`` and ``p h s`` as present, all read by the
    load; a profile's, see :data:`_PROFILE_READ`; a stock's, :data:`_STOCK_READ`."""
    if kind == Kind.IDENTIFIER:
        return old.fields.keys() <= fields.keys()
    if kind == Kind.PROFILE:
        return old.fields.keys() == _PROFILE_READ and fields.keys() >= _PROFILE_WRITTEN
    return old.fields.keys() == _STOCK_READ and fields.keys() >= _STOCK_WRITTEN  # a stock


def _entity_writes(
    part: Commit, keys: Keys, out: Resp, stored: Mapping[Ref, Entity] | None = None
) -> list[tuple[str, bool, bytes]]:
    """``apply(part)``'s first loop into ``out``: per written entity ``DEL`` (unless checked
    absent, so it cannot exist) and ``HSET`` of ``v`` and its fields; the index sets'
    operations, in order, for :func:`set_runs` (set key, add, member). About one entity per
    event: :meth:`Resp.pairs` is inlined, the key encoded once, versions and sizes looked up.
    ``stored`` (ADR 0029): an entity checked at the version it holds there, written once, that
    the write :func:`overwrites`, gets no ``DEL``, and its fields holding the value written are
    left out of the ``HSET``."""
    writes = [*part.writes, *part.blind_writes] if part.blind_writes else part.writes
    refs = [w.ref for w in writes]
    once = len(set(refs)) == len(refs)
    n_checked = len(part.writes)
    expect = part.expect
    prefixes = {kind: (p := prefix.encode(), len(p)) for kind, prefix in keys.kinds.items()}
    index = {Kind.PROFILE: keys.profile_index, Kind.STOCK: keys.stock_index}
    versions, sizes, names = INTS, SIZES, NAMES
    small, short = len(versions), len(sizes)
    ops: list[tuple[str, bool, bytes]] = []
    commands = 0
    pieces = out.pieces
    for n, w in enumerate(writes):
        ref, fields = w.ref, w.fields
        name = ref.name.encode()
        prefix, length = prefixes[ref.kind]
        length += len(name)
        checked = n < n_checked and (once or refs.count(ref) == 1)
        absent = checked and expect.get(ref) == 0
        over = False  # an HSET over the stored hash, of the fields not holding their value
        if stored is not None and checked and fields and not absent:
            old = stored.get(ref)
            if (
                old is not None
                and old.version
                and old.version == expect.get(ref)
                and overwrites(ref.kind, fields, old)
            ):
                held = old.fields
                fields = {f: value for f, value in fields.items() if held.get(f) != value}
                absent = over = True  # the HSET alone
        if fields or over:
            v = w.version
            version = versions[v] if 0 <= v < small else bulk(v)
            size = 4 + 2 * len(fields)
            if absent:  # the key's format in the head's
                pieces.append(
                    b"*%d\r\n$4\r\nHSET\r\n$%d\r\n%b%b\r\n$1\r\nv\r\n%b"
                    % (size, length, prefix, name, version)
                )
                commands += 1
            else:
                key = b"$%d\r\n%b%b\r\n" % (length, prefix, name)
                pieces.append(
                    b"%b%b*%d\r\n$4\r\nHSET\r\n%b$1\r\nv\r\n%b" % (DEL, key, size, key, version)
                )
                commands += 2
            for field_name, value in fields.items():
                size = len(value)
                if size < short:  # the value is copied once, by the final join
                    pieces += (names[field_name], sizes[size], value, b"\r\n")
                else:
                    out.pairs(((field_name, value),))
                    pieces = out.pieces  # a new list after a chunk of its own
        elif not absent:
            pieces.append(b"%b$%d\r\n%b%b\r\n" % (DEL, length, prefix, name))
            commands += 1
        set_key = index.get(ref.kind)
        if set_key is not None:
            ops.append((set_key, "d" in w.fields, name))
    out.count += commands
    return ops


T = TypeVar("T")


def set_runs(ops: Sequence[tuple[str, bool, T]]) -> list[tuple[str, str, list[T]]]:
    """A run of the same set and operation as one SADD/SREM of up to 500 members, as
    ``commit.lua`` sends them (the same effect as one command per member, in order):
    (``SADD``/``SREM``, set key, members)."""
    out: list[tuple[str, str, list[T]]] = []
    run: list[T] = []
    key = ""
    add = False
    for set_key, op, member in ops:
        if run and (set_key != key or op != add or len(run) >= CHUNK):
            out.append(("SADD" if add else "SREM", key, run))
            run = []
        if not run:
            key, add = set_key, op
        run.append(member)
    if run:
        out.append(("SADD" if add else "SREM", key, run))
    return out


def outbox_command(keys: Keys, written: Sequence[Commit], out: Resp) -> None:
    """The call's one outbox entry (if any record): the written parts' packed records,
    concatenated."""
    packed = b"".join(outbox.pack(p.outbox) for p in written if p.outbox)
    if packed:
        out.add("XADD", keys.outbox, "*", outbox.FIELD, packed)


def first_failure(
    part: Commit,
    versions: Mapping[Ref, bytes | None],
    suppressed: Mapping[str, bytes | None],
    processed: set[str] | frozenset[str],
) -> CommitResult | None:
    """``commit.lua``'s ``check(part)`` on values read before: ``versions`` = field ``v`` per
    entity read (one not in it counts as absent), ``suppressed`` = the suppression hash's
    value per digest read, ``processed`` = the event ids found marked in the part's scope. None
    if it passes."""
    for ref, expected in part.expect.items():
        found = versions.get(ref)
        if (found or b"0") != str(expected).encode():
            return CommitResult(CommitStatus.CONFLICT, str(ref))
    for digest in part.unsuppressed:
        if suppressed.get(digest) is not None:
            return CommitResult(CommitStatus.CONFLICT, f"suppressed:{digest}")
    for event_id in part.event_ids:
        if event_id in processed:
            return CommitResult(CommitStatus.DUPLICATE, event_id)
    return None
