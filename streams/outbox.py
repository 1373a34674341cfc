"""The outbox's entry format: one Redis stream entry per committed batch, its Kafka records packed.

A batch's commit (``streams.redis_store``) writes all of its outbox records as ONE entry of
``P:v1:outbox`` with one field, ``records``: per record a header (``>HII``: topic length, key
length, value length; ``NONE`` = no key / a tombstone) followed by the topic, key and value
bytes. One entry instead of one per record (on the simulator mix a batch of 500 events has
~700 records: consent audit, profile changes, merges) is what made the outbox cheap for Redis
(issue 17: every XADD of a large entry, XREADGROUP, XACK and XDEL is per entry).

:func:`records` also reads the older single-record entries (fields ``topic``, ``key``,
``value``), which an outbox may still hold after an upgrade.

A profile's snapshot record is packed as a reference (ADR 0033): its value length is
:data:`SNAPSHOT` and the 8 bytes after its key (the profile id) are the version (``>Q``) whose
snapshot the same commit stored as the profile's ``d``. The snapshot was written into Redis
twice per touched profile before (a third of the bytes a profiles batch wrote to Redis and to
its AOF were outbox records, most of them snapshots); the relay now reads it from the profile's
hash (:func:`resolve`) when it sends the entry.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from typing import Final

from resolvers.store import OutboxRecord

#: The field of a packed entry.
FIELD: Final = "records"
_FIELD: Final = FIELD.encode()
_HEADER: Final = struct.Struct(">HII")
#: Length that marks an absent key or value.
NONE: Final = 0xFFFFFFFF
#: Value length that marks a reference to the profile snapshot stored at a version (ADR 0033).
SNAPSHOT: Final = 0xFFFFFFFE
_VERSION: Final = struct.Struct(">Q")


def pack(items: Iterable[OutboxRecord]) -> bytes:
    """The ``records`` field of an entry holding ``items`` in order. (~1.4 records per
    profiles event: each distinct topic encoded once, a keyed record's pieces added at once.)"""
    parts: list[bytes] = []
    header = _HEADER.pack
    topics: dict[str, bytes] = {}
    version = _VERSION.pack
    for r in items:
        name, key, value = r.topic, r.key, r.value
        topic = topics.get(name)
        if topic is None:
            topic = topics[name] = name.encode()
        stored = r.snapshot_version
        if stored is not None and key is not None:  # the snapshot stored as the profile's d
            parts += (header(len(topic), len(key), SNAPSHOT), topic, key, version(stored))
            continue
        if key is not None and value is not None:
            parts += (header(len(topic), len(key), len(value)), topic, key, value)
            continue
        parts += (
            header(
                len(topic),
                NONE if key is None else len(key),
                NONE if value is None else len(value),
            ),
            topic,
        )
        if key is not None:
            parts.append(key)
        if value is not None:
            parts.append(value)
    return b"".join(parts)


def pack_items(items: Iterable[Item]) -> bytes:
    """:func:`pack` of records as :func:`triples` reads them (a snapshot's reference stays one)."""
    return pack(_record(*item) for item in items)


def unpack(data: bytes) -> list[OutboxRecord]:
    """Inverse of :func:`pack` (a snapshot's reference comes back as a record with no value and
    its ``snapshot_version``); raises ValueError on a truncated field."""
    return [_record(*item) for item in triples(data)]


def _record(topic: str, key: bytes | None, value: bytes | int | None) -> OutboxRecord:
    if type(value) is int:
        return OutboxRecord(topic, key, None, value)
    return OutboxRecord(topic, key, value)  # type: ignore[arg-type]  # bytes or None


#: A record as packed: (topic, key, value); the value of a stored snapshot's reference is its
#: version (an ``int``: :func:`resolve` replaces it).
Item = tuple[str, bytes | None, bytes | int | None]
#: A record as the relay produces it: (topic, key, value).
Triple = tuple[str, bytes | None, bytes | None]
#: What the relay read of a referenced profile's hash: its ``v`` and ``d`` (None: absent).
Stored = tuple[bytes | None, bytes | None]


def triples(data: bytes) -> list[Item]:
    """:func:`unpack` as plain tuples, for the relay (issue 17: a frozen dataclass per record
    and a copy through a memoryview cost ~2 µs per record; bytes are sliced directly and each
    distinct topic decoded once)."""
    out: list[Item] = []
    add = out.append
    header = _HEADER.unpack_from
    version = _VERSION.unpack_from
    size, end, pos = _HEADER.size, len(data), 0
    topics: dict[bytes, str] = {}
    while pos < end:
        if pos + size > end:
            raise ValueError("truncated outbox entry")
        t_len, k_len, v_len = header(data, pos)
        pos += size
        raw = data[pos : pos + t_len]
        topic = topics.get(raw)
        if topic is None:
            topic = topics[raw] = raw.decode()
        pos += t_len
        key = value = None
        if k_len != NONE:
            key, pos = data[pos : pos + k_len], pos + k_len
        if v_len == SNAPSHOT:
            if pos + 8 > end:
                raise ValueError("truncated outbox entry")
            add((topic, key, version(data, pos)[0]))
            pos += 8
            continue
        if v_len != NONE:
            value, pos = data[pos : pos + v_len], pos + v_len
        if pos > end:
            raise ValueError("truncated outbox entry")
        add((topic, key, value))
    return out


def entry_triples(fields: Mapping[bytes, bytes]) -> list[Item]:
    """The Kafka records of one outbox entry (packed, or one record in the older format) as
    :data:`Item`; none for an entry deleted while pending (no fields)."""
    packed = fields.get(_FIELD)
    if packed is not None:
        return triples(packed)
    topic = fields.get(b"topic")
    if topic is None:
        return []
    return [(topic.decode(), fields.get(b"key"), fields.get(b"value"))]


def records(fields: Mapping[bytes, bytes]) -> list[OutboxRecord]:
    """The Kafka records of one outbox entry (packed, or one record in the older format);
    none for an entry deleted while pending (no fields)."""
    return [_record(*item) for item in entry_triples(fields)]


#: A reference's value length as packed: an entry whose field does not hold these 4 bytes holds
#: no reference (one that does may not: then :func:`references` finds none).
_SNAPSHOT_LENGTH: Final = struct.pack(">I", SNAPSHOT)


def may_reference(fields: Mapping[bytes, bytes]) -> bool:
    """False if the entry surely holds no snapshot reference (the inventory lane's, any
    entry without a profile written): its records need no :func:`resolve`, one substring
    search in C instead of two passes over them in Python."""
    return _SNAPSHOT_LENGTH in fields.get(_FIELD, b"")


def references(items: Iterable[Item]) -> set[bytes]:
    """The profile ids whose stored snapshot ``items`` reference."""
    return {key for _, key, value in items if type(value) is int and key is not None}


def resolve(items: Iterable[Item], stored: Mapping[bytes, Stored]) -> tuple[list[Triple], int]:
    """``items`` as the records to send, and how many were left out: a snapshot's reference
    becomes the snapshot its profile holds (``stored``: what was read of the profiles'
    hashes, by id) if the profile still holds the version referenced; else it is left out,
    because the profile moved on after the commit (a later version, a merge, an erasure) and
    a later entry of the outbox carries that (ADR 0033)."""
    out: list[Triple] = []
    add = out.append
    left_out = 0
    for topic, key, value in items:
        if type(value) is int:
            version, snapshot = stored.get(key, _ABSENT) if key is not None else _ABSENT
            if snapshot is None or version is None or int(version) != value:
                left_out += 1
                continue
            add((topic, key, snapshot))
        else:
            add((topic, key, value))  # type: ignore[arg-type]  # bytes or None
    return out, left_out


_ABSENT: Final[Stored] = (None, None)
