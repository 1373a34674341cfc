"""A commit's writes as plain Redis commands, and its checks in Python: the pure halves of the
commit without Lua (``streams.watch_commit``, ADR 0021). No IO.

* :class:`Resp`: commands written straight into the protocol (RESP), one pass: no tuple per
  command, no join per command; :meth:`Resp.packed` gives the round trip's bytes as chunks
  (an argument of ``streams.resp.OWN_CHUNK`` bytes or more, the outbox entry, is a chunk of its
  own, as ``RespPacker`` sends it);
* :func:`part_commands` and :class:`MarkerWriter`: what ``commit.lua``'s ``apply(part)`` does
  for a part whose checks passed, command for command (``DEL``/``HSET`` per written entity, the
  index and audience sets' ``SADD``/``SREM`` runs, the processed markers' ``HSET`` into their
  generation hashes with ``markers.lua``'s hashtable creation, ``UNLINK`` of the stale
  generation and ``EXPIREAT ... NX``, the suppression ``HSET``, the change streams' ``XADD``,
  the counters' ``HINCRBY``), and :func:`outbox_command` the one outbox entry per call;
* :class:`MarkerClock`: ``markers.lua``'s generation arithmetic from Redis ``TIME`` and the
  layout hash (``width``, ``since``), and whether layout 1's keys must still be looked up;
* :func:`first_failure`: ``commit.lua``'s ``check(part)`` on values read beforehand (versions,
  the suppression hash, the markers found), naming what failed as ``RedisStore`` does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from resolvers.store import Commit, CommitResult, CommitStatus, Kind
from streams import outbox
from streams.redis_keys import MARKER_BUCKETS, STREAM_MAXLEN, Keys, marker_groups, seen_segment
from streams.resp import OWN_CHUNK

#: markers.lua: generations per TTL, the value that makes a new hash a hashtable, and how long
#: after ``since`` + the TTL layout 1's keys are still looked up
GENERATIONS_PER_TTL: Final = 4
HASHTABLE: Final = "-" * 65
HANDOVER_S: Final = 3600
#: commit.lua's chunk for SADD/SREM runs, marker HSETs, EXISTS and HMGET
CHUNK: Final = 500

#: heads of :meth:`Resp.keyed` commands
DEL: Final = b"*2\r\n$3\r\nDEL\r\n"
EXISTS: Final = b"*2\r\n$6\r\nEXISTS\r\n"
HGET_V: Final = (b"*3\r\n$4\r\nHGET\r\n", b"$1\r\nv\r\n")
#: RESP of the field names seen (a handful: a hash's fields, a stream's), up to _MAX_NAMES
_NAMES: dict[str, bytes] = {}
_MAX_NAMES: Final = 256
_STREAM_HEAD: Final = b"$6\r\nMAXLEN\r\n$1\r\n~\r\n$%d\r\n%d\r\n$1\r\n*\r\n" % (
    len(str(STREAM_MAXLEN)),
    STREAM_MAXLEN,
)


def _bulk(value: bytes | str | int) -> bytes:
    """One argument as a RESP bulk string."""
    if type(value) is str:
        data = value.encode()
    elif type(value) is int:
        data = b"%d" % value
    else:
        data = value  # type: ignore[assignment]
    return b"$%d\r\n%b\r\n" % (len(data), data)


class Resp:
    """One round trip's commands, written into RESP as they are added; ``count`` of them (one
    reply each)."""

    __slots__ = ("_chunks", "_pieces", "count")

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._pieces: list[bytes] = []
        self.count = 0

    def add(self, *args: bytes | str | int) -> None:
        """A command (its name first)."""
        pieces = self._pieces
        pieces.append(b"*%d\r\n" % len(args))
        for arg in args:
            if isinstance(arg, str):
                value = arg.encode()
            elif isinstance(arg, bytes):
                value = arg
                if len(value) >= OWN_CHUNK:
                    self._own_chunk(value)
                    pieces = self._pieces
                    continue
            else:
                value = b"%d" % arg
            pieces.append(b"$%d\r\n%b\r\n" % (len(value), value))
        self.count += 1

    def keyed(self, head: bytes, key: str, tail: bytes = b"") -> None:
        """A command of a key: ``head`` (its count and name in RESP), the key, ``tail`` (the
        rest in RESP): :data:`DEL`, :data:`HGET_V`, :data:`EXISTS`."""
        k = key.encode()
        self._pieces.append(b"%b$%d\r\n%b\r\n%b" % (head, len(k), k, tail))
        self.count += 1

    def head(self, n_args: int, name: bytes, key: str) -> None:
        """The start of a command of ``n_args`` arguments (name and key included): the rest
        follows with :meth:`bulk` / :meth:`raw`."""
        k = key.encode()
        self._pieces.append(
            b"*%d\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (n_args, len(name), name, len(k), k)
        )
        self.count += 1

    def bulk(self, value: bytes) -> None:
        if len(value) >= OWN_CHUNK:
            self._own_chunk(value)
        else:
            self._pieces.append(b"$%d\r\n%b\r\n" % (len(value), value))

    def pairs(self, items: Iterable[tuple[str, bytes]], *, names: bool = True) -> None:
        """Field names (or any short text: ``names`` False, not remembered) and their values,
        in turn."""
        pieces, known = self._pieces, _NAMES
        for name, value in items:
            head = known.get(name) if names else None
            if head is None:
                head = _bulk(name)
                if names and len(known) < _MAX_NAMES:
                    known[name] = head
            if len(value) >= OWN_CHUNK:
                pieces.append(head)
                self._own_chunk(value)
                pieces = self._pieces
            else:
                pieces.append(b"%b$%d\r\n%b\r\n" % (head, len(value), value))

    def ids_marked(self, ids: Sequence[str]) -> None:
        """``id 1`` per event id: a marker hash's fields."""
        self._pieces.append(
            b"".join([b"$%d\r\n%b\r\n$1\r\n1\r\n" % (len(e), e) for e in map(str.encode, ids)])
        )

    def raw(self, encoded: bytes) -> None:
        """Arguments already in RESP."""
        self._pieces.append(encoded)

    def _own_chunk(self, value: bytes) -> None:
        self._pieces.append(b"$%d\r\n" % len(value))
        self._chunks += (b"".join(self._pieces), value)
        self._pieces = [b"\r\n"]

    def packed(self) -> list[bytes]:
        """The commands' bytes, in order, as chunks to send one after the other."""
        return [*self._chunks, b"".join(self._pieces)]


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

    def mark(self, event_ids: Sequence[str], out: Resp) -> None:
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
        for bucket, ids in marker_groups(event_ids).items():
            key = c.key(c.gen, bucket)
            new = key not in self.present
            for j in range(0, len(ids), CHUNK):
                chunk = ids[j : j + CHUNK]
                first = new and j == 0
                out.head(2 + 2 * len(chunk) + (2 if first else 0), b"HSET", key)
                if first:
                    out.raw(b"$0\r\n\r\n" + _bulk(HASHTABLE))
                out.ids_marked(chunk)
            if new:
                out.add("HDEL", key, "")
            self.present.add(key)
            if key not in self.expiring:
                out.add("EXPIREAT", key, expire_at, "NX")
                self.expiring.add(key)


def part_commands(part: Commit, keys: Keys, markers: Mapping[str, MarkerWriter], out: Resp) -> None:
    """The commands ``commit.lua``'s ``apply(part)`` runs, in its order, added to ``out``
    (``markers``: the call's writer per scope)."""
    all_writes = [*part.writes, *part.blind_writes]
    refs = [w.ref for w in all_writes]
    once = len(set(refs)) == len(refs)
    n_checked = len(part.writes)
    expect = part.expect
    kinds = keys.kinds
    index = {Kind.PROFILE: keys.profile_index, Kind.STOCK: keys.stock_index}
    ops: list[tuple[str, bool, str]] = []
    for n, w in enumerate(all_writes):
        ref, fields = w.ref, w.fields
        key = kinds[ref.kind] + ref.name
        absent = n < n_checked and expect.get(ref) == 0 and (once or refs.count(ref) == 1)
        if not absent:
            out.keyed(DEL, key)
        if fields:
            out.head(4 + 2 * len(fields), b"HSET", key)
            version = b"%d" % w.version
            out.raw(b"$1\r\nv\r\n$%d\r\n%b\r\n" % (len(version), version))
            out.pairs(fields.items())
        set_key = index.get(ref.kind)
        if set_key is not None:
            ops.append((set_key, "d" in fields, ref.name))
    for change in part.memberships:
        ops.append((keys.audience(change.audience), change.member, change.profile_id))
    for run in set_runs(ops):
        out.add(*run)
    markers[part.scope].mark(part.event_ids, out)
    if part.suppress:
        out.head(2 + 2 * len(part.suppress), b"HSET", keys.suppressed)
        out.pairs(part.suppress.items(), names=False)  # digests: one each
    stream_keys = keys.streams
    for entry in part.streams:
        out.head(6 + 2 * len(entry.fields), b"XADD", stream_keys[entry.stream])
        out.raw(_STREAM_HEAD)
        out.pairs(entry.fields.items())
    for name, n in part.counters.items():
        out.add("HINCRBY", keys.stats, name, str(n))


def set_runs(ops: Sequence[tuple[str, bool, str]]) -> list[tuple[str, ...]]:
    """A run of the same set and operation as one SADD/SREM of up to 500 members, as
    ``commit.lua`` sends them (the same effect as one command per member, in order)."""
    out: list[tuple[str, ...]] = []
    run: list[str] = []
    add = False
    for set_key, op, member in ops:
        if run and (set_key != run[0] or op != add or len(run) > CHUNK):
            out.append(("SADD" if add else "SREM", *run))
            run = []
        if not run:
            run, add = [set_key], op
        run.append(member)
    if run:
        out.append(("SADD" if add else "SREM", *run))
    return out


def outbox_command(keys: Keys, written: Sequence[Commit], out: Resp) -> None:
    """The call's one outbox entry (if any record): the written parts' packed records,
    concatenated."""
    packed = b"".join(outbox.pack(p.outbox) for p in written if p.outbox)
    if packed:
        out.add("XADD", keys.outbox, "*", outbox.FIELD, packed)


def first_failure(
    part: Commit,
    keys: Keys,
    versions: Mapping[str, bytes | None],
    suppressed: Mapping[str, bytes | None],
    processed: set[str] | frozenset[str],
) -> CommitResult | None:
    """``commit.lua``'s ``check(part)`` on values read before: ``versions`` = field ``v`` per
    entity key read (a key not in it counts as absent), ``suppressed`` = the suppression hash's
    value per digest read, ``processed`` = the event ids found marked in the part's scope. None
    if it passes."""
    for ref, expected in part.expect.items():
        found = versions.get(keys.entity(ref))
        if (found or b"0") != str(expected).encode():
            return CommitResult(CommitStatus.CONFLICT, str(ref))
    for digest in part.unsuppressed:
        if suppressed.get(digest) is not None:
            return CommitResult(CommitStatus.CONFLICT, f"suppressed:{digest}")
    for event_id in part.event_ids:
        if event_id in processed:
            return CommitResult(CommitStatus.DUPLICATE, event_id)
    return None
