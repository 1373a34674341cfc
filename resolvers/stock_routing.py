"""Stock movements routed by SKU: the records of the stock-movement topic (ADR 0014).

With ``LOOM_INVENTORY_ROUTING=by-sku`` an inventory worker's router reads the raw topic, turns
each event into its movements (``resolvers.stages.inventory.movements``), groups them per SKU
and produces one record per (event, SKU) to the stock-movement topic, keyed by the SKU: one
SKU's movements then reach one inventory worker, so two workers never write the same SKU. The
applier decodes these records (:func:`decode`) and folds them with the same lane and ledger
code as a direct worker.

A record's value (JSON, format :data:`FORMAT`)::

    {"v": 1, "event_id": "e-1", "type": "pos_sale", "sku": "SKU-1",
     "movements": [{"location_id": "oslo-1", "kind": "pos_sale", "quantity": 2,
                    "occurred_at": "2026-11-22T17:45:12.5Z", "reason": null}]}

Dedupe (:func:`marker`): the applier marks ``<event_id> <sku>`` processed (a space never occurs
in an event id or a SKU: both are printable ASCII without spaces), because one event's SKUs can
land on different partitions and workers; a record is a duplicate when that marker or the
event's own id (what a direct worker marks) was seen, so switching modes never applies a
movement twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from resolvers.inventory import InvalidMovementError, Movement, MovementKind
from resolvers.timefmt import format_time, parse_time
from schemas.touchpoint import INVENTORY_TYPES, MAX_STOCK, ORDER_TYPES

#: Version of a routed record's value; :func:`decode` rejects others.
FORMAT: Final = 1
#: Between the event id and the SKU in a processed marker (never part of either).
SEPARATOR: Final = " "
#: The event types whose movements are routed (``resolvers.stages.inventory.STOCK_TYPES``):
#: a record's ``type`` is a metrics label of the applier, so :func:`decode` takes no other.
EVENT_TYPES: Final = frozenset(t.value for t in ORDER_TYPES | INVENTORY_TYPES)


class InvalidRoutedRecordError(ValueError):
    """A stock-movement record that cannot be decoded (the applier dead-letters it)."""


def marker(event_id: str, sku: str) -> str:
    """The processed marker of one event's movements of one SKU."""
    return f"{event_id}{SEPARATOR}{sku}"


@dataclass(frozen=True, slots=True)
class Routed:
    """One event's movements of one SKU: one record of the stock-movement topic."""

    event_id: str
    event_type: str
    sku: str
    movements: tuple[Movement, ...]

    @property
    def marker(self) -> str:
        return marker(self.event_id, self.sku)


def by_sku(movements: Iterable[Movement]) -> dict[str, list[Movement]]:
    """``movements`` grouped per SKU (SKUs sorted, each SKU's movements in their order)."""
    groups: dict[str, list[Movement]] = defaultdict(list)
    for m in movements:
        groups[m.sku].append(m)
    return {sku: groups[sku] for sku in sorted(groups)}


def route(event_id: str, event_type: str, movements: Sequence[Movement]) -> list[Routed]:
    """One :class:`Routed` per SKU that ``movements`` (one event's) move."""
    return route_per_sku(event_id, event_type, by_sku(movements))


def route_per_sku(
    event_id: str, event_type: str, per_sku: Mapping[str, Sequence[Movement]]
) -> list[Routed]:
    """One :class:`Routed` per SKU of an event's movements already grouped by :func:`by_sku`."""
    return [Routed(event_id, event_type, sku, tuple(moves)) for sku, moves in per_sku.items()]


def encode(routed: Routed) -> bytes:
    """The record value of ``routed`` (module docstring)."""
    return orjson.dumps(
        {
            "v": FORMAT,
            "event_id": routed.event_id,
            "type": routed.event_type,
            "sku": routed.sku,
            "movements": [
                {
                    "location_id": m.location_id,
                    "kind": m.kind.value,
                    "quantity": m.quantity,
                    "occurred_at": format_time(m.occurred_at),
                    "reason": m.reason,
                }
                for m in routed.movements
            ],
        }
    )


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value or SEPARATOR in value:
        raise InvalidRoutedRecordError(f"{name} must be a non-empty string without spaces")
    return value


def _movement(event_id: str, sku: str, data: Any) -> Movement:
    if not isinstance(data, dict):
        raise InvalidRoutedRecordError("a movement must be an object")
    occurred = data.get("occurred_at")
    reason = data.get("reason")
    if not isinstance(occurred, str) or not (reason is None or isinstance(reason, str)):
        raise InvalidRoutedRecordError("occurred_at must be a string, reason a string or null")
    quantity = data.get("quantity")
    if isinstance(quantity, int) and not -MAX_STOCK <= quantity <= MAX_STOCK:
        # the router never produces one (a count or an adjustment is within the contract's
        # bound, an order's lines sum to less); applied, a level past 64 bits fails the commit
        raise InvalidRoutedRecordError(f"invalid movement: quantity beyond ±{MAX_STOCK}")
    try:
        return Movement(
            event_id,
            sku,
            _text(data, "location_id"),
            MovementKind(str(data.get("kind"))),
            quantity,  # type: ignore[arg-type]  # Movement checks it is an int
            parse_time(occurred),
            reason,
        )
    except (InvalidMovementError, ValueError, TypeError) as exc:
        if isinstance(exc, InvalidRoutedRecordError):
            raise
        raise InvalidRoutedRecordError(f"invalid movement: {type(exc).__name__}") from None


def decode(value: bytes | None) -> Routed:
    """The :class:`Routed` of a record value; :class:`InvalidRoutedRecordError` if it is not
    one (the message never quotes the input)."""
    if value is None:
        raise InvalidRoutedRecordError("record has no value")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise InvalidRoutedRecordError("not JSON") from None
    if not isinstance(data, dict) or data.get("v") != FORMAT:
        raise InvalidRoutedRecordError(f"not a stock-movement record of format {FORMAT}")
    event_id, sku = _text(data, "event_id"), _text(data, "sku")
    moves = data.get("movements")
    if not isinstance(moves, list) or not moves:
        raise InvalidRoutedRecordError("movements must be a non-empty list")
    event_type = data.get("type")
    if event_type not in EVENT_TYPES:
        raise InvalidRoutedRecordError("type must be an event type that moves stock")
    return Routed(
        event_id,
        event_type,
        sku,
        tuple(_movement(event_id, sku, m) for m in moves),
    )
