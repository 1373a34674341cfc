"""The watch commit's commands written straight into RESP (issue 17.2, twelfth pass) are byte
for byte what redis-py's own packer makes of the same commands as tuples: a part's writes as
``commit.lua``'s ``apply(part)`` does them, and :class:`Resp`'s runs of single-key commands and
multi-argument commands."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from redis.connection import HiredisRespSerializer

from resolvers.store import Commit, Kind, MembershipChange, Ref, StreamEntry, Write
from streams import commit_commands as fc
from streams.redis_keys import STREAM_MAXLEN, Keys
from streams.resp import OWN_CHUNK, Resp
from streams.watch_commit import _Reads

KEYS = Keys("lo%om")  # a '%' in the prefix: the formats must take it literally
TTL = 7 * 24 * 3600


def packed(*commands: tuple[Any, ...]) -> bytes:
    packer = HiredisRespSerializer()
    return b"".join(b"".join(packer.pack(*c)) for c in commands)


def sized(sizes: st.SearchStrategy[int]) -> st.SearchStrategy[bytes]:
    return sizes.map(lambda n: b"%" * (n % 3) + b"x" * (n - n % 3))


#: around the looked-up sizes' end (4096) and the own-chunk threshold
VALUES = sized(
    st.one_of(
        st.integers(0, 40), st.integers(4090, 4100), st.integers(OWN_CHUNK - 2, OWN_CHUNK + 2)
    )
)
NAMES = st.one_of(st.sampled_from(["d", "s", "i", "r", "p", "h"]), st.text(min_size=1, max_size=6))
REFS = st.builds(
    Ref, st.sampled_from(list(Kind)), st.one_of(st.sampled_from(["a", "b"]), st.text(max_size=8))
)
VERSIONS = st.one_of(st.integers(0, 5000), st.integers(0, 2**40))
writes = st.builds(Write, REFS, VERSIONS, st.dictionaries(NAMES, VALUES, max_size=4))
parts = st.builds(
    Commit,
    expect=st.dictionaries(REFS, st.integers(0, 3), max_size=6),
    event_ids=st.lists(st.text(max_size=6), unique=True, max_size=6).map(tuple),
    writes=st.lists(writes, max_size=6),
    blind_writes=st.lists(writes, max_size=2),
    suppress=st.dictionaries(st.text(max_size=6), VALUES, max_size=2),
    streams=st.lists(
        st.builds(
            StreamEntry,
            st.sampled_from(["profiles", "inventory"]),
            st.dictionaries(NAMES, VALUES, max_size=3),
        ),
        max_size=3,
    ),
    counters=st.dictionaries(st.text(max_size=8), st.integers(-(2**40), 2**40), max_size=3),
    memberships=st.lists(
        st.builds(MembershipChange, st.text(max_size=5), st.text(max_size=5), st.booleans()),
        max_size=4,
    ),
)


def reference(part: Commit, clock: fc.MarkerClock) -> tuple[bytes, int]:
    """``apply(part)``'s commands as tuples through redis-py's packer (the markers' from a
    :class:`fc.MarkerWriter` of its own), and how many."""
    cmds: list[tuple[Any, ...]] = []
    writes = [*part.writes, *part.blind_writes]
    refs = [w.ref for w in writes]
    index = {Kind.PROFILE: KEYS.profile_index, Kind.STOCK: KEYS.stock_index}
    ops: list[tuple[str, bool, str]] = []
    for n, w in enumerate(writes):
        key = KEYS.entity(w.ref)
        if not (n < len(part.writes) and part.expect.get(w.ref) == 0 and refs.count(w.ref) == 1):
            cmds.append(("DEL", key))
        if w.fields:
            cmds.append(("HSET", key, "v", w.version, *(x for f in w.fields.items() for x in f)))
        if w.ref.kind in index:
            ops.append((index[w.ref.kind], "d" in w.fields, w.ref.name))
    ops += [(KEYS.audience(c.audience), c.member, c.profile_id) for c in part.memberships]
    cmds += [(name, key, *members) for name, key, members in fc.set_runs(ops)]
    before = packed(*cmds)
    markers = Resp()
    fc.MarkerWriter(clock).mark(part.event_ids, markers)
    after: list[tuple[Any, ...]] = []
    if part.suppress:
        after.append(("HSET", KEYS.suppressed, *(x for f in part.suppress.items() for x in f)))
    counts = Counter(entry.stream for entry in part.streams)
    for entry in part.streams:
        flat = (x for f in entry.fields.items() for x in f)
        trim: tuple[Any, ...] = ()
        if counts[entry.stream] > fc.TRIM_ONCE_MAX:
            trim = ("MAXLEN", "~", STREAM_MAXLEN)
        after.append(("XADD", KEYS.stream(entry.stream), *trim, "*", *flat))
    after += [
        ("XTRIM", KEYS.stream(s), "MAXLEN", "~", STREAM_MAXLEN)
        for s, n in counts.items()
        if n <= fc.TRIM_ONCE_MAX
    ]
    after += [("HINCRBY", KEYS.stats, name, str(n)) for name, n in part.counters.items()]
    data = before + b"".join(markers.packed()) + packed(*after)
    return data, len(cmds) + markers.count + len(after)


@settings(max_examples=300, deadline=None)
@given(parts, st.booleans())
def test_a_part_is_written_as_redis_py_packs_its_commands(part: Commit, bucketed: bool) -> None:
    """Entities (checked absent or not, a ref written twice), index and audience runs, markers
    (bucketed by the caller or not), suppressions, stream entries and counters."""
    clock = fc.MarkerClock.at(KEYS, part.scope, TTL, now=1_000_000, width=TTL // 4, since=0)
    out = Resp()
    groups = fc.marker_groups(part.event_ids) if bucketed else None
    fc.part_commands(part, KEYS, {part.scope: fc.MarkerWriter(clock)}, out, groups)
    data, count = reference(part, clock)
    assert b"".join(out.packed()) == data
    assert out.count == count
    assert all(len(c) >= OWN_CHUNK for c in out.packed()[1::2])  # large values: alone


def test_a_stream_given_more_than_the_bound_trims_per_entry() -> None:
    """Past :data:`fc.TRIM_ONCE_MAX` entries of one stream in a part, each ``XADD`` trims
    itself (``commit.lua``'s form) and that stream gets no ``XTRIM``; the other stream's
    entries are trimmed once."""
    many = [StreamEntry("profiles", {"id": b"%d" % n}) for n in range(fc.TRIM_ONCE_MAX + 1)]
    part = Commit({}, (), streams=(*many, StreamEntry("inventory", {"sku": b"k"})))
    clock = fc.MarkerClock.at(KEYS, part.scope, TTL, now=1_000_000, width=TTL // 4, since=0)
    out = Resp()
    fc.part_commands(part, KEYS, {part.scope: fc.MarkerWriter(clock)}, out)
    assert b"".join(out.packed()) == reference(part, clock)[0]
    data = b"".join(out.packed())
    assert data.count(b"XTRIM") == 1
    assert data.count(b"MAXLEN") == fc.TRIM_ONCE_MAX + 2


TEXT = st.text(max_size=12)


@given(
    st.sampled_from([fc.EXISTS, fc.DEL, fc.HGET_V[0], b"*2\r\n$3\r\n%d%\r\n"]),
    TEXT,
    st.lists(TEXT, max_size=5),
)
def test_keyed_all_is_one_command_per_key(head: bytes, prefix: str, names: list[str]) -> None:
    tails = {fc.HGET_V[0]: fc.HGET_V[1]}
    tail = tails.get(head, b"")
    extra = (b"v",) if tail else ()
    name = head.split(b"\r\n")[2]
    out = Resp()
    out.keyed_all(head, prefix, names, tail)
    assert b"".join(out.packed()) == packed(*((name, prefix + n, *extra) for n in names))
    assert out.count == len(names)


@given(st.sampled_from([b"EXISTS", b"HMGET", b"S%ADD"]), st.lists(TEXT), st.lists(st.binary()))
def test_command_packs_its_arguments_then_its_members(
    name: bytes, args: list[str], members: list[bytes]
) -> None:
    out = Resp()
    out.command(b"$%d\r\n%b\r\n" % (len(name), name), args, members)
    assert b"".join(out.packed()) == packed((name, *args, *members))
    assert out.count == 1


def test_the_read_buckets_are_reused_only_for_a_single_part_without_repeated_ids() -> None:
    ids = ["e1", "e2", "e3"]
    reads = _Reads(versions={}, groups={"profiles": fc.marker_groups(ids)})
    assert reads.groups_of(Commit({}, tuple(ids)), 1) == fc.marker_groups(ids)
    assert reads.groups_of(Commit({}, tuple(ids)), 2) is None  # the call's ids, not the part's
    assert reads.groups_of(Commit({}, ("e1", "e1", "e2", "e3")), 1) is None  # deduplicated
    assert reads.groups_of(Commit({}, tuple(ids), scope="inventory"), 1) is None


#: sizes around the looked-up heads' bound (``resp.MAX_HEADS``): 4095 looked up, 4096 made
AROUND_HEADS = st.sampled_from([0, 1, 9, 10, 4094, 4095, 4096, 4097, 10_000])


@settings(deadline=None)
@given(
    st.lists(AROUND_HEADS, max_size=4),
    st.lists(AROUND_HEADS, max_size=4),
    st.sampled_from(["", "lo%om:v1:id:"]),
    st.integers(0, 4100),
)
def test_every_writer_packs_long_arguments_as_redis_py(
    arg_sizes: list[int], member_sizes: list[int], prefix: str, n_args: int
) -> None:
    """Lengths and counts are looked up below 4096 and formatted from there (seventeenth
    pass): either way each writer's bytes are redis-py's."""
    args = ["a" * n for n in arg_sizes]
    members = [b"m" * n for n in member_sizes]
    out = Resp()
    out.command(b"$4\r\nSADD\r\n", args, members)
    out.keyed_all(fc.HGET_V[0], prefix, args, fc.HGET_V[1])
    out.keyed_command(b"$6\r\nEXISTS\r\n", prefix, args)
    out.head(2 + 2 * len(args), b"HSET", "k")
    out.ids_marked(args)
    out.add("HMGET", "k", *args, *members, n_args)
    out.pairs(zip(args, members, strict=False))
    out.pairs(zip(args, members, strict=False), names=False)
    pairs = [x for a, m in zip(args, members, strict=False) for x in (a, m)]
    assert b"".join(out.packed()) == packed(
        ("SADD", *args, *members),
        *(("HGET", prefix + a, "v") for a in args),
        ("EXISTS", *(prefix + a for a in args)),
        ("HSET", "k", *(x for a in args for x in (a, "1"))),
        ("HMGET", "k", *args, *members, n_args),
    ) + 2 * _pairs_tail(pairs)
    assert out.count == 4 + len(args)


def _pairs_tail(pairs: list[Any]) -> bytes:
    """The arguments ``pairs`` in RESP (a command's without its head and name)."""
    whole = packed(("X", *pairs))
    return whole[len(b"*%d\r\n$1\r\nX\r\n" % (1 + len(pairs))) :]
