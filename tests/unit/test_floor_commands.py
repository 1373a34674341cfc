"""``bench.floor_commands``, the commit without Lua that ``bench.redis_floor`` measures (ADR
0021): its checks must decide as the reference store does, and its set operations and marker
writes must be what ``commit.lua`` does. (That the whole translation leaves what ``commit.lua``
leaves on a real Redis: ``tests/integration/test_floor_commit.py``.)"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolvers.store import Commit, Entity, InMemoryStore, Kind, Ref, Write
from streams.redis_store import Keys, marker_bucket

ROOT = Path(__file__).resolve().parents[2]
KEYS = Keys("loom")
TTL = 7 * 24 * 3600


@pytest.fixture(scope="module")
def fc() -> Iterator[ModuleType]:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT))  # `python -m bench...` runs from the checkout
        yield importlib.import_module("bench.floor_commands")


REFS = [Ref(Kind.PROFILE, f"p{i}") for i in range(4)] + [
    Ref(Kind.IDENTIFIER, f"email:{i}@x.no") for i in range(4)
]
EVENTS = [f"e{i}" for i in range(6)]
DIGESTS = [f"h{i}" for i in range(4)]

states = st.fixed_dictionaries(
    {
        "versions": st.dictionaries(st.sampled_from(REFS), st.integers(1, 3)),
        "seen": st.sets(st.sampled_from(EVENTS)),
        "suppressed": st.sets(st.sampled_from(DIGESTS)),
    }
)
commits = st.builds(
    Commit,
    expect=st.dictionaries(st.sampled_from(REFS), st.integers(0, 3)),
    event_ids=st.lists(st.sampled_from(EVENTS), unique=True).map(tuple),
    unsuppressed=st.lists(st.sampled_from(DIGESTS), unique=True).map(tuple),
)


@settings(max_examples=300, deadline=None)
@given(state=states, commit=commits)
def test_the_checks_decide_as_the_reference_store(
    fc: ModuleType, state: dict[str, object], commit: Commit
) -> None:
    """On the values read from a state, ``first_failure`` gives what ``InMemoryStore.commit``
    gives on that state: pass, or the same status naming the same ref, digest or event id."""
    versions: dict[Ref, int] = state["versions"]  # type: ignore[assignment]
    seen: set[str] = state["seen"]  # type: ignore[assignment]
    suppressed: set[str] = state["suppressed"]  # type: ignore[assignment]
    store = InMemoryStore()
    store.entities = {ref: Entity(v, {"s": b"x"}) for ref, v in versions.items()}
    store.seen = {commit.scope: set(seen)}
    store.suppressed = {d: b"{}" for d in suppressed}
    read = {KEYS.entity(ref): str(v).encode() for ref, v in versions.items()}
    found = fc.first_failure(commit, KEYS, read, {d: b"{}" for d in suppressed}, set(seen))
    expected = store.commit(commit)
    if expected.ok:
        assert found is None
    else:
        assert found == expected


ops = st.lists(
    st.tuples(st.sampled_from(["s1", "s2"]), st.booleans(), st.sampled_from("abcdef")),
    max_size=40,
)


@given(ops)
def test_set_runs_have_the_effect_of_each_operation_in_order(
    fc: ModuleType, ops: list[tuple[str, bool, str]]
) -> None:
    one_by_one: dict[str, set[str]] = {"s1": set(), "s2": set()}
    for key, add, member in ops:
        (one_by_one[key].add if add else one_by_one[key].discard)(member)
    runs: dict[str, set[str]] = {"s1": set(), "s2": set()}
    for name, key, *members in fc._set_runs(ops):
        assert name in ("SADD", "SREM")
        if name == "SADD":
            runs[key] |= set(members)
        else:
            runs[key] -= set(members)
    assert runs == one_by_one


def test_a_run_is_cut_at_500_members(fc: ModuleType) -> None:
    commands = fc._set_runs([("s", True, f"m{i}") for i in range(1201)])
    assert [len(c) - 2 for c in commands] == [500, 500, 201]


def test_markers_layout_unlink_and_expiry_once_per_call_new_hashes_as_hashtables(
    fc: ModuleType,
) -> None:
    clock = fc.MarkerClock.at(KEYS, "profiles", TTL, now=1_000_000, width=None, since=0)
    assert (clock.width, clock.k, clock.gen) == (TTL // 4, 4, 1_000_000 // (TTL // 4))
    writer = fc.MarkerWriter(clock)
    first = writer.mark(["e1"])
    same_bucket = next(
        f"e{i}" for i in range(2, 100) if marker_bucket(f"e{i}") == marker_bucket("e1")
    )
    second = writer.mark([same_bucket])
    key = clock.key(clock.gen, marker_bucket("e1"))
    assert first[0] == ("HSET", clock.layout_key, "width", TTL // 4)  # the first commit fixes it
    assert first[1][0] == "UNLINK"
    assert len(first[1]) == 1 + 4  # the 4 buckets of generation gen - k - 1
    assert first[1][1] == clock.key(clock.gen - 5, "0")
    assert first[2] == ("HSET", key, "", fc.HASHTABLE, "e1", "1")
    assert first[3] == ("HDEL", key, "")
    assert first[4] == ("EXPIREAT", key, (clock.gen + 6) * clock.width, "NX")
    assert [c[0] for c in second] == ["HSET"]  # same hash: no layout, unlink, '' or expiry
    assert "" not in second[0]


def test_a_part_replaces_hashes_whole_unless_checked_absent(fc: ModuleType) -> None:
    new, old, redirect = Ref(Kind.PROFILE, "n"), Ref(Kind.PROFILE, "o"), Ref(Kind.PROFILE, "r")
    part = Commit(
        expect={new: 0, old: 2},
        event_ids=(),
        writes=[Write(new, 1, {"d": b"{}", "s": b"s"}), Write(old, 3, {"r": b"n"})],
        blind_writes=[Write(redirect, 1, {"r": b"n"})],
    )
    clock = fc.MarkerClock.at(KEYS, "profiles", TTL, now=1_000_000, width=TTL // 4, since=0)
    commands = fc.part_commands(part, KEYS, fc.MarkerWriter(clock))
    entity = [c for c in commands if c[0] in ("DEL", "HSET") and "markers" not in str(c[1])]
    assert entity == [
        ("HSET", KEYS.entity(new), "v", "1", "d", b"{}", "s", b"s"),
        ("DEL", KEYS.entity(old)),
        ("HSET", KEYS.entity(old), "v", "3", "r", b"n"),
        ("DEL", KEYS.entity(redirect)),
        ("HSET", KEYS.entity(redirect), "v", "1", "r", b"n"),
    ]
    assert ("SADD", KEYS.profile_index, "n") in commands
    assert ("SREM", KEYS.profile_index, "o", "r") in commands
