"""Decoded entity state by exact stored bytes, shared across one worker's batches."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from resolvers.store import Ref


class DecodeCache:
    """Decoded entity state by exact stored bytes, shared across one worker's batches.

    Hot entities (a busy SKU's ledger, a returning customer) are loaded again and again; when
    the bytes are identical the decoded value is too, so it is reused instead of parsed. Only
    immutable values are cached. Bounded: the oldest entries go first.
    """

    def __init__(self, max_entries: int = 50_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Ref, tuple[bytes, Any]] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, ref: Ref, raw: bytes, decode: Callable[[bytes], Any]) -> Any:
        cached = self._entries.get(ref)
        if cached is not None and cached[0] == raw:
            self.hits += 1
            self._entries.move_to_end(ref)
            return cached[1]
        self.misses += 1
        value = decode(raw)
        self._entries[ref] = (raw, value)
        self._entries.move_to_end(ref)
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return value
