"""Main f728e20's encoders of a profile's and an identifier record's writes, kept verbatim
for ``test_commit_codec_bytes`` (issue 17.2, sixteenth pass): ``commit_codec``'s
``profile_written`` and ``identifier_written`` (as methods of a subclass of its encoder),
``lanes.stored_profile.encode_with_held`` and ``profile.codec.facts_to_json`` with the
helpers it calls. The one change: a group's facts are encoded here at every call (main's
``facts_fragment``, less its memo on the facts and its right-sized copy, which change no
byte), so nothing the code under test remembers on the facts is read back."""

from __future__ import annotations

import base64
import struct
from typing import Any, Final

import orjson

from resolvers.commit_codec import (
    _PLAIN_RECORD,
    _UPSERT,
    _Encoder,
    _new_outbox,
    _new_stream,
    _new_write,
)
from resolvers.effects import IdentifierWritten, ProfileWritten
from resolvers.lanes.stored_profile import STATE_FORMAT, StoredProfile
from resolvers.profile.facts import Activity, Digest, DigestKey, Facts, Recent, Stamped
from resolvers.store import HELD_FIELD, HOLDERS_FIELD, Kind, Ref, profile_ref
from resolvers.timefmt import format_time
from resolvers.tuples import new_tuple

_K_IDENTIFIER: Final = Kind.IDENTIFIER


def facts_fragment(facts: Facts) -> orjson.Fragment:
    return orjson.Fragment(orjson.dumps(facts_to_json(facts)))


def _json(value: Any) -> bytes:
    """``value`` as JSON; keys that are not strings (a snapshot's counters) as their text.

    ``OPT_NON_STR_KEYS`` makes orjson check every key the slow way (about twice the cost of a
    snapshot's encoding); it writes string keys exactly as the default does, so it is asked
    for only when a value has another key."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def _stamped_out(s: Stamped) -> tuple[Any, ...]:
    return (s.value, format_time(s.at), s.event_id)


def _activity_out(a: Activity) -> tuple[Any, ...]:
    if a.name is None:
        return (format_time(a.at), a.event_id, a.type, a.channel, a.sku, a.category)
    return (format_time(a.at), a.event_id, a.type, a.channel, a.sku, a.category, a.name)


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
                # since returns name their order (``tests/pipeline/test_audience_returns.py``)
                *transaction_tail(t),
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


def encode_with_held(profile: StoredProfile) -> tuple[bytes, bytes]:
    """The state ``s`` and the held-identifier keys field (``StoredProfile.held_keys`` as
    JSON), from one pass over the atoms: an atom's JSON starts with its identifier keys.
    orjson writes tuples as arrays: the profile's tuples go in as they are."""
    held: set[str] = set()
    groups: dict[str, Any] = {}
    profile_groups = profile.groups
    for key in sorted(profile_groups) if len(profile_groups) > 1 else profile_groups:
        group = profile_groups[key]
        atoms = group.atoms
        if len(atoms) == 1:  # most groups: one atom, nothing to sort
            (only,) = atoms.values()
            atom = only.to_json()
            held.update(atom[0])
            encoded = [atom]
        else:
            encoded = []
            for akey in sorted(atoms):
                atom = atoms[akey].to_json()
                held.update(atom[0])
                encoded.append(atom)
        groups[key] = {"a": encoded, "x": facts_fragment(group.facts)}
    doc: dict[str, Any] = {"v": STATE_FORMAT}
    if profile.audiences:
        doc["au"] = profile.audiences
    doc["ids"] = dict(sorted(profile.identifiers.items()))
    first = profile.first
    doc["f"] = (format_time(first.at), first.event_id)
    doc["mf"] = profile.merged_from
    doc["g"] = groups
    return orjson.dumps(doc), orjson.dumps(sorted(held))


class Encoder(_Encoder):
    """``commit_codec._Encoder`` with main's two per-write methods."""

    def profile_written(self, effect: ProfileWritten) -> None:
        """The hot one (a write per touched profile): its snapshot encoded once, for the
        outbox and the stored ``d``; its state remembered for ``written``."""
        profile, version = effect.profile, effect.version
        pid = profile.profile_id
        key = pid.encode()
        ref = profile_ref(pid)
        doc = _json(effect.snapshot)
        state, held = encode_with_held(profile)
        self.writes.append(_new_write(ref, version, {"d": doc, "s": state, HELD_FIELD: held}))
        self.states.append((ref, state, profile))
        # (ADR 0033 added ``snapshot_version``, which records do not compare: None here)
        self.outbox.append(_new_outbox(self.profile_topic, key, doc, None))
        self.streams.append(
            _new_stream("profiles", {"id": key, "op": _UPSERT, "version": str(version).encode()})
        )

    def identifier_written(self, effect: IdentifierWritten) -> None:
        record = effect.record
        id_type, value = effect.identifier  # ``identifier_ref(identifier.key)``, inline
        ref = new_tuple(Ref, (_K_IDENTIFIER, f"{id_type}:{value}"))
        fields: dict[str, bytes] = {}
        if record is not None:
            # most records learned no co-occurrence: their state is the format alone
            plain = not record.seen_with and not record.quarantined
            fields["s"] = _PLAIN_RECORD if plain else _json(record.to_json())
            if record.profile_id is not None:
                fields["p"] = record.profile_id.encode()
            if record.holders:
                fields[HOLDERS_FIELD] = orjson.dumps(record.holders)
        # ``self.next_version(ref)``, inline: a write per changed identifier record
        self.writes.append(_new_write(ref, self.versions.get(ref, 0) + 1, fields))


def transaction_tail(t: Any) -> list[Any]:
    """Since cancellations and lines given back by SKU (``tests/pipeline/
    test_audience_returns.py``) and whole-order returns (``tests/pipeline/
    test_segment_full_refund.py``): the optional trailing fields up to the last one it has."""
    tail = [
        t.order_id,
        list(t.units),
        t.whole,
        [list(s) for s in t.skus],
        [list(x) for x in t.loose],
    ]
    while len(tail) > 2 and tail[-1] in ([], 0):
        tail.pop()
    return [] if tail == [None, []] else tail
