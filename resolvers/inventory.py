"""Inventory as a ledger: pure arithmetic over one SKU's stock, ordered by event time.

The worker maps touchpoint events to :class:`Movement` values, folds them into a :class:`SkuStock`
with :func:`apply` (pure: it returns the new state and the effects, it never mutates or does IO),
and writes both :meth:`SkuStock.to_dict` (internal state) and :func:`snapshot` (the public
document), encoded by :func:`encode`, to Redis in one atomic compare-and-set call per batch.

Movements
---------

================  ==========================================  =====================================
kind              effect                                      ``quantity`` means
================  ==========================================  =====================================
order_placed      committed += q                              units reserved (>= 0)
order_fulfilled   on_hand -= q, committed -= q                units shipped (>= 0)
order_cancelled   committed -= q                              units released (>= 0)
pos_sale          on_hand -= q                                units sold in store (>= 0)
return_restock    on_hand += q                                units back on the shelf (>= 0)
adjustment        on_hand += q (``reason`` says why)          signed delta
count             on_hand := q (physical count)               counted units (>= 0)
================  ==========================================  =====================================

``event_id`` must be unique per (sku, location) movement: when one order event has several lines
for the same SKU and location, sum them into one movement (or suffix the id with the line number).

Ordering rule (Square's): by ``occurred_at``, never by arrival
----------------------------------------------------------------

Per (sku, location)::

    on_hand   = latest count + every on_hand delta with occurred_at  > count.occurred_at
    committed = every committed delta, whatever its time (counts do not touch reservations)
    available = on_hand - committed

* A delta stamped *at or before* the latest count changes nothing on ``on_hand`` (the count already
  reflects it), also when it arrives after the count; its committed part (order_fulfilled) still
  counts. A delta that arrived before a later-stamped count is dropped from ``on_hand`` when the
  count arrives. So the result is independent of arrival order.
* Ties: a delta with the same ``occurred_at`` as the count is considered included in the count.
  Two counts with the same ``occurred_at``: the one with the greater ``event_id`` (string order)
  is the latest. A count not later than the latest count in that order changes nothing.
* Idempotency: an ``event_id`` already in the ledger (or equal to the latest count's id) is a
  no-op. Deltas pruned because a count superseded them stay no-ops when redelivered (they are
  still at or before the count), so pruning does not weaken idempotency. The pipeline also
  dedupes event ids in the same atomic call; see *Bounded state* for the one gap.

Bounded state
-------------

Per location the state keeps the latest count, a ledger ``event_id -> (occurred_at, on_hand
delta, committed delta)``, a compacted ``base``, its ``horizon`` and ``since`` (the earliest
folded delta that moved on hand, when known).

* **Pruning by counts (exact).** When a count at time *t* becomes the latest, every ledger entry
  with ``occurred_at <= t`` loses its on_hand part (entries that also have no committed part are
  dropped). They can never matter again: any later count is later than *t*, so it supersedes
  them too, and on_hand only ever adds deltas later than the latest count.
* **Compaction (bounded, exact within a window).** Without counts the ledger would grow forever.
  When a location has more than :attr:`LedgerPolicy.max_entries` entries (it then folds down to
  3/4 of that), or entries older than :attr:`LedgerPolicy.max_age` before the newest
  ``occurred_at`` seen at that location, the oldest entries are folded into ``base`` (on_hand
  and committed sums) and ``horizon`` becomes the newest folded ``occurred_at``. Sums commute,
  so deltas arriving late are always exact. A new latest count resets ``base.on_hand`` to 0:
  exact when the count is at or after the horizon (every folded delta is then at or before it).
  A count stamped before every folded delta that moved on hand (``base_since``: a stock-take
  uploaded after more later sales than the ledger keeps) covers none of them: ``base.on_hand``
  is kept, exact too (until 2026-12-04 it was dropped: 300 sales behind a late count of 1,000
  left 765 on hand instead of 700). **Trade-off:** a count stamped between the folded deltas
  is treated as covering every one of them, so folded deltas between the count and the
  horizon are lost from on_hand until the next count; the alternative (keeping them all)
  would double count those before the count instead, and a physical count is the better
  truth. Folded event
  ids are forgotten: a redelivery older than the window relies on the pipeline's dedupe
  (``LOOM_DEDUPE_TTL_S``). Defaults (256 entries, 30 days) are exact for the demo and tests and
  keep a SKU's state small (measured: a location at the cap serializes to 9.2 KiB of JSON; 20
  such locations to 169 KiB).

Effects
-------

* :class:`StockChanged` when a movement changes a location's ``on_hand`` or ``committed``, and
  for a location's first movement (a position first counted at 0 is announced too).
* :class:`Oversold` when a movement lowers ``available`` and it ends below zero (every further
  oversold unit alerts again; increases never alert).

Public snapshot (what readers see; :func:`snapshot`)
----------------------------------------------------

.. code-block:: json

    {
      "sku": "SKU-1",
      "locations": {
        "oslo-1": {"on_hand": 7, "committed": 2, "available": 5, "available_to_sell": 5,
                   "oversold": false, "last_count_at": "2026-11-22T08:00:00Z",
                   "updated_at": "2026-11-22T17:45:12.5Z"}
      },
      "totals": {"on_hand": 7, "committed": 2, "available": 5, "available_to_sell": 5,
                 "oversold": false, "updated_at": "2026-11-22T17:45:12.5Z"},
      "version": 42
    }

``available_to_sell = max(0, min(on_hand, available))`` is what a storefront shows
(:func:`to_sell`); ``available`` itself may be negative and then ``oversold`` is true, and may
exceed ``on_hand`` while a release (a cancellation, a fulfilment) read before its placement
leaves ``committed`` negative, which the placement settles: the storefront never shows units that
are not on hand. ``totals.available_to_sell`` is the sum over locations of ``on_hand -
max(0, committed)`` (:func:`totals_to_sell`), never below 0: oversold units at one location are
assumed to be served from another one, but a negative ``committed`` (a release read early)
frees no unit anywhere else, so the web total never offers more than the locations' own
``available_to_sell`` together (it summed ``available`` until 2026-12-04), and
``totals.oversold`` is true when any location is oversold. Timestamps are RFC 3339 in UTC with a
``Z`` suffix, or ``null``. ``version`` is added by the writer (a compare-and-set counter); this
module never sets it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from operator import attrgetter
from typing import Any, Final, TypeAlias

import orjson

from resolvers import timefmt
from resolvers.decode_cache import right_sized

#: Version of the :meth:`SkuStock.to_dict` format; :meth:`SkuStock.from_dict` rejects others.
STATE_FORMAT: Final = 1


class InvalidMovementError(ValueError):
    """A movement that can never be applied (bad quantity, naive timestamp, empty key)."""


class InvalidStateError(ValueError):
    """A serialized state that :meth:`SkuStock.from_dict` cannot read."""


class MovementKind(StrEnum):
    ORDER_PLACED = "order_placed"
    ORDER_FULFILLED = "order_fulfilled"
    ORDER_CANCELLED = "order_cancelled"
    POS_SALE = "pos_sale"
    RETURN_RESTOCK = "return_restock"
    ADJUSTMENT = "adjustment"
    COUNT = "count"


#: (sign on on_hand, sign on committed) of each delta kind; ``count`` is absolute, not here.
_DELTA_SIGNS: Final[Mapping[MovementKind, tuple[int, int]]] = {
    MovementKind.ORDER_PLACED: (0, 1),
    MovementKind.ORDER_FULFILLED: (-1, -1),
    MovementKind.ORDER_CANCELLED: (0, -1),
    MovementKind.POS_SALE: (-1, 0),
    MovementKind.RETURN_RESTOCK: (1, 0),
    MovementKind.ADJUSTMENT: (1, 0),
}


def _utc(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidMovementError(f"{what} must be timezone-aware")
    return value.astimezone(UTC)


def format_time(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z`` suffix: ``resolvers.timefmt``, the one format of every
    public output."""
    return timefmt.format_optional(value)


def parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is UTC:
        return parsed
    if parsed.tzinfo is None:
        raise InvalidStateError(f"timestamp without offset: {value!r}")
    return parsed.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Movement:
    """One stock movement of one SKU at one location (see the table in the module docstring)."""

    event_id: str
    sku: str
    location_id: str
    kind: MovementKind
    quantity: int
    occurred_at: datetime
    reason: str | None = None

    def __post_init__(self) -> None:
        if not self.event_id or not self.sku or not self.location_id:
            raise InvalidMovementError("event_id, sku and location_id must be non-empty")
        kind, quantity = self.kind, self.quantity
        if type(kind) is not MovementKind:  # the usual case (a member) needs no lookup
            kind = MovementKind(kind)
            object.__setattr__(self, "kind", kind)
        if type(quantity) is not int and (
            isinstance(quantity, bool) or not isinstance(quantity, int)
        ):
            raise InvalidMovementError(f"quantity must be an int, got {type(quantity).__name__}")
        if kind is not MovementKind.ADJUSTMENT and quantity < 0:
            raise InvalidMovementError(f"{kind} quantity must be >= 0, got {quantity}")
        if self.occurred_at.tzinfo is not UTC:  # in UTC already: astimezone would return it
            object.__setattr__(self, "occurred_at", _utc(self.occurred_at, "occurred_at"))

    @property
    def on_hand_delta(self) -> int:
        """Signed change of on_hand (0 for ``count``, which is absolute)."""
        signs = _DELTA_SIGNS.get(self.kind)
        return 0 if signs is None else signs[0] * self.quantity

    @property
    def committed_delta(self) -> int:
        signs = _DELTA_SIGNS.get(self.kind)
        return 0 if signs is None else signs[1] * self.quantity


@dataclass(frozen=True, slots=True)
class PhysicalCount:
    on_hand: int
    at: datetime
    event_id: str

    def supersedes(self, other: PhysicalCount | None) -> bool:
        """Whether this count is later than ``other`` (ties: greater event_id wins)."""
        return other is None or (self.at, self.event_id) > (other.at, other.event_id)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    occurred_at: datetime
    on_hand_delta: int
    committed_delta: int


@dataclass(frozen=True, slots=True)
class LedgerPolicy:
    """How many deltas each location keeps individually (see *Bounded state*)."""

    max_entries: int = 256
    max_age: timedelta = timedelta(days=30)

    def __post_init__(self) -> None:
        if self.max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        if self.max_age <= timedelta(0):
            raise ValueError("max_age must be positive")


DEFAULT_POLICY: Final = LedgerPolicy()


@dataclass(frozen=True, slots=True)
class LocationStock:
    """Stock of one SKU at one location: a count, a ledger of later deltas and a compacted base."""

    count: PhysicalCount | None = None
    ledger: Mapping[str, LedgerEntry] = field(default_factory=dict)
    base_on_hand: int = 0
    base_committed: int = 0
    horizon: datetime | None = None
    updated_at: datetime | None = None
    #: The earliest ``occurred_at`` of the compacted deltas that moved on hand (``base_on_hand``
    #: holds only deltas later than the latest count): a later count older than it covers none
    #: of them. None while none is compacted, or not known (a state written before 2026-12-04
    #: with a ``base_on_hand`` other than 0).
    base_since: datetime | None = None
    #: Derived once (the ledger never changes after construction): read on every apply and
    #: every write of the SKU.
    on_hand: int = field(init=False, repr=False, compare=False, default=0)
    committed: int = field(init=False, repr=False, compare=False, default=0)
    #: Its parts of the stored state and snapshot (:func:`encode`), once encoded: the object
    #: never changes, and the locations a batch did not move are the same objects in the SKU's
    #: next state (and in the worker's decode cache, which keeps what it wrote).
    _state_json: orjson.Fragment | None = field(init=False, repr=False, compare=False, default=None)
    _view_json: orjson.Fragment | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        on_hand = (
            self.base_on_hand if self.count is None else self.count.on_hand + self.base_on_hand
        )
        committed = self.base_committed
        for entry in self.ledger.values():
            on_hand += entry.on_hand_delta
            committed += entry.committed_delta
        object.__setattr__(self, "on_hand", on_hand)
        object.__setattr__(self, "committed", committed)

    @property
    def count_at(self) -> datetime | None:
        return None if self.count is None else self.count.at

    @property
    def count_event_id(self) -> str | None:
        return None if self.count is None else self.count.event_id

    @property
    def available(self) -> int:
        return self.on_hand - self.committed

    @property
    def available_to_sell(self) -> int:
        return to_sell(self.on_hand, self.available)

    @property
    def oversold(self) -> bool:
        return self.available < 0

    def seen(self, event_id: str) -> bool:
        return event_id in self.ledger or event_id == self.count_event_id


@dataclass(frozen=True, slots=True)
class SkuStock:
    """State of one SKU across all its locations (one Redis entity per SKU)."""

    sku: str
    locations: Mapping[str, LocationStock] = field(default_factory=dict)

    @classmethod
    def empty(cls, sku: str) -> SkuStock:
        return cls(sku=sku)

    def location(self, location_id: str) -> LocationStock:
        return self.locations.get(location_id, _EMPTY_LOCATION)

    @property
    def on_hand(self) -> int:
        return sum(loc.on_hand for loc in self.locations.values())

    @property
    def committed(self) -> int:
        return sum(loc.committed for loc in self.locations.values())

    @property
    def available(self) -> int:
        return self.on_hand - self.committed

    def to_dict(self) -> dict[str, Any]:
        """Stable JSON-ready form (format :data:`STATE_FORMAT`); ledgers sorted by time, id."""
        return {
            "format": STATE_FORMAT,
            "sku": self.sku,
            "locations": {
                loc_id: _location_to_dict(loc) for loc_id, loc in sorted(self.locations.items())
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SkuStock:
        try:
            if data.get("format") != STATE_FORMAT:
                raise InvalidStateError(f"unsupported state format {data.get('format')!r}")
            locations = {
                str(loc_id): _location_from_dict(loc) for loc_id, loc in data["locations"].items()
            }
            return cls(sku=str(data["sku"]), locations=locations)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            if isinstance(exc, InvalidStateError):
                raise
            raise InvalidStateError(f"cannot read inventory state: {exc!r}") from exc


_EMPTY_LOCATION: Final = LocationStock()


def _ledger_order(item: tuple[str, LedgerEntry]) -> tuple[datetime, str]:
    return item[1].occurred_at, item[0]


_occurred_at: Final = attrgetter("occurred_at")


def _location_to_dict(loc: LocationStock) -> dict[str, Any]:
    count, fmt, ledger = loc.count, timefmt.format_time, loc.ledger
    horizon, updated_at = loc.horizon, loc.updated_at
    # ``sorted(ledger.items(), key=_ledger_order)`` without a Python call per entry: sorted as
    # (occurred_at, event_id, entry), event ids unique, so no two entries are ever compared
    ordered = sorted(zip(map(_occurred_at, ledger.values()), ledger, ledger.values(), strict=True))
    return {
        "count": None
        if count is None
        else {"on_hand": count.on_hand, "at": fmt(count.at), "event_id": count.event_id},
        "ledger": {
            event_id: [fmt(at), e.on_hand_delta, e.committed_delta] for at, event_id, e in ordered
        },
        "base": {
            "on_hand": loc.base_on_hand,
            "committed": loc.base_committed,
            # ``format_time``, inline here and below: two Python calls fewer per time
            "horizon": None if horizon is None else fmt(horizon),
            **({} if loc.base_since is None else {"since": fmt(loc.base_since)}),
        },
        "updated_at": None if updated_at is None else fmt(updated_at),
    }


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidStateError(f"expected an integer, got {value!r}")
    return value


def _required_time(value: Any) -> datetime:
    parsed = parse_time(value)
    if parsed is None:
        raise InvalidStateError("missing timestamp")
    return parsed


_fromisoformat: Final = datetime.fromisoformat


def _location_from_dict(data: Mapping[str, Any]) -> LocationStock:
    raw_count = data["count"]
    count = (
        None
        if raw_count is None
        else PhysicalCount(
            on_hand=_int(raw_count["on_hand"]),
            at=_required_time(raw_count["at"]),
            event_id=str(raw_count["event_id"]),
        )
    )
    ledger: dict[str, LedgerEntry] = {}
    for event_id, (at, raw_on_hand, raw_committed) in data["ledger"].items():
        # what _required_time and _int check, asked only of values that are not the usual
        # ones (a time in UTC as its text, an int): one call per entry instead of five
        when = _fromisoformat(at) if type(at) is str else None
        if when is None or when.tzinfo is not UTC:
            when = _required_time(at)
        on_hand = raw_on_hand if type(raw_on_hand) is int else _int(raw_on_hand)
        committed = raw_committed if type(raw_committed) is int else _int(raw_committed)
        ledger[str(event_id)] = LedgerEntry(when, on_hand, committed)
    base = data["base"]
    return LocationStock(
        count=count,
        ledger=ledger,
        base_on_hand=_int(base["on_hand"]),
        base_committed=_int(base["committed"]),
        horizon=parse_time(base["horizon"]),
        updated_at=parse_time(data["updated_at"]),
        base_since=parse_time(base.get("since")),
    )


# --- effects ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StockChanged:
    """New stock level of (sku, location) after ``event_id`` (for ``inventory.changes``)."""

    sku: str
    location_id: str
    on_hand: int
    committed: int
    available: int
    event_id: str
    kind: MovementKind
    occurred_at: datetime
    reason: str | None = None

    @property
    def available_to_sell(self) -> int:
        return to_sell(self.on_hand, self.available)


@dataclass(frozen=True, slots=True)
class Oversold:
    """``available`` went below zero at (sku, location) because of ``event_id``."""

    sku: str
    location_id: str
    available: int
    event_id: str
    occurred_at: datetime


InventoryEffect: TypeAlias = StockChanged | Oversold


# --- the fold --------------------------------------------------------------------------------


def apply(
    stock: SkuStock, movement: Movement, policy: LedgerPolicy = DEFAULT_POLICY
) -> tuple[SkuStock, tuple[InventoryEffect, ...]]:
    """Fold one movement into ``stock``. Pure; duplicates and superseded movements are no-ops.

    A no-op returns ``stock`` itself (``new is stock``), so callers can skip the write.
    """
    new_stock, before, after = fold(stock, movement, policy)
    if new_stock is stock:
        return stock, ()
    return new_stock, _effects(stock.sku, movement, before, after)


def fold(
    stock: SkuStock, movement: Movement, policy: LedgerPolicy = DEFAULT_POLICY
) -> tuple[SkuStock, LocationStock, LocationStock]:
    """:func:`apply` without its effects: the new state (``stock`` itself on a no-op) and the
    moved location before and after. The inventory lane announces from these directly
    (``resolvers.lanes.inventory``): an effect object is ~10 ``object.__setattr__`` calls
    built to be read once (with ``run``'s helpers inline, the lane's ``run_batch`` measured
    177.3k -> 160.6k instructions per raw event, nineteenth pass)."""
    if movement.sku != stock.sku:
        raise InvalidMovementError(f"movement for sku {movement.sku!r} applied to {stock.sku!r}")
    location_id, event_id = movement.location_id, movement.event_id
    before = stock.locations.get(location_id, _EMPTY_LOCATION)
    if event_id in before.ledger or (
        before.count is not None and before.count.event_id == event_id
    ):
        return stock, before, before  # seen
    if movement.kind is MovementKind.COUNT:
        after = _apply_count(before, movement)
    else:
        after = _apply_delta(before, movement)
    after = _compact(after, policy)
    if after == before and location_id in stock.locations:
        return stock, before, after  # superseded (at or before the latest count): no write
    locations = dict(stock.locations)
    locations[location_id] = after
    return SkuStock(sku=stock.sku, locations=locations), before, after


def apply_all(
    stock: SkuStock, movements: Iterable[Movement], policy: LedgerPolicy = DEFAULT_POLICY
) -> tuple[SkuStock, tuple[InventoryEffect, ...]]:
    """Fold many movements in the given order; effects concatenated in that order."""
    effects: list[InventoryEffect] = []
    for movement in movements:
        stock, produced = apply(stock, movement, policy)
        effects.extend(produced)
    return stock, tuple(effects)


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


def _updated(loc: LocationStock, updated_at: datetime) -> LocationStock:
    """``loc`` itself when ``updated_at`` is its own, else ``loc`` with ``updated_at``."""
    if updated_at is loc.updated_at:
        return loc
    return LocationStock(
        loc.count,
        loc.ledger,
        loc.base_on_hand,
        loc.base_committed,
        loc.horizon,
        updated_at,
        loc.base_since,
    )


def _apply_count(loc: LocationStock, movement: Movement) -> LocationStock:
    count = PhysicalCount(movement.quantity, movement.occurred_at, movement.event_id)
    updated_at = _later(loc.updated_at, movement.occurred_at)
    if not count.supersedes(loc.count):
        return _updated(loc, updated_at)
    ledger: dict[str, LedgerEntry] = {}
    for event_id, entry in loc.ledger.items():
        if entry.occurred_at > count.at:
            ledger[event_id] = entry
        elif entry.committed_delta != 0:
            ledger[event_id] = LedgerEntry(entry.occurred_at, 0, entry.committed_delta)
    since = loc.base_since
    if since is not None and count.at < since:  # every compacted on-hand delta is later: kept
        return LocationStock(
            count, ledger, loc.base_on_hand, loc.base_committed, loc.horizon, updated_at, since
        )
    return LocationStock(count, ledger, 0, loc.base_committed, loc.horizon, updated_at)


def _apply_delta(loc: LocationStock, movement: Movement) -> LocationStock:
    occurred_at = movement.occurred_at
    updated_at = _later(loc.updated_at, occurred_at)
    covered = loc.count is not None and occurred_at <= loc.count.at
    on_hand_sign, committed_sign = _DELTA_SIGNS[movement.kind]
    committed_delta = committed_sign * movement.quantity
    if covered and committed_delta == 0:
        return _updated(loc, updated_at)
    on_hand_delta = 0 if covered else on_hand_sign * movement.quantity
    ledger = dict(loc.ledger)
    ledger[movement.event_id] = LedgerEntry(occurred_at, on_hand_delta, committed_delta)
    return LocationStock(
        loc.count,
        ledger,
        loc.base_on_hand,
        loc.base_committed,
        loc.horizon,
        updated_at,
        loc.base_since,
    )


def _compact(loc: LocationStock, policy: LedgerPolicy) -> LocationStock:
    if not loc.ledger or loc.updated_at is None:
        return loc
    cutoff = loc.updated_at - policy.max_age
    excess = len(loc.ledger) - policy.max_entries
    if excess <= 0 and min(e.occurred_at for e in loc.ledger.values()) >= cutoff:
        return loc
    ordered = sorted(loc.ledger.items(), key=_ledger_order)
    # over the cap: fold down to 3/4 of it, so the sort below runs once per max_entries/4 inserts
    fold_count = excess + policy.max_entries // 4 if excess > 0 else 0
    while fold_count < len(ordered) and ordered[fold_count][1].occurred_at < cutoff:
        fold_count += 1
    folded = ordered[:fold_count]
    base_on_hand = loc.base_on_hand + sum(e.on_hand_delta for _, e in folded)
    base_committed = loc.base_committed + sum(e.committed_delta for _, e in folded)
    horizon = loc.horizon
    for _, entry in folded:
        horizon = _later(horizon, entry.occurred_at)
    since = loc.base_since
    if since is not None or loc.base_on_hand == 0:  # else not known, and stays so
        for _, entry in folded:  # in time order: the first that moved on hand is the earliest
            if entry.on_hand_delta != 0:
                if since is None or entry.occurred_at < since:
                    since = entry.occurred_at
                break
    return LocationStock(
        loc.count,
        dict(ordered[fold_count:]),
        base_on_hand,
        base_committed,
        horizon,
        loc.updated_at,
        since,
    )


def stock_changed(before: LocationStock, after: LocationStock) -> bool:
    """Whether a movement changed what its location holds (on hand or committed), or made the
    location (its first movement, stored even at 0 on hand): it is announced (``StockChanged``;
    :func:`_effects`, and the inventory lane from :func:`fold`). Until 2026-12-04 a position
    first counted at 0 was stored but never announced, so a reader of the compacted
    ``inventory.changes`` never learnt it (one first set to 5 was)."""
    return (
        before is _EMPTY_LOCATION
        or after.on_hand != before.on_hand
        or after.committed != before.committed
    )


def oversold(before: LocationStock, available: int) -> bool:
    """Whether a movement that changed its location, leaving ``available``, oversold it:
    below zero and lower than before (an ``Oversold`` alert)."""
    return available < 0 and available < before.on_hand - before.committed


def _effects(
    sku: str, movement: Movement, before: LocationStock, after: LocationStock
) -> tuple[InventoryEffect, ...]:
    if not stock_changed(before, after):
        return ()
    on_hand, committed = after.on_hand, after.committed
    available = on_hand - committed
    changed = StockChanged(
        sku=sku,
        location_id=movement.location_id,
        on_hand=on_hand,
        committed=committed,
        available=available,
        event_id=movement.event_id,
        kind=movement.kind,
        occurred_at=movement.occurred_at,
        reason=movement.reason,
    )
    if oversold(before, available):
        alert = Oversold(
            sku, movement.location_id, available, movement.event_id, movement.occurred_at
        )
        return (changed, alert)
    return (changed,)


# --- the public document ---------------------------------------------------------------------


def to_sell(on_hand: int, available: int) -> int:
    """What a storefront may sell: what is available, never below 0 (oversold) nor above what
    is on hand (a release read before its placement; module docstring)."""
    return max(0, min(on_hand, available))


def totals_to_sell(locations: Iterable[LocationStock]) -> int:
    """What the web shop may sell of a SKU across ``locations``: each location's ``on_hand``
    less what it has committed (a negative ``committed``, a release read before its placement,
    counts as 0: it frees no unit at another location), summed, never below 0. At most the sum
    of the locations' :func:`to_sell`; an oversold location lowers it (served from the others)."""
    return max(0, sum(loc.on_hand - max(0, loc.committed) for loc in locations))


def _location_snapshot(loc: LocationStock) -> dict[str, Any]:
    available, updated_at = loc.on_hand - loc.committed, loc.updated_at
    return {
        "on_hand": loc.on_hand,
        "committed": loc.committed,
        "available": available,
        "available_to_sell": to_sell(loc.on_hand, available),
        "oversold": available < 0,
        "last_count_at": None if loc.count is None else timefmt.format_time(loc.count.at),
        "updated_at": None if updated_at is None else timefmt.format_time(updated_at),
    }


def snapshot(stock: SkuStock) -> dict[str, Any]:
    """The public JSON document of one SKU (shape in the module docstring; no ``version``)."""
    locations = {loc_id: _location_snapshot(loc) for loc_id, loc in sorted(stock.locations.items())}
    updated = [loc.updated_at for loc in stock.locations.values() if loc.updated_at is not None]
    available = stock.available
    return {
        "sku": stock.sku,
        "locations": locations,
        "totals": {
            "on_hand": stock.on_hand,
            "committed": stock.committed,
            "available": available,
            "available_to_sell": totals_to_sell(stock.locations.values()),
            "oversold": any(loc["oversold"] for loc in locations.values()),
            "updated_at": format_time(max(updated)) if updated else None,
        },
    }


# --- the stored bytes ------------------------------------------------------------------------


#: A location's parts are kept encoded as ``_Fragment(right_sized(_dumps(part)))``: right-sized,
#: as they are kept with their location, maybe for long.
_Fragment: Final = orjson.Fragment
_dumps: Final = orjson.dumps


def encode(stock: SkuStock, version: int) -> tuple[bytes, bytes]:
    """What the writer stores of ``stock``: its state, ``orjson.dumps(stock.to_dict())``, and
    its public document at ``version``, ``orjson.dumps(snapshot(stock) | {"version":
    version})``. Each location's parts are encoded once per location value, so a write of a
    SKU re-encodes only the locations its batch moved."""
    states: dict[str, orjson.Fragment] = {}
    views: dict[str, orjson.Fragment] = {}
    on_hand = committed = sellable = 0
    oversold = False
    updated: datetime | None = None
    for loc_id, loc in sorted(stock.locations.items()):
        loc_on_hand, loc_committed = loc.on_hand, loc.committed
        on_hand += loc_on_hand
        committed += loc_committed
        # totals_to_sell, inline
        sellable += loc_on_hand - loc_committed if loc_committed > 0 else loc_on_hand
        if loc_on_hand < loc_committed:
            oversold = True
        at = loc.updated_at
        if at is not None and (updated is None or at > updated):
            updated = at
        state, view = loc._state_json, loc._view_json
        if state is None:
            state = _Fragment(right_sized(_dumps(_location_to_dict(loc))))
            object.__setattr__(loc, "_state_json", state)
        if view is None:
            view = _Fragment(right_sized(_dumps(_location_snapshot(loc))))
            object.__setattr__(loc, "_view_json", view)
        states[loc_id] = state
        views[loc_id] = view
    available = on_hand - committed
    document = {
        "sku": stock.sku,
        "locations": views,
        "totals": {
            "on_hand": on_hand,
            "committed": committed,
            "available": available,
            "available_to_sell": max(0, sellable),
            "oversold": oversold,
            "updated_at": None if updated is None else timefmt.format_time(updated),
        },
        "version": version,
    }
    state_doc = {"format": STATE_FORMAT, "sku": stock.sku, "locations": states}
    return orjson.dumps(state_doc), orjson.dumps(document)
