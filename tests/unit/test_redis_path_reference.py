"""The RedisStore client path's pure pieces (issue 17.2, fifteenth pass) against main's
(``redis_path_reference``, 2b8581a verbatim): the wave load's walk visits and truncates as
``load.lua``'s one pass does for any records and profiles read in any increments; a wave's marker
lookups, the commit's event-id groups and its outbox entry are written, grouped and packed
byte for byte as before.
(The whole path, on a real Redis: ``tests/integration/test_redis_path_bytes.py``.)"""

from __future__ import annotations

import copy
from typing import Any, Final

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st
from redis_path_reference import outbox as old_outbox
from redis_path_reference import watch_commit as old_watch
from redis_path_reference import wave_load as old_wave

from resolvers.store import ABSENT, Commit, Entity, LoadRequest, OutboxRecord
from streams import outbox, watch_commit, wave_load
from streams.commit_commands import MarkerClock
from streams.redis_keys import Keys, marker_groups
from streams.resp import Resp

KEYS = [f"email:u{i}@x" for i in range(6)]
PIDS = [f"p{i}" for i in range(6)]
OPT = st.one_of(st.none(), st.binary(max_size=3))


def _id_row(draw: Any) -> list[Any]:
    return [
        draw(st.sampled_from([None, b"0", b"1", b"7"])),
        draw(st.one_of(st.none(), st.sampled_from(PIDS).map(str.encode))),
        draw(st.one_of(st.none(), st.lists(st.sampled_from(PIDS), max_size=3).map(orjson.dumps))),
        draw(OPT),
    ]


def _pid_row(draw: Any) -> list[Any]:
    return [
        draw(st.sampled_from([None, b"1", b"3"])),
        draw(OPT),
        draw(st.one_of(st.none(), st.sampled_from(PIDS).map(str.encode))),
        draw(st.one_of(st.none(), st.lists(st.sampled_from(KEYS), max_size=3).map(orjson.dumps))),
    ]


@st.composite
def graphs(draw: Any) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """Every record and profile as a load reads it (v, p, h, s / v, s, r, i)."""
    return {k: _id_row(draw) for k in KEYS}, {p: _pid_row(draw) for p in PIDS}


def _state(walk: Any) -> tuple[Any, ...]:
    return (
        walk.ids,
        walk.profiles,
        walk.truncated,
        walk.seen_pids,
        walk.id_queue,
        walk.pid_queue,
        walk._id_head,
        walk._pid_head,
        walk.unread(),
    )


_R0: Final = {"p0": b"p2"}  # the example's redirect
_I3: Final = {"p3": orjson.dumps([KEYS[0]])}  # and the identifier p3 holds


@settings(max_examples=400, deadline=None)
@given(
    graph=graphs(),
    ids=st.lists(st.sampled_from(KEYS), max_size=4),
    pids=st.lists(st.sampled_from(PIDS), max_size=3),
    max_profiles=st.integers(0, 7),
    per_wave=st.integers(1, 4),
)
@example(  # p3 leads to p1 by its email's record, p0 to p2 by a redirect: p2 comes first
    graph=(
        {k: [b"1", b"p1" if k == KEYS[0] else None, None, b""] for k in KEYS},
        {p: [b"1", b"s", _R0.get(p), _I3.get(p)] for p in PIDS},
    ),
    ids=[],
    pids=["p3", "p0"],
    max_profiles=3,
    per_wave=1,
)
def test_the_walk_visits_as_load_lua_however_its_reads_come(
    graph: tuple[dict[str, list[Any]], dict[str, list[Any]]],
    ids: list[str],
    pids: list[str],
    max_profiles: int,
    per_wave: int,
) -> None:
    """Waves read at most ``per_wave`` of what each side waits for, so the walk stops and
    resumes at every kind of place (a record, a profile, after a truncation); it visits the
    same records and profiles, in the same order, and truncates where a walk that had every
    row before it started does: ``load.lua``'s, in one atomic pass. (Main's walk, resuming
    with the records, did not: a test of the wave load on Redis found it, 2026-12-03.)"""
    id_rows, pid_rows = graph
    whole = wave_load.Walk(max_profiles, list(ids), list(pids))
    whole.read(list(id_rows), list(id_rows.values()), list(pid_rows), list(pid_rows.values()))
    assert whole.advance()
    walk = wave_load.Walk(max_profiles, list(ids), list(pids))
    for _ in range(40):
        if walk.advance():
            assert _state(walk)[:4] == _state(whole)[:4]
            return
        want_ids, want_pids = walk.unread()
        assert want_ids or want_pids
        got_ids, got_pids = want_ids[:per_wave], want_pids[:per_wave]
        walk.read(got_ids, [id_rows[k] for k in got_ids],
                  got_pids, [pid_rows[p] for p in got_pids])  # fmt: skip
    raise AssertionError("the walk did not end")


TEXT = st.text(alphabet=st.sampled_from("ab%é:-1"), max_size=6)
CLOCK = MarkerClock.at(Keys("lo%om"), "profiles", 3600, now=10**9, width=900, since=0)


@settings(max_examples=300, deadline=None)
@given(
    ids=st.lists(TEXT, unique=True, max_size=1200),
    existing=st.lists(st.integers(0, 40), max_size=8),
)
def test_a_waves_marker_lookups_are_written_as_mains(ids: list[str], existing: list[int]) -> None:
    """``EXISTS`` of each marker hash, then ``HMGET`` per 500 ids in each existing one: the
    same bytes and command counts, and the same ids found from the same replies."""
    groups = marker_groups(ids)
    markers = [wave_load._Markers(groups), old_wave._Markers(groups)]
    waves = []
    for m in markers:
        m.at(CLOCK)
        m.existing = [m.keys[i] for i in existing if i < len(m.keys)]
        wave = Resp()
        counts = (m.add_to(wave, 1), m.add_to(wave, 2))
        waves.append((b"".join(wave.packed()), wave.count, counts, m.chunks))
    assert waves[0] == waves[1]
    replies = [[b"1" if (i + j) % 3 == 0 else None for j in range(len(chunk))]
               for i, chunk in enumerate(markers[0].chunks)]  # fmt: skip
    for m in markers:
        m.take(2, replies)
    assert markers[0].seen == markers[1].seen


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(st.lists(TEXT, max_size=8).map(tuple), min_size=1, max_size=3),
    scopes=st.lists(st.sampled_from(["profiles", "inventory"]), min_size=1, max_size=3),
    cached=st.booleans(),
)
def test_the_commits_event_ids_are_grouped_as_mains(
    parts: list[tuple[str, ...]], scopes: list[str], cached: bool
) -> None:
    """Each scope's ids by bucket, each once, in order: the same groups with the store's
    grouping (the load's, reused for the same ids) or without it; repeated ids included."""
    commits = [Commit({}, ids, scope=scopes[n % len(scopes)]) for n, ids in enumerate(parts)]
    clocks = {scope: CLOCK for scope in dict.fromkeys(c.scope for c in commits)}
    calls: list[tuple[str, ...]] = []

    def grouped(ids: tuple[str, ...]) -> dict[str, list[str]]:
        calls.append(ids)
        return marker_groups(ids)

    expected = old_watch._groups(commits, clocks)
    got = watch_commit._groups(commits, clocks, grouped if cached else marker_groups)
    assert got == expected
    assert all(list(g) == list(e) for g, e in zip(got.values(), expected.values(), strict=True))
    for ids in calls:  # only ever asked for ids without repeats
        assert len(set(ids)) == len(ids)


RECORDS = st.builds(
    OutboxRecord,
    st.sampled_from(["loom.profiles", "loom.audit", "tópico", ""]),
    st.one_of(st.none(), st.binary(max_size=5)),
    st.one_of(st.none(), st.binary(max_size=40)),
)


@settings(max_examples=300, deadline=None)
@given(records=st.lists(RECORDS, max_size=12))
def test_the_outbox_entry_is_packed_as_mains(records: list[OutboxRecord]) -> None:
    assert outbox.pack(records) == old_outbox.pack(records)
    assert outbox.pack(iter(records)) == old_outbox.pack(records)  # any iterable, once


VERSIONS = [f"v{i}" for i in range(4)]
SKUS = ["s1", "s2"]


@settings(max_examples=150, deadline=None)
@given(
    graph=graphs(),
    ids=st.lists(st.sampled_from(KEYS), max_size=4),
    pids=st.lists(st.sampled_from(PIDS), max_size=3),
    versions=st.lists(st.sampled_from(VERSIONS + PIDS), unique=True, max_size=4),
    version_rows=st.lists(
        st.tuples(st.sampled_from([None, b"1", b"4"]), OPT), min_size=10, max_size=10
    ),
    stock_rows=st.lists(
        st.tuples(st.sampled_from([None, b"0", b"5"]), OPT), min_size=2, max_size=2
    ),
    tombs=st.lists(st.one_of(st.none(), st.binary(max_size=4)), max_size=3),
    max_profiles=st.integers(0, 7),
)
def test_a_walks_entities_are_made_as_mains(
    graph: tuple[dict[str, list[Any]], dict[str, list[Any]]],
    ids: list[str],
    pids: list[str],
    versions: list[str],
    version_rows: list[tuple[Any, Any]],
    stock_rows: list[tuple[Any, Any]],
    tombs: list[Any],
    max_profiles: int,
) -> None:
    """``_loaded`` (its entities built by ``fast_new``, seventeenth pass) gives main's
    ``Loaded``: the same refs in the same order, equal entities of the very class
    ``Entity`` (ABSENT itself where main's is), the same suppressions and truncation."""
    id_rows, pid_rows = graph
    walk = wave_load.Walk(max_profiles, list(ids), list(pids))
    while not walk.advance():
        want_ids, want_pids = walk.unread()
        walk.read(want_ids, [id_rows[k] for k in want_ids],
                  want_pids, [pid_rows[p] for p in want_pids])  # fmt: skip
    hashes = [f"h{i}" for i in range(len(tombs))]
    request = LoadRequest(ids, pids, versions, SKUS, (), hashes, max_profiles=max_profiles)
    rows = [list(r) for r in version_rows[: len(versions)]]
    stocks = [list(r) for r in stock_rows]
    seen = frozenset({"e1"})
    old_walk = copy.deepcopy(walk)  # ``_loaded`` adds the "versions" ids to its seen_pids
    new = wave_load._loaded(request, walk, wave_load._First(b"1", b"1", tombs, rows, stocks), seen)
    old = old_wave._loaded(
        request, old_walk, old_wave._First(b"1", b"1", tombs, rows, stocks), seen
    )
    assert list(new.entities.items()) == list(old.entities.items())
    for ref, entity in new.entities.items():
        assert type(entity) is Entity
        assert (entity is ABSENT) == (old.entities[ref] is ABSENT)
    assert (new.seen, new.suppressed, new.truncated) == (old.seen, old.suppressed, old.truncated)
    assert walk.seen_pids == old_walk.seen_pids
