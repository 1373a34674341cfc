"""``streams.replies.read_replies`` against a real Redis: the replies of one packed round trip
(a 2 MiB one among thousands of small ones, nil, arrays, integers, an error) are read whole,
on hiredis over RESP3 and RESP2 (one loop) and on the fallbacks (redis-py's own parsers), the
connection usable after; a connection the server drops makes the wave load's call raise
``ConnectionError`` and disconnect it. (The watch commit's: ``test_watch_commit``'s
``test_a_connection_lost_inside_the_window_raises_and_never_commits_unguarded``.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis._parsers import _RESP2Parser, _RESP3Parser

from resolvers.store import Commit, LoadRequest, Write, identifier_ref, profile_ref
from streams.redis_keys import Keys, marker_groups
from streams.redis_store import RedisStore
from streams.replies import read_replies
from streams.resp import Resp
from streams.wave_load import WaveLoad

pytestmark = pytest.mark.integration

BIG = bytes(range(256)) * 8192  # 2 MiB: many 64 KiB reads
SMALL = 1500


@pytest.fixture(params=["hiredis-resp3", "hiredis-resp2", "own-resp3", "own-resp2"])
def client(request: pytest.FixtureRequest, redis_url: str) -> Iterator[redis.Redis]:
    """A client of each kind: read in one loop (hiredis; RESP3 is redis-py 8's default), or
    one by one (redis-py's own parsers)."""
    kinds: dict[str, dict[str, Any]] = {
        "hiredis-resp3": {},
        "hiredis-resp2": {"protocol": 2},
        "own-resp3": {"parser_class": _RESP3Parser},
        "own-resp2": {"parser_class": _RESP2Parser, "protocol": 2},
    }
    client = redis.Redis.from_url(redis_url, **kinds[request.param])
    try:
        yield client
    finally:
        client.close()


def test_a_round_trip_of_many_replies_reads_whole_with_its_error_in_place(
    client: redis.Redis, redis_prefix: str
) -> None:
    big, hsh, text, nothing = (f"{redis_prefix}:{k}" for k in ("big", "h", "t", "none"))
    client.set(big, BIG)
    client.hset(hsh, mapping={"a": b"1", "b": b"22"})
    client.set(text, b"not a hash")
    cmds = Resp()
    cmds.add("GET", big)
    for _ in range(SMALL):
        cmds.add("HMGET", hsh, "a", "missing", "b")
        cmds.add("EXISTS", hsh, nothing)
        cmds.add("GET", nothing)
    cmds.add("HGET", text, "v")  # WRONGTYPE
    cmds.add("GET", big)
    pool = client.connection_pool
    conn: Any = pool.get_connection()
    try:
        conn.send_packed_command(cmds.packed())
        got, first = read_replies(conn, cmds.count, decode=False)
        assert len(got) == cmds.count
        assert got[0] == BIG
        assert got[-1] == BIG
        assert got[1:-2] == [[b"1", None, b"22"], 1, None] * SMALL
        assert isinstance(first, redis.ResponseError)
        assert str(first).startswith("WRONGTYPE")
        assert got[-2] is first
        conn.send_command("PING")
        assert conn.read_response() in (b"PONG", True)  # nothing left unread
    finally:
        pool.release(conn)


class _Dropped(WaveLoad):
    """Its connection is killed by the server before the second round trip."""

    killer: redis.Redis
    dropped: Any = None

    def _call(self, conn: Any, wave: Resp) -> list[Any]:
        if self.round_trips == 1:
            conn.send_command("CLIENT", "ID")
            assert self.killer.client_kill_filter(_id=conn.read_response()) == 1
            self.dropped = conn
        return super()._call(conn, wave)


def test_a_connection_dropped_during_a_wave_load_raises_and_is_disconnected(
    redis_url: str, redis_client: redis.Redis, redis_prefix: str
) -> None:
    store = RedisStore(redis_client, prefix=redis_prefix)
    store.load(LoadRequest())  # the marker hand-over settled (none)
    email, p1 = identifier_ref("email:a@x"), profile_ref("p_1")
    assert store.commit(
        Commit(
            {},
            (),
            writes=(
                Write(email, 1, {"p": b"p_1", "s": b"1"}),
                Write(p1, 1, {"s": b"one", "i": b'["email:a@x"]'}),
            ),
        )
    ).ok
    client = redis.Redis.from_url(redis_url)
    try:
        waves = _Dropped(client, Keys(redis_prefix), 3600)
        waves.killer = redis_client
        request = LoadRequest(identifiers=("email:a@x",), event_ids=("e1",))
        groups = marker_groups(request.event_ids)
        with pytest.raises(redis.ConnectionError):
            waves.load(request, groups)
        assert waves.round_trips == 2  # wave 2 (p_1) was the one dropped
        assert waves.dropped is not None
        assert waves.dropped._sock is None  # disconnected, not pooled as it was
        loaded = WaveLoad(client, Keys(redis_prefix), 3600).load(request, groups)
        assert loaded == store.load(request)  # the pool's next connection works
    finally:
        client.close()
