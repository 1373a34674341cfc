"""The scheduled audience pass: time moves people into and out of audiences without events.

``days_since_last_purchase.running between 150 and 200`` becomes true 150 days after the
purchase whether or not the person does anything. The pass walks every live profile
(``SSCAN`` of the profile index, ``batch`` at a time) and evaluates the audiences at the
injected clock on its stored snapshot: the lane writes a profile's snapshot and state
together, and a snapshot is a function of the state alone (no clock), so the stored snapshot
is what rendering the state again would give. Only the profiles whose membership moved (and
any without a readable snapshot) are read in full and re-rendered from their state with the
lane's own code (``ProfilesBatch.refresh``), and committed exactly as the lane does: one atomic
commit per batch that expects each written profile's version (compare-and-set), writes the
snapshot and state, moves the member sets and puts the ``enter``/``exit`` records in the
outbox. A commit that conflicts with the lane (it wrote one of the profiles meanwhile) is read
again and recomputed.

It also maintains the category medians: per category, the median of the customers' own
repurchase intervals, written at the end of the pass to ``P:v1:audience-medians`` (the lane
and the next pass use them where a person has no interval of their own).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
import redis

from resolvers import commit_codec
from resolvers.context import Context
from resolvers.effects import AudiencesChanged, ProfileWritten
from resolvers.lanes.profiles import ProfilesBatch
from resolvers.lanes.stored_profile import StateFormatError, StoredProfile, decode
from resolvers.store import Ref, profile_ref
from streams.redis_keys import Keys
from streams.redis_store import RedisStore

log = logging.getLogger(__name__)

#: Profiles read, evaluated and committed together.
DEFAULT_BATCH: Final = 200
MAX_ATTEMPTS: Final = 5


class RefreshConflictError(RuntimeError):
    """The pass cannot go on (its lock was lost: ``audience_schedule.PassLockLostError``)."""


@dataclass
class RefreshReport:
    profiles: int = 0
    moved: int = 0  # profiles whose membership changed (written)
    entered: Counter[str] = field(default_factory=Counter)
    exited: Counter[str] = field(default_factory=Counter)
    conflicts: int = 0  # commits retried: the lane wrote one of their profiles meanwhile
    #: profiles still conflicting after MAX_ATTEMPTS alone: written by the lane all the while
    #: (each such write decides their audiences), not by this pass
    left_to_the_lane: int = 0
    rendered: int = 0  # profiles re-rendered from their state (membership moved, or no snapshot)
    unreadable: int = 0  # rendered, but its state is in a format this version cannot read
    medians: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def read_medians(client: redis.Redis, keys: Keys) -> dict[str, float]:
    """The category medians the last pass wrote."""
    raw: dict[bytes, bytes] = client.hgetall(keys.audience_medians)  # type: ignore[assignment]
    return {k.decode(): float(v) for k, v in raw.items()}


def _median(counts: Counter[float]) -> float:
    """The median of the values ``counts`` counts (each as often as it says), as
    ``statistics.median`` of them all would give."""
    total = counts.total()
    middle = (total - 1) // 2, total // 2  # the middle value's index, twice when odd
    found: list[float] = []
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        while len(found) < 2 and middle[len(found)] < seen:
            found.append(value)
        if len(found) == 2:
            break
    low, high = found
    return float(low if low == high else (low + high) / 2)  # as ``statistics.median``


def _intervals(snapshots: Iterable[dict[str, Any]], into: dict[str, Counter[float]]) -> None:
    """Count the customers' own repurchase intervals per category (the days are a small
    vocabulary: memory bounded by the categories and the distinct intervals, not by the
    profiles)."""
    for doc in snapshots:
        for category, body in doc.get("category_purchases", {}).items():
            interval = body.get("repurchase_interval_days")
            if isinstance(interval, int | float):
                counts = into.get(category)
                if counts is None:
                    counts = into[category] = Counter()
                counts[float(interval)] += 1


class AudienceRefresh:
    """One pass (:meth:`run`) over a Redis store's profiles; see the module docstring."""

    def __init__(
        self,
        store: RedisStore,
        client: redis.Redis,
        make_context: Callable[[], Context],
        *,
        batch: int = DEFAULT_BATCH,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.store, self.client, self.make_context = store, client, make_context
        self.batch, self.progress = batch, progress

    def run(self) -> RefreshReport:
        started = time.perf_counter()
        report = RefreshReport()
        intervals: dict[str, Counter[float]] = {}
        cursor = 0
        while True:
            # an id SSCAN returns again on a later page (the index was resized meanwhile) is
            # evaluated again, harmlessly, and counted again: remembering every id scanned to
            # skip it would hold memory in proportion to the profiles
            cursor, raw_ids = self.client.sscan(
                self.store.keys.profile_index, cursor, count=self.batch
            )
            ids = sorted({i.decode() if isinstance(i, bytes) else i for i in raw_ids})
            if ids:
                _intervals(self._batch(ids, report), intervals)
                report.profiles += len(ids)
                if self.progress is not None:
                    self.progress(report.profiles)
            if cursor == 0:
                break
        report.medians = {c: _median(v) for c, v in sorted(intervals.items())}
        self._write_medians(report.medians)
        report.seconds = time.perf_counter() - started
        return report

    def _moving(
        self, ids: Sequence[str], ctx: Context
    ) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """The stored snapshots of ``ids``, and the ids to render again: those whose
        membership the snapshot says moves at the clock, and those without a readable
        snapshot (gone since the index listed them, or written by an older version)."""
        pipe = self.client.pipeline(transaction=False)
        for pid in ids:
            pipe.hget(self.store.keys.profile(pid), "d")
        snapshots: dict[str, dict[str, Any]] = {}
        render: list[str] = []
        for pid, raw in zip(ids, pipe.execute(), strict=True):
            try:
                doc = orjson.loads(raw) if raw is not None else None
            except orjson.JSONDecodeError:
                doc = None
            if not isinstance(doc, dict):
                render.append(pid)
                continue
            snapshots[pid] = doc
            members = sorted(ctx.audiences.members(doc, ctx.now, ctx.medians))
            if members != doc.get("audiences"):
                render.append(pid)
        return snapshots, render

    def _read(
        self, ids: Sequence[str], ctx: Context
    ) -> tuple[dict[Ref, int], dict[str, StoredProfile], int]:
        """Versions and decoded states of ``ids``, and how many states were unreadable."""
        pipe = self.client.pipeline(transaction=False)
        for pid in ids:
            pipe.hmget(self.store.keys.profile(pid), "v", "s")
        versions: dict[Ref, int] = {}
        profiles: dict[str, StoredProfile] = {}
        unreadable = 0
        for pid, (v, s) in zip(ids, pipe.execute(), strict=True):
            if v is None or s is None:
                continue  # gone, or a redirect, since the index listed it
            try:
                profiles[pid] = decode(pid, s, ctx.rules)
            except StateFormatError:
                unreadable += 1
                continue
            versions[profile_ref(pid)] = int(v)
        return versions, profiles, unreadable

    def _batch(self, ids: Sequence[str], report: RefreshReport) -> Iterable[dict[str, Any]]:
        """The batch's snapshots (for the medians), its moved profiles committed.

        The clock is read again for each batch (``make_context``), and again after each read
        of the states it decides on: a lane write the pass reads was decided at a clock no
        later than the pass's, so the pass never undoes a newer decision at an older clock (a
        lane write after the read fails the commit's compare-and-set and is read again)."""
        ctx = self.make_context()
        snapshots, render = self._moving(ids, ctx)
        if render:
            snapshots.update(self._render(render, ctx, report))
        return snapshots.values()

    def _render(
        self, ids: Sequence[str], ctx: Context, report: RefreshReport
    ) -> dict[str, dict[str, Any]]:
        """``ids`` rendered again from their state (``ctx``: the batch's context, whose rules
        decode the states); those whose membership moved committed."""
        for _ in range(MAX_ATTEMPTS):
            versions, profiles, unreadable = self._read(ids, ctx)
            ctx = self.make_context()  # the clock after the read (see ``_batch``)
            batch = ProfilesBatch(ctx, versions, {}, {}, profiles, {}, frozenset())
            outcome, snapshots = batch.refresh()
            written = [e for e in outcome.effects if isinstance(e, ProfileWritten)]
            if not written:
                report.unreadable += unreadable
                report.rendered += len(profiles)
                return snapshots
            expect = {
                ref: versions[ref] for ref in (profile_ref(e.profile.profile_id) for e in written)
            }
            commit = commit_codec.encode(
                versions=expect,
                effects=outcome.effects,
                event_ids=(),
                counts=Counter(),
                profile_topic=ctx.topics.profile_changes,
            )
            if self.store.commit(commit).ok:
                report.unreadable += unreadable  # counted once, on the attempt that held
                report.rendered += len(profiles)
                report.moved += len(written)
                for e in outcome.effects:
                    if isinstance(e, AudiencesChanged):
                        report.entered.update(e.entered)
                        report.exited.update(e.exited)
                return snapshots
            report.conflicts += 1
        # Still conflicting: the lane keeps writing some of them. The rest are not held back
        # (a pass that gave up here left every profile after this batch unrefreshed, pass
        # after pass, behind one busy customer): halves are tried on their own, and one
        # profile that still conflicts is left to the lane, whose every write of it decides
        # its audiences at the lane's clock, read after the pass's read of it (``_batch``).
        if len(ids) == 1:
            report.left_to_the_lane += 1
            return {}
        middle = len(ids) // 2
        return self._render(ids[:middle], ctx, report) | self._render(ids[middle:], ctx, report)

    def _write_medians(self, medians: dict[str, float]) -> None:
        key = self.store.keys.audience_medians
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(key)
        if medians:
            pipe.hset(key, mapping={c: repr(v) for c, v in medians.items()})
        pipe.execute()
