"""The Redis :class:`~resolvers.store.StateStore`, and Loom's Redis key layout (v1).

Key layout (``P`` = ``LOOM_REDIS_PREFIX``, default ``loom``). Every value Loom writes lives
under ``P:v1:``; a new layout gets a new version segment, so readers can pin one.

=================================  ======  ==================================================
key                                type    contents
=================================  ======  ==================================================
``P:v1:id:{type}:{value}``         hash    ``v`` version, ``p`` profile id, ``h`` JSON list
                                           of the profiles holding atoms that carry it
                                           (up to 256, sorted; a load follows 32),
                                           ``s`` record JSON (co-occurrence, shared)
``P:v1:profile:{id}``              hash    ``v``, ``d`` snapshot JSON (what readers use),
                                           ``s`` internal state (format 2: groups of atoms
                                           and facts), ``i`` JSON list of the identifier keys
                                           its atoms carry; or ``r`` = the id it lives on as
                                           (a redirect: merged, or its earliest events moved)
``P:v1:profile-index``             set     ids of live profiles (for export)
``P:v1:stock:{sku}``               hash    ``v``, ``d`` snapshot JSON, ``s`` internal state
``P:v1:stock-index``               set     every sku with a snapshot
``P:v1:markers:{seg}:{gen}:{b}``   hash    processed markers of a lane (``seg``: ``seen``
                                           profiles, ``seen-inventory``): field = event id
                                           (ADR 0016, ``lua/markers.lua``)
``P:v1:markers-layout:{seg}``      hash    ``width`` of the generations, ``since``
``P:v1:seen:{event_id}``           string  marker layout 1 (``seen-inventory:`` likewise):
                                           no longer written, read during the hand-over
``P:v1:suppressed``                hash    salted SHA-256 of erased identifiers ->
                                           tombstone JSON (does the erasure follow it, which
                                           account ids it must not reach)
``P:v1:changes:profiles``          stream  ``id``, ``op`` per profile change: ``upsert``
                                           (with ``version``), ``merged`` (with ``into``)
                                           or ``erased``
``P:v1:changes:inventory``         stream  ``sku``, ``location``, ``available`` (to sell)
``P:v1:outbox``                    stream  Kafka records waiting for the relay: one entry
                                           per committed batch, field ``records``
                                           (``streams.outbox``)
``P:v1:audience:{name}``           set     ids of the profiles in the audience (activation)
``P:v1:audience-medians``          hash    category -> median repurchase interval in days
                                           across customers (the scheduled pass)
``P:v1:stats``                     hash    counters: events, merges, dlq, ...
``P:v1:generation``                string  random id of this Redis state (streams.generation)
``P:v1:rebuild-lease:{lane}``      string  token of the running ``loom rebuild`` of the lane:
                                           other commits of the lane are refused (TTL)
``P:v1:commit-seq:{seg}``          string  a lane's commit sequence: ``INCR``'d by every commit
                                           that writes a part of the scope (ADR 0021)
``P:v1:claims:{seg}``              hash    a lane's claims: worker -> what it computes, what
                                           it last wrote (hashes; streams.redis_claims)
=================================  ======  ==================================================

Identifier values appear in key names in their canonical form (``id:email:jane@example.com``)
so that any service can look a person up with one ``HGET``; that is personal data at rest
like the snapshots themselves, and erasure deletes those keys.

All of one batch's reads are one Lua call (``lua/load.lua``) and all its writes another
(``lua/commit.lua``), unless the store is told otherwise (:class:`RedisStore`). ``load.lua``
builds key names inside the script (it walks the identity evidence breadth first, which it
cannot know in advance), which standalone Redis allows; ``commit.lua`` takes every key name
from Python, inside its ARGV plan rather than as KEYS.
Redis Cluster is not supported by layout v1.

With ``wait_replicas`` (``LOOM_REDIS_WAIT_REPLICAS``, for a primary with replicas behind
Sentinel) the commit is followed, on the same connection, by ``WAIT n``: the commit returns
only once ``n`` replicas hold it (and, replication being one ordered stream, everything
written before it), so a failover right after the worker committed its Kafka offsets cannot
lose the batch. Fewer acknowledgements raise :class:`NotReplicatedError` (a connection error:
the batch is retried). The retry may find its own unconfirmed writes and skip the events as
done without committing anything; so a load that finds events already processed first
confirms replication itself (a write to ``P:v1:replication-check``, then ``WAIT``): a lane
never skips an event on the strength of state a failover could still take back.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from typing import Any, Final, Literal

import orjson
import redis

from resolvers.store import (
    ABSENT,
    DEFAULT_SCOPE,
    HELD_FIELD,
    HOLDERS_FIELD,
    Commit,
    CommitResult,
    CommitStatus,
    Entity,
    Kind,
    Loaded,
    LoadRequest,
    Ref,
    stock_ref,
)
from resolvers.tuples import new_tuple
from streams import outbox
from streams.errors import StateLostError
from streams.generation import rebuild_running
from streams.redis_keys import MARKER_BUCKETS, STREAM_MAXLEN, Keys, marker_groups, seen_segment
from streams.replies import Meanwhile
from streams.watch_commit import Fallback, WatchCommit
from streams.wave_load import WaveLoad

_STREAM_MAXLEN: Final = str(STREAM_MAXLEN)

#: How long a commit waits for its replicas (``wait_replicas``) before it counts as failed.
WAIT_TIMEOUT_MS: Final = 2_000


class NotReplicatedError(redis.ConnectionError):
    """Fewer replicas than required acknowledged a commit: its durability is in doubt as when
    a connection drops before the reply, so it is retried like one."""


def _unblocked(exc: redis.ResponseError) -> bool:
    """``WAIT`` interrupted because the primary was demoted during a failover."""
    return str(exc).startswith("UNBLOCKED")


def _script(name: str) -> str:
    """A script's source, with the shared processed-marker chunk (``lua/markers.lua``) where
    it says ``--MARKERS--``."""
    lua = resources.files("streams").joinpath("lua")
    text = lua.joinpath(name).read_text(encoding="utf-8")
    return text.replace("--MARKERS--", lua.joinpath("markers.lua").read_text(encoding="utf-8"))


def processed_ids(client: redis.Redis, prefix: str, scope: str = DEFAULT_SCOPE) -> set[str]:
    """Every event id ``scope`` has marked processed under ``prefix`` (both marker layouts;
    a scan of the keyspace: for tests, benches and tools, not the lanes)."""
    keys = Keys(prefix)
    segment = seen_segment(scope)
    out: set[str] = set()
    for key in client.scan_iter(match=f"{keys.root}:markers:{segment}:*", count=1000):
        out.update(f.decode() for f in client.hkeys(key))  # type: ignore[union-attr]
    legacy = f"{keys.root}:{segment}:"
    for key in client.scan_iter(match=f"{legacy}*", count=1000):
        out.add(key.decode()[len(legacy) :])
    return out


def _columns(flat: Sequence[Any], width: int) -> Iterator[tuple[Any, ...]]:
    """A flat script reply as rows of ``width`` values (missing fields are false in Lua,
    nil in the reply: never cut off), through ``width`` strided slices: no slice per row."""
    return zip(*(flat[j::width] for j in range(width)), strict=True)


class RedisStore:
    """:class:`~resolvers.store.StateStore` on one Redis primary: per load one Lua call
    (``load="script"``, ``lua/load.lua``) or ``load.lua``'s walk as pipelined
    reads with a seqlock on the lane's commit sequence (``load="waves"``,
    ``streams.wave_load``, ADR 0022: no Lua, ~0.32 of the script's Redis instructions, ~4.6
    round trips per batch; during a marker hand-over it loads with the script), and per
    commit either one Lua call (``commit="script"``, ``lua/commit.lua``) or
    the optimistic transaction on the lane's commit sequence (``commit="watch"``,
    ``streams.watch_commit``, ADR 0021: no Lua, ~0.64 of the script's Redis instructions, a
    few round trips). Both give the same results, errors and keys, and ``INCR`` the same
    sequences, so writers of one lane may use either side by side. A watch commit of a scope
    whose layout-1 hand-over is not over (ADR 0016) goes through ``commit.lua``. This class
    defaults to the scripts (for the tools that build a store themselves and commit rarely);
    the worker's settings default to ``watch`` and ``waves`` (``LOOM_REDIS_COMMIT``,
    ``LOOM_REDIS_LOAD``; ADR 0023)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "loom",
        seen_ttl_s: int = 7 * 24 * 3600,
        wait_replicas: int = 0,
        on_call: Callable[[str, float], None] | None = None,
        commit: Literal["script", "watch"] = "script",
        load: Literal["script", "waves"] = "script",
    ) -> None:
        """``on_call(op, seconds)`` is told how long each load and commit call took;
        ``commit``: see the class docstring; ``load``: ``script`` (``lua/load.lua``, one
        atomic call) or ``waves`` (:mod:`streams.wave_load`: no Lua, a round trip per step
        of the walk; ADR 0022)."""
        self.client = client
        self.wait_replicas = wait_replicas
        self.on_call = on_call
        self.keys = Keys(prefix)
        self.prefix = prefix
        self.seen_ttl_s = seen_ttl_s
        #: when set, every commit checks that Redis still holds this generation marker
        #: (streams.generation) in the same atomic call, and raises StateLostError if not
        self.generation: str | None = None
        #: with the generation, the lease of each lane committed to (``P:v1:rebuild-lease:``)
        #: must be absent or hold this token: a ``loom rebuild``'s own store holds its token,
        #: a worker's none (its commits are refused while a rebuild of its lane runs)
        self.rebuild_token = ""
        self._hand_over_settled: set[str] = set()
        #: the last event ids grouped by marker bucket, and their groups: a batch's commit
        #: marks the ids its load looked up, grouped once (not to be mutated)
        self._grouped: tuple[tuple[str, ...], dict[str, list[str]]] = ((), {})
        self._load = client.register_script(_script("load.lua"))
        self.waves = WaveLoad(client, self.keys, seen_ttl_s) if load == "waves" else None
        self._commit = client.register_script(_script("commit.lua"))
        #: the commit without Lua, when chosen
        self.watch = (
            WatchCommit(client, self.keys, seen_ttl_s, grouped=self._marker_groups)
            if commit == "watch"
            else None
        )

    def work_meanwhile(self, meanwhile: Meanwhile | None) -> None:
        """``meanwhile`` runs while each wave of a load and the watch commit's first and last
        round trips are answered (:data:`~streams.replies.Meanwhile`; ADR 0038); the Lua calls
        run none. None: nothing runs."""
        if self.waves is not None:
            self.waves.meanwhile = meanwhile
        if self.watch is not None:
            self.watch.meanwhile = meanwhile

    def _timed(self, op: str, started: float) -> None:
        if self.on_call is not None:
            self.on_call(op, time.perf_counter() - started)

    def _settle_hand_over(self, scope: str) -> None:
        """Once per scope: if no layout-2 marker was ever written and no layout-1 marker exists
        (a scan, stopped at the first found), there is nothing to hand over: mark the hand-over
        done (``since`` 0), so the scripts never look the layout-1 keys up (ADR 0016)."""
        if scope in self._hand_over_settled:
            return
        layout = self.keys.markers_layout(scope)
        if self.client.hget(layout, "since") is None:
            legacy = f"{self.keys.root}:{seen_segment(scope)}:*"
            if next(iter(self.client.scan_iter(match=legacy, count=1000)), None) is None:
                self.client.hsetnx(layout, "since", 0)
        self._hand_over_settled.add(scope)

    def _marker_groups(self, event_ids: Sequence[str]) -> dict[str, list[str]]:
        """:func:`marker_groups` of ``event_ids``, the last result reused when they are the
        same ids in the same order (a one-part commit after its load)."""
        ids = event_ids if type(event_ids) is tuple else tuple(event_ids)  # kept: immutable
        last, groups = self._grouped
        if ids != last:
            groups = marker_groups(ids)
            self._grouped = (ids, groups)
        return groups

    def load(self, request: LoadRequest) -> Loaded:
        self._settle_hand_over(request.scope)
        groups = self._marker_groups(request.event_ids)
        loaded = None
        if self.waves is not None:  # None during the marker hand-over: load.lua
            started = time.perf_counter()
            loaded = self.waves.load(request, groups)
            self._timed("load", started)
        if loaded is None:
            loaded = self._load_script(request, groups)
        if loaded.seen and self.wait_replicas:
            self._confirm_replicated()  # the batch will skip these: they must be durable
        return loaded

    def _load_script(self, request: LoadRequest, groups: dict[str, list[str]]) -> Loaded:
        event_ids = [e for ids in groups.values() for e in ids]  # grouped by bucket
        args: list[str | int] = [
            self.prefix,
            seen_segment(request.scope),
            request.max_profiles,
            len(request.identifiers),
            len(request.profiles),
            len(request.versions),
            len(request.stocks),
            len(event_ids),
            len(request.suppression_hashes),
            self.seen_ttl_s,
            len(groups),
            *request.identifiers,
            *request.profiles,
            *request.versions,
            *request.stocks,
            *event_ids,
            *request.suppression_hashes,
        ]
        for bucket, ids in groups.items():
            args += [bucket, len(ids)]
        started = time.perf_counter()
        ids, profiles, stocks, seen, suppressed, truncated = self._load(keys=[], args=args)
        self._timed("load", started)
        entities: dict[Ref, Entity] = {}
        # ids as key, v, p, h, s and profiles as pid, v, s, r, i: a found entity's fields are
        # those present, in that order; without field v the entity is absent
        kinds = (
            (Kind.IDENTIFIER, ids, ("p", HOLDERS_FIELD, "s")),
            (Kind.PROFILE, profiles, ("s", "r", HELD_FIELD)),
        )
        new = new_tuple
        for kind, rows, (a_name, b_name, c_name) in kinds:
            for name, v, a, b, c in _columns(rows, 5):
                ref = new(Ref, (kind, name.decode()))  # Ref(kind, name) in one C call
                if not v:
                    entities[ref] = ABSENT
                    continue
                fields: dict[str, bytes] = {}
                if a is not None:
                    fields[a_name] = a
                if b is not None:
                    fields[b_name] = b
                if c is not None:
                    fields[c_name] = c
                entities[ref] = Entity(int(v), fields)
        for sku, (v, s) in zip(request.stocks, _columns(stocks, 2), strict=True):
            entities[stock_ref(sku)] = (
                Entity(int(v), {} if s is None else {"s": s}) if v else ABSENT
            )
        return Loaded(
            entities=entities,
            seen=frozenset(e for e, hit in zip(event_ids, seen, strict=True) if hit),
            suppressed={
                h: tomb
                for h, tomb in zip(request.suppression_hashes, suppressed, strict=True)
                if tomb is not None
            },
            truncated=bool(truncated),
        )

    def commit(self, commit: Commit) -> CommitResult:
        return self.commit_parts([commit])[0]

    def commit_parts(self, parts: Sequence[Commit]) -> list[CommitResult]:
        for scope in {part.scope for part in parts if part.event_ids}:
            self._settle_hand_over(scope)
        if self.watch is not None:
            started = time.perf_counter()
            committed = self._watch_commit(self.watch, parts)
            if not isinstance(committed, Fallback):
                self._timed("commit", started)
                return committed
        # the values the plans refer to by index (ARGV[1] is the plan): str ones go out UTF-8
        # encoded by the client
        values: list[bytes | str] = []
        plan = {
            "r": self.prefix,
            "b": MARKER_BUCKETS,
            "g": self._guard(parts),
            "p": [self._part_plan(part, values) for part in parts],
            # the committed parts' outbox records go into one entry (streams.outbox), never
            # trimmed: the relay deletes it once Kafka acknowledged all of them
            "o": [self.keys.outbox, outbox.FIELD],
        }
        started = time.perf_counter()
        reply = self._call_commit([orjson.dumps(plan), *values])
        self._timed("commit", started)
        if reply[0] == 0 and reply[1] == b"rebuilding":  # {0, 'rebuilding', lease}: the same
            lease = reply[2].decode()
            raise rebuild_running(self.prefix, lease.rpartition(":rebuild-lease:")[2])
        if reply[0] == 0:  # {0, 'generation', key}: nothing of any part was written
            raise StateLostError(
                f"Redis prefix {self.prefix!r} no longer holds generation {self.generation} "
                f"(restarted without its data, flushed or replaced); nothing of this batch was "
                f"written"
            )
        return [self._result(part, r) for part, r in zip(parts, reply[1], strict=True)]

    def _guard(self, parts: Sequence[Commit]) -> list[str]:
        """The plan's ``g``: the generation, this store's token and the leases of the lanes
        ``parts`` commit to (``commit.lua``); nothing without a generation."""
        if not self.generation:
            return []
        lanes = dict.fromkeys(part.scope for part in parts)
        leases = [self.keys.rebuild_lease(lane) for lane in lanes]
        return [self.keys.generation, self.generation, self.rebuild_token, *leases]

    def _result(self, commit: Commit, reply: list[Any]) -> CommitResult:
        if reply[0] == 1:
            return CommitResult(CommitStatus.OK)
        status = CommitStatus(reply[1].decode())
        # Report what failed as the contract says (ref or event id), not as a Redis key.
        key = reply[2].decode(errors="replace")
        if status is CommitStatus.DUPLICATE:  # the script names every processed event id
            processed = {r.decode(errors="replace") for r in reply[2:]}
            return CommitResult(status, next(e for e in commit.event_ids if e in processed))
        names = {self.keys.entity(ref): str(ref) for ref in commit.expect}
        return CommitResult(status, names.get(key, key))

    def _part_plan(self, commit: Commit, values: list[bytes | str]) -> dict[str, Any]:
        """One part's plan for ``commit.lua`` (the values it refers to appended to ``values``,
        ARGV[k + 1] for ``values[k - 1]``): flat lists, numbers Redis stores as strings (see
        the script's header). The hot path of every commit: key names from per-kind roots,
        each value's index taken from ``len(values)`` after its append."""
        add = values.append
        kinds = self.keys.kinds
        expected = commit.expect
        writes: list[Any] = []
        index_ops: list[Any] = []
        all_writes = [*commit.writes, *commit.blind_writes]
        refs = [w.ref for w in all_writes]
        written = Counter(refs) if len(set(refs)) < len(refs) else None  # a ref written twice
        n_checked = len(commit.writes)
        index = {Kind.PROFILE: self.keys.profile_index, Kind.STOCK: self.keys.stock_index}
        for n, w in enumerate(all_writes):
            ref, fields = w.ref, w.fields
            kind, name = ref
            # checked absent by the same call (expected version 0) and written once: no DEL
            absent = (
                n < n_checked and expected.get(ref) == 0 and (written is None or written[ref] == 1)
            )
            writes += [kinds[kind] + name, str(w.version), 1 if absent else 0, len(fields)]
            for field, value in fields.items():
                add(value)
                writes += [field, len(values) + 1]
            set_key = index.get(kind)
            if set_key is not None:  # members go in the plan: short, and one argument less each
                index_ops += [set_key, 1 if "d" in fields else 0, name]
        for change in commit.memberships:
            audience = self.keys.audience(change.audience)
            index_ops += [audience, int(change.member), change.profile_id]
        expect: list[str] = []
        for (kind, name), v in expected.items():
            expect += [kinds[kind] + name, str(v)]
        streams: list[Any] = []
        stream_keys = self.keys.streams
        for e in commit.streams:
            streams += [stream_keys[e.stream], _STREAM_MAXLEN, len(e.fields)]
            for name, value in e.fields.items():
                # short values (id, op, version): their text in the plan, unless not UTF-8;
                # an argument costs Redis more (parsed, made an object, then a Lua string:
                # ~0.3 µs each, issue 17.2)
                try:
                    streams += [name, value.decode()]
                except UnicodeDecodeError:
                    add(value)
                    streams += [name, len(values) + 1]
        counters: list[str] = []
        for name, n in commit.counters.items():
            counters += [self.keys.stats, name, str(n)]
        suppress: list[int] = []
        for h, tomb in commit.suppress.items():
            add(h)
            add(tomb)
            suppress += [len(values), len(values) + 1]
        unsuppressed: list[int] = []
        for h in commit.unsuppressed:
            add(h)
            unsuppressed.append(len(values) + 1)
        packed = 0
        if commit.outbox:
            add(outbox.pack(commit.outbox))
            packed = len(values) + 1
        return {
            "e": expect,
            "m": seen_segment(commit.scope),
            "s": [x for group in self._marker_groups(commit.event_ids).items() for x in group],
            "t": self.seen_ttl_s,
            "w": writes,
            "ix": index_ops,
            "sa": [self.keys.suppressed, suppress],
            "u": unsuppressed,
            "x": streams,
            "o": packed,  # the argi of its packed records
            "c": counters,
        }

    def _watch_commit(
        self, watch: WatchCommit, parts: Sequence[Commit]
    ) -> list[CommitResult] | Fallback:
        try:
            outcome = watch.commit(
                parts,
                generation=self.generation,
                rebuild_token=self.rebuild_token,
                wait_replicas=self.wait_replicas,
                wait_timeout_ms=WAIT_TIMEOUT_MS,
                snapshot=None if self.waves is None else self.waves.snapshot,
            )
        except redis.ResponseError as exc:
            if _unblocked(exc):
                raise NotReplicatedError(f"commit: {exc}") from None
            raise
        if isinstance(outcome, Fallback):
            return outcome
        if outcome.acknowledged is not None:
            self._acknowledged(outcome.acknowledged, "commit")
        return outcome.results

    def _call_commit(self, args: list[bytes | str]) -> Any:
        if not self.wait_replicas:
            return self._commit(keys=[], args=args)
        pipe = self.client.pipeline(transaction=False)  # one connection: WAIT covers the commit
        self._commit(keys=[], args=args, client=pipe)
        return self._replicated(pipe, "commit")

    def _confirm_replicated(self) -> None:
        """A write, then ``WAIT``: every earlier write of anyone is on the replicas."""
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.keys.replication_check, str(time.time()))
        self._replicated(pipe, "replication check")

    def _replicated(self, pipe: Any, what: str) -> Any:
        """Execute ``pipe`` with a ``WAIT`` appended; its first reply if enough replicas have
        it, else :class:`NotReplicatedError`."""
        pipe.wait(self.wait_replicas, WAIT_TIMEOUT_MS)
        try:
            first, acknowledged = pipe.execute()
        except redis.ResponseError as exc:
            if _unblocked(exc):
                raise NotReplicatedError(f"{what}: {exc}") from None
            raise
        self._acknowledged(acknowledged, what)
        return first

    def _acknowledged(self, acknowledged: int, what: str) -> None:
        """:class:`NotReplicatedError` if fewer than ``wait_replicas`` acknowledged."""
        if acknowledged < self.wait_replicas:
            raise NotReplicatedError(
                f"{what} acknowledged by {acknowledged} of {self.wait_replicas} replicas "
                f"within {WAIT_TIMEOUT_MS} ms"
            )
