"""Two commits without Lua over one raw connection, for ``bench.redis_floor`` (issue 17.2,
ADR 0021). Measurement code: the production commit without Lua is ``streams.watch_commit``
(``RedisStore(..., commit="watch")``), built on the same pure half
(``streams.commit_commands``).

* :class:`Conn`: one socket, commands packed with ``streams.resp.RespPacker`` (one join and one
  ``sendall`` per round trip), replies parsed by ``hiredis.Reader``: what a lean worker would
  send with, instead of redis-py's pipeline (~50 Python calls per command);
* :class:`Floor` (variant b): a call's writes as plain commands in one ``MULTI``/``EXEC``, no
  checks at all: the floor of any design that keeps this write set;
* :class:`Cas` (variants c and cs): ``WATCH``, one pipelined read of what ``commit.lua``
  checks, the checks in Python, ``MULTI`` + the passed parts' writes + ``EXEC``;
* :func:`state_digest`: every key's contents under a prefix, to show that a variant leaves
  what ``commit.lua`` leaves.
"""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import hiredis
import redis

from resolvers.pipeline import CommitConflictError
from resolvers.store import DEFAULT_SCOPE, Commit, CommitResult, CommitStatus, Ref
from streams.commit_commands import (
    CHUNK,
    MarkerClock,
    MarkerWriter,
    first_failure,
    outbox_command,
    part_commands,
)
from streams.errors import StateLostError
from streams.redis_keys import Keys, marker_groups
from streams.resp import Resp, RespPacker

Command = tuple[bytes | str | int, ...]


class Conn:
    """One socket to Redis: commands packed with one join, one ``sendall`` per round trip,
    replies parsed by hiredis (errors come back as ``hiredis.ReplyError`` values)."""

    def __init__(self, host: str, port: int, db: int = 0) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = hiredis.Reader()
        self.packer = RespPacker()
        if db:
            checked(self.call([("SELECT", db)]))

    @classmethod
    def like(cls, client: redis.Redis) -> Conn:
        """A connection to the server and database ``client`` uses (no TLS, no AUTH)."""
        kwargs = client.connection_pool.connection_kwargs
        return cls(kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379), kwargs.get("db", 0))

    def call(self, commands: Sequence[Command]) -> list[Any]:
        pack = self.packer.pack
        self.sock.sendall(b"".join(b"".join(pack(*c)) for c in commands))
        return self._replies(len(commands))

    def send(self, resp: Resp) -> list[Any]:
        """``resp``'s commands, already in RESP, and their replies."""
        self.sock.sendall(b"".join(resp.packed()))
        return self._replies(resp.count)

    def _replies(self, n: int) -> list[Any]:
        out: list[Any] = []
        while len(out) < n:
            reply = self.reader.gets()
            if reply is False:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    raise ConnectionError("Redis closed the connection")
                self.reader.feed(chunk)
            else:
                out.append(reply)
        return out

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def checked(replies: list[Any]) -> list[Any]:
    """``replies``, unless one of them (or of an ``EXEC``'s) is an error."""
    for r in replies:
        inner = r if isinstance(r, list) else [r]
        for x in inner:
            if isinstance(x, hiredis.ReplyError):
                raise RuntimeError(f"Redis error: {x}")
    return replies


def state_digest(client: redis.Redis, prefix: str, skip: Sequence[str] = ()) -> tuple[str, int]:
    """SHA-256 (16 hex digits) of every key under ``prefix:`` but ``skip``: its name without
    the prefix, type, contents (hash fields and set members sorted, stream entries in order
    without their ids) and expiry time; and the number of keys."""
    h = hashlib.sha256()
    names = sorted(
        k for k in client.scan_iter(match=f"{prefix}:*", count=1000) if k.decode() not in skip
    )
    for key in names:
        kind = client.type(key)
        if kind == b"hash":
            content: Any = sorted(client.hgetall(key).items())
        elif kind == b"set":
            content = sorted(client.smembers(key))
        elif kind == b"stream":
            content = [fields for _, fields in client.xrange(key) or []]
        else:
            content = client.get(key)
        expiry = client.execute_command("EXPIRETIME", key)  # type: ignore[no-untyped-call]
        h.update(repr((key[len(prefix) :], kind, content, expiry)).encode())
    return h.hexdigest()[:16], len(names)


@dataclass
class Floor:
    """Variant b: the writes alone, one ``MULTI``/``EXEC`` per call. What it knows of Redis's
    state it keeps itself (which marker hashes it created, whether the layout is written):
    the replay starts from :func:`prepare`'s state and is the only writer."""

    conn: Conn
    keys: Keys
    ttl: int
    present: set[str] = field(default_factory=set)
    width: int | None = None

    def commit(self, parts: Sequence[Commit], results: Sequence[CommitResult]) -> None:
        """Write the parts ``results`` says were written."""
        clock = MarkerClock.at(
            self.keys, DEFAULT_SCOPE, self.ttl, now=int(time.time()), width=self.width, since=0
        )
        writers = {DEFAULT_SCOPE: MarkerWriter(clock, present=self.present)}
        cmds = Resp()
        cmds.add("MULTI")
        written = [p for p, r in zip(parts, results, strict=True) if r.ok]
        for part in written:
            part_commands(part, self.keys, writers, cmds)
        outbox_command(self.keys, written, cmds)
        cmds.add("INCR", self.keys.commit_seq(DEFAULT_SCOPE))  # as commit.lua does
        cmds.add("EXEC")
        if written:
            checked(self.conn.send(cmds))
        self.width = clock.width


@dataclass
class Cas:
    """Variant c: ``WATCH``, read, check in Python, ``MULTI`` + writes + ``EXEC``; an aborted
    ``EXEC`` (a watched key moved) repeats the whole call (reads and checks, not the batch's
    computation), up to ``max_attempts`` times. ``per_key`` False (variant cs): instead of
    every checked key, ``WATCH`` only the lane's commit sequence key, which every commit
    ``INCR``s in its transaction (any commit between this one's ``WATCH`` and ``EXEC`` aborts
    it; per-key watching reaches that in practice anyway, every commit writing the current
    generation's marker hashes)."""

    conn: Conn
    keys: Keys
    ttl: int
    generation: str | None = None  # as RedisStore.generation: checked when set
    per_key: bool = True
    #: attempts of one call before it gives up with ``CommitConflictError`` (retryable: the
    #: worker's caller runs the batch again); None: until one is not aborted
    max_attempts: int | None = None
    aborts: int = 0  # EXECs aborted (a watched key moved)
    round_trips: int = 0
    calls: int = 0  # commit calls
    calls_retried: int = 0  # calls that needed more than one attempt
    gave_up: int = 0  # calls that ended with CommitConflictError
    most_attempts: int = 0  # of one call

    @property
    def sequence(self) -> str:
        return self.keys.commit_seq(DEFAULT_SCOPE)

    def commit(self, parts: Sequence[Commit]) -> list[CommitResult]:
        self.calls += 1
        attempt = 1
        while (results := self._attempt(parts)) is None:
            self.aborts += 1
            if self.max_attempts is not None and attempt >= self.max_attempts:
                self._counted(attempt)
                self.gave_up += 1
                raise CommitConflictError(f"EXEC aborted {attempt} times in a row")
            attempt += 1
        self._counted(attempt)
        return results

    def _counted(self, attempts: int) -> None:
        self.calls_retried += attempts > 1
        self.most_attempts = max(self.most_attempts, attempts)

    def _call(self, cmds: Sequence[Command]) -> list[Any]:
        self.round_trips += 1
        return checked(self.conn.call(cmds))

    def _attempt(self, parts: Sequence[Commit]) -> list[CommitResult] | None:
        """One try: the results, or None if ``EXEC`` was aborted (a watched key moved)."""
        assert all(p.scope == DEFAULT_SCOPE for p in parts)
        clock = self._clock()
        reads = self._read(parts, clock)
        results = [
            first_failure(p, reads.versions, reads.suppressed, reads.processed)
            or CommitResult(CommitStatus.OK)
            for p in parts
        ]
        written = [p for p, r in zip(parts, results, strict=True) if r.ok]
        if not written:
            self._call([("UNWATCH",)])
            return results
        writers = {DEFAULT_SCOPE: MarkerWriter(clock, present=reads.existing)}
        writes = Resp()
        writes.add("MULTI")
        for part in written:
            part_commands(part, self.keys, writers, writes)
        outbox_command(self.keys, written, writes)
        writes.add("INCR", self.sequence)  # as commit.lua does (per-key: not watched)
        writes.add("EXEC")
        self.round_trips += 1
        exec_reply = checked(self.conn.send(writes))[-1]
        return None if exec_reply is None else results

    def _clock(self) -> MarkerClock:
        """Redis ``TIME`` and the marker layout (round trip 1: nothing checked in it)."""
        layout_key = self.keys.markers_layout(DEFAULT_SCOPE)
        now, layout = self._call([("TIME",), ("HMGET", layout_key, "width", "since")])
        width, since = (None if x is None else int(x) for x in layout)
        return MarkerClock.at(
            self.keys, DEFAULT_SCOPE, self.ttl, now=int(now[0]), width=width, since=since
        )

    def _read(self, parts: Sequence[Commit], clock: MarkerClock) -> _Reads:
        """``WATCH`` and everything the checks need (round trip 2; 3 for the markers found
        and, rarely, the versions of expected-absent keys that exist)."""
        keys = self.keys
        present: list[str] = []
        absent: list[str] = []
        refs: dict[str, Ref] = {}  # the checks read versions by entity
        for part in parts:
            for ref, v in part.expect.items():
                key = keys.entity(ref)
                refs[key] = ref
                (present if v else absent).append(key)
        digests = [d for p in parts for d in p.unsuppressed]
        groups = marker_groups(e for p in parts for e in p.event_ids)
        lookup = [(k, b) for b in groups for k in clock.lookup_keys(b)]
        watch = [self.sequence]
        if self.per_key:
            watch = [keys.generation, clock.layout_key, *present, *absent, *(k for k, _ in lookup)]
            watch += [keys.suppressed] if digests else []
        absent_chunks = _chunks(absent)
        digest_chunks = _chunks(digests)
        cmds: list[Command] = [("WATCH", *watch), ("GET", keys.generation)]
        cmds += [("HGET", k, "v") for k in present]
        cmds += [("EXISTS", *chunk) for chunk in absent_chunks]
        cmds += [("HMGET", keys.suppressed, *chunk) for chunk in digest_chunks]
        cmds += [("EXISTS", k) for k, _ in lookup]
        replies = iter(self._call(cmds)[1:])
        found_generation = next(replies)
        if self.generation is not None and found_generation != self.generation.encode():
            self._call([("UNWATCH",)])
            raise StateLostError("the generation marker moved: nothing was written")
        reads = _Reads(versions={refs[k]: next(replies) for k in present})
        absent_found = sum(next(replies) for _ in absent_chunks)
        for chunk in digest_chunks:
            reads.suppressed.update(zip(chunk, next(replies), strict=True))
        existing = [(k, b) for k, b in lookup if next(replies)]
        reads.existing = {k for k, _ in existing}
        second: list[Command] = []
        if absent_found:  # an expected-absent key exists: its version decides, as in Lua
            second += [("HGET", k, "v") for k in absent]
        batches = [(key, chunk) for key, b in existing for chunk in _chunks(groups[b])]
        second += [("HMGET", key, *chunk) for key, chunk in batches]
        if second:
            got = iter(self._call(second))
            if absent_found:
                reads.versions.update((refs[k], next(got)) for k in absent)
            for _, chunk in batches:
                reads.processed.update(e for e, hit in zip(chunk, next(got), strict=True) if hit)
        return reads


@dataclass
class _Reads:
    """What a compare-and-set read: versions by entity (one not in it counts as absent), the
    suppression hash's values by digest, the event ids found processed, the marker hashes
    that exist."""

    versions: dict[Ref, bytes | None]
    suppressed: dict[str, bytes | None] = field(default_factory=dict)
    processed: set[str] = field(default_factory=set)
    existing: set[str] = field(default_factory=set)


def _chunks(items: list[str]) -> list[list[str]]:
    return [items[j : j + CHUNK] for j in range(0, len(items), CHUNK)]
