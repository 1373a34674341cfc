"""A connection lost after Redis ran the relay's read of new outbox entries, before its reply
arrived: the entries it moved into the relay's pending list still go to Kafka before the
entries committed after them (ADR 0043's note of 2026-12-04).

A redis-py client can retry a command whose connection failed (``redis.Redis(...)`` built
from arguments retries 10 times). For ``XREADGROUP ... >`` a retry is not a repeat: Redis had
already moved the first page into the consumer's pending list, the retry reads the next page,
the relay sends that one, and the first goes in the next pass, after it: a key both pages move
ends on its older value on the compacted topic (tried with retries added to
:func:`streams.redis_clients.client`: ``SKU-0`` sent 2, then 1). Loom's clients are built from
a URL or through Sentinel, whose connections make no retry: the pass fails, and the next one
sends the pending page first. This test keeps it so. The real Redis is reached through
:class:`DropReply`, a loopback proxy that loses one reply.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator

import pytest
import redis
from test_relay_lease import Clock

from resolvers.store import OutboxRecord
from streams import outbox, redis_clients
from streams.relay import OutboxRelay
from streams.settings import LoomSettings
from streams.testing import FakeProducer

TOPIC = "inventory.changes"
SKU = b"SKU-0@oslo-1"


class DropReply:
    """A TCP proxy on loopback to ``port``. Once :meth:`arm`\\ ed, the next command whose bytes
    hold every one of ``marks`` is passed on, and when Redis answers it both sides are closed
    instead: the command ran, its reply is lost."""

    def __init__(self, port: int, *marks: bytes) -> None:
        self.port, self.marks = port, marks
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        self.armed = threading.Event()
        self.dropped = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self) -> None:
        self.armed.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.port))
            self._sockets += [client, server]
            caught = threading.Event()  # this connection carries the command to drop
            threading.Thread(target=self._up, args=(client, server, caught), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, caught), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket, caught: threading.Event) -> None:
        with server, client:
            while data := _recv(client):
                if self.armed.is_set() and all(m in data.upper() for m in self.marks):
                    self.armed.clear()
                    caught.set()
                server.sendall(data)

    def _down(self, server: socket.socket, client: socket.socket, caught: threading.Event) -> None:
        while data := _recv(server):
            if caught.is_set():  # its reply: never delivered
                self.dropped.set()
                for s in (client, server):
                    with contextlib.suppress(OSError):  # (closed by _up meanwhile)
                        s.shutdown(socket.SHUT_RDWR)
                return
            try:
                client.sendall(data)
            except OSError:  # the client went away
                return

    def close(self) -> None:
        self.listener.close()
        for s in self._sockets:
            s.close()


def _recv(s: socket.socket) -> bytes:
    try:
        return s.recv(65536)
    except OSError:
        return b""


@pytest.fixture
def proxy(redis_url: str) -> Iterator[DropReply]:
    port = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs["port"]
    # the relay's read of new entries: XREADGROUP ... STREAMS <outbox> >
    p = DropReply(port, b"XREADGROUP", b"\r\n>\r\n")
    yield p
    p.close()


def test_a_page_of_new_entries_whose_reply_was_lost_still_goes_before_the_next(
    redis_client: redis.Redis, redis_url: str, redis_prefix: str, proxy: DropReply
) -> None:
    key = f"{redis_prefix}:{uuid.uuid4().hex}:v1:outbox"
    host, port = proxy.address
    db = redis_client.connection_pool.connection_kwargs.get("db", 0)
    client = redis_clients.client(LoomSettings(redis_url=f"redis://{host}:{port}/{db}"))
    producer = FakeProducer()
    relay = OutboxRelay(
        client,
        producer,
        key,
        "relay-0",
        clock=Clock(),
        flush_timeout_s=0,  # type: ignore[arg-type]
    )
    for value in (b"1", b"2"):  # two commits moving one stock position
        redis_client.xadd(key, {outbox.FIELD: outbox.pack([OutboxRecord(TOPIC, SKU, value)])})
    proxy.arm()
    passes_failed = 0
    for _ in range(3):
        try:
            relay.relay(count=1)  # a page per entry
        except redis.ConnectionError:
            passes_failed += 1
    assert proxy.dropped.is_set()
    sent = [s.value for s in producer.sent if s.key == SKU]
    assert sent[-1] == b"2", f"the topic ends on {sent[-1]!r} (sent {sent}); Redis's last is 2"
    assert redis_client.xlen(key) == 0  # and nothing is left behind
    assert passes_failed <= 1
    client.close()
    redis_client.delete(key, key.removesuffix("outbox") + "relay-lease")
