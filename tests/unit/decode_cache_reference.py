"""``resolvers.decode_cache.DecodeCache`` as main (5b0190a) had it, verbatim: the reference
of ``test_decode_cache_reference.py`` (``put`` with ``charge`` and ``right_sized`` called)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from resolvers.decode_cache import DEFAULT_MAX_BYTES, charge, right_sized


class DecodeCache:
    """``get(key, raw, decode)``: ``decode(raw)``, reused while ``raw`` is unchanged."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[bytes, Any, int]] = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = 0

    @property
    def entries(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, raw: bytes, decode: Callable[[bytes], Any]) -> Any:
        cached = self._entries.get(key)
        if cached is not None and cached[0] == raw:
            self.hits += 1
            self._entries.move_to_end(key)
            return cached[1]
        self.misses += 1
        value = decode(raw)
        self.put(key, raw, value)
        return value

    def put(self, key: Hashable, raw: bytes, value: Any) -> None:
        """Remember ``value`` as the decoding of ``raw`` (the caller vouches that it is: e.g.
        the value a worker just encoded and stored as ``raw``)."""
        cached = self._entries.pop(key, None)
        if cached is not None:  # stale: its entity changed
            self.bytes -= cached[2]
        cost = charge(raw)
        if cost * 8 > self.max_bytes:
            return
        self._entries[key] = (right_sized(raw), value, cost)
        self.bytes += cost
        while self.bytes > self.max_bytes:
            _, (_, _, evicted) = self._entries.popitem(last=False)
            self.bytes -= evicted
