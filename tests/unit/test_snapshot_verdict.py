"""``LoadSnapshot.verdict`` (sixteenth pass) decides a one-part call as main's three checks
did: ``covers``, then ``first_failure`` on ``versions_of`` and ``suppressed_of`` and the ids
found processed (main f728e20's code, verbatim below)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from resolvers.store import Commit, CommitResult, CommitStatus, Kind, Ref
from streams.load_snapshot import UNCOVERED, LoadSnapshot

# --- main f728e20 (streams/load_snapshot.py, streams/commit_commands.py), verbatim ---------


def covers(self: Any, parts: Sequence[Commit]) -> bool:
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


def versions_of(self: Any, refs: Iterable[Ref]) -> dict[Ref, bytes | None]:
    """Field ``v`` of each of ``refs`` as the commit reads it (None: absent)."""
    versions = self.versions
    out: dict[Ref, bytes | None] = {}
    for ref in refs:
        v = versions[ref]
        out[ref] = str(v).encode() if v else None
    return out


def suppressed_of(self: Any, digests: Iterable[str]) -> dict[str, bytes | None]:
    """The suppression hash's value of each of ``digests`` as the commit reads it (only
    whether it is None matters to the checks)."""
    suppressed = self.suppressed
    return {d: b"" if d in suppressed else None for d in digests}


def first_failure(
    part: Commit,
    versions: Mapping[Ref, bytes | None],
    suppressed: Mapping[str, bytes | None],
    processed: set[str] | frozenset[str],
) -> CommitResult | None:
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


# --- main's use in ``WatchCommit`` (``commit`` and ``_unchanged``) for one part -------------


def main_verdict(snapshot: LoadSnapshot, part: Commit) -> object:
    if not covers(snapshot, [part]):
        return UNCOVERED
    versions = versions_of(snapshot, dict.fromkeys(part.expect))
    suppressed = suppressed_of(snapshot, part.unsuppressed)
    seen = snapshot.seen
    processed = {e for e in part.event_ids if e in seen} if seen else set()
    return first_failure(part, versions, suppressed, processed)


REFS = st.builds(Ref, st.sampled_from([Kind.PROFILE, Kind.IDENTIFIER]), st.sampled_from("abcde"))
NAMES = st.sampled_from(["h1", "h2", "h3", "h4"])
IDS = st.sampled_from(["e1", "e2", "e3", "e4", "e5"])


@st.composite
def cases(draw: st.DrawFn) -> tuple[LoadSnapshot, Commit]:
    versions = draw(st.dictionaries(REFS, st.integers(0, 3), max_size=6))
    hashes = draw(st.frozensets(NAMES))
    looked_up = draw(st.frozensets(IDS))
    snapshot = LoadSnapshot(
        scope="seen",
        sequence=b"7",
        versions=versions,
        hashes=hashes,
        suppressed={h: b"{}" for h in draw(st.frozensets(NAMES)) if h in hashes},
        looked_up=looked_up,
        seen=frozenset(e for e in draw(st.frozensets(IDS, max_size=2)) if e in looked_up),
        existing=frozenset(),
    )
    # mostly what the load read (covered), now and then a ref it did not
    refs = draw(st.lists(st.sampled_from(sorted(versions)), max_size=5)) if versions else []
    if draw(st.integers(0, 4)) == 0:
        refs.append(draw(REFS))
    part = Commit(
        expect={ref: draw(st.integers(0, 3)) for ref in refs},
        event_ids=tuple(draw(st.lists(IDS, max_size=5))),
        unsuppressed=tuple(draw(st.lists(NAMES, max_size=3, unique=True))),
        scope=draw(st.sampled_from(["seen", "seen", "seen", "seen-inventory"])),
    )
    return snapshot, part


@settings(max_examples=300)
@given(cases())
def test_the_verdict_is_mains_three_checks(case: tuple[LoadSnapshot, Commit]) -> None:
    snapshot, part = case
    assert snapshot.verdict(part) == main_verdict(snapshot, part)
