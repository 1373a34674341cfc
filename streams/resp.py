"""How Loom's Redis clients pack a command into the protocol (RESP): :class:`RespPacker`.

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
"""

from __future__ import annotations

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
