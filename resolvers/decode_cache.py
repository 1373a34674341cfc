"""Decoded entity state by exact stored bytes, shared across one worker's batches.

Hot entities (a busy SKU's ledger, a returning customer) are loaded again and again; when the
stored bytes are identical the decoded value is too, so it is reused instead of parsed. Only
immutable values are cached.

Bounded in bytes, not entries (entries of very different sizes made an entry bound a memory
leak in practice: RSS grew with the shop). Each entry is charged an estimate of the memory it
holds: the stored bytes it keeps for the comparison, the decoded objects and what they keep
(a profile's groups keep their facts encoded, ``resolvers.profile.codec.facts_fragment``), plus
a fixed overhead per entry (key, tuple, ordered-dict node; and small values, whose fixed costs
dominate): ``ENTRY_OVERHEAD + BYTES_PER_STORED_BYTE * len(stored)``. Calibrated with
tracemalloc on the profiles lane (30,000 simulator events in process, the cache full: the
memory freed by dropping its entries): profiles 6.6x their stored bytes with the overhead,
identifier records ~830 bytes each; stock ledgers measured 2.4x plus the stored copy, so they
are charged more than they hold (4.7x plus the copy since a ledger keeps its locations'
encodings, ``inventory.encode``: 500 simulator SKUs, still charged 1.1x what they hold). The
least recently used entries are evicted first; a value charged more than an eighth of the
budget is not cached at all. Identifier records are not cached (issue 17, twenty-fourth pass:
their state of a few dozen bytes parses in about the time a lookup takes, and their entries took
~8 % of the budget from profiles at 20,000 simulator events).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Final

#: Bytes charged per entry on top of ``BYTES_PER_STORED_BYTE * len(stored)``.
ENTRY_OVERHEAD: Final = 768
BYTES_PER_STORED_BYTE: Final = 6
DEFAULT_MAX_BYTES: Final = 32 * 1024 * 1024


def right_sized(data: bytes) -> bytes:
    """A copy of ``data`` that holds only its length. ``orjson.dumps`` (3.12 and later)
    returns bytes whose allocation is its growing buffer, at least 4 KiB, never shrunk:
    measured here, 100,000 results of ``orjson.dumps({"a": i})`` (7 bytes each) took 4,120
    bytes of RSS apiece. Whatever a worker keeps for long (the decode cache's entries and what
    they hold) is copied through this first; short-lived results need not be."""
    return bytes(memoryview(data))


def charge(raw: bytes) -> int:
    """The memory an entry holding ``raw`` is charged (see the module docstring)."""
    return ENTRY_OVERHEAD + BYTES_PER_STORED_BYTE * len(raw)


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
        # ``charge`` and ``right_sized``, inline: ~1.2 calls per profiles event (issue 17.2)
        entries = self._entries
        cached = entries.pop(key, None)
        if cached is not None:  # stale: its entity changed
            self.bytes -= cached[2]
        cost = ENTRY_OVERHEAD + BYTES_PER_STORED_BYTE * len(raw)
        max_bytes = self.max_bytes
        if cost * 8 > max_bytes:
            return
        entries[key] = (bytes(memoryview(raw)), value, cost)
        self.bytes += cost
        while self.bytes > max_bytes:
            _, (_, _, evicted) = entries.popitem(last=False)
            self.bytes -= evicted
