"""A part's change-stream entries appended without ``MAXLEN`` and each stream trimmed once
after them (``XTRIM ... MAXLEN ~``, ADR 0028) leave every stream exactly as ``commit.lua``'s
form, ``MAXLEN ~`` on each ``XADD``, does: ``DUMP`` (the serialized stream: its nodes, entries,
length, first and last ids, entries added) byte for byte equal, on a real Redis.

The watch commit's own commands (``commit_commands.part_commands``) are sent, in a
``MULTI``/``EXEC`` per part as the commit sends them; entry ids are given (the same in both
twins) instead of ``*``, so that the two streams can be compared whole, and the bound is small
(the commands' ``MAXLEN`` patched) so that trimming happens at test sizes. Values of random
sizes make nodes split by bytes (``stream-node-max-bytes``) as well as by entry count.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from redis.connection import HiredisRespSerializer

from resolvers.store import Commit, StreamEntry
from streams import commit_commands as fc
from streams.redis_keys import Keys
from streams.resp import Resp, bulk

pytestmark = pytest.mark.integration

TTL = 3600
_examples = itertools.count()
_STAR = b"$1\r\n*\r\n"  # an XADD's id: no key, field or value of these tests is "*"


def _with_ids(data: bytes, ids: itertools.count[int]) -> bytes:
    """``data`` with each ``XADD``'s ``*`` replaced by the next explicit id."""
    pieces = data.split(_STAR)
    return pieces[0] + b"".join(bulk(b"1-%d" % next(ids)) + p for p in pieces[1:])


def _exec(conn: Any, data: bytes) -> None:
    """``data``'s commands in one ``MULTI``/``EXEC``; none may fail."""
    conn.send_packed_command([b"*1\r\n$5\r\nMULTI\r\n" + data + b"*1\r\n$4\r\nEXEC\r\n"])
    while not isinstance(reply := conn.read_response(), list):  # +OK, +QUEUED each
        assert reply in (b"QUEUED", b"OK", "QUEUED", "OK"), reply
    assert not any(isinstance(r, redis.ResponseError) for r in reply), reply


def _reference(keys: Keys, part: Commit, maxlen: int) -> bytes:
    """``commit.lua``'s form: each entry ``XADD key MAXLEN ~ maxlen * fields``."""
    packer = HiredisRespSerializer()
    return b"".join(
        b"".join(
            packer.pack(
                "XADD",
                keys.stream(e.stream),
                "MAXLEN",
                "~",
                maxlen,
                "*",
                *(x for f in e.fields.items() for x in f),
            )
        )
        for e in part.streams
    )


def _ours(keys: Keys, part: Commit) -> bytes:
    """The watch commit's commands for ``part`` (streams only: the markers' commands are
    dropped, they are not what is compared)."""
    clock = fc.MarkerClock.at(keys, part.scope, TTL, now=1_000_000, width=TTL // 4, since=0)
    out = Resp()
    fc.part_commands(part, keys, {part.scope: fc.MarkerWriter(clock)}, out)
    data = b"".join(out.packed())
    if not part.streams:
        return b""
    return data[data.rindex(b"*", 0, data.index(b"\r\n$4\r\nXADD\r\n")) :]


VALUE = st.integers(1, 120).map(lambda n: b"v" * n)
ENTRY = st.builds(
    StreamEntry,
    st.sampled_from(["profiles", "inventory"]),
    st.fixed_dictionaries({"id": VALUE, "op": st.sampled_from([b"upsert", b"merged"])}),
)
CALLS = st.lists(st.lists(ENTRY, max_size=300), min_size=1, max_size=6)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(calls=CALLS, maxlen=st.integers(0, 400))
@example(
    calls=[[StreamEntry("profiles", {"id": b"v" * (n % 90 + 1)}) for n in range(300)]] * 3,
    maxlen=130,
)
def test_trimming_once_per_part_leaves_each_stream_as_trimming_per_entry(
    redis_client: redis.Redis,
    redis_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    calls: list[list[StreamEntry]],
    maxlen: int,
) -> None:
    n = next(_examples)
    old, new = Keys(f"{redis_prefix}-{n}-old"), Keys(f"{redis_prefix}-{n}-new")
    tail = b"$6\r\nMAXLEN\r\n$1\r\n~\r\n" + bulk(str(maxlen))
    monkeypatch.setattr(fc, "_XTRIM_TAIL", tail)
    old_ids, new_ids = itertools.count(1), itertools.count(1)
    conn = redis_client.connection_pool.get_connection()
    try:
        for entries in calls:
            part = Commit({}, (), streams=tuple(entries))
            _exec(conn, _with_ids(_reference(old, part, maxlen), old_ids))
            _exec(conn, _with_ids(_ours(new, part), new_ids))
    finally:
        redis_client.connection_pool.release(conn)
    for stream in ("profiles", "inventory"):
        a, b = redis_client.dump(old.stream(stream)), redis_client.dump(new.stream(stream))
        assert a == b, (stream, redis_client.xlen(old.stream(stream)))
        appended = sum(e.stream == stream for entries in calls for e in entries)
        if appended > maxlen + 200:  # past two whole nodes (100 entries at most each): trimmed
            assert redis_client.xlen(new.stream(stream)) < appended
