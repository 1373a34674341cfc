"""Packed round trips on a borrowed connection (``streams.watch_commit``, ``streams.wave_load``,
the outbox relay): :class:`Borrowed`, :func:`round_trip`, and :func:`read_replies`, the replies
of one round trip read in one loop.

A packed round trip writes its commands in one buffer (``Connection.send_packed_command``) on a
connection taken from the client's pool, and reads their replies itself: if anything raises in
between, a reply may be left unread on that connection, and a ``WATCH`` or ``MULTI`` may be
open, so it is disconnected before it goes back to the pool (:class:`Borrowed`).

``Connection.read_response`` costs two Python frames per reply (the connection's, then its
parser's), an f-string of the host for the error it might raise and a few ``isinstance``
checks; a packed round trip of the watch commit or the wave load has dozens of replies (~3.9
per event). :func:`read_replies` reads them from the connection's hiredis reader in one loop
instead (:class:`Replies`, which can also take them as they come, without waiting: the work
a round trip does meanwhile goes on until the last one is in), with ``read_response``'s
semantics:

* the reader is fed through the parser's own ``read_from_socket`` when it has no whole reply
  (so a socket timeout is redis' ``TimeoutError``, a closed socket its ``ConnectionError``);
  a timeout or ``OSError`` from the socket becomes ``TimeoutError``/``ConnectionError`` as
  ``read_response`` raises them, and any error while reading disconnects the connection
  first, as ``read_response`` does (``disconnect_on_error``);
* a reply that is a ``ConnectionError`` (``LOADING``, an authentication error; or an array
  whose first element is one) raises at once, as the parser raises it;
* a reply that is a ``ResponseError`` stays in place (``read_response`` raises it without
  disconnecting, the next reply still readable): the caller gets the first one beside the
  replies and decides (both callers raise it once all are read);
* after the replies, the connection's next health check is pushed back as by each
  ``read_response``;
* on RESP3 (redis-py 8's default) a push message among the replies (hiredis'
  ``PushNotification``) goes to the parser's handlers and is not a reply, as in
  ``read_response``.

Any other connection (no hiredis parser: redis-py's own RESP parsers, a caching proxy; or
not connected) reads through ``read_response`` per reply, with the same answer.

The reader and ``read_from_socket`` are redis-py's private attributes (redis-py 8.1, hiredis
3.5, pinned by the lock): ``tests/unit/test_replies.py`` pins this module's answers to
``read_response``'s on a socket pair, so an upgrade that changes them fails there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any, Final

import redis
from redis._parsers.hiredis import NOT_ENOUGH_DATA, _HiredisParser
from redis.exceptions import RedisError, ResponseError


class Borrowed:
    """``with Borrowed(client) as b``: ``b.conn``, a connection of ``client``'s pool (TLS and
    AUTH as the client is configured), released at the end of the block; disconnected first
    if the block raised, unless it set ``b.clean`` (it knows the connection holds no unread
    reply and no open ``WATCH`` or ``MULTI``, e.g. after an aborted ``EXEC``)."""

    __slots__ = ("clean", "conn", "pool")

    def __init__(self, client: redis.Redis) -> None:
        self.pool: Any = client.connection_pool
        self.clean = False

    def __enter__(self) -> Borrowed:
        self.conn: Any = self.pool.get_connection()
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            if kind is not None and not self.clean:
                self.conn.disconnect()
        finally:
            self.pool.release(self.conn)


#: Work done while a round trip's replies are on their way (``round_trip(meanwhile=...)``):
#: called once the commands are sent, with a function that tells whether the replies have
#: arrived, all of them (:meth:`Replies.arrived`: it takes what the socket holds, never
#: waiting); it returns when that says so, or when it has nothing more to do. It never raises
#: (the round trip's connection would be dropped for nothing) and never uses that connection.
#: The lane's worker consumes and prepares its next batch there (``streams.ahead``, ADR 0038).
Meanwhile = Callable[[Callable[[], bool]], None]


def round_trip(
    conn: Any,
    packed: list[bytes],
    count: int,
    *,
    decode: bool,
    check_health: bool = True,
    meanwhile: Meanwhile | None = None,
) -> list[Any]:
    """Send ``packed`` (``count`` commands) on ``conn`` and read their replies
    (:func:`read_replies`); a reply that is an error raises once all are read.
    ``check_health=False``: no health check first (inside a ``WATCH``, a check that fails
    reconnects, and a new connection would ``EXEC`` unguarded: a dropped one raises).
    ``meanwhile``: run between the send and the read (:data:`Meanwhile`), told the replies
    have arrived once the last one has (:meth:`Replies.arrived`), not at the first: a
    transaction's ``+QUEUED`` replies come while Redis still reads its commands, its
    ``EXEC``'s only once it has run them all."""
    conn.send_packed_command(packed, check_health=check_health)
    reading = Replies(conn, count, decode=decode)
    if meanwhile is not None:
        meanwhile(reading.arrived)
    replies, error = reading.read()
    if error is not None:
        raise error
    return replies


def read_replies(conn: Any, count: int, *, decode: bool) -> tuple[list[Any], ResponseError | None]:
    """The next ``count`` replies of ``conn`` (a redis-py ``Connection``), decoded as the
    client's ``decode_responses`` asks if ``decode`` (``read_response()``), else as bytes
    (``read_response(disable_decoding=True)``); and the first reply that is a
    ``ResponseError`` (None: none is), left in place among the replies."""
    return Replies(conn, count, decode=decode).read()


class Replies:
    """The next ``count`` replies of ``conn``, read as they come (:meth:`arrived`, which never
    waits) and then to the last (:meth:`read`, which waits). What :meth:`arrived` read stays
    read: the replies are taken from the hiredis reader once, in order."""

    __slots__ = ("_failed", "conn", "count", "decode", "first", "replies")

    def __init__(self, conn: Any, count: int, *, decode: bool) -> None:
        self.conn = conn
        self.count = count  # still to read
        self.decode = decode
        self.replies: list[Any] = []
        self.first: ResponseError | None = None  # the first reply that is a ``ResponseError``
        self._failed: Exception | None = None  # what :meth:`arrived` met, raised by read

    def arrived(self) -> bool:
        """Whether every reply is in, reading what the socket holds now (never waiting; no
        hiredis parser: whether a reply has begun to arrive, ``Connection.can_read``). It
        never raises: an error is kept for :meth:`read`, and the replies count as arrived."""
        if not self.count or self._failed is not None:
            return True
        parser: Any = getattr(self.conn, "_parser", None)
        if type(parser) is not _HiredisParser or getattr(parser, "_reader", None) is None:
            try:
                return bool(self.conn.can_read(0))
            except Exception:  # read() meets it again
                return True
        try:
            self._take(parser, partial(parser.read_from_socket, 0, False))
        except Exception as error:  # (an interrupt is not deferred)
            self._failed = error
            return True
        return not self.count

    def read(self) -> tuple[list[Any], ResponseError | None]:
        """The replies (waiting for the rest), and the first that is a ``ResponseError``."""
        conn = self.conn
        parser: Any = getattr(conn, "_parser", None)
        hiredis = type(parser) is _HiredisParser  # not a subclass: its read_response may differ
        if not hiredis or getattr(parser, "_reader", None) is None:
            replies, first = _one_by_one(conn, self.count, decode=self.decode)
            return self.replies + replies, self.first or first
        try:
            if self._failed is not None:
                raise self._failed
            self._take(parser, parser.read_from_socket)
        except TimeoutError as e:  # socket.timeout
            conn.disconnect()
            raise redis.TimeoutError(f"Timeout reading from {conn._host_error()}") from e
        except OSError as e:
            conn.disconnect()
            raise redis.ConnectionError(
                f"Error while reading from {conn._host_error()} : {e.args}"
            ) from e
        except BaseException:
            conn.disconnect()
            raise
        if conn.health_check_interval:
            conn.next_health_check = time.monotonic() + conn.health_check_interval
        return self.replies, self.first

    def _take(self, parser: Any, fill: Callable[[], bool]) -> None:
        """Take replies from the reader while it has whole ones, feeding it with ``fill()``
        when it has none; stops when all are taken or ``fill()`` fed nothing (False: the
        non-blocking one, when the socket holds nothing now)."""
        reader = parser._reader
        gets = reader.gets if self.decode else partial(reader.gets, False)  # one call per reply
        push = parser._hiredis_PushNotificationType  # RESP3's push messages (None: hiredis < 3.2)
        append = self.replies.append
        lost = redis.ConnectionError
        count = self.count
        try:
            while count:
                reply = gets()
                kind = reply.__class__
                if kind is list:  # most replies (HMGET): checked first
                    if reply and isinstance(reply[0], lost):
                        raise reply[0]
                elif kind not in _PLAIN:
                    if reply is NOT_ENOUGH_DATA:
                        if fill() is False:
                            return
                        continue
                    if kind is push:  # not a reply: to the parser's handlers, as read_response
                        parser.handle_push_response(reply)
                        continue
                    if self.first is None:
                        self.first = _error(reply)
                    elif isinstance(reply, lost):
                        raise reply
                count -= 1
                append(reply)
        finally:
            self.count = count


def _error(reply: Any) -> ResponseError | None:
    """``reply`` if it is a ``ResponseError``; raises it if it is a ``ConnectionError``."""
    if isinstance(reply, RedisError):
        if isinstance(reply, redis.ConnectionError):
            raise reply
        if isinstance(reply, ResponseError):
            return reply
    return None


#: reply classes that are no error, push message or ``NOT_ENOUGH_DATA``: appended as they are
_PLAIN: Final = frozenset({bytes, str, int, float, type(None)})


def _one_by_one(conn: Any, count: int, *, decode: bool) -> tuple[list[Any], ResponseError | None]:
    """:func:`read_replies` through ``read_response``."""
    replies: list[Any] = []
    first: ResponseError | None = None
    for _ in range(count):
        try:
            replies.append(conn.read_response(disable_decoding=not decode))
        except ResponseError as exc:
            replies.append(exc)
            first = first or exc
    return replies, first
