"""Claims: a lane's workers tell each other what they are about to compute (ADR 0040).

Two workers of a lane commit with a compare-and-set (ADR 0001, 0013): a part whose loaded
entities another worker changed between its load and its commit conflicts and is computed
again. With a claim a worker announces, before computing, the entities of the parts it is
about to compute; another worker then waits for them instead of computing against a state
that is about to change. A worker defers (loads again later, computes nothing) the components
of its parts (``resolvers.parts``) that share an entity with

* another worker's **active** claim: a batch in flight, between its claim and its commit;
* another worker's **previous** claim: what its last batch's commits wrote, when one of them
  came after this worker's load (the lane's commit sequence moved past the load's value): the
  load may predate that commit.

An entry names the lane's commit sequence after each of the commits its previous claim covers.
A commit after this worker's load that no entry names (another worker committed twice since,
and its entry names only the later batch; or a writer that makes no claims) wrote something
no claim says: the batch computes nothing and loads again (:func:`held` returns None).

Claims never decide what is written: the compare-and-set still does, so a claim that is lost,
stale or wrong costs a conflict (the part computed again), never a wrong profile. An entity
is named in a claim by a 64-bit hash of its ref (two checksums of different kinds: no
identifier's value is stored); a collision only defers a part that did not need it.

The entry of a worker, one field of a hash per lane in Redis (``streams.redis_claims``), or of
a :class:`Board` in memory: the Redis clock when it claimed (an entry older than the time to
live is ignored: its worker died or hangs), the active hashes, the previous ones, and the
commit sequence after each commit the previous ones come from.
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
#: How far after the reader's clock an entry may be stamped and still hold: a reader reads the
#: clock, then the entries, and another worker may claim in between (a few ms); an entry
#: further ahead was stamped before the clock moved back (:func:`held`).
AHEAD_MS: Final = 1_000
#: The waits between loads of deferred parts: the first, then doubled up to the last.
FIRST_WAIT_S: Final = 0.002
LAST_WAIT_S: Final = 0.064
#: Claims tried per batch while other workers' claims or commits come in between (then the
#: batch goes on unclaimed: the compare-and-set decides).
ATTEMPTS: Final = 5
#: Deferrals of one batch at most (~1.8 s of waits); then its parts are computed whatever
#: other workers hold (the compare-and-set decides).
MAX_ROUNDS: Final = 32

#: An entry without its commits (the first layout; its length is 4 modulo 8): claimed at (ms,
#: the Redis clock), the active hashes' count; the active hashes, the previous ones.
_HEAD: Final = struct.Struct("<QI")
#: An entry with its commits (length 0 modulo 8, so the first layout's reader ignores it):
#: claimed at, the layout (2), the active hashes' count, the commits' count; the commits, the
#: active hashes, the previous ones.
_HEAD2: Final = struct.Struct("<QIII4x")
_LAYOUT2: Final = 2


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
    #: the lane's commit sequence after each commit ``previous`` comes from; None: not known
    #: (an entry of a worker before the commits were named)
    commits: tuple[int, ...] | None = None

    def encode(self) -> bytes:
        active = array("Q", sorted(self.active)).tobytes()
        previous = array("Q", sorted(self.previous)).tobytes()
        if self.commits is None:
            return _HEAD.pack(self.at_ms, len(self.active)) + active + previous
        head = _HEAD2.pack(self.at_ms, _LAYOUT2, len(self.active), len(self.commits))
        return head + array("Q", self.commits).tobytes() + active + previous

    @classmethod
    def decode(cls, data: bytes) -> Entry | None:
        """The entry ``data`` encodes; None if it is not one (ignored, like a stale one)."""
        if len(data) % 8 == 0:
            if len(data) < _HEAD2.size:
                return None
            at_ms, layout, n, c = _HEAD2.unpack_from(data)
            start = _HEAD2.size
        elif len(data) >= _HEAD.size and len(data) % 8 == _HEAD.size % 8:
            (at_ms, n), layout, c, start = _HEAD.unpack_from(data), 1, None, _HEAD.size
        else:
            return None
        words = array("Q")
        words.frombytes(data[start:])
        skip = c or 0
        if layout not in (1, _LAYOUT2) or skip + n > len(words):
            return None
        commits = None if c is None else tuple(words[:skip])
        rest = words[skip:]
        return cls(at_ms, frozenset(rest[:n]), frozenset(rest[n:]), commits)

    def released(self, written: frozenset[int], commits: tuple[int, ...] | None) -> Entry:
        """This entry once its worker committed ``written`` in ``commits``: nothing active."""
        return Entry(self.at_ms, frozenset(), written, commits)


def held(
    others: Iterable[Entry], *, now_ms: int, loaded: int | None, current: int
) -> frozenset[int] | None:
    """What the other workers' entries hold (module docstring): their active hashes, and the
    previous ones of those with a commit after this batch's load (the lane's commit sequence
    was ``loaded`` then, None: not known; ``current`` now); an entry older than
    :data:`TTL_MS` holds nothing, and so does one stamped more than :data:`AHEAD_MS` after
    ``now_ms`` (a clock that moved back: a failover to a primary whose clock is behind;
    counted as fresh, a crashed worker's claim held until the clock caught up, then for the
    time to live). None: a commit after the load that no entry names (the batch loads again)."""
    fresh = [e for e in others if -AHEAD_MS <= now_ms - e.at_ms <= TTL_MS]
    out: set[int] = set()
    for entry in fresh:
        out |= entry.active
    if loaded == current:
        return frozenset(out)
    named: set[int] = set()
    for entry in fresh:
        commits = entry.commits
        if commits is None or loaded is None or any(c > loaded for c in commits):
            out |= entry.previous
        named.update(commits or ())
    if loaded is not None and (
        current - loaded > len(named) or not named.issuperset(range(loaded + 1, current + 1))
    ):
        return None
    return frozenset(out)


class Claims(Protocol):
    """A worker's side of the claims of one lane (``run_batch(claims=...)``). A claim is
    :meth:`look` then :meth:`hold`, nothing else of the claims in between."""

    def begin(self) -> None:
        """A batch starts."""

    def look(self) -> frozenset[int] | None:
        """What the lane's other workers hold now (:func:`held`; None: load again)."""

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
    ``loaded_at``: its value at this worker's last load (None: not known). No waiting:
    ``wait`` calls ``idle`` (a model runs the other worker there)."""

    board: Board
    owner: str
    sequence: Callable[[], int]
    loaded_at: Callable[[], int | None]
    idle: Callable[[], object] = lambda: None
    _entry: Entry | None = None
    _open: bool = False
    _written: frozenset[int] = frozenset()  # what this batch's commits wrote so far
    _commits: tuple[int, ...] = ()  # the sequence after each of them
    _now: int = 0

    def begin(self) -> None:
        self._written, self._commits = frozenset(), ()

    def look(self) -> frozenset[int] | None:
        self._now = self.board.now_ms()
        others = [e for o, e in self.board.entries.items() if o != self.owner]
        return held(others, now_ms=self._now, loaded=self.loaded_at(), current=self.sequence())

    def hold(self, active: frozenset[int]) -> bool:
        last = self._entry
        previous, commits = (last.previous, last.commits) if last is not None else (frozenset(), ())
        self._entry = self.board.entries[self.owner] = Entry(self._now, active, previous, commits)
        self._open = True
        return True

    def committing(self, written: frozenset[int]) -> None:
        # in memory the commit comes next, alone: the sequence after it is one more
        self._written |= written
        self._commits += (self.sequence() + 1,)
        if self._entry is not None:
            self._entry = self.board.entries[self.owner] = self._entry.released(
                self._written, self._commits
            )
            self._open = False

    def end(self) -> None:
        if self._open and self._entry is not None:
            self._entry = self.board.entries[self.owner] = self._entry.released(
                self._entry.previous, self._entry.commits
            )
            self._open = False

    def wait(self, rounds: int) -> None:
        self.idle()
