"""What a prefix holds in a real Redis, comparable across prefixes (integration tests)."""

from __future__ import annotations

from typing import Any

import redis


def stored(client: redis.Redis, prefix: str, *, expiry: bool = True) -> list[Any]:
    """Every key under ``prefix:`` (the prefix cut off), its type, contents (hash fields and
    set members sorted, stream entries without their ids) and, with ``expiry``, its expiry
    time."""
    out = []
    for key in sorted(client.scan_iter(match=f"{prefix}:*", count=1000)):
        kind = client.type(key)
        if kind == b"hash":
            content: Any = sorted(client.hgetall(key).items())
        elif kind == b"set":
            content = sorted(client.smembers(key))
        elif kind == b"stream":
            content = [fields for _, fields in client.xrange(key)]
        else:
            content = client.get(key)
        row: tuple[Any, ...] = (key[len(prefix) :], kind, content)
        if expiry:
            row += (client.execute_command("EXPIRETIME", key),)  # type: ignore[no-untyped-call]
        out.append(row)
    return out
