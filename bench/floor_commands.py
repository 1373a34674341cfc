"""A commit's writes as plain Redis commands, and its checks in Python: the two halves of a
commit without Lua, for ``bench.redis_floor`` (issue 17.2, ADR 0021). Measurement code: the
production commit stays ``streams/lua/commit.lua``.

Pure (no IO): the commands are tuples (``Command``) that the bench packs and sends itself.

* :func:`part_commands` and :class:`MarkerWriter`: what ``commit.lua``'s ``apply(part)`` does
  for a part whose checks passed, command for command (``DEL``/``HSET`` per written entity, the
  index and audience sets' ``SADD``/``SREM`` runs, the processed markers' ``HSET`` into their
  generation hashes with ``markers.lua``'s hashtable creation, ``UNLINK`` of the stale
  generation and ``EXPIREAT ... NX``, the suppression ``HSET``, the change streams' ``XADD``,
  the counters' ``HINCRBY``), and :func:`outbox_command` the one outbox entry per call;
* :class:`MarkerClock`: ``markers.lua``'s generation arithmetic from Redis ``TIME`` and the
  layout hash (``width``, ``since``);
* :func:`first_failure`: ``commit.lua``'s ``check(part)`` on values read beforehand (versions,
  the suppression hash, the markers found), naming what failed as ``RedisStore`` does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from resolvers.store import Commit, CommitResult, CommitStatus, Kind
from streams import outbox
from streams.redis_store import MARKER_BUCKETS, STREAM_MAXLEN, Keys, marker_groups, seen_segment
from streams.wave_load import GENERATIONS_PER_TTL

Command = tuple[bytes | str | int, ...]

#: markers.lua: the value that makes a new hash a hashtable (generations per TTL: wave_load's)
HASHTABLE = "-" * 65
#: commit.lua's chunk for SADD/SREM runs and marker HSETs
CHUNK = 500


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

    @classmethod
    def at(
        cls, keys: Keys, scope: str, ttl: int, *, now: int, width: int | None, since: int | None
    ) -> MarkerClock:
        """``width``/``since``: the layout hash's fields (None: absent)."""
        segment = seen_segment(scope)
        w = width if width is not None else max(1, math.ceil(ttl / GENERATIONS_PER_TTL))
        return cls(
            root=f"{keys.root}:markers:{segment}:",
            layout_key=f"{keys.root}:markers-layout:{segment}",
            now=now,
            width=w,
            gen=now // w,
            k=math.ceil(ttl / w),
            width_stored=width is not None,
            since_stored=since is not None,
        )

    def key(self, gen: int, bucket: str) -> str:
        return f"{self.root}{gen}:{bucket}"

    def lookup_keys(self, bucket: str) -> list[str]:
        """The hashes a lookup of ``bucket`` reads, newest first."""
        return [self.key(g, bucket) for g in range(self.gen, self.gen - self.k - 1, -1)]


@dataclass
class MarkerWriter:
    """``markers.lua``'s ``mark`` over one commit call: the layout written once, the stale
    generation unlinked once, each hash's expiry set once; ``present`` = the marker hashes
    known to exist (a new one is created as a hashtable)."""

    clock: MarkerClock
    present: set[str] = field(default_factory=set)
    expiring: set[str] = field(default_factory=set)
    unlinked: bool = False

    def mark(self, event_ids: Sequence[str]) -> list[Command]:
        c = self.clock
        out: list[Command] = []
        if not c.width_stored:
            out.append(("HSET", c.layout_key, "width", c.width))
        if not c.since_stored:
            out.append(("HSET", c.layout_key, "since", c.now))
        self.clock = c = replace(c, width_stored=True, since_stored=True)
        if not self.unlinked:
            stale = c.gen - c.k - 1
            out.append(("UNLINK", *(c.key(stale, str(b)) for b in range(MARKER_BUCKETS))))
            self.unlinked = True
        expire_at = (c.gen + c.k + 2) * c.width
        for bucket, ids in marker_groups(event_ids).items():
            key = c.key(c.gen, bucket)
            new = key not in self.present
            for j in range(0, len(ids), CHUNK):
                args: list[bytes | str | int] = ["HSET", key]
                if new and j == 0:
                    args += ["", HASHTABLE]
                for event_id in ids[j : j + CHUNK]:
                    args += [event_id, "1"]
                out.append(tuple(args))
            if new:
                out.append(("HDEL", key, ""))
            self.present.add(key)
            if key not in self.expiring:
                out.append(("EXPIREAT", key, expire_at, "NX"))
                self.expiring.add(key)
        return out


def part_commands(part: Commit, keys: Keys, markers: MarkerWriter) -> list[Command]:
    """The commands ``commit.lua``'s ``apply(part)`` runs, in its order."""
    out: list[Command] = []
    all_writes = [*part.writes, *part.blind_writes]
    refs = [w.ref for w in all_writes]
    once = len(set(refs)) == len(refs)
    n_checked = len(part.writes)
    index = {Kind.PROFILE: keys.profile_index, Kind.STOCK: keys.stock_index}
    ops: list[tuple[str, bool, str]] = []
    for n, w in enumerate(all_writes):
        key = keys.entity(w.ref)
        absent = n < n_checked and part.expect.get(w.ref) == 0 and (once or refs.count(w.ref) == 1)
        if not absent:
            out.append(("DEL", key))
        if w.fields:
            args: list[bytes | str | int] = ["HSET", key, "v", str(w.version)]
            for name, value in w.fields.items():
                args += [name, value]
            out.append(tuple(args))
        set_key = index.get(w.ref.kind)
        if set_key is not None:
            ops.append((set_key, "d" in w.fields, w.ref.name))
    for change in part.memberships:
        ops.append((keys.audience(change.audience), change.member, change.profile_id))
    out += _set_runs(ops)
    out += markers.mark(part.event_ids)
    if part.suppress:
        pairs: list[bytes | str | int] = ["HSET", keys.suppressed]
        for digest, tomb in part.suppress.items():
            pairs += [digest, tomb]
        out.append(tuple(pairs))
    for entry in part.streams:
        xadd: list[bytes | str | int] = ["XADD", keys.stream(entry.stream)]
        xadd += ["MAXLEN", "~", str(STREAM_MAXLEN), "*"]
        for name, value in entry.fields.items():
            xadd += [name, value]
        out.append(tuple(xadd))
    for name, n in part.counters.items():
        out.append(("HINCRBY", keys.stats, name, str(n)))
    return out


def _set_runs(ops: Sequence[tuple[str, bool, str]]) -> list[Command]:
    """A run of the same set and operation as one SADD/SREM of up to 500 members, as
    ``commit.lua`` sends them (the same effect as one command per member, in order)."""
    out: list[Command] = []
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


def outbox_command(keys: Keys, written: Sequence[Commit]) -> Command | None:
    """The call's one outbox entry: the written parts' packed records, concatenated."""
    packed = b"".join(outbox.pack(p.outbox) for p in written if p.outbox)
    return ("XADD", keys.outbox, "*", outbox.FIELD, packed) if packed else None


def first_failure(
    part: Commit,
    keys: Keys,
    versions: Mapping[str, bytes | None],
    suppressed: Mapping[str, bytes | None],
    processed: set[str],
) -> CommitResult | None:
    """``commit.lua``'s ``check(part)`` on values read before: ``versions`` = field ``v`` per
    entity key read (a key not in it counts as absent), ``suppressed`` = the suppression hash's
    value per digest read, ``processed`` = the event ids found marked. None if it passes."""
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
