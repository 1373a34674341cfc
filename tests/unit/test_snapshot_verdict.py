"""``LoadSnapshot.verdicts`` (seventeenth pass: one pass for any number of parts) decides a call
as main's checks did: ``covers``, then ``_check`` (``first_failure`` per part, a passed part's
writes, suppressions and event ids seen by the next parts) on ``versions_of``,
``suppressed_of`` and the ids found processed (main 5b0190a's code, verbatim: below and in
``redis_path_reference.watch_commit``; its one-part ``verdict`` was checked against the same
code at the sixteenth pass)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st
from redis_path_reference.watch_commit import covers, suppressed_of, versions_of

from resolvers.store import Commit, CommitResult, CommitStatus, Kind, Ref, Write
from streams.load_snapshot import UNCOVERED, LoadSnapshot

# --- main 5b0190a: ``LoadSnapshot.covers`` / ``versions_of`` / ``suppressed_of`` are kept
# verbatim in ``redis_path_reference.watch_commit``; ``commit_commands.first_failure``, verbatim:


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


# --- main 5b0190a's streams/watch_commit.py ``_check``, verbatim (``reads`` as its fields) --


def _check(
    parts: Sequence[Commit],
    versions: dict[Ref, bytes | None],
    suppressed: dict[str, bytes | None],
    processed: dict[str, set[str]],
) -> list[CommitResult | None]:
    out: list[CommitResult | None] = []
    for part in parts:
        failed = first_failure(part, versions, suppressed, processed[part.scope])
        out.append(failed)
        if failed is None and len(parts) > 1:
            for w in (*part.writes, *part.blind_writes):
                versions[w.ref] = str(w.version).encode() if w.fields else None
            suppressed.update(part.suppress)
            processed[part.scope].update(part.event_ids)
    return out


# --- main's use in ``WatchCommit`` (``commit`` and ``_unchanged``, the reads from the snapshot)


def main_verdicts(snapshot: LoadSnapshot, parts: Sequence[Commit]) -> object:
    if not covers(snapshot, parts):
        return UNCOVERED
    versions = versions_of(snapshot, dict.fromkeys(r for p in parts for r in p.expect))
    suppressed = suppressed_of(snapshot, (d for p in parts for d in p.unsuppressed))
    seen = snapshot.seen
    processed = {
        scope: {e for p in parts if p.scope == scope for e in p.event_ids if e in seen}
        if seen
        else set()
        for scope in dict.fromkeys(p.scope for p in parts)
    }
    return _check(parts, versions, suppressed, processed)


REFS = st.builds(Ref, st.sampled_from([Kind.PROFILE, Kind.IDENTIFIER]), st.sampled_from("abcde"))
NAMES = st.sampled_from(["h1", "h2", "h3", "h4"])
IDS = st.sampled_from(["e1", "e2", "e3", "e4", "e5"])
WRITES = st.lists(
    st.builds(
        Write,
        REFS,
        st.integers(0, 3),
        st.sampled_from([{}, {"s": b"x"}]),  # empty: a delete (absent after it)
    ),
    max_size=3,
)


@st.composite
def parts_of(draw: st.DrawFn, versions: Mapping[Ref, int]) -> Commit:
    # mostly what the load read (covered), now and then a ref it did not
    refs = draw(st.lists(st.sampled_from(sorted(versions)), max_size=5)) if versions else []
    if draw(st.integers(0, 6)) == 0:
        refs.append(draw(REFS))
    return Commit(
        expect={ref: draw(st.integers(0, 3)) for ref in refs},
        event_ids=tuple(draw(st.lists(IDS, max_size=4))),
        writes=draw(WRITES),
        blind_writes=draw(st.one_of(st.just(()), WRITES)),
        suppress={h: b"{}" for h in draw(st.lists(NAMES, max_size=2))},
        unsuppressed=tuple(draw(st.lists(NAMES, max_size=3, unique=True))),
        scope=draw(st.sampled_from(["seen"] * 6 + ["seen-inventory"])),
    )


@st.composite
def cases(draw: st.DrawFn, max_parts: int = 4) -> tuple[LoadSnapshot, list[Commit]]:
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
    parts = draw(st.lists(parts_of(versions), min_size=1, max_size=max_parts))
    return snapshot, parts


@settings(max_examples=400)
@given(cases(max_parts=1))
def test_a_one_part_call_is_decided_as_by_mains_checks(
    case: tuple[LoadSnapshot, list[Commit]],
) -> None:
    snapshot, parts = case
    assert snapshot.verdicts(parts) == main_verdicts(snapshot, parts)


@settings(max_examples=600)
@given(cases())
def test_a_call_of_any_number_of_parts_is_decided_as_by_mains_checks(
    case: tuple[LoadSnapshot, list[Commit]],
) -> None:
    snapshot, parts = case
    assert snapshot.verdicts(parts) == main_verdicts(snapshot, parts)


def test_a_passed_part_is_what_the_next_parts_find() -> None:
    """The cases the multi-part rule exists for, written out: an earlier passed part's write,
    suppression and event id make a later part conflict or a duplicate; a failed part's
    do not."""
    a, b = Ref(Kind.PROFILE, "a"), Ref(Kind.IDENTIFIER, "b")
    snapshot = LoadSnapshot(
        scope=Commit(expect={}, event_ids=()).scope,  # the default scope
        sequence=b"1",
        versions={a: 2, b: 0},
        hashes=frozenset({"h"}),
        suppressed={},
        looked_up=frozenset({"e1", "e2"}),
        seen=frozenset(),
        existing=frozenset(),
    )
    first = Commit(
        expect={a: 2},
        event_ids=("e1",),
        writes=(Write(a, 3, {"s": b"x"}), Write(b, 1, {"p": b"a"})),
        suppress={"h": b"{}"},
    )
    again = Commit(expect={a: 2}, event_ids=("e2",))
    assert snapshot.verdicts([first, again]) == [None, CommitResult(CommitStatus.CONFLICT, str(a))]
    at_new = Commit(expect={a: 3, b: 1}, event_ids=("e2",), unsuppressed=("h",))
    assert snapshot.verdicts([first, at_new]) == [
        None,
        CommitResult(CommitStatus.CONFLICT, "suppressed:h"),
    ]
    dup = Commit(expect={a: 3}, event_ids=("e1",))
    assert snapshot.verdicts([first, dup]) == [None, CommitResult(CommitStatus.DUPLICATE, "e1")]
    failed = Commit(expect={a: 1}, event_ids=("e1",), writes=(Write(a, 5, {"s": b"y"}),))
    assert snapshot.verdicts([failed, again]) == [
        CommitResult(CommitStatus.CONFLICT, str(a)),
        None,
    ]
    deleted = Commit(expect={a: 2}, event_ids=(), writes=(Write(a, 3, {}),))
    assert snapshot.verdicts([deleted, Commit(expect={a: 0}, event_ids=())]) == [None, None]
    redirect = Commit(expect={}, event_ids=(), blind_writes=(Write(b, 4, {"r": b"a"}),))
    assert snapshot.verdicts([redirect, Commit(expect={b: 0}, event_ids=())]) == [
        None,
        CommitResult(CommitStatus.CONFLICT, str(b)),
    ]
    assert snapshot.verdicts([first, Commit(expect={a: 3}, event_ids=("e3",))]) is UNCOVERED
