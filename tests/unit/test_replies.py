"""``streams.replies.read_replies`` on a redis-py ``Connection`` wired to one end of a socket
pair (no server: the test writes the RESP bytes): it answers as ``read_response`` one reply at
a time does, however the bytes arrive, and raises and disconnects as it does. Then
``round_trip`` on the same wiring, and ``Borrowed``'s release and disconnect rules."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from redis._parsers import _HiredisParser, _RESP2Parser, _RESP3Parser

from streams.replies import Borrowed, Replies, read_replies, round_trip

Wired = tuple[Any, socket.socket]  # (redis-py is partly untyped: a Connection as Any)


@contextmanager
def wired(
    *,
    read_size: int = 65536,
    parser: type[Any] = _HiredisParser,
    protocol: int = 2,
    decode: bool = False,
    timeout: float | None = None,
    health_check_interval: int = 0,
) -> Iterator[Wired]:
    """A connection whose socket is ``ours``; the test writes the server's side."""
    ours, theirs = socket.socketpair()
    conn: Any = redis.Connection(  # type: ignore[no-untyped-call]
        socket_read_size=read_size,
        parser_class=parser,
        protocol=protocol,
        decode_responses=decode,
        socket_timeout=timeout,
        health_check_interval=health_check_interval,
    )
    ours.settimeout(timeout)
    conn._sock = ours
    conn._parser.on_connect(conn)
    try:
        yield conn, theirs
    finally:
        conn.disconnect()
        theirs.close()


def resp(value: Any) -> bytes:
    """RESP2 of a reply: bytes (bulk), None (nil), int, str (``+simple``), ``Exception``
    (``-error``), list (array)."""
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, bytes):
        return b"$%d\r\n%b\r\n" % (len(value), value)
    if isinstance(value, bool | int):
        return b":%d\r\n" % value
    if isinstance(value, str):
        return b"+%b\r\n" % value.encode()
    if isinstance(value, Exception):
        return b"-%b\r\n" % str(value).encode()
    return b"*%d\r\n" % len(value) + b"".join(resp(v) for v in value)


def shown(value: Any) -> Any:
    """A reply comparable with ``==`` (an error as its class and message)."""
    if isinstance(value, Exception):
        return (type(value), str(value))
    if isinstance(value, list):
        return [shown(v) for v in value]
    return value


def one_by_one(conn: redis.Connection, count: int, *, decode: bool) -> list[Any]:
    """What ``read_response`` answers per reply (a ``ResponseError`` it raises, in place)."""
    out: list[Any] = []
    for _ in range(count):
        try:
            out.append(conn.read_response(disable_decoding=not decode))
        except redis.ResponseError as exc:
            out.append(exc)
    return out


scalars = st.one_of(
    st.binary(max_size=300),
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from(["OK", "QUEUED"]),
    st.sampled_from([Exception("ERR wrong number"), Exception("WRONGTYPE Operation against")]),
)
reply_trees = st.recursive(scalars, lambda kids: st.lists(kids, max_size=6), max_leaves=20)


@given(
    st.lists(st.tuples(reply_trees, st.booleans()), min_size=1, max_size=30),
    st.integers(1, 64),
    st.booleans(),
    st.sampled_from([(_HiredisParser, 2), (_RESP2Parser, 2), (_HiredisParser, 3)]),
)
def test_the_replies_are_read_responses_however_the_bytes_are_split(
    values: list[tuple[Any, bool]], read_size: int, decode: bool, parser: tuple[type[Any], int]
) -> None:
    """Any replies, fed ``read_size`` bytes per ``recv`` (on RESP3, push messages between
    them): read as ``read_response`` reads them (hiredis' parser, or redis-py's own on
    RESP2: its RESP3 one reads RESP2's nil ``$-1`` as b"", hiredis as None), the
    first error beside them, the pushes handed to the parser's handler, and not one byte of
    the next reply consumed. (Binary values: the client does not decode; decoding below.)"""
    parser_class, protocol = parser
    data = b"".join(
        resp(v) + (b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n" if p and protocol == 3 else b"")
        for v, p in values
    )
    data += b"+NEXT\r\n"
    pushed: list[Any] = []
    with wired(read_size=read_size, protocol=protocol) as (conn, theirs):
        if protocol == 3:
            conn._parser.set_invalidation_push_handler(pushed.append)
        theirs.sendall(data)
        got, first = read_replies(conn, len(values), decode=decode)
        assert conn.read_response() == b"NEXT"
    want_pushed: list[Any] = []
    with wired(read_size=read_size, parser=parser_class, protocol=protocol) as (conn, theirs):
        if protocol == 3:
            conn._parser.set_invalidation_push_handler(want_pushed.append)
        theirs.sendall(data)
        want = one_by_one(conn, len(values), decode=decode)
        assert conn.read_response() == b"NEXT"
    assert shown(got) == shown(want)
    assert pushed == want_pushed
    errors = [r for r in got if isinstance(r, redis.ResponseError)]
    assert first is (errors[0] if errors else None)


def test_a_large_reply_and_many_small_ones_across_recv_boundaries() -> None:
    big = bytes(range(256)) * 4096  # 1 MiB, over many 4 KiB reads
    values: list[Any] = [big, *([b"v", None, 7, [b"a", None]] * 2000), big[:-1]]
    data = b"".join(resp(v) for v in values)
    with wired(read_size=4096) as (conn, theirs):
        writer = threading.Thread(target=theirs.sendall, args=(data,))
        writer.start()
        got, first = read_replies(conn, len(values), decode=False)
        writer.join()
    assert got == values
    assert first is None


def test_an_error_reply_stays_in_place_and_the_connection_stays_usable() -> None:
    with wired() as (conn, theirs):
        theirs.sendall(
            b"$1\r\na\r\n-WRONGTYPE Operation against a key\r\n:5\r\n-ERR two\r\n+OK\r\n"
        )
        got, first = read_replies(conn, 4, decode=False)
        assert got[0] == b"a"
        assert got[2] == 5
        assert isinstance(first, redis.ResponseError)
        assert first is got[1]
        assert str(first) == "WRONGTYPE Operation against a key"
        assert isinstance(got[3], redis.ResponseError)
        assert str(got[3]) == "two"  # "ERR " cut off, as redis-py's parse_error does
        assert conn._sock is not None
        assert read_replies(conn, 1, decode=False) == ([b"OK"], None)


def test_decoding_follows_the_flag_and_the_clients_setting() -> None:
    data = b"$3\r\nabc\r\n*2\r\n$1\r\nx\r\n$-1\r\n"
    with wired(decode=True) as (conn, theirs):
        theirs.sendall(data * 2)
        assert read_replies(conn, 2, decode=True) == (["abc", ["x", None]], None)
        assert read_replies(conn, 2, decode=False) == ([b"abc", [b"x", None]], None)


@pytest.mark.parametrize(
    "data",
    [b"-LOADING Redis is loading the dataset in memory\r\n", b"*2\r\n-LOADING x\r\n:1\r\n"],
)
def test_a_connection_error_reply_raises_and_disconnects(data: bytes) -> None:
    """``LOADING`` is a ``BusyLoadingError`` (a ``ConnectionError``), alone or first in an
    array: raised as the parser raises it, the connection dropped."""
    with wired() as (conn, theirs):
        theirs.sendall(b":1\r\n" + data + b":2\r\n")
        with pytest.raises(redis.BusyLoadingError):
            read_replies(conn, 3, decode=False)
        assert conn._sock is None


def test_a_connection_closed_mid_reply_raises_connection_error_and_disconnects() -> None:
    with wired(read_size=16) as (conn, theirs):
        theirs.sendall(b":1\r\n$100\r\n" + b"x" * 50)
        theirs.shutdown(socket.SHUT_WR)
        with pytest.raises(redis.ConnectionError, match="Connection closed by server"):
            read_replies(conn, 2, decode=False)
        assert conn._sock is None


def test_a_socket_timeout_raises_timeout_error_and_disconnects() -> None:
    with wired(timeout=0.01) as (conn, theirs):
        theirs.sendall(b":1\r\n")  # the second reply never comes
        with pytest.raises(redis.TimeoutError):
            read_replies(conn, 2, decode=False)
        assert conn._sock is None


@pytest.mark.parametrize(
    ("raised", "expected", "message"),
    [
        (ConnectionResetError(104, "reset"), redis.ConnectionError, "Error while reading from"),
        (TimeoutError("timed out"), redis.TimeoutError, "Timeout reading from"),
        (KeyboardInterrupt(), KeyboardInterrupt, None),
    ],
)
def test_socket_errors_become_redis_errors_as_read_response_makes_them(
    monkeypatch: pytest.MonkeyPatch, raised: BaseException, expected: type, message: str | None
) -> None:
    with wired() as (conn, _theirs):

        def fail(*args: Any, **kwargs: Any) -> bool:
            raise raised

        monkeypatch.setattr(conn._parser, "read_from_socket", fail)
        with pytest.raises(expected, match=message):
            read_replies(conn, 1, decode=False)
        assert conn._sock is None


def test_the_next_health_check_is_pushed_back_as_by_read_response() -> None:
    with wired(health_check_interval=30) as (conn, theirs):
        conn.next_health_check = 0
        theirs.sendall(b"+OK\r\n")
        read_replies(conn, 1, decode=False)
        assert conn.next_health_check > time.monotonic() + 20


def spy_on_read_response(conn: redis.Connection) -> list[int]:
    calls: list[int] = []
    read: Callable[..., Any] = conn.read_response

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return read(*args, **kwargs)

    conn.read_response = counted  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize("protocol", [2, 3])
def test_hiredis_reads_in_one_loop(protocol: int) -> None:
    with wired(protocol=protocol) as (conn, theirs):
        calls = spy_on_read_response(conn)
        theirs.sendall(b":1\r\n:2\r\n")
        assert read_replies(conn, 2, decode=False) == ([1, 2], None)
        assert calls == []


@pytest.mark.parametrize(("parser", "protocol"), [(_RESP2Parser, 2), (_RESP3Parser, 3)])
def test_without_hiredis_replies_are_read_one_by_one(parser: type[Any], protocol: int) -> None:
    with wired(parser=parser, protocol=protocol) as (conn, theirs):
        calls = spy_on_read_response(conn)
        theirs.sendall(b":1\r\n-ERR no\r\n:2\r\n")
        got, first = read_replies(conn, 3, decode=False)
        assert got[0::2] == [1, 2]
        assert got[1] is first
        assert str(first) == "no"
        assert len(calls) == 3


def test_on_resp3_a_push_message_between_replies_is_handled_not_returned() -> None:
    """A push (here an invalidation of client-side caching) goes to the parser's handler, as
    ``read_response`` hands it, and the replies read on; a map reply is a dict."""
    pushed: list[Any] = []
    with wired(protocol=3) as (conn, theirs):
        conn._parser.set_invalidation_push_handler(pushed.append)
        theirs.sendall(b":1\r\n>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n%1\r\n+a\r\n:2\r\n")
        assert read_replies(conn, 2, decode=False) == ([1, {b"a": 2}], None)
        assert pushed == [[b"invalidate", [b"k"]]]


def test_a_connection_not_connected_reads_through_read_response() -> None:
    """No reader yet (never connected, or disconnected): ``read_response`` decides (here it
    raises, as the parser finds no reader)."""
    with wired() as (conn, _theirs):
        conn._parser.on_disconnect()
        with pytest.raises(redis.ConnectionError):
            read_replies(conn, 1, decode=False)


# --- round_trip and Borrowed -------------------------------------------------------------------


def received(theirs: socket.socket, n: int) -> bytes:
    """The ``n`` bytes the connection sent (what the server side reads)."""
    got = b""
    while len(got) < n:
        got += theirs.recv(n - len(got))
    return got


def test_a_round_trip_sends_the_buffer_and_returns_its_replies() -> None:
    packed = [b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n", b"*1\r\n$4\r\nPING\r\n"]
    with wired() as (conn, theirs):
        theirs.sendall(b"$1\r\nx\r\n+PONG\r\n")
        assert round_trip(conn, packed, 2, decode=False) == [b"x", b"PONG"]
        assert received(theirs, sum(map(len, packed))) == b"".join(packed)


def test_a_round_trip_with_an_error_reply_reads_them_all_then_raises_the_first() -> None:
    with wired() as (conn, theirs):
        theirs.sendall(b":1\r\n-ERR first\r\n-ERR second\r\n:4\r\n+OK\r\n")
        with pytest.raises(redis.ResponseError, match=r"^first$"):
            round_trip(conn, [b"*1\r\n$4\r\nPING\r\n"], 4, decode=False)
        # all four were read: the next reply on the connection is the fifth
        assert read_replies(conn, 1, decode=False) == ([b"OK"], None)


def test_meanwhile_runs_after_the_send_until_a_reply_arrives_then_the_replies_are_read() -> None:
    """``round_trip(meanwhile=...)`` (ADR 0038): the commands are on the wire before the work
    starts, ``ready`` says False until the server answers and True after, and the replies
    are read as without it."""
    packed = [b"*1\r\n$4\r\nPING\r\n"]
    seen: list[tuple[bytes, bool]] = []
    with wired() as (conn, theirs):

        def meanwhile(ready: Callable[[], bool]) -> None:
            sent = received(theirs, len(packed[0]))  # already sent: the server can start
            seen.append((sent, ready()))
            theirs.sendall(b"+PONG\r\n")  # the server answers while the work goes on
            while not ready():  # a socket poll, no wait
                pass
            seen.append((b"", ready()))

        assert round_trip(conn, packed, 1, decode=False, meanwhile=meanwhile) == [b"PONG"]
    assert seen == [(packed[0], False), (b"", True)]


def test_meanwhile_goes_on_until_the_last_reply_has_arrived() -> None:
    """A transaction's ``+OK`` and ``+QUEUED`` replies come while Redis still reads its
    commands, its ``EXEC``'s once it has run them: ``ready`` says False until that last reply
    is in (the work goes on meanwhile), and the replies read are all of them, in order."""
    packed = [b"*1\r\n$5\r\nMULTI\r\n", b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"]
    packed.append(b"*1\r\n$4\r\nEXEC\r\n")
    seen: list[bool] = []
    with wired() as (conn, theirs):

        def meanwhile(ready: Callable[[], bool]) -> None:
            received(theirs, sum(map(len, packed)))
            theirs.sendall(b"+OK\r\n+QUEUED\r\n")  # the first replies, not the EXEC's
            for _ in range(3):
                seen.append(ready())
            theirs.sendall(b"*1\r\n+OK\r\n")
            while not ready():
                pass
            seen.append(ready())

        got = round_trip(conn, packed, 3, decode=False, meanwhile=meanwhile)
    assert got == [b"OK", b"QUEUED", [b"OK"]]
    assert seen == [False, False, False, True]


@given(
    st.lists(reply_trees, min_size=1, max_size=20),
    st.lists(st.integers(1, 40), min_size=1, max_size=12),
    st.booleans(),
)
def test_replies_read_as_they_come_are_the_replies_read_at_once(
    values: list[Any], cuts: list[int], decode: bool
) -> None:
    """The bytes arrive in pieces, ``Replies.arrived`` polled after each: it says True
    exactly once every reply is in, and ``read`` then returns what ``read_replies`` returns
    for the same bytes, the next reply untouched."""
    data = b"".join(resp(v) for v in values)
    with wired() as (conn, theirs):
        theirs.sendall(data + b"+NEXT\r\n")
        want, want_first = read_replies(conn, len(values), decode=decode)
        assert conn.read_response() == b"NEXT"
    with wired() as (conn, theirs):
        reading = Replies(conn, len(values), decode=decode)
        sent = 0
        for cut in cuts:
            piece = data[sent : sent + cut]
            if piece:
                theirs.sendall(piece)
                sent += len(piece)
            # one poll takes all the socket holds: every reply is in once every byte is
            assert reading.arrived() is (sent == len(data))
        theirs.sendall(data[sent:] + b"+NEXT\r\n")
        got, first = reading.read()
        assert conn.read_response() == b"NEXT"
    assert shown(got) == shown(want)
    assert shown(first) == shown(want_first)


def test_a_connection_closed_while_replies_arrive_raises_at_the_read_and_disconnects() -> None:
    with wired() as (conn, theirs):
        reading = Replies(conn, 2, decode=False)
        theirs.sendall(b"+OK\r\n$5\r\nab")
        assert reading.arrived() is False
        theirs.close()
        assert reading.arrived() is True  # the error is kept for the read
        with pytest.raises(redis.ConnectionError):
            reading.read()
        assert conn._sock is None


@pytest.mark.parametrize("check_health", [True, False])
def test_a_round_trip_asks_for_a_health_check_only_if_told(check_health: bool) -> None:
    with wired(health_check_interval=1) as (conn, theirs):
        conn.next_health_check = 0.0  # due: a check would PING first
        theirs.sendall(b"+PONG\r\n:7\r\n")
        got = round_trip(conn, [b"*1\r\n$4\r\nECHO\r\n"], 1, decode=False,
                         check_health=check_health)  # fmt: skip
        # with a check, its PING's reply is read first; without, the first reply is ours
        assert got == ([7] if check_health else [b"PONG"])
        sent = theirs.recv(1024)
        assert sent.startswith(b"*1\r\n$4\r\nPING\r\n") is check_health


class Pool:
    """A connection pool's bookkeeping (what ``Borrowed`` calls), and what it saw."""

    def __init__(self) -> None:
        self.conn = Conn()
        self.taken = self.released = 0

    def get_connection(self) -> Conn:
        self.taken += 1
        return self.conn

    def release(self, conn: Conn) -> None:
        assert conn is self.conn
        self.released += 1


class Conn:
    def __init__(self) -> None:
        self.disconnected = 0

    def disconnect(self) -> None:
        self.disconnected += 1


class Client:
    def __init__(self) -> None:
        self.connection_pool = Pool()


def test_a_borrowed_connection_goes_back_as_it_is_after_a_clean_block() -> None:
    client = Client()
    with Borrowed(client) as borrowed:  # type: ignore[arg-type]
        assert borrowed.conn is client.connection_pool.conn
        assert client.connection_pool.released == 0
    assert (client.connection_pool.taken, client.connection_pool.released) == (1, 1)
    assert client.connection_pool.conn.disconnected == 0


@pytest.mark.parametrize("error", [ValueError, redis.ConnectionError, KeyboardInterrupt])
def test_a_block_that_raises_disconnects_then_releases(error: type[BaseException]) -> None:
    client = Client()
    with pytest.raises(error), Borrowed(client):  # type: ignore[arg-type]
        raise error("mid round trip")
    assert client.connection_pool.conn.disconnected == 1
    assert client.connection_pool.released == 1


def test_a_block_that_marks_itself_clean_raises_without_disconnecting() -> None:
    """An aborted EXEC leaves no reply unread and no WATCH open: the connection is reused."""
    client = Client()

    def aborted() -> None:
        with Borrowed(client) as borrowed:  # type: ignore[arg-type]
            borrowed.clean = True
            raise RuntimeError("EXEC aborted")

    with pytest.raises(RuntimeError):
        aborted()
    assert client.connection_pool.conn.disconnected == 0
    assert client.connection_pool.released == 1


def test_a_release_that_follows_a_failed_disconnect_still_happens() -> None:
    client = Client()

    def broken() -> None:
        raise OSError("already closed")

    client.connection_pool.conn.disconnect = broken  # type: ignore[method-assign]
    with pytest.raises(OSError, match="already closed"), Borrowed(client):  # type: ignore[arg-type]
        raise ValueError("mid round trip")
    assert client.connection_pool.released == 1
