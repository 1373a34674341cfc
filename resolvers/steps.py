"""What flows into a lane: records, decoded events, and dead letters.

Bad input never raises: ``parse`` (the first per-record step) turns a record it cannot decode
into a :class:`DeadLetter` instead of an :class:`Event`. No step swallows an infrastructure
error (those raise, so the batch is retried and no offset is committed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, NamedTuple, final

from schemas.identifiers import Identifier

if TYPE_CHECKING:
    from resolvers.inventory import Movement
    from resolvers.stock_routing import Routed
    from schemas.touchpoint import Touchpoint


#: A record's headers when it has none (shared, read only).
NO_HEADERS: Final[Mapping[str, bytes]] = MappingProxyType({})


class RawRecord(NamedTuple):
    """One Kafka record as the worker received it.

    A named tuple (immutable; one is built per consumed record, and a frozen dataclass's
    ``__init__`` set its 7 fields through ``object.__setattr__``: ~3 times the cost). Built
    with the same arguments, positional or by name; ``headers`` defaults to a shared empty
    read-only mapping (nothing writes a record's headers)."""

    value: bytes | None
    key: bytes | None = None
    topic: str = ""
    partition: int = -1
    offset: int = -1
    timestamp_ms: int | None = None
    headers: Mapping[str, bytes] = NO_HEADERS

    @property
    def where(self) -> str:
        """``topic[partition]@offset``: how logs and DLQ records name a record."""
        return f"{self.topic}[{self.partition}]@{self.offset}"


class Event(NamedTuple):
    """A decoded record: its touchpoint and (profiles lane) its normalized identifiers, or
    (inventory lane routed by SKU, ADR 0014) one event's movements of one SKU.

    A named tuple (immutable; built once per record, and a frozen dataclass's ``__init__``
    sets each field through ``object.__setattr__``: ~4 times the cost)."""

    record: RawRecord
    touchpoint: Touchpoint | None = None
    identifiers: tuple[Identifier, ...] = ()
    suppression_hashes: tuple[str, ...] = ()
    routed: Routed | None = None
    #: (direct inventory lane) the touchpoint's movements per SKU, computed once by ``prepare``
    stock: Mapping[str, list[Movement]] | None = None

    @property
    def tp(self) -> Touchpoint:
        """The parsed touchpoint (stages after ``parse`` may rely on it)."""
        assert self.touchpoint is not None, "stage ran before parse"
        return self.touchpoint


#: ``event.tp.event_id`` in one C call, without the property's Python frame (a stage after
#: ``parse``: every event carries a touchpoint; one without raises ``AttributeError``).
event_id_of: Final[Callable[[Event], str]] = attrgetter("touchpoint.event_id")


@dataclass(frozen=True, slots=True)
class Ok:
    """A per-record step's result: the (updated) event."""

    event: Event


@final  # never subclassed: ``type(x) is DeadLetter`` tells it apart (``resolvers.pipeline``)
@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Cannot be processed: goes to the DLQ with the original bytes and the reason."""

    record: RawRecord
    stage: str
    reason: str  # stable code, e.g. schema_violation
    error_class: str
    message: str  # never contains raw input values


#: Event outcomes (``loom_events_total{outcome}``) common to both lanes.
OK: Final = "ok"
DUPLICATE: Final = "duplicate"
