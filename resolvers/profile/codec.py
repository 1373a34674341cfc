"""JSON form of :class:`~resolvers.profile.facts.Facts` (stored with the profile, never read
by downstream services: they read the snapshot). Compact positional lists, times in the one
format of ``resolvers.timefmt``, money as decimal strings."""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import orjson

from resolvers.consent import (
    CONSENT_PURPOSES,
    ConsentHistory,
    ConsentRecord,
    ConsentStateError,
    PurposeHistory,
    Source,
)
from resolvers.decode_cache import right_sized
from resolvers.profile.facts import (
    Activity,
    Digest,
    DigestKey,
    Facts,
    Recent,
    Stamped,
    Transaction,
    fingerprint,
)
from resolvers.timefmt import format_time, parse_optional, parse_time

_NEVER: Final = ConsentRecord(False, datetime.max.replace(tzinfo=UTC), Source.INVALID)
#: What a stored consent history that cannot be read decodes to: every purpose denied, for
#: good (never fail open). ``loom rebuild`` recovers the real one from Kafka.
UNREADABLE_CONSENT: Final = ConsentHistory(
    {p: PurposeHistory(latest=_NEVER, last_denial=_NEVER) for p in CONSENT_PURPOSES}
)


def _consent_in(raw: Mapping[str, Any] | None) -> ConsentHistory:
    if raw is None:
        return ConsentHistory()
    try:
        return ConsentHistory.from_json(raw)
    except ConsentStateError:
        return UNREADABLE_CONSENT


def _stamped_out(s: Stamped) -> tuple[Any, ...]:
    return (s.value, format_time(s.at), s.event_id)


def _stamped_in(raw: list[Any]) -> Stamped:
    return Stamped(raw[0], parse_time(raw[1]), raw[2])


def _activity_out(a: Activity) -> tuple[Any, ...]:
    if a.name is None:
        return (format_time(a.at), a.event_id, a.type, a.channel, a.sku, a.category)
    return (format_time(a.at), a.event_id, a.type, a.channel, a.sku, a.category, a.name)


def _activity_in(raw: list[Any]) -> Activity:
    name = raw[6] if len(raw) > 6 else None
    return Activity(parse_time(raw[0]), raw[1], raw[2], raw[3], raw[4], raw[5], name)


def _transaction_in(key: str, raw: list[Any]) -> Transaction:
    return Transaction(
        key=key,
        at=parse_time(raw[0]),
        event_id=raw[1],
        type=raw[2],
        channel=raw[3],
        consent=raw[4],
        region=raw[5],
        is_return=bool(raw[6]),
        in_store=bool(raw[7]),
        currency=raw[8],
        amount=Decimal(raw[9]),
        payment_method=raw[10],
        location_id=raw[11],
        categories=tuple(raw[12]),
        sku=raw[13],
    )


def _digest_out(key: DigestKey, d: Digest) -> list[Any]:
    """A day digest: ``_activity_out`` and ``_stamped_out`` of its parts inline (a long
    history writes ~400 digests of up to 20 activities each at every write)."""
    return [
        key[0],
        key[1],
        key[2],
        format_time(d.first_at),
        format_time(d.last_at),
        d.seen,
        d.events,
        sorted(d.channels),
        d.interest,
        dict(sorted(d.categories.items())),
        [
            (format_time(a.at), a.event_id, a.type, a.channel, a.sku, a.category)
            if a.name is None
            else (format_time(a.at), a.event_id, a.type, a.channel, a.sku, a.category, a.name)
            for a in d.activities
        ],
        {k: (s.value, format_time(s.at), s.event_id) for k, s in sorted(d.preferences.items())},
        _ids_out(d.ids),
    ]


def _ids_out(ids: frozenset[int]) -> str:
    """Event fingerprints, sorted, as base64 of little-endian uint32s (5.3 characters each)."""
    return base64.b64encode(struct.pack(f"<{len(ids)}I", *sorted(ids))).decode()


def _ids_in(raw: str) -> frozenset[int]:
    packed = base64.b64decode(raw, validate=True)
    return frozenset(struct.unpack(f"<{len(packed) // 4}I", packed))


def _digest_in(raw: list[Any]) -> tuple[DigestKey, Digest]:
    key: DigestKey = (int(raw[0]), str(raw[1]), str(raw[2]))
    return key, Digest(
        first_at=parse_time(raw[3]),
        last_at=parse_time(raw[4]),
        seen=bool(raw[5]),
        events=int(raw[6]),
        channels=frozenset(raw[7]),
        interest=bool(raw[8]),
        categories={k: int(v) for k, v in raw[9].items()},
        activities=tuple(_activity_in(a) for a in raw[10]),
        preferences={k: _stamped_in(v) for k, v in raw[11].items()},
        ids=_ids_in(raw[12]),
    )


def _recent_out(item: Recent) -> tuple[Any, ...]:
    """Most recent events are husks (nothing kept but their stamp): their empty parts are
    written without sorting or copying anything (orjson writes tuples as arrays)."""
    d = item.digest
    channels, categories, activities, preferences = (
        d.channels,
        d.categories,
        d.activities,
        d.preferences,
    )
    return (
        item.event_id,
        item.code,
        item.region,
        format_time(d.first_at),
        d.seen,
        sorted(channels) if channels else (),
        d.interest,
        dict(sorted(categories.items())) if categories else {},
        [_activity_out(a) for a in activities] if activities else (),
        {k: _stamped_out(s) for k, s in sorted(preferences.items())} if preferences else {},
    )


def _recent_in(raw: list[Any]) -> Recent:
    at = parse_time(raw[3])
    seen = bool(raw[4])
    return Recent(
        event_id=raw[0],
        code=raw[1],
        region=raw[2],
        digest=Digest(
            first_at=at,
            last_at=at,
            seen=seen,
            events=1 if seen else 0,
            channels=frozenset(raw[5]),
            interest=bool(raw[6]),
            categories={k: int(v) for k, v in raw[7].items()},
            activities=tuple(_activity_in(a) for a in raw[8]),
            preferences={k: _stamped_in(v) for k, v in raw[9].items()},
            ids=frozenset((fingerprint(raw[0]),)),
        ),
    )


def facts_to_json(facts: Facts) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if facts.traits:  # ``_stamped_out`` of each, inline
        out["t"] = {
            k: (s.value, format_time(s.at), s.event_id) for k, s in sorted(facts.traits.items())
        }
    if facts.region is not None:
        out["r"] = _stamped_out(facts.region)
    if facts.consent.purposes:
        out["c"] = facts.consent.to_json()
    if facts.transactions:  # ``_transaction_out`` of each, inline (up to 1,000 of them)
        out["o"] = {
            k: [
                format_time(t.at),
                t.event_id,
                t.type,
                t.channel,
                t.consent,
                t.region,
                t.is_return,
                t.in_store,
                t.currency,
                str(t.amount),
                t.payment_method,
                t.location_id,
                list(t.categories),
                t.sku,
            ]
            for k, t in sorted(facts.transactions.items())
        }
    if facts.recent:
        out["e"] = [_recent_out(item) for _, item in sorted(facts.recent.items())]
    if facts.digests:
        out["d"] = [_digest_out(k, d) for k, d in sorted(facts.digests.items())]
    if facts.latest is not None:
        out["l"] = format_time(facts.latest)
    return out


def facts_fragment(facts: Facts) -> orjson.Fragment:
    """``facts_to_json`` already encoded (``orjson.dumps``'s default options, as the state's),
    remembered on the facts (immutable) for their next write (right-sized: cached facts keep
    it for as long as the decode cache keeps them)."""
    found = facts.encoded
    if found is None:
        found = orjson.Fragment(right_sized(orjson.dumps(facts_to_json(facts))))
        object.__setattr__(facts, "encoded", found)
    return found


def facts_from_json(raw: Mapping[str, Any]) -> Facts:
    region = raw.get("r")
    consent = raw.get("c")
    return Facts(
        traits={k: _stamped_in(v) for k, v in raw.get("t", {}).items()},
        region=_stamped_in(region) if region is not None else None,
        consent=_consent_in(consent),
        transactions={k: _transaction_in(k, v) for k, v in raw.get("o", {}).items()},
        recent={item.event_id: item for item in (_recent_in(e) for e in raw.get("e", ()))},
        digests=dict(_digest_in(d) for d in raw.get("d", ())),
        latest=parse_optional(raw.get("l")),
    )
