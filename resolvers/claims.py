"""Claims: a lane's workers tell each other what they are about to compute (ADR 0040).

Two workers of a lane commit with a compare-and-set (ADR 0001, 0013): a part whose loaded
entities another worker changed between its load and its commit conflicts and is computed
again. With a claim a worker announces, before computing, the entities of the parts it is
about to compute; another worker then waits for them instead of computing against a state
that is about to change. A worker defers (loads again later, computes nothing) the components
of its parts (``resolvers.parts``) that share an entity with

* another worker's **active** claim: a batch in flight, between its claim and its commit;
* another worker's **previous** claim: what its last commit wrote, when some commit came after
  this worker's load (the lane's commit sequence moved): the load may predate that commit.

Claims never decide what is written: the compare-and-set still does, so a claim that is lost,
stale or wrong costs a conflict (the part computed again), never a wrong profile. An entity
is named in a claim by a 64-bit hash of its ref (two checksums of different kinds: no
identifier's value is stored); a collision only defers a part that did not need it.

The entry of a worker, one field of a hash per lane in Redis (``streams.redis_claims``), or of
a :class:`Board` in memory: the Redis clock when it claimed (an entry older than the time to
live is ignored: its worker died or hangs), the active hashes, the previous ones.
"""

from __future__ import annotations

import struct
import zlib
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, Protocol

from resolvers.parts import Part
from resolvers.store import Ref

#: An entry older than this is ignored (its worker stopped without releasing it).
TTL_MS: Final = 10_000
#: The waits between loads of deferred parts: the first, then doubled up to the last.
FIRST_WAIT_S: Final = 0.002
LAST_WAIT_S: Final = 0.064
#: Claims tried per batch while other workers' claims or commits come in between (then the
#: batch goes on unclaimed: the compare-and-set decides).
ATTEMPTS: Final = 5
#: Deferrals of one batch at most (~1.8 s of waits); then its parts are computed whatever
#: other workers hold (the compare-and-set decides).
MAX_ROUNDS: Final = 32

_HEAD: Final = struct.Struct("<QI")  # claimed at (ms, the Redis clock), active hashes' count


def ref_hash(ref: Ref) -> int:
    """A stable 64-bit name of ``ref`` (the same in every process: CRC-32 and Adler-32 of its
    name; refs of two kinds with one name share it, which only holds a part back)."""
    data = ref.name.encode()
    return zlib.crc32(data) << 32 | zlib.adler32(data)


def part_hashes(part: Part) -> frozenset[int]:
    """What ``part`` claims: every entity its commit's compare-and-set checks."""
    return frozenset(map(ref_hash, part.loaded.entities))


@dataclass(frozen=True, slots=True)
class Entry:
    """One worker's claim (module docstring)."""

    at_ms: int
    active: frozenset[int] = frozenset()
    previous: frozenset[int] = frozenset()

    def encode(self) -> bytes:
        return (
            _HEAD.pack(self.at_ms, len(self.active))
            + array("Q", sorted(self.active)).tobytes()
            + array("Q", sorted(self.previous)).tobytes()
        )

    @classmethod
    def decode(cls, data: bytes) -> Entry | None:
        """The entry ``data`` encodes; None if it is not one (ignored, like a stale one)."""
        if len(data) < _HEAD.size or (len(data) - _HEAD.size) % 8:
            return None
        at_ms, n = _HEAD.unpack_from(data)
        hashes = array("Q")
        hashes.frombytes(data[_HEAD.size :])
        if n > len(hashes):
            return None
        return cls(at_ms, frozenset(hashes[:n]), frozenset(hashes[n:]))

    def released(self, written: frozenset[int]) -> Entry:
        """This entry once its worker committed ``written``: nothing active."""
        return Entry(self.at_ms, frozenset(), written)


def held(others: Iterable[Entry], *, now_ms: int, moved: bool) -> frozenset[int]:
    """What the other workers' entries hold (module docstring): their active hashes, and if
    ``moved`` (a commit came after this batch's load) their previous ones; an entry older
    than :data:`TTL_MS` holds nothing."""
    out: set[int] = set()
    for entry in others:
        if now_ms - entry.at_ms > TTL_MS:
            continue
        out |= entry.active
        if moved:
            out |= entry.previous
    return frozenset(out)


class Claims(Protocol):
    """A worker's side of the claims of one lane (``run_batch(claims=...)``). A claim is
    :meth:`look` then :meth:`hold`, nothing else of the claims in between."""

    def begin(self) -> None:
        """A batch starts."""

    def look(self) -> frozenset[int]:
        """What the lane's other workers hold now (:func:`held`)."""

    def hold(self, active: frozenset[int]) -> bool:
        """Claim ``active`` (what this batch computes now); False if another worker claimed or
        committed since :meth:`look` (look again)."""

    def committing(self, written: frozenset[int]) -> None:
        """The next commit writes these (its transaction releases the claim, naming all
        that the batch's commits wrote as its previous claim)."""

    def end(self) -> None:
        """The batch is done: a claim its commit did not release is released."""

    def wait(self, rounds: int) -> None:
        """Before deferred parts are loaded again (``rounds``: deferrals so far)."""


def backoff_s(rounds: int) -> float:
    """The wait before loading deferred parts again after ``rounds`` deferrals."""
    return min(LAST_WAIT_S, FIRST_WAIT_S * float(2 ** max(0, rounds - 1)))


@dataclass
class Board:
    """Claims in memory, shared by the workers of a test or a model (the Redis hash's
    semantics): worker -> entry, and a clock."""

    entries: dict[str, Entry] = field(default_factory=dict)
    now_ms: Callable[[], int] = lambda: 0


@dataclass
class BoardClaims:
    """:class:`Claims` on a :class:`Board`. ``sequence``: the lane's commit sequence now;
    ``loaded_at``: its value at this worker's last load. No waiting: ``wait`` calls ``idle``
    (a model runs the other worker there)."""

    board: Board
    owner: str
    sequence: Callable[[], object]
    loaded_at: Callable[[], object]
    idle: Callable[[], object] = lambda: None
    _entry: Entry | None = None
    _open: bool = False
    _written: frozenset[int] = frozenset()  # what this batch's commits wrote so far
    _now: int = 0

    def begin(self) -> None:
        self._written = frozenset()

    def look(self) -> frozenset[int]:
        self._now = self.board.now_ms()
        others = [e for o, e in self.board.entries.items() if o != self.owner]
        return held(others, now_ms=self._now, moved=self.sequence() != self.loaded_at())

    def hold(self, active: frozenset[int]) -> bool:
        previous = self._entry.previous if self._entry is not None else frozenset()
        self._entry = self.board.entries[self.owner] = Entry(self._now, active, previous)
        self._open = True
        return True

    def committing(self, written: frozenset[int]) -> None:
        self._written |= written
        if self._entry is not None:
            self._entry = self.board.entries[self.owner] = self._entry.released(self._written)
            self._open = False

    def end(self) -> None:
        if self._open and self._entry is not None:
            self._entry = self.board.entries[self.owner] = self._entry.released(
                self._entry.previous
            )
            self._open = False

    def wait(self, rounds: int) -> None:
        self.idle()
