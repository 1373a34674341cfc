"""The commit without Lua (ADR 0021): an optimistic transaction on one key per lane, for
``RedisStore(..., commit="watch")``.

Every commit that writes a part of a scope ``INCR``s the scope's commit sequence
``P:v1:commit-seq:{segment}`` (this one in its transaction, ``commit.lua`` in its script), so a
``WATCH`` of the sequences of a call's scopes (and of ``P:v1:generation`` and the scopes'
lanes' ``P:v1:rebuild-lease:{lane}`` when the store checks the generation) sees any commit of
those lanes, or a rebuild taking a lease, that lands between its reads and its ``EXEC``. One
call, on ONE connection taken from the client's pool for the whole call (``WATCH`` is per
connection; TLS, AUTH/ACL, Sentinel as the client has them):

1. ``TIME`` and each scope's marker layout (``HMGET width since``). A scope whose layout-1
   hand-over is not over (ADR 0016: ``since`` absent, or less than the TTL + 1 h ago) with
   event ids in the call: the call is left to ``commit.lua`` (:data:`FALLBACK`), which looks
   the layout-1 keys up; this commit does not.
2. ``WATCH`` the sequences (and the generation's and the leases' keys); ``GET`` the generation
   and the leases; ``HGET v`` of
   each entity expected to exist, ``EXISTS`` of the expected-absent ones per 500, ``HMGET`` of
   the suppression hash for the unsuppressed digests per 500, ``EXISTS`` of each marker hash a
   lookup reads, and with a rider (a worker's claims) ``GET`` of each sequence (its release
   names the commit by it: ADR 0040). **Or, with the batch's wave load as a snapshot that
   covers the call (ADR 0027, ``streams.load_snapshot``):** ``WATCH``, ``GET`` of the
   generation and of the sequence only; if the sequence still holds the value the load read,
   the checks use what the load read (nothing was committed to the lane since), else the reads
   above follow.
   The transaction's rider (:attr:`WatchCommit.rider`) is told each sequence as watched.
3. If needed: ``HGET v`` of the expected-absent keys (one of them exists) and ``HMGET`` of each
   existing marker hash with its bucket's ids.
4. In Python: a generation mismatch raises ``StateLostError``, a lease held by another than the
   store's rebuild ``RebuildRunningError`` (nothing written); else each part
   is checked in ``commit.lua``'s order (``commit_commands.first_failure`` on what was read, or
   ``LoadSnapshot.verdicts`` on the snapshot, made once per call in one pass), the parts before
   it in the call counted as written, as the script sees them.
5. ``MULTI``, the passed parts' writes as ``commit.lua`` applies them
   (``commit_commands.part_commands``, written into RESP in one pass; when the checks used the
   snapshot, a rewritten hash the load proves holds no other field gets no ``DEL`` and its
   fields already holding their value are not sent, ADR 0029), the one outbox entry,
   ``INCR`` of each written scope's sequence, ``EXEC`` (and ``WAIT n`` with ``wait_replicas``,
   whose reply the caller checks). With nothing to write: ``UNWATCH`` (and ``WAIT``).
6. ``EXEC`` aborted (nil): again from 1, up to ``max_attempts`` times, then
   ``CommitConflictError`` (retryable: the worker's ``BatchRunner`` runs the batch again).

Each round trip is one packed buffer (``connection.send_packed_command``); its replies are
read in one loop (``streams.replies.read_replies``), a reply that is an error raising once all
are read. On any error during the call the connection is
disconnected before it goes back to the pool, so no ``WATCH`` or ``MULTI`` state leaks; after
the ``WATCH`` no round trip runs redis-py's health check (which may reconnect: the new
connection would ``EXEC`` unguarded), so a connection lost in the window raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Final, Literal, Protocol

import redis

from resolvers.pipeline import CommitConflictError
from resolvers.store import ABSENT, Commit, CommitResult, CommitStatus, Entity, Ref
from streams.commit_commands import (
    CHUNK,
    EXISTS,
    HGET_V,
    MarkerClock,
    MarkerWriter,
    first_failure,
    outbox_command,
    part_commands,
)
from streams.errors import StateLostError
from streams.generation import rebuild_running
from streams.load_snapshot import UNCOVERED, LoadSnapshot
from streams.redis_keys import Keys, marker_groups
from streams.replies import Borrowed, Meanwhile, round_trip
from streams.resp import Resp

#: heads of the checks' multi-key commands, in RESP
_EXISTS: Final = b"$6\r\nEXISTS\r\n"
_HMGET: Final = b"$5\r\nHMGET\r\n"

#: Attempts of one call before it raises ``CommitConflictError`` (ADR 0021: 10, never reached
#: in the two-worker measurement, at most 3 with Redis slowed 30x).
MAX_ATTEMPTS: Final = 10


class Fallback:
    """:meth:`WatchCommit.commit`'s answer when the call must go through ``commit.lua``."""


FALLBACK: Final = Fallback()


@dataclass(frozen=True, slots=True)
class Committed:
    """A call's results, and ``WAIT``'s reply (None without ``wait_replicas``)."""

    results: list[CommitResult]
    acknowledged: int | None


class Rider(Protocol):
    """Commands added to a commit's transaction (:attr:`WatchCommit.rider`)."""

    def commands(
        self, sequences: Mapping[str, bytes | None]
    ) -> Sequence[tuple[bytes | str | int, ...]]:
        """What to add (asked for each transaction built); ``sequences``: each written scope's
        commit sequence as watched (None: the key does not exist), the ``INCR`` to come not
        counted."""

    def done(self) -> None:
        """A transaction with them was executed."""


@dataclass
class WatchCommit:
    """The transaction of the module docstring over ``client``'s pool; counters for benches
    and tests."""

    client: redis.Redis
    keys: Keys
    ttl: int
    max_attempts: int = MAX_ATTEMPTS
    aborts: int = 0  # EXECs aborted (a watched key moved)
    calls: int = 0
    fallbacks: int = 0  # calls left to commit.lua (layout-1 hand-over)
    from_snapshot: int = 0  # attempts checked against the batch's load (ADR 0027)
    round_trips: int = field(default=0)
    #: told of each aborted EXEC (the worker's ``loom_commit_aborts_total``)
    on_abort: Callable[[], None] | None = None
    #: ``marker_groups`` of a lane's ids, each once (``RedisStore`` passes its own, which
    #: reuses the batch load's grouping of the same ids)
    grouped: Callable[[tuple[str, ...]], dict[str, list[str]]] = marker_groups
    #: work done while round trip 1 and the last one (``EXEC``) are answered (ADR 0038), never
    #: while a ``WATCH`` is open: it would widen the window another writer's commit aborts
    meanwhile: Meanwhile | None = None
    #: commands that ride in every transaction that writes (a worker's claim released with
    #: its commit: ``streams.redis_claims``)
    rider: Rider | None = None

    def commit(
        self,
        parts: Sequence[Commit],
        *,
        generation: str | None,
        rebuild_token: str = "",
        wait_replicas: int = 0,
        wait_timeout_ms: int = 0,
        snapshot: LoadSnapshot | None = None,
    ) -> Committed | Fallback:
        """Check and write ``parts`` (raises ``StateLostError`` if ``generation`` is set and
        Redis holds another, ``RebuildRunningError`` if then a lane of ``parts`` has a rebuild
        lease that does not hold ``rebuild_token``, ``CommitConflictError`` after
        ``max_attempts`` aborts); with ``wait_replicas``, ``WAIT wait_replicas
        wait_timeout_ms`` follows on the connection. ``snapshot``: the batch's load, if
        consistent (ADR 0027): while the lane's sequence still holds its value, the checks use
        it instead of reading again."""
        wait = (wait_replicas, wait_timeout_ms) if wait_replicas else None
        verdicts: list[CommitResult | None] | Literal[False] = UNCOVERED
        if snapshot is not None:  # the checks too, in the same pass (used if the sequence holds)
            verdicts = snapshot.verdicts(parts)
            if verdicts is False:
                snapshot = None
        self.calls += 1
        guard = None
        if generation is not None:
            lanes = tuple(dict.fromkeys(p.scope for p in parts))
            guard = _Guard(generation, rebuild_token, lanes)
        with Borrowed(self.client) as borrowed:
            for _ in range(self.max_attempts):
                outcome = self._attempt(
                    borrowed.conn, parts, guard, wait, snapshot, verdicts=verdicts
                )
                if outcome is not None:
                    return outcome
                self.aborts += 1
                if self.on_abort is not None:
                    self.on_abort()
            borrowed.clean = True  # an aborted EXEC leaves no WATCH/MULTI state
            raise CommitConflictError(f"EXEC aborted {self.max_attempts} times in a row")

    def _round_trip(
        self, conn: Any, resp: Resp, *, watching: bool = True, meanwhile: bool = False
    ) -> list[Any]:
        """``resp``'s commands and their replies. ``watching``: a ``WATCH`` is open, so no
        health check first (a failed one reconnects: a new connection without the ``WATCH``
        would ``EXEC`` unguarded); a dropped connection raises instead. ``meanwhile``: no
        ``WATCH`` is open once these are sent, so :attr:`meanwhile` may run."""
        self.round_trips += 1
        # an error reply (e.g. a command refused inside MULTI) raises: the call disconnects
        return round_trip(
            conn,
            resp.packed(),
            resp.count,
            decode=False,
            check_health=not watching,
            meanwhile=self.meanwhile if meanwhile else None,
        )

    def _attempt(
        self,
        conn: Any,
        parts: Sequence[Commit],
        guard: _Guard | None,
        wait: tuple[int, int] | None,
        snapshot: LoadSnapshot | None = None,
        *,
        verdicts: list[CommitResult | None] | Literal[False] = UNCOVERED,
    ) -> Committed | Fallback | None:
        """One try: the outcome, or None if ``EXEC`` was aborted (``verdicts``: the parts'
        checks on ``snapshot``, made if it covers the call)."""
        keys = self.keys
        scopes = list(dict.fromkeys(p.scope for p in parts))
        first = Resp()
        first.add("TIME")
        for scope in scopes:
            first.add("HMGET", keys.markers_layout(scope), "width", "since")
        now, *layouts = self._round_trip(conn, first, watching=False, meanwhile=True)
        clocks: dict[str, MarkerClock] = {}
        for scope, (width, since) in zip(scopes, layouts, strict=True):
            clocks[scope] = MarkerClock.at(
                keys,
                scope,
                self.ttl,
                now=int(now[0]),
                width=None if width is None else int(width),
                since=None if since is None else int(since),
            )
        if any(p.event_ids and clocks[p.scope].legacy for p in parts):
            self.fallbacks += 1
            return FALLBACK
        reads = None
        stored: Mapping[Ref, Entity] | None = None  # the entities as EXEC finds them
        if snapshot is not None:
            reads = self._unchanged(conn, parts, clocks, guard, snapshot, verdicts=verdicts)
            if reads is not None:  # the sequence holds: the load's hashes are Redis's
                stored = snapshot.entities
        if reads is None:
            reads = self._read(conn, parts, clocks, guard)
        results = _check(parts, reads) if reads.verdicts is None else reads.verdicts
        written = [p for p, r in zip(parts, results, strict=True) if r is None]
        out = self._writes(parts, written, clocks, reads, stored)
        if wait is not None:
            out.add("WAIT", *wait)
        replies = self._round_trip(conn, out, meanwhile=True)  # EXEC (or UNWATCH) closes it
        acknowledged = replies[-1] if wait is not None else None
        if written:
            done = replies[-2] if wait is not None else replies[-1]
            if done is None:
                return None
            for reply in done:
                if isinstance(reply, redis.ResponseError):
                    raise reply
            if self.rider is not None:
                self.rider.done()
        ok = CommitResult(CommitStatus.OK)
        return Committed([r or ok for r in results], acknowledged)

    def _writes(
        self,
        parts: Sequence[Commit],
        written: list[Commit],
        clocks: dict[str, MarkerClock],
        reads: _Reads,
        stored: Mapping[Ref, Entity] | None,
    ) -> Resp:
        """Round trip 4's commands but ``WAIT``: the ``MULTI`` ... ``EXEC`` of ``written`` (the
        parts that passed), else ``UNWATCH``."""
        keys = self.keys
        out = Resp()
        if not written:
            out.add("UNWATCH")
            return out
        out.add("MULTI")
        writers = {s: MarkerWriter(c, present=reads.existing) for s, c in clocks.items()}
        for part in written:
            groups = reads.groups_of(part, len(parts))
            part_commands(part, keys, writers, out, groups, stored=stored)
            if stored is not None and len(written) > 1:  # what the next part finds
                stored = {**stored, **_rewritten(part)}
        outbox_command(keys, written, out)
        if self.rider is not None:
            for command in self.rider.commands(reads.sequences):
                out.add(*command)
        for scope in dict.fromkeys(p.scope for p in written):
            out.add("INCR", keys.commit_seq(scope))
        out.add("EXEC")
        return out

    def _unchanged(
        self,
        conn: Any,
        parts: Sequence[Commit],
        clocks: dict[str, MarkerClock],
        guard: _Guard | None,
        snapshot: LoadSnapshot,
        *,
        verdicts: list[CommitResult | None] | Literal[False],
    ) -> _Reads | None:
        """Round trip 2 when ``snapshot`` covers the call (ADR 0027): ``WATCH``, the
        generation and the sequence; if the sequence still holds its value, the reads the
        writes need with ``verdicts`` (the parts' checks on ``snapshot``), else None (the call
        reads as without it; the ``WATCH`` stays)."""
        keys = self.keys
        cmds = Resp()
        seq_key = keys.commit_seq(snapshot.scope)
        guarded = [] if guard is None else guard.keys(keys)
        cmds.add("WATCH", seq_key, *guarded)
        for key in guarded:
            cmds.add("GET", key)
        cmds.add("GET", seq_key)
        replies = self._round_trip(conn, cmds, watching=False)
        if guard is not None:
            guard.check(keys, iter(replies[1:]))
        if replies[-1] != snapshot.sequence or verdicts is False:
            return None
        self.from_snapshot += 1
        reads = _Reads(versions={}, groups=_groups(parts, clocks, self.grouped), verdicts=verdicts)
        reads.existing = set(snapshot.existing)
        reads.sequences = {snapshot.scope: snapshot.sequence}
        return reads

    def _read(
        self,
        conn: Any,
        parts: Sequence[Commit],
        clocks: dict[str, MarkerClock],
        guard: _Guard | None,
    ) -> _Reads:
        """Round trips 2 and (if needed) 3."""
        keys = self.keys
        ask = _Asked.of(parts, keys, clocks, self.grouped)
        riding = self.rider is not None  # a claim's release names the commit by its sequence
        asked = ask.commands(keys, clocks, guard, sequences=riding)
        replies = iter(self._round_trip(conn, asked, watching=False)[1:])  # WATCH first
        if guard is not None:
            guard.check(keys, replies)
        reads = _Reads(versions={ref: next(replies) for ref in ask.present}, groups=ask.groups)
        absent_found = sum(next(replies) for _ in ask.absent_chunks)
        for chunk in ask.digest_chunks:
            reads.suppressed.update(zip(chunk, next(replies), strict=True))
        existing = [(scope, k, b) for scope, k, b in ask.lookup if next(replies)]
        reads.existing = {k for _, k, _ in existing}
        if riding:
            reads.sequences = {scope: next(replies) for scope in clocks}
        reads.processed = {scope: set() for scope in clocks}
        second = Resp()
        if absent_found:  # an expected-absent key exists: its version decides, as in Lua
            for chunk in ask.absent_chunks:
                second.keyed_all(HGET_V[0], "", chunk, HGET_V[1])
        batches = [
            (scope, key, chunk)
            for scope, key, b in existing
            for chunk in _chunks(ask.groups[scope][b])
        ]
        for _, key, chunk in batches:
            second.command(_HMGET, (key, *chunk))
        if not second.count:
            return reads
        got = iter(self._round_trip(conn, second))
        if absent_found:
            reads.versions.update((ref, next(got)) for ref in ask.absent)
        for scope, _, chunk in batches:
            found = reads.processed[scope]
            found.update(e for e, hit in zip(chunk, next(got), strict=True) if hit)
        return reads


@dataclass(frozen=True, slots=True)
class _Asked:
    """What a call's checks read: the entities expected to exist, the expected-absent ones
    (their keys per 500), the unsuppressed digests per 500, the event ids per scope and bucket,
    and the marker hashes a lookup reads (scope, key, bucket)."""

    present: list[Ref]
    absent: list[Ref]
    absent_chunks: list[list[str]]
    digest_chunks: list[list[str]]
    groups: dict[str, dict[str, list[str]]]
    lookup: list[tuple[str, str, str]]

    @classmethod
    def of(
        cls,
        parts: Sequence[Commit],
        keys: Keys,
        clocks: dict[str, MarkerClock],
        grouped: Callable[[tuple[str, ...]], dict[str, list[str]]] = marker_groups,
    ) -> _Asked:
        present: dict[Ref, None] = {}
        absent: dict[Ref, None] = {}
        for part in parts:
            for ref, v in part.expect.items():
                (present if v else absent)[ref] = None
        kinds = keys.kinds
        groups = _groups(parts, clocks, grouped)
        return cls(
            present=list(present),
            absent=list(absent),
            absent_chunks=_chunks([kinds[ref.kind] + ref.name for ref in absent]),
            digest_chunks=_chunks(list(dict.fromkeys(d for p in parts for d in p.unsuppressed))),
            groups=groups,
            lookup=[
                (scope, key, bucket)
                for scope, by_bucket in groups.items()
                for bucket in by_bucket
                for key in clocks[scope].lookup_keys(bucket)
            ],
        )

    def commands(
        self,
        keys: Keys,
        clocks: dict[str, MarkerClock],
        guard: _Guard | None,
        *,
        sequences: bool = False,
    ) -> Resp:
        """Round trip 2: ``WATCH`` of the scopes' sequences (and the guard's keys), then
        the reads (with ``sequences``, last, a ``GET`` of each watched sequence)."""
        cmds = Resp()
        watched = [keys.commit_seq(s) for s in clocks]
        guarded = [] if guard is None else guard.keys(keys)
        cmds.add("WATCH", *watched, *guarded)
        for key in guarded:
            cmds.add("GET", key)
        head, tail = HGET_V
        kinds = keys.kinds
        cmds.keyed_all(head, "", [kinds[ref.kind] + ref.name for ref in self.present], tail)
        for chunk in self.absent_chunks:
            cmds.command(_EXISTS, chunk)
        suppressed = (keys.suppressed,)
        for chunk in self.digest_chunks:
            cmds.command(_HMGET, (*suppressed, *chunk))
        cmds.keyed_all(EXISTS, "", [k for _, k, _ in self.lookup])
        if sequences:  # as watched: what a claim's release names (ADR 0040)
            for seq_key in watched:
                cmds.add("GET", seq_key)
        return cmds


@dataclass
class _Reads:
    """What round trips 2 and 3 read: versions by entity (one not in it counts as
    absent), the suppression hash's values by digest, the event ids found processed per
    scope, the marker hashes that exist."""

    versions: dict[Ref, bytes | None]
    suppressed: dict[str, bytes | None] = field(default_factory=dict)
    processed: dict[str, set[str]] = field(default_factory=dict)
    existing: set[str] = field(default_factory=set)
    #: the call's event ids per scope by marker bucket (``_Asked.groups``)
    groups: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    #: each part's first failure, when already known (``LoadSnapshot.verdicts``)
    verdicts: list[CommitResult | None] | None = None
    #: each scope's commit sequence as watched (what a claim's release names: ADR 0040)
    sequences: dict[str, bytes | None] = field(default_factory=dict)

    def groups_of(self, part: Commit, n_parts: int) -> dict[str, list[str]] | None:
        """``part``'s event ids by bucket when the call's are exactly its own (one part, no
        id twice): then the commit does not bucket them again."""
        groups = self.groups.get(part.scope)
        if n_parts != 1 or groups is None:
            return None
        return groups if sum(map(len, groups.values())) == len(part.event_ids) else None


def _check(parts: Sequence[Commit], reads: _Reads) -> list[CommitResult | None]:
    """Each part's first failure (None: it passes), in order; a passed part's writes are what
    the next parts see, as in ``commit.lua`` (parts are meant to be disjoint: this keeps the
    answers equal when they are not)."""
    out: list[CommitResult | None] = []
    versions, suppressed, processed = reads.versions, reads.suppressed, reads.processed
    for part in parts:
        failed = first_failure(part, versions, suppressed, processed[part.scope])
        out.append(failed)
        if failed is None and len(parts) > 1:
            for w in (*part.writes, *part.blind_writes):
                versions[w.ref] = str(w.version).encode() if w.fields else None
            suppressed.update(part.suppress)
            processed[part.scope].update(part.event_ids)
    return out


def _rewritten(part: Commit) -> dict[Ref, Entity]:
    """The entities ``part`` writes, as Redis holds them after it (an empty write deletes)."""
    return {
        w.ref: Entity(w.version, w.fields) if w.fields else ABSENT
        for w in (*part.writes, *part.blind_writes)
    }


def _groups(
    parts: Sequence[Commit],
    clocks: dict[str, MarkerClock],
    grouped: Callable[[tuple[str, ...]], dict[str, list[str]]] = marker_groups,
) -> dict[str, dict[str, list[str]]]:
    """The call's event ids per scope by marker bucket, each once (``grouped``: how
    ``marker_groups`` of ids without repeats is had)."""
    if len(clocks) == 1:  # a lane's call: one scope, no id filtered out
        ids = tuple(chain.from_iterable(p.event_ids for p in parts))
        once = dict.fromkeys(ids)
        return {
            scope: grouped(ids) if len(once) == len(ids) else marker_groups(once)
            for scope in clocks
        }
    return {
        scope: marker_groups(
            dict.fromkeys(e for p in parts if p.scope == scope for e in p.event_ids)
        )
        for scope in clocks
    }


@dataclass(frozen=True, slots=True)
class _Guard:
    """What a call checks beside its parts when the store checks the generation, as
    ``commit.lua`` does: Redis holds ``generation``, and each of the call's ``lanes`` has no
    rebuild lease (``P:v1:rebuild-lease:{lane}``) or one holding ``token`` (the rebuild's own
    store's)."""

    generation: str
    token: str
    lanes: tuple[str, ...]

    def keys(self, keys: Keys) -> list[str]:
        """The keys watched and read (``GET``), in this order."""
        return [keys.generation, *(keys.rebuild_lease(lane) for lane in self.lanes)]

    def check(self, keys: Keys, found: Iterator[Any]) -> None:
        """Raise unless the replies of :meth:`keys`' ``GET``s (taken from ``found``) pass."""
        _check_generation(keys, self.generation, next(found))
        token = self.token.encode()
        for lane in self.lanes:
            holder = next(found)
            if holder is not None and holder != token:
                raise rebuild_running(keys.root.removesuffix(":v1"), lane)


def _check_generation(keys: Keys, generation: str, found: bytes | None) -> None:
    """``StateLostError`` unless Redis holds ``generation``."""
    if found != generation.encode():
        raise StateLostError(
            f"Redis prefix {keys.root.removesuffix(':v1')!r} no longer holds generation "
            f"{generation} (restarted without its data, flushed or replaced); nothing of "
            f"this batch was written"
        )


def _chunks(items: list[str]) -> list[list[str]]:
    return [items[j : j + CHUNK] for j in range(0, len(items), CHUNK)]
