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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import ne
from typing import Final, Literal

from resolvers.store import Commit, CommitResult, CommitStatus, Entity, Ref

#: :meth:`LoadSnapshot.verdict` of a part the snapshot does not cover
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

    def covers(self, parts: Sequence[Commit]) -> bool:
        """Whether every check of ``parts`` is on something this load read."""
        versions, hashes, looked_up = self.versions, self.hashes, self.looked_up
        for part in parts:
            if part.scope != self.scope:
                return False
            for ref in part.expect:
                if ref not in versions:
                    return False
            for digest in part.unsuppressed:
                if digest not in hashes:
                    return False
            for event_id in part.event_ids:
                if event_id not in looked_up:
                    return False
        return True

    def verdict(self, part: Commit) -> CommitResult | Literal[False] | None:
        """One part's ``covers`` and ``commit_commands.first_failure`` on this snapshot's reads
        in one pass: :data:`UNCOVERED` if the snapshot does not cover it, else its first
        failure in ``commit.lua``'s order (None: it passes)."""
        if part.scope != self.scope:
            return UNCOVERED
        versions, expect = self.versions, part.expect
        if not versions.keys() >= expect.keys():
            return UNCOVERED
        unsuppressed, event_ids = part.unsuppressed, part.event_ids
        if unsuppressed and not self.hashes.issuperset(unsuppressed):
            return UNCOVERED
        if not self.looked_up.issuperset(event_ids):
            return UNCOVERED
        if any(map(ne, map(versions.__getitem__, expect), expect.values())):
            for ref, expected in expect.items():  # which one, in order
                if versions[ref] != expected:
                    return CommitResult(CommitStatus.CONFLICT, str(ref))
        suppressed = self.suppressed
        if suppressed:
            for digest in unsuppressed:
                if digest in suppressed:
                    return CommitResult(CommitStatus.CONFLICT, f"suppressed:{digest}")
        seen = self.seen
        if seen:
            for event_id in event_ids:
                if event_id in seen:
                    return CommitResult(CommitStatus.DUPLICATE, event_id)
        return None

    def versions_of(self, refs: Iterable[Ref]) -> dict[Ref, bytes | None]:
        """Field ``v`` of each of ``refs`` as the commit reads it (None: absent)."""
        versions = self.versions
        out: dict[Ref, bytes | None] = {}
        for ref in refs:
            v = versions[ref]
            out[ref] = str(v).encode() if v else None
        return out

    def suppressed_of(self, digests: Iterable[str]) -> dict[str, bytes | None]:
        """The suppression hash's value of each of ``digests`` as the commit reads it (only
        whether it is None matters to the checks)."""
        suppressed = self.suppressed
        return {d: b"" if d in suppressed else None for d in digests}
