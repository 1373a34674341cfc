"""Dead letters to the DLQ topic: what a DLQ record carries, and delivering them.

A DLQ record is the original record's key and bytes plus headers saying where it came from
and why it failed (never payload values): ``loom.stage``, ``loom.reason``,
``loom.error_class``, ``loom.error_message``, ``loom.lane`` (which lane dead-lettered it),
``loom.source_topic``, ``loom.source_partition``, ``loom.source_offset``, ``loom.failed_at``,
and the original headers as ``original.<name>``.

Every DLQ record fits the topic: an original value larger than ``LOOM_DLQ_MAX_BYTES`` is cut to
that size and flagged with ``loom.truncated`` (``value``), ``loom.original_bytes`` and
``loom.original_sha256``; the whole original stays on the source topic at the offset the
headers name (until its retention), which is the reference to it. Keys and original headers
are bounded too (:data:`MAX_KEY_BYTES`, :data:`MAX_HEADER_BYTES`, :data:`MAX_HEADERS`).

Delivery is at least once: :class:`DlqDelivery` re-sends only what was not acknowledged, but a
record acknowledged by the broker whose acknowledgement was lost is sent again. Consumers of the
DLQ deduplicate by ``(loom.source_topic, loom.source_partition, loom.source_offset)``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from confluent_kafka import KafkaError, Producer

from resolvers.steps import DeadLetter
from resolvers.timefmt import format_time
from streams.errors import KafkaUnavailableError, kafka_error

log = logging.getLogger(__name__)

MAX_KEY_BYTES: Final = 1024
MAX_HEADER_BYTES: Final = 1024
MAX_HEADERS: Final = 32
MAX_MESSAGE_BYTES: Final = 1024

Headers = list[tuple[str, str | bytes | None]]


def dlq_headers(dead: DeadLetter, now: datetime, *, lane: str | None = None) -> Headers:
    """Where ``dead`` came from and why it failed (no payload values), its original headers
    bounded; ``lane`` when a worker's lane dead-lettered it (the gateway has none)."""
    r = dead.record
    originals = list(r.headers.items())
    headers: Headers = [
        ("loom.stage", dead.stage.encode()),
        ("loom.reason", dead.reason.encode()),
        ("loom.error_class", dead.error_class.encode()),
        ("loom.error_message", dead.message.encode()[:MAX_MESSAGE_BYTES]),
        *([("loom.lane", lane.encode())] if lane is not None else []),
        ("loom.source_topic", r.topic.encode()),
        ("loom.source_partition", str(r.partition).encode()),
        ("loom.source_offset", str(r.offset).encode()),
        ("loom.failed_at", format_time(now).encode()),
    ]
    if len(originals) > MAX_HEADERS:
        headers.append(("loom.dropped_headers", str(len(originals) - MAX_HEADERS).encode()))
    headers += [(f"original.{k}"[:256], v[:MAX_HEADER_BYTES]) for k, v in originals[:MAX_HEADERS]]
    return headers


def dlq_record(
    dead: DeadLetter, now: datetime, *, lane: str, max_bytes: int
) -> tuple[bytes | None, bytes | None, Headers]:
    """``(key, value, headers)`` of the DLQ record of ``dead``, cut to fit (see above)."""
    r = dead.record
    value, key = r.value, r.key
    flags: Headers = []
    if value is not None and len(value) > max_bytes:
        flags += [
            ("loom.truncated", b"value"),
            ("loom.original_bytes", str(len(value)).encode()),
            ("loom.original_sha256", hashlib.sha256(value).hexdigest().encode()),
        ]
        value = value[:max_bytes]
    if key is not None and len(key) > MAX_KEY_BYTES:
        flags.append(("loom.truncated_key", str(len(key)).encode()))
        key = key[:MAX_KEY_BYTES]
    return key, value, [*dlq_headers(dead, now, lane=lane), *flags]


class Delivery:
    """Delivering records to one topic: :meth:`attempt` until it returns (at least once).

    Each attempt produces the records not yet acknowledged and waits for the broker's
    acknowledgements (``flush``, at most ``timeout_s``); it raises the classified error of the
    first failure, and the next attempt sends only what is still unacknowledged."""

    def __init__(
        self,
        producer: Producer,
        topic: str,
        records: Sequence[tuple[bytes | None, bytes | None, Headers]],
        *,
        what: str,
        timeout_s: float = 10.0,
        timestamps: Sequence[int] = (),
    ) -> None:
        """``timestamps``: each record's create time in ms (default: when it is produced)."""
        self.producer, self.topic, self.what, self.timeout_s = producer, topic, what, timeout_s
        self.pending: dict[int, tuple[bytes | None, bytes | None, Headers]] = dict(
            enumerate(records)
        )
        self.timestamps = timestamps

    def attempt(self) -> None:
        errors: list[KafkaError] = []

        def delivered(index: int) -> Any:
            def report(err: KafkaError | None, _msg: Any) -> None:
                if err is None:
                    self.pending.pop(index, None)
                else:
                    errors.append(err)

            return report

        for index, (key, value, headers) in list(self.pending.items()):
            at: dict[str, Any] = {"timestamp": self.timestamps[index]} if self.timestamps else {}
            self.producer.produce(
                self.topic,
                key=key,
                value=value,
                headers=headers,
                on_delivery=delivered(index),
                **at,
            )
        left = self.producer.flush(self.timeout_s)
        if errors:
            raise kafka_error(errors[0], self.what)
        if left or self.pending:
            raise KafkaUnavailableError(
                f"{self.what}: {len(self.pending)} record(s) not acknowledged within "
                f"{self.timeout_s} s"
            )


class DlqDelivery(Delivery):
    """One batch's dead letters to the DLQ (:class:`Delivery`)."""

    def __init__(
        self,
        producer: Producer,
        topic: str,
        dead_letters: Sequence[DeadLetter],
        now: datetime,
        *,
        lane: str,
        max_bytes: int,
        timeout_s: float = 10.0,
    ) -> None:
        records = [dlq_record(d, now, lane=lane, max_bytes=max_bytes) for d in dead_letters]
        super().__init__(producer, topic, records, what="DLQ", timeout_s=timeout_s)
