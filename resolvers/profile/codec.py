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
    EMPTY_HISTORY,
    ConsentHistory,
    ConsentRecord,
    ConsentStateError,
    PurposeHistory,
    Source,
)
from resolvers.decode_cache import right_sized
from resolvers.profile.facts import (
    IMPLIED_IDS,
    Activity,
    Digest,
    DigestKey,
    Facts,
    Recent,
    Stamped,
    Transaction,
    new_activity,
    new_digest,
    new_facts,
    new_recent,
    new_stamped,
    new_transaction,
)
from resolvers.timefmt import format_time, parse_stored

_NEVER: Final = ConsentRecord(False, datetime.max.replace(tzinfo=UTC), Source.INVALID)
#: What a stored consent history that cannot be read decodes to: every purpose denied, for
#: good (never fail open). ``loom rebuild`` recovers the real one from Kafka.
UNREADABLE_CONSENT: Final = ConsentHistory(
    {p: PurposeHistory(latest=_NEVER, last_denial=_NEVER) for p in CONSENT_PURPOSES}
)
#: A husk's channels (immutable, shared).
_NO_CHANNELS: Final[frozenset[str]] = frozenset()


def _consent_in(raw: Mapping[str, Any] | None) -> ConsentHistory:
    if raw is None:  # (facts_from_json does not call it then)
        return EMPTY_HISTORY  # immutable: equal to ``ConsentHistory()``, shared
    try:
        return ConsentHistory.from_json(raw)
    except ConsentStateError:
        return UNREADABLE_CONSENT


def _stamped_out(s: Stamped) -> tuple[Any, ...]:
    return (s.value, format_time(s.at), s.event_id)


def _stamped_in(raw: list[Any]) -> Stamped:
    return new_stamped(raw[0], parse_stored(raw[1]), raw[2])


def _activity_out(a: Activity) -> tuple[Any, ...]:
    if a.name is None:
        return (format_time(a.at), a.event_id, a.type, a.channel, a.sku, a.category)
    return (format_time(a.at), a.event_id, a.type, a.channel, a.sku, a.category, a.name)


def _activity_in(raw: list[Any]) -> Activity:
    name = raw[6] if len(raw) > 6 else None
    return new_activity(parse_stored(raw[0]), raw[1], raw[2], raw[3], raw[4], raw[5], name)


def _transaction_in(key: str, raw: list[Any]) -> Transaction:
    return new_transaction(  # positional: key, at, event_id, type, channel, consent, region, ...
        key,
        parse_stored(raw[0]),
        raw[1],
        raw[2],
        raw[3],
        raw[4],
        raw[5],
        bool(raw[6]),  # is_return
        bool(raw[7]),  # in_store
        raw[8],  # currency
        Decimal(raw[9]),  # amount
        raw[10],  # payment_method
        raw[11],  # location_id
        tuple(raw[12]),  # categories
        raw[13],  # sku
        raw[14] if len(raw) > 14 else None,  # order_id (a return's, written since 2026-12)
        tuple(raw[15]) if len(raw) > 15 else (),  # units
        raw[16] if len(raw) > 16 else 0,  # whole (a return of the whole order)
        # a purchase's SKUs per category, a give-back's (SKU, units) without a category
        # (written since 2026-12-04)
        tuple([tuple(skus) for skus in raw[17]]) if len(raw) > 17 else (),
        tuple([(x[0], x[1]) for x in raw[18]]) if len(raw) > 18 else (),
    )


def _transaction_tail(t: Transaction) -> tuple[Any, ...]:
    """The optional trailing fields of a stored transaction (order id, units, whole, SKUs per
    category, SKUs without one), up to the last one it has: most are written as before."""
    if t.loose:
        return (
            t.order_id,
            list(t.units),
            t.whole,
            [list(s) for s in t.skus],
            [list(x) for x in t.loose],
        )
    if t.skus:
        return (t.order_id, list(t.units), t.whole, [list(s) for s in t.skus])
    if t.whole:
        return (t.order_id, list(t.units), t.whole)
    if t.order_id is not None or t.units:
        return (t.order_id, list(t.units))
    return ()


def _digest_out(key: DigestKey, d: Digest) -> list[Any]:
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
        [_activity_out(a) for a in d.activities],
        {k: _stamped_out(s) for k, s in sorted(d.preferences.items())},
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
        first_at=parse_stored(raw[3]),
        last_at=parse_stored(raw[4]),
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


def _recent_in(items: list[Any]) -> dict[str, Recent]:
    """The recent events (``{e.event_id: e}``), in one loop (a call per event costs more
    than its decoding). Most are husks (~80 % in the bench's final states): an empty part is
    built without a comprehension, an empty channel set is the shared empty frozenset
    (immutable); ``x == []`` / ``x == {}`` holds for the empty list or dict only, anything
    else goes through the general expression (and fails as it did)."""
    out: dict[str, Recent] = {}
    for raw in items:
        at = parse_stored(raw[3])
        seen = bool(raw[4])
        event_id = raw[0]
        item = new_recent(
            event_id,
            raw[1],  # code
            raw[2],  # region
            new_digest(  # positional: first_at, last_at, seen, events, channels, interest, ...
                at,
                at,
                seen,
                1 if seen else 0,
                _NO_CHANNELS if (channels := raw[5]) == [] else frozenset(channels),
                bool(raw[6]),
                {} if (cats := raw[7]) == {} else {k: int(v) for k, v in cats.items()},
                () if (acts := raw[8]) == [] else tuple([_activity_in(a) for a in acts]),
                {} if (prefs := raw[9]) == {} else {k: _stamped_in(v) for k, v in prefs.items()},
                IMPLIED_IDS,  # ids: its event's fingerprint, implied (ADR 0032)
            ),
        )
        if type(event_id) is not str:  # fails as the fingerprint's ``encode`` made it fail
            raise AttributeError(f"a recent event's id is a {type(event_id).__name__}")
        out[event_id] = item
    return out


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
                # a give-back's order, the units per category, a whole-order return's mark, a
                # purchase's SKUs per category and a give-back's SKUs without one: up to the
                # last there is
                *_transaction_tail(t),
            ]
            for k, t in sorted(facts.transactions.items())
        }
    if facts.recent:
        # a recent event without channels, categories, activities or preferences (most: the
        # husks) written inline, as ``_recent_out`` writes it; the condition binds ``d``
        # before the row reads it
        out["e"] = [
            (
                item.event_id,
                item.code,
                item.region,
                format_time(d.first_at),
                d.seen,
                (),
                d.interest,
                {},
                (),
                {},
            )
            if not ((d := item.digest).channels or d.categories or d.activities or d.preferences)
            else _recent_out(item)
            for _, item in sorted(facts.recent.items())
        ]
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


def facts_from_stored(raw: Mapping[str, Any]) -> Facts:
    """:func:`facts_from_json` of a group's stored JSON, with ``raw`` itself (encoded again,
    in C) as the facts' :func:`facts_fragment`: a group the batch leaves unchanged is written
    back without :func:`facts_to_json`, whose cost grows with the group's history (every
    transaction, recent event and digest, sorted), whereas a decoded profile usually has one
    group folded per write. A changed group is new ``Facts`` (they are immutable), encoded
    afresh.

    ``raw`` is what :func:`facts_to_json` wrote, parsed: orjson writes it back byte for byte
    (its key order, its shortest round-tripping floats, the same escapes), and this codec's
    decoding is lossless on it, so the fragment equals a re-encode of the facts. A state that
    another writer spelled otherwise (a time with an offset, which ``parse_stored`` accepts)
    keeps its spelling until its group changes; it decodes to the same facts either way. A
    consent history that cannot be read decodes to :data:`UNREADABLE_CONSENT` (lossy): such
    facts are encoded afresh, as before (every purpose denied, for good)."""
    facts = facts_from_json(raw)
    if facts.consent is not UNREADABLE_CONSENT:
        object.__setattr__(facts, "encoded", orjson.Fragment(right_sized(orjson.dumps(raw))))
    return facts


#: What ``raw.get`` answers for a part a group's JSON leaves out (facts_to_json writes no
#: empty part): its empty value is built without a comprehension.
_ABSENT: Final = object()


def facts_from_json(raw: Mapping[str, Any]) -> Facts:
    region = raw.get("r")
    consent = raw.get("c")
    traits = raw.get("t", _ABSENT)
    transactions = raw.get("o", _ABSENT)
    recent = raw.get("e", _ABSENT)
    digests = raw.get("d", _ABSENT)
    latest = raw.get("l")
    return new_facts(  # positional: traits, region, consent, transactions, recent, digests, latest
        {} if traits is _ABSENT else {k: _stamped_in(v) for k, v in traits.items()},
        # ``_stamped_in(region)``, inline
        new_stamped(region[0], parse_stored(region[1]), region[2]) if region is not None else None,
        EMPTY_HISTORY if consent is None else _consent_in(consent),
        {}
        if transactions is _ABSENT
        else {k: _transaction_in(k, v) for k, v in transactions.items()},
        {} if recent is _ABSENT else _recent_in(recent),
        {} if digests is _ABSENT else dict([_digest_in(d) for d in digests]),
        None if latest is None else parse_stored(latest),
    )
