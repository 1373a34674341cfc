"""What a consistent wave load read, kept for the batch's commit (ADR 0027). No IO.

A wave load (``streams.wave_load``, ADR 0022) returns only when the lane's commit sequence
``P:v1:commit-seq:{segment}`` was the same before its first read and after its last, so what it
read is the lane's state at that sequence. Every writer of the lane ``INCR``s the sequence in
the same atomic unit as its writes (ADR 0021), so while the sequence still holds that value
the keys read still hold what was read. The watch commit (``streams.watch_commit``) therefore
``WATCH``es the sequence, ``GET``s it, and when it is unchanged checks the parts against this
snapshot instead of reading every checked version, suppression hash and processed marker again;
the ``EXEC`` is guarded by the same ``WATCH`` as before.

A snapshot covers a call only if every part is of its scope and everything a part checks was
read by the load: each entity the part expects (visited by the walk, or a "versions" id, or a
stock), each digest it expects unsuppressed, each event id it marks. Anything else: the commit
reads as before.

The snapshot also keeps the load's entities (field by field, as read): while the sequence holds,
a rewritten entity whose stored hash the load proves to hold no field the rewrite leaves out is
written without its ``DEL``, and a field holding the value it would be given is not sent
(ADR 0029, ``streams.commit_commands``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import ne
from typing import Final, Literal

from resolvers.store import Commit, CommitResult, CommitStatus, Entity, Ref

#: :meth:`LoadSnapshot.verdicts` of a call the snapshot does not cover
UNCOVERED: Final = False


@dataclass(frozen=True, slots=True)
class LoadSnapshot:
    """A consistent load's reads at commit sequence ``sequence`` (None: the sequence key did
    not exist)."""

    scope: str
    sequence: bytes | None
    #: the version of every entity the load returned (0: absent)
    versions: Mapping[Ref, int]
    #: every suppression hash the load read, and the tombstones of those suppressed
    hashes: frozenset[str]
    suppressed: Mapping[str, object]
    #: the event ids the load looked up, and those found processed
    looked_up: frozenset[str]
    seen: frozenset[str]
    #: the marker hashes (keys) found to exist
    existing: frozenset[str]
    #: the entities the load returned, their fields as read (``Loaded.entities``)
    entities: Mapping[Ref, Entity] = field(default_factory=dict)

    def verdicts(self, parts: Sequence[Commit]) -> list[CommitResult | None] | Literal[False]:
        """The call's checks on this snapshot's reads, in one pass: :data:`UNCOVERED` unless
        every check of ``parts`` is on something the load read (each part of this scope, each
        entity it expects, digest it expects unsuppressed and event id it marks read by it),
        else each part's first failure in ``commit.lua``'s order (None: it passes), the parts
        before it that passed counted as written, as the script sees them (their versions,
        suppressions and event ids)."""
        scope, versions = self.scope, self.versions
        have, hashes, looked_up = versions.keys(), self.hashes, self.looked_up
        for part in parts:
            if part.scope != scope or not have >= part.expect.keys():
                return UNCOVERED
            unsuppressed = part.unsuppressed
            if unsuppressed and not hashes.issuperset(unsuppressed):
                return UNCOVERED
            if not looked_up.issuperset(part.event_ids):
                return UNCOVERED
        suppressed, seen = self.suppressed, self.seen
        if len(parts) == 1:
            return [_first_failure(parts[0], versions, suppressed, seen)]
        out: list[CommitResult | None] = []
        last = len(parts) - 1
        for n, part in enumerate(parts):
            failed = _first_failure(part, versions, suppressed, seen)
            out.append(failed)
            if failed is None and n < last:  # what the next parts find
                writes = (*part.writes, *part.blind_writes)
                if writes:
                    versions = {**versions, **{w.ref: w.version if w.fields else 0 for w in writes}}
                if part.suppress:
                    suppressed = {**suppressed, **part.suppress}
                if part.event_ids:
                    seen = seen.union(part.event_ids)
        return out


def _first_failure(
    part: Commit,
    versions: Mapping[Ref, int],
    suppressed: Mapping[str, object],
    seen: frozenset[str],
) -> CommitResult | None:
    """``commit.lua``'s ``check(part)`` on the versions, suppressed digests and processed
    event ids the load read (every one ``part`` checks among them): the versions compared as
    ints, the ordered loops only when something fails."""
    expect = part.expect
    if any(map(ne, map(versions.__getitem__, expect), expect.values())):
        for ref, expected in expect.items():  # which one, in order
            if versions[ref] != expected:
                return CommitResult(CommitStatus.CONFLICT, str(ref))
    if suppressed:
        for digest in part.unsuppressed:
            if digest in suppressed:
                return CommitResult(CommitStatus.CONFLICT, f"suppressed:{digest}")
    if seen:
        for event_id in part.event_ids:
            if event_id in seen:
                return CommitResult(CommitStatus.DUPLICATE, event_id)
    return None
