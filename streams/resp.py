"""Loom's Redis protocol (RESP) writers: :class:`RespPacker`, how its redis-py clients pack a
command, and :class:`Resp`, a whole round trip written in one pass (the commit and load
without Lua: ``streams.watch_commit``, ``streams.wave_load``).

redis-py packs with hiredis's ``pack_command`` when hiredis is installed. That costs far more
than copying the bytes once a command is large: a profiles batch's commit (``commit.lua``,
~2,700 arguments, ~1 MB of which one plan of ~330 KB and one outbox entry of ~135 KB) took
4.4 µs per event to pack, against 1.4 µs for one ``bytes.join`` of the same (issue 17,
measured on the bench's real commit arguments). :class:`RespPacker` builds the same bytes
with joins; any argument other than ``bytes``, ``str`` or a plain ``int`` (floats,
memoryviews, wrong types that must raise as before...) leaves the whole command to
redis-py's own hiredis packer, so what reaches Redis is byte for byte what it was.

An argument of :data:`OWN_CHUNK` bytes or more (a commit's plan and outbox entry) is not
copied into the join: it is a chunk of its own, between the joined pieces before and after
it, and redis-py sends the chunks in order (one ``sendall`` each, as it does with its own
packer's large values). The bytes on the wire are the same; the ~0.6 MB a profiles commit
copied for nothing are not (issue 17.2, ninth pass: ~0.5 µs per event less).

:class:`Resp` writes commands straight into RESP as they are added: no tuple per command, no
join per command; :meth:`Resp.packed` gives the round trip's bytes as chunks, a value of
:data:`OWN_CHUNK` bytes or more a chunk of its own as above. What runs once or more per
event is written with few Python operations (issue 17.2, twelfth pass): field names
(:data:`NAMES`), sizes and counts (:data:`SIZES`, :data:`LENGTHS`, :data:`COUNTS`) and small
integers (:data:`INTS`) looked up, not formatted; a value or key referenced, copied once by
the final join (seventeenth pass: no ``%`` format per key, id or member either). Tested byte
for byte against redis-py's packer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from redis.connection import HiredisRespSerializer

#: Arguments of at least this many bytes are sent as chunks of their own, not copied.
OWN_CHUNK: Final = 16 * 1024


class RespPacker:
    """A redis-py ``command_packer``: ``pack(*args)`` -> the command's bytes as chunks, in order
    (one chunk unless an argument has ``own_chunk`` bytes or more)."""

    def __init__(self, own_chunk: int = OWN_CHUNK) -> None:
        self._fallback = HiredisRespSerializer()
        self._own_chunk = own_chunk

    def pack(self, *args: Any) -> list[bytes]:
        name = args[0]
        # a multi-word command given as one name ("SCRIPT LOAD") is split, as redis-py does
        if isinstance(name, str):
            args = (*name.encode().split(), *args[1:])
        elif isinstance(name, bytes) and b" " in name:
            args = (*name.split(), *args[1:])
        parts = [b"*%d\r\n" % len(args)]
        chunks: list[bytes] = []
        own_chunk = self._own_chunk
        for arg in args:
            kind = type(arg)
            if kind is bytes:
                value = arg
            elif kind is str:
                value = arg.encode()
            elif kind is int:
                value = b"%d" % arg
            else:
                packed: list[bytes] = self._fallback.pack(*args)
                return packed
            size = len(value)
            if size >= own_chunk:  # sent as it is, between what comes before and after
                parts.append(b"$%d\r\n" % size)
                chunks += (b"".join(parts), value)
                parts = [b"\r\n"]
            else:
                parts += (b"$%d\r\n" % size, value, b"\r\n")  # no method call per piece
        chunks.append(b"".join(parts))
        return chunks


#: field names whose RESP :data:`NAMES` remembers, at most
MAX_NAMES: Final = 256


class Names(dict[str, bytes]):
    """RESP of the field names seen (a handful: a hash's fields, a stream's), up to
    :data:`MAX_NAMES` remembered: ``names[name]``."""

    def __missing__(self, name: str) -> bytes:
        head = bulk(name)
        if len(self) < MAX_NAMES:
            self[name] = head
        return head


NAMES: Final = Names()

#: RESP length heads ``$n\r\n`` of the short sizes, and bulk strings of the small integers
#: (an entity's version), built once: an index instead of a format per value
SIZES: Final = tuple(b"$%d\r\n" % n for n in range(4096))
INTS: Final = tuple(b"$%d\r\n%d\r\n" % (len(b"%d" % n), n) for n in range(4096))


class Heads(dict[int, bytes]):
    """A RESP head of one number (``$n\r\n``, ``*n\r\n``) per ``n``, looked up, not formatted
    (issue 17.2, seventeenth pass: a ``%`` format of bytes costs more than its pieces' joined
    copy): ``heads[n]``; those of ``n`` < :data:`MAX_HEADS` are kept once made."""

    __slots__ = ("_format",)

    def __init__(self, format_: bytes) -> None:
        super().__init__((n, format_ % n) for n in range(MAX_HEADS))
        self._format = format_

    def __missing__(self, n: int) -> bytes:
        return self._format % n  # a large size: formatted, not kept


#: heads kept per :class:`Heads`, made up front (sizes below this are nearly all of a round trip's)
MAX_HEADS: Final = 4096
#: ``$n\r\n`` (a bulk string's length) and ``*n\r\n`` (a command's count of arguments)
LENGTHS: Final = Heads(b"$%d\r\n")
COUNTS: Final = Heads(b"*%d\r\n")


def hmget_head(*fields: str) -> tuple[bytes, bytes]:
    """``HMGET <key> *fields`` in RESP, around its key: the command's head, and its fields
    (for :meth:`Resp.keyed_all`, one such command per key)."""
    head = b"*%d\r\n$5\r\nHMGET\r\n" % (2 + len(fields))
    return head, b"".join(b"$%d\r\n%b\r\n" % (len(f), f.encode()) for f in fields)


def bulk(value: bytes | str | int) -> bytes:
    """One argument as a RESP bulk string."""
    if type(value) is str:
        data = value.encode()
    elif type(value) is int:
        data = b"%d" % value
    else:
        data = value  # type: ignore[assignment]
    return b"$%d\r\n%b\r\n" % (len(data), data)


#: a run of at least this many arguments of one size is written by :func:`run_of`
RUN: Final = 8


def run_of(
    names: Sequence[str], before: bytes = b"", prefix: str = "", after: bytes = b""
) -> bytes | None:
    """Per name ``before``, the bulk string ``prefix`` + name, ``after``: one join and one
    encode for all (no opcode, tuple or bytes object per name), if there are :data:`RUN` names
    or more, all ASCII (``before``, ``prefix`` and ``after`` too) and of one length, as a
    batch's event ids and profile ids are; else None (the caller writes them one by one).
    Eighteenth pass: 500 profile ids' ``EXISTS`` ~147 -> ~15 µs (timeit), ~5k instructions per
    profiles event less in the worker's client (cachegrind)."""
    if len(names) < RUN or len(set(map(len, names))) != 1:
        return None
    if not (before.isascii() and after.isascii()):
        return None
    head = f"{before.decode()}${len(prefix) + len(names[0])}\r\n{prefix}"
    tail = "\r\n" + after.decode()
    text = head + (tail + head).join(names) + tail
    data = text.encode()
    return data if len(data) == len(text) else None  # else a name or the prefix is not ASCII


def bulks(values: Iterable[bytes]) -> bytes:
    """``values`` as RESP bulk strings, one after the other (short values: no own chunk)."""
    pieces: list[bytes] = []
    lengths = LENGTHS
    for v in values:
        pieces += (lengths[len(v)], v, b"\r\n")
    return b"".join(pieces)


class Resp:
    """One round trip's commands, written into RESP as they are added; ``count`` of them (one
    reply each)."""

    __slots__ = ("_chunks", "count", "pieces")

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        #: what is written and not yet joined: a writer may append RESP to it directly (one
        #: call per value saved), taking it again after anything that may start a new list
        #: (a value of ``OWN_CHUNK`` bytes or more, through :meth:`pairs` or :meth:`add`)
        self.pieces: list[bytes] = []
        self.count = 0

    def add(self, *args: bytes | str | int) -> None:
        """A command (its name first)."""
        pieces, lengths = self.pieces, LENGTHS
        pieces.append(COUNTS[len(args)])
        for arg in args:
            if isinstance(arg, str):
                value = arg.encode()
            elif isinstance(arg, bytes):
                value = arg
                if len(value) >= OWN_CHUNK:
                    self._own_chunk(value)
                    pieces = self.pieces
                    continue
            else:
                value = b"%d" % arg
            pieces += (lengths[len(value)], value, b"\r\n")
        self.count += 1

    def head(self, n_args: int, name: bytes, key: str) -> None:
        """The start of a command of ``n_args`` arguments (name and key included): the rest
        follows with :meth:`pairs` / :meth:`raw`."""
        k = key.encode()
        self.pieces.append(
            b"*%d\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (n_args, len(name), name, len(k), k)
        )
        self.count += 1

    def pairs(self, items: Iterable[tuple[str, bytes]], *, names: bool = True) -> None:
        """Field names (or any short text: ``names`` False, not remembered) and their values,
        in turn."""
        pieces, known, sizes = self.pieces, NAMES, SIZES
        short = len(sizes)
        for name, value in items:
            head = known[name] if names else bulk(name)
            size = len(value)
            if size < short:  # no format: the value is not copied before the final join
                pieces += (head, sizes[size], value, b"\r\n")
            elif size < OWN_CHUNK:
                pieces += (head, b"$%d\r\n" % size, value, b"\r\n")
            else:
                pieces.append(head)
                self._own_chunk(value)
                pieces = self.pieces

    def keyed_all(self, head: bytes, prefix: str, names: Sequence[str], tail: bytes = b"") -> None:
        """A command of one key per name, in one pass: ``head`` (its count and name in RESP:
        ``commit_commands.EXISTS``, ``HGET_V``...), the key ``prefix`` + name, ``tail`` (the rest in
        RESP): a load's ``HMGET`` commands, a commit's ``HGET v`` and ``EXISTS``."""
        run = run_of(names, head, prefix, tail)
        if run is not None:
            self.pieces.append(run)
            self.count += len(names)
            return
        p = prefix.encode()
        n, rest, lengths = len(p), b"\r\n" + tail, LENGTHS
        pieces = self.pieces
        before = len(pieces)
        for k in map(str.encode, names):  # pieces joined once, with the round trip's
            pieces += (head, lengths[n + len(k)], p, k, rest)
        self.count += (len(pieces) - before) // 5

    def command(self, name: bytes, args: Sequence[str], members: Sequence[bytes] = ()) -> None:
        """One command: ``name`` (in RESP: ``$6\\r\\nEXISTS\\r\\n``), ``args`` then ``members``
        (short, already encoded): the checks' ``EXISTS``/``HMGET`` runs, ``SADD``/``SREM``."""
        pieces, lengths = self.pieces, LENGTHS
        pieces += (COUNTS[1 + len(args) + len(members)], name)
        # the first argument apart (a key: HMGET's), the rest (ids) as a run if they are one
        run = run_of(args[1:]) if len(args) > RUN else None
        if run is not None:
            a = args[0].encode()
            pieces += (lengths[len(a)], a, b"\r\n", run)
        else:
            for a in map(str.encode, args):
                pieces += (lengths[len(a)], a, b"\r\n")
        for m in members:
            pieces += (lengths[len(m)], m, b"\r\n")
        self.count += 1

    def keyed_command(self, name: bytes, prefix: str, names: Sequence[str]) -> None:
        """One command: ``name`` (in RESP, as :meth:`command`'s) and the key ``prefix`` + name
        per name, each as pieces joined with the round trip (the load's ``EXISTS`` of the
        "versions" ids)."""
        p = prefix.encode()
        n, lengths = len(p), LENGTHS
        pieces = self.pieces
        pieces += (COUNTS[1 + len(names)], name)
        run = run_of(names, b"", prefix)
        if run is not None:
            pieces.append(run)
            self.count += 1
            return
        for k in map(str.encode, names):
            pieces += (lengths[n + len(k)], p, k, b"\r\n")
        self.count += 1

    def ids_marked(self, ids: Sequence[str]) -> None:
        """``id 1`` per event id: a marker hash's fields."""
        pieces, lengths = self.pieces, LENGTHS
        run = run_of(ids, after=b"$1\r\n1\r\n")
        if run is not None:
            pieces.append(run)
            return
        for e in map(str.encode, ids):
            pieces += (lengths[len(e)], e, b"\r\n$1\r\n1\r\n")

    def raw(self, encoded: bytes) -> None:
        """Arguments already in RESP."""
        self.pieces.append(encoded)

    def _own_chunk(self, value: bytes) -> None:
        self.pieces.append(b"$%d\r\n" % len(value))
        self._chunks += (b"".join(self.pieces), value)
        self.pieces = [b"\r\n"]

    def packed(self) -> list[bytes]:
        """The commands' bytes, in order, as chunks to send one after the other."""
        return [*self._chunks, b"".join(self.pieces)]
