"""``streams.resp.Resp``'s writers of many arguments (issue 17.2, eighteenth pass: a run of
ids of one size in one join, :func:`streams.resp.run_of`) against main's kept verbatim
(``resp_reference``): for any sequence of calls of ``keyed_all``, ``command``,
``keyed_command`` and ``ids_marked`` with 0-40 names (runs of one size and not, around
:data:`~streams.resp.RUN`; non-ASCII; empty strings; long ones around the 4096 heads),
the same bytes and the same count of commands."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from resp_reference import Resp as OldResp

from streams.resp import RUN, Resp, run_of

#: names mostly of one size (ids), sometimes not (identifier keys), non-ASCII included
SAME = st.sampled_from(["p_0001", "p_0002", "é_003", "p_0004", "sim-05"])
ANY = st.one_of(SAME, st.text(alphabet="ab:é", max_size=6), st.sampled_from(["x" * 4090]))
#: runs of one size (often a key of another first, as HMGET's), mixed lists, runs with one odd
NAMES = st.one_of(
    st.lists(SAME, max_size=40),
    st.tuples(ANY, st.lists(SAME, max_size=40)).map(lambda t: [t[0], *t[1]]),
    st.lists(st.one_of(SAME, ANY), max_size=40),
    st.tuples(st.lists(SAME, max_size=20), ANY, st.lists(SAME, max_size=20)).map(
        lambda t: [*t[0], t[1], *t[2]]
    ),
)
MEMBERS = st.one_of(
    st.lists(SAME.map(str.encode), max_size=40),
    st.lists(st.one_of(SAME.map(str.encode), st.binary(max_size=7)), max_size=40),
)
PREFIX = st.sampled_from(["", "loom:v1:p:", "é:", "x" * 10])
HEAD = st.sampled_from([b"*2\r\n$6\r\nEXISTS\r\n", b"*6\r\n$5\r\nHMGET\r\n"])
TAIL = st.sampled_from([b"", b"$1\r\nv\r\n$1\r\ns\r\n"])
NAME = st.sampled_from([b"$5\r\nHMGET\r\n", b"$6\r\nEXISTS\r\n", b"$4\r\nSADD\r\n"])

CALL = st.one_of(
    st.tuples(st.just("keyed_all"), HEAD, PREFIX, NAMES, TAIL),
    st.tuples(st.just("command"), NAME, NAMES, MEMBERS),
    st.tuples(st.just("keyed_command"), NAME, PREFIX, NAMES),
    st.tuples(st.just("ids_marked"), NAMES),
    st.lists(st.one_of(SAME, st.binary(max_size=5)), min_size=1).map(lambda a: ("add", *a)),
)


def _run(resp: Any, calls: list[tuple[Any, ...]]) -> tuple[bytes, int]:
    for method, *args in calls:
        getattr(resp, method)(*args)
    return b"".join(resp.packed()), resp.count


@settings(max_examples=500, deadline=None)
@given(st.lists(CALL, max_size=6))
def test_writers_as_main(calls: list[tuple[Any, ...]]) -> None:
    assert _run(Resp(), calls) == _run(OldResp(), calls)


def test_a_run_is_one_join_of_the_same_bytes() -> None:
    ids = [f"sim-{i:04d}" for i in range(RUN)]
    assert run_of(ids[:-1]) is None  # too few
    assert run_of([*ids[:-1], "x"]) is None  # not of one size
    expected = b"".join(b"<$10\r\nk:%b\r\n>" % i.encode() for i in ids)
    assert run_of(ids, b"<", "k:", b">") == expected
    assert run_of(ids, b"<", "é:", b">") is None  # not ASCII: byte lengths differ
    assert run_of([*ids[:-1], "sim-é00"]) is None
