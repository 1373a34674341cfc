"""A lane's claims in Redis (``resolvers.claims``, ADR 0040).

``P:v1:claims:{segment}`` is a hash: one field per worker of the lane (its owner name:
``<host>-<pid>:<lane>``, the runtime's process name and the lane), whose value is that
worker's :class:`~resolvers.claims.Entry`. A claim is two round trips on one connection:
:meth:`RedisClaims.look`, ``WATCH`` of the hash, ``TIME``, ``HGETALL`` and ``GET`` of the
lane's commit sequence; then :meth:`RedisClaims.hold`, ``MULTI``, ``HSET`` of this worker's
entry, ``EXEC`` (aborted if another worker claimed or committed in between: the batch looks
again, up to ``resolvers.claims.ATTEMPTS`` times, then goes on without a claim). The claim is
released by the ``HSET`` that rides in the commit's own transaction (``WatchCommit.rider``),
so another worker never sees a commit without its release; a batch that commits nothing
releases it with one more round trip.

The hash holds 64-bit hashes of refs, never an identifier's value. It has no expiry: an entry
older than ``resolvers.claims.TTL_MS`` (by the Redis clock), or stamped more than
``resolvers.claims.AHEAD_MS`` after it (a clock that moved back), is ignored, and a worker that
stops deletes its own field. A worker that dies cannot: the next hold of any worker deletes,
in its ``MULTI`` and under the look's ``WATCH``, the fields whose entry the look found older
than the time to live (nothing reads them any more). Until 2026-12-04 nothing did, and the
hash grew with every crash (a field per ``host-pid``), each look reading it whole.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from resolvers.claims import TTL_MS, Entry, backoff_s, held
from streams.redis_keys import Keys
from streams.redis_store import RedisStore
from streams.replies import Borrowed, round_trip
from streams.resp import Resp

log = logging.getLogger(__name__)


class RedisClaims:
    """:class:`resolvers.claims.Claims` of ``owner`` on ``store``'s Redis, for ``scope``.
    It rides in the store's commit transaction (the store must commit with ``watch``)."""

    def __init__(
        self,
        store: RedisStore,
        scope: str,
        owner: str,
        *,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        if store.watch is None:
            raise ValueError("claims need LOOM_REDIS_COMMIT=watch (the release rides in it)")
        self.store, self.client, self.owner = store, store.client, owner
        keys: Keys = store.keys
        self.scope = scope
        self.key, self.seq_key = keys.claims(scope), keys.commit_seq(scope)
        self.sleep = sleep
        store.watch.rider = self
        self._entry: Entry | None = None
        self._release: Entry | None = None  # what the next commit writes (committing)
        self._riding: Entry | None = None  # the release in the transaction last built
        self._open = False  # Redis holds an active claim of ours
        self._written: frozenset[int] = frozenset()  # what this batch's commits wrote so far
        self._committed: tuple[int, ...] = ()  # the sequence after each of them
        self._borrowed: Borrowed | None = None  # the connection between look and hold
        self._now_ms = 0  # the Redis clock at the last look
        self._expired: list[bytes] = []  # other workers' fields the last look found expired
        #: figures for tests and benches
        self.round_trips = 0
        self.aborted = 0  # holds whose EXEC another claim or commit aborted

    # --- Claims ------------------------------------------------------------------------------
    def begin(self) -> None:
        self._written, self._committed = frozenset(), ()
        self._release = self._riding = None  # never an earlier batch's

    def look(self) -> frozenset[int] | None:
        self._let_go()
        borrowed = self._borrowed = Borrowed(self.client).__enter__()
        try:
            look = Resp()
            look.add("WATCH", self.key)
            look.add("TIME")
            look.add("HGETALL", self.key)
            look.add("GET", self.seq_key)
            _, now, found, seq = self._call(borrowed.conn, look, watching=False)
        except BaseException:
            self._let_go(failed=True)
            raise
        self._now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
        owner = self.owner.encode()
        others: list[Entry] = []
        expired: list[bytes] = []  # fields of workers whose claims expired: the hold drops them
        for name, value in _pairs(found):
            if name != owner and (e := Entry.decode(value)) is not None:
                others.append(e)
                if self._now_ms - e.at_ms > TTL_MS:
                    expired.append(name)
        self._expired = expired
        return held(others, now_ms=self._now_ms, loaded=self._loaded_at(), current=_int(seq))

    def hold(self, active: frozenset[int]) -> bool:
        borrowed = self._borrowed
        if borrowed is None:
            raise RuntimeError("RedisClaims.hold without look")
        last = self._entry
        previous, commits = (last.previous, last.commits) if last is not None else (frozenset(), ())
        entry = Entry(self._now_ms, active, previous, commits)
        write = Resp()
        write.add("MULTI")
        write.add("HSET", self.key, self.owner, entry.encode())
        if self._expired:  # under the look's WATCH: a field rewritten since is not dropped
            write.add("HDEL", self.key, *self._expired)
        write.add("EXEC")
        try:
            done = self._call(borrowed.conn, write)[-1] is not None
        except BaseException:
            self._let_go(failed=True)
            raise
        borrowed.clean = True  # EXEC (run or aborted) leaves no WATCH/MULTI state
        self._let_go()
        if done:
            self._entry, self._open = entry, True
        else:
            self.aborted += 1
        return done

    def committing(self, written: frozenset[int]) -> None:
        self._written |= written
        if self._entry is not None:  # the commit's own sequence is named when it is built
            self._release = self._entry.released(self._written, self._committed)

    def end(self) -> None:
        self._release = None
        self._let_go()
        if not self._open or self._entry is None:
            return
        entry = self._entry.released(self._entry.previous, self._entry.commits)
        with Borrowed(self.client) as borrowed:
            write = Resp()
            write.add("HSET", self.key, self.owner, entry.encode())
            self._call(borrowed.conn, write, watching=False)
        self._entry, self._open = entry, False

    def wait(self, rounds: int) -> None:
        self.sleep(backoff_s(rounds))

    # --- the rider of the commit's transaction ----------------------------------------------
    def commands(
        self, sequences: Mapping[str, bytes | None]
    ) -> Sequence[tuple[bytes | str | int, ...]]:
        """The release, naming this commit by the sequence it makes (the watched one + 1; not
        known if the commit did not read it: no commit named, as a worker before ADR 0040's
        amendment)."""
        release = self._release
        if release is None:
            return ()
        if self.scope in sequences and release.commits is not None:
            commits = (*release.commits, _int(sequences[self.scope]) + 1)
            release = Entry(release.at_ms, release.active, release.previous, commits)
        else:
            release = Entry(release.at_ms, release.active, release.previous, None)
        self._riding = release
        return (("HSET", self.key, self.owner, release.encode()),)

    def done(self) -> None:
        if self._release is not None and self._riding is not None:
            self._entry, self._open = self._riding, False
            self._committed = self._riding.commits or ()
            self._release = self._riding = None

    def _let_go(self, *, failed: bool = False) -> None:
        """Give the claim's connection back (dropped if a round trip on it failed, or if a
        ``WATCH`` may still be open on it)."""
        borrowed, self._borrowed = self._borrowed, None
        if borrowed is not None:
            borrowed.__exit__(RuntimeError if failed or not borrowed.clean else None)

    # --- the rest ------------------------------------------------------------------------------
    def close(self) -> None:
        """This worker stops: its entry goes (others stop waiting for it at once)."""
        try:
            self.client.hdel(self.key, self.owner)
        except Exception as exc:  # a stop never fails on it: it goes stale
            log.warning("claims: could not remove %s's entry (%s)", self.owner, type(exc).__name__)

    def _loaded_at(self) -> int | None:
        """The commit sequence the store's last load read (None if unknown: the load was not
        the seqlocked one, so anything may have moved)."""
        waves = self.store.waves
        snapshot = None if waves is None else waves.snapshot
        return None if snapshot is None else _int(snapshot.sequence)

    def _call(self, conn: Any, resp: Resp, *, watching: bool = True) -> list[Any]:
        self.round_trips += 1
        return round_trip(conn, resp.packed(), resp.count, decode=False, check_health=not watching)


def _int(sequence: bytes | None) -> int:
    """A commit sequence as read (None: the key does not exist yet, no commit)."""
    return 0 if sequence is None else int(sequence)


def _pairs(found: Any) -> list[tuple[bytes, bytes]]:
    """``HGETALL``'s reply as (field, value) pairs (RESP2: a flat list; RESP3: a map)."""
    if isinstance(found, dict):
        return list(found.items())
    return list(zip(found[::2], found[1::2], strict=True))
