"""``streams.resp`` as main 7360a18 had it (its docstring aside), verbatim, for
``test_resp_runs_reference.py`` (issue 17.2, eighteenth pass)."""

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


def bulk(value: bytes | str | int) -> bytes:
    """One argument as a RESP bulk string."""
    if type(value) is str:
        data = value.encode()
    elif type(value) is int:
        data = b"%d" % value
    else:
        data = value  # type: ignore[assignment]
    return b"$%d\r\n%b\r\n" % (len(data), data)


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

    def keyed_all(self, head: bytes, prefix: str, names: Iterable[str], tail: bytes = b"") -> None:
        """A command of one key per name, in one pass: ``head`` (its count and name in RESP:
        ``commit_commands.EXISTS``, ``HGET_V``...), the key ``prefix`` + name, ``tail`` (the rest in
        RESP): a load's ``HMGET`` commands, a commit's ``HGET v`` and ``EXISTS``."""
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
        for k in map(str.encode, names):
            pieces += (lengths[n + len(k)], p, k, b"\r\n")
        self.count += 1

    def ids_marked(self, ids: Sequence[str]) -> None:
        """``id 1`` per event id: a marker hash's fields."""
        pieces, lengths = self.pieces, LENGTHS
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
