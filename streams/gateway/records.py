"""The Kafka records a front door hands to the sink: accepted touchpoints and dead letters.

Accepted events go to the raw topic exactly as the producer SDK would send them (serialized
touchpoint, key = the most stable identifier, ``loom-schema`` header), so the workers cannot
tell a gateway event from any other. An event that cannot be mapped goes to the DLQ with the
workers' header conventions (``streams.dlq.dlq_headers``): stage ``gateway``, the
contract's reason code, no values; its original bytes are the sender's message as JSON, and
``loom.source_topic`` names the front door and source (``gateway:segment:web-shop``,
``gateway:shopify:<shop>``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from resolvers.steps import DeadLetter, RawRecord
from schemas.errors import InvalidEvent
from schemas.touchpoint import Touchpoint, dump_touchpoint, record_key
from streams.dlq import dlq_headers
from streams.producer import SCHEMA_HEADER

#: ``loom.stage`` of the gateway's dead letters.
STAGE = "gateway"

Header = tuple[str, str | bytes | None]


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One record to produce."""

    topic: str
    value: bytes
    key: bytes | None = None
    headers: Sequence[Header] = field(default_factory=tuple)


def accepted(tp: Touchpoint, topic: str) -> OutRecord:
    return OutRecord(topic, dump_touchpoint(tp), record_key(tp), (SCHEMA_HEADER,))


def dead_letter(
    original: bytes,
    error: InvalidEvent,
    *,
    where: str,
    topic: str,
    now: datetime,
    headers: Mapping[str, bytes] | None = None,
) -> OutRecord:
    """The DLQ record of a message the front door could not map; ``where`` names the front
    door and source; ``headers`` (request headers worth keeping, e.g. to send it again) become
    ``original.<name>`` headers."""
    dead = DeadLetter(
        record=RawRecord(value=original, topic=where, headers=dict(headers or {})),
        stage=STAGE,
        reason=error.reason,
        error_class=type(error).__name__,
        message="; ".join(error.details),
    )
    return OutRecord(topic, original, None, tuple(dlq_headers(dead, now)))
