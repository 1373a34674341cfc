"""``streams.commit_commands``, the pure half of the commit without Lua (ADR 0021): its checks
must decide as the reference store does, its commands must be what ``commit.lua`` does, and
:class:`Resp` must write exactly what redis-py's packer writes. (That the whole commit leaves
what ``commit.lua`` leaves on a real Redis: ``tests/integration/test_watch_commit.py`` and the
store contract suite.)"""

from __future__ import annotations

from typing import Any

import hiredis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.connection import HiredisRespSerializer

from resolvers.store import Commit, Entity, InMemoryStore, Kind, Ref, Write
from streams import commit_commands as fc
from streams.redis_keys import Keys, marker_bucket
from streams.resp import OWN_CHUNK, Resp

KEYS = Keys("loom")
TTL = 7 * 24 * 3600


def decoded(resp: Resp) -> list[tuple[Any, ...]]:
    """``resp``'s commands as tuples of bytes (parsed back by hiredis)."""
    reader = hiredis.Reader()
    for chunk in resp.packed():
        reader.feed(chunk)
    out: list[tuple[Any, ...]] = []
    while (command := reader.gets()) is not False:
        out.append(tuple(command))
    assert len(out) == resp.count
    return out


def b(*args: bytes | str | int) -> tuple[bytes, ...]:
    """A command as ``decoded`` gives it."""
    return tuple(a if isinstance(a, bytes) else str(a).encode() for a in args)


def large(extra: int) -> st.SearchStrategy[bytes]:
    """Values of ``OWN_CHUNK`` to ``OWN_CHUNK + extra`` bytes (sent as chunks of their own): a
    short drawn pattern repeated, since 16 KiB of drawn bytes trips Hypothesis' data_too_large
    health check now and then."""
    size = OWN_CHUNK
    return st.tuples(st.binary(min_size=1, max_size=8), st.integers(0, extra)).map(
        lambda drawn: (drawn[0] * (size + drawn[1]))[: size + drawn[1]]
    )


ARGS = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=20),
    st.integers(-(2**40), 2**40),
    large(10),
)


@given(st.lists(st.lists(ARGS, min_size=1, max_size=6), max_size=6))
def test_resp_writes_what_redis_py_packs(commands: list[list[bytes | str | int]]) -> None:
    """``Resp.add`` gives redis-py's own packer's bytes; a large value goes as its own chunk."""
    resp = Resp()
    for command in commands:
        resp.add("SET", *command)
    packer = HiredisRespSerializer()
    expected = b"".join(b"".join(packer.pack("SET", *c)) for c in commands)
    assert b"".join(resp.packed()) == expected
    assert resp.count == len(commands)
    big = [a for c in commands for a in c if isinstance(a, bytes) and len(a) >= OWN_CHUNK]
    assert resp.packed()[1::2] == big  # each large value a chunk of its own, between the rest


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
def test_the_checks_decide_as_the_reference_store(state: dict[str, object], commit: Commit) -> None:
    """On the values read from a state, ``first_failure`` gives what ``InMemoryStore.commit``
    gives on that state: pass, or the same status naming the same ref, digest or event id."""
    versions: dict[Ref, int] = state["versions"]  # type: ignore[assignment]
    seen: set[str] = state["seen"]  # type: ignore[assignment]
    suppressed: set[str] = state["suppressed"]  # type: ignore[assignment]
    store = InMemoryStore()
    store.entities = {ref: Entity(v, {"s": b"x"}) for ref, v in versions.items()}
    store.seen = {commit.scope: set(seen)}
    store.suppressed = {d: b"{}" for d in suppressed}
    read = {ref: str(v).encode() for ref, v in versions.items()}
    found = fc.first_failure(commit, read, {d: b"{}" for d in suppressed}, set(seen))
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
    ops: list[tuple[str, bool, str]],
) -> None:
    one_by_one: dict[str, set[str]] = {"s1": set(), "s2": set()}
    for key, add, member in ops:
        (one_by_one[key].add if add else one_by_one[key].discard)(member)
    runs: dict[str, set[str]] = {"s1": set(), "s2": set()}
    for name, key, members in fc.set_runs(ops):
        assert name in ("SADD", "SREM")
        if name == "SADD":
            runs[key] |= set(members)
        else:
            runs[key] -= set(members)
    assert runs == one_by_one


def test_a_run_is_cut_at_500_members() -> None:
    commands = fc.set_runs([("s", True, f"m{i}") for i in range(1201)])
    assert [len(members) for _, _, members in commands] == [500, 500, 201]


def test_markers_layout_unlink_and_expiry_once_per_call_new_hashes_as_hashtables() -> None:
    clock = fc.MarkerClock.at(KEYS, "profiles", TTL, now=1_000_000, width=None, since=0)
    assert (clock.width, clock.k, clock.gen) == (TTL // 4, 4, 1_000_000 // (TTL // 4))
    assert not clock.legacy  # since 0: the hand-over is over
    writer = fc.MarkerWriter(clock)
    out = Resp()
    writer.mark(["e1"], out)
    first = decoded(out)
    same_bucket = next(
        f"e{i}" for i in range(2, 100) if marker_bucket(f"e{i}") == marker_bucket("e1")
    )
    out = Resp()
    writer.mark([same_bucket], out)
    second = decoded(out)
    key = clock.key(clock.gen, marker_bucket("e1"))
    assert first[0] == b("HSET", clock.layout_key, "width", TTL // 4)  # the first commit fixes it
    assert first[1][0] == b"UNLINK"
    assert len(first[1]) == 1 + 4  # the 4 buckets of generation gen - k - 1
    assert first[1][1] == clock.key(clock.gen - 5, "0").encode()
    assert first[2] == b("HSET", key, "", fc.HASHTABLE, "e1", "1")
    assert first[3] == b("HDEL", key, "")
    assert first[4] == b("EXPIREAT", key, (clock.gen + 6) * clock.width, "NX")
    assert [c[0] for c in second] == [b"HSET"]  # same hash: no layout, unlink, '' or expiry
    assert b"" not in second[0]


def test_layout_1_is_looked_up_until_the_hand_over_is_over() -> None:
    def legacy(now: int, since: int | None) -> bool:
        clock = fc.MarkerClock.at(KEYS, "profiles", TTL, now=now, width=None, since=since)
        return clock.legacy

    assert legacy(10**9, None)
    assert legacy(10**9, 10**9 - TTL - fc.HANDOVER_S + 1)
    assert not legacy(10**9, 10**9 - TTL - fc.HANDOVER_S)


def test_a_part_replaces_hashes_whole_unless_checked_absent() -> None:
    new, old, redirect = Ref(Kind.PROFILE, "n"), Ref(Kind.PROFILE, "o"), Ref(Kind.PROFILE, "r")
    part = Commit(
        expect={new: 0, old: 2},
        event_ids=(),
        writes=[Write(new, 1, {"d": b"{}", "s": b"s"}), Write(old, 3, {"r": b"n"})],
        blind_writes=[Write(redirect, 1, {"r": b"n"})],
    )
    clock = fc.MarkerClock.at(KEYS, "profiles", TTL, now=1_000_000, width=TTL // 4, since=0)
    out = Resp()
    fc.part_commands(part, KEYS, {part.scope: fc.MarkerWriter(clock)}, out)
    commands = decoded(out)
    entity = [c for c in commands if c[0] in (b"DEL", b"HSET") and b"markers" not in c[1]]
    assert entity == [
        b("HSET", KEYS.entity(new), "v", "1", "d", b"{}", "s", b"s"),
        b("DEL", KEYS.entity(old)),
        b("HSET", KEYS.entity(old), "v", "3", "r", b"n"),
        b("DEL", KEYS.entity(redirect)),
        b("HSET", KEYS.entity(redirect), "v", "1", "r", b"n"),
    ]
    assert b("SADD", KEYS.profile_index, "n") in commands
    assert b("SREM", KEYS.profile_index, "o", "r") in commands


@given(
    st.dictionaries(
        st.sampled_from(["d", "s", "i", "r"]),
        st.one_of(st.binary(max_size=30), large(0)),
        min_size=1,
    )
)
def test_an_entity_is_written_with_its_values_byte_exact_however_large(
    fields: dict[str, bytes],
) -> None:
    """The one-pass writes (field names remembered, large values as chunks of their own)
    give each field's bytes back as Redis will parse them."""
    ref = Ref(Kind.PROFILE, "p")
    part = Commit({ref: 1}, (), writes=[Write(ref, 2, fields)], suppress={"h": b"t" * 20000})
    clock = fc.MarkerClock.at(KEYS, "profiles", TTL, now=1_000_000, width=TTL // 4, since=0)
    out = Resp()
    fc.part_commands(part, KEYS, {part.scope: fc.MarkerWriter(clock)}, out)
    commands = decoded(out)
    flat: list[bytes | str] = ["HSET", KEYS.entity(ref), "v", "2"]
    for name, value in fields.items():
        flat += [name, value]
    assert commands[:2] == [b("DEL", KEYS.entity(ref)), b(*flat)]
    assert b("HSET", KEYS.suppressed, "h", b"t" * 20000) in commands
