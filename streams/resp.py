"""How Loom's Redis clients pack a command into the protocol (RESP): :class:`RespPacker`.

redis-py packs with hiredis's ``pack_command`` when hiredis is installed. That costs far more
than copying the bytes once a command is large: a profiles batch's commit (``commit.lua``,
~2,700 arguments, ~1 MB of which one plan of ~330 KB and one outbox entry of ~135 KB) took
4.4 µs per event to pack, against 1.4 µs for one ``bytes.join`` of the same (issue 17,
measured on the bench's real commit arguments). :class:`RespPacker` builds the same bytes
with one join; any argument other than ``bytes``, ``str`` or a plain ``int`` (floats,
memoryviews, wrong types that must raise as before...) leaves the whole command to
redis-py's own hiredis packer, so what reaches Redis is byte for byte what it was.
"""

from __future__ import annotations

from typing import Any

from redis.connection import HiredisRespSerializer


class RespPacker:
    """A redis-py ``command_packer``: ``pack(*args)`` -> the command's bytes, in one chunk."""

    def __init__(self) -> None:
        self._fallback = HiredisRespSerializer()

    def pack(self, *args: Any) -> list[bytes]:
        name = args[0]
        # a multi-word command given as one name ("SCRIPT LOAD") is split, as redis-py does
        if isinstance(name, str):
            args = (*name.encode().split(), *args[1:])
        elif isinstance(name, bytes) and b" " in name:
            args = (*name.split(), *args[1:])
        parts = [b"*%d\r\n" % len(args)]
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
            parts += (b"$%d\r\n" % len(value), value, b"\r\n")  # no method call per piece
        return [b"".join(parts)]
