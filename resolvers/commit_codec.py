"""The one module that turns a lane's effects into its batch's atomic store commit.

Per effect: the entity writes (snapshot ``d`` for readers, internal state ``s``), the Kafka
records for the outbox, the Redis change-stream entries and the stats counters. Every write
expects the version the batch loaded (compare-and-set); redirect re-pointing and their
deletions are blind (a redirect never changes meaning).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import orjson

from resolvers import inventory
from resolvers.decode_cache import right_sized
from resolvers.effects import (
    AudiencesChanged,
    Count,
    Effect,
    IdentifierWritten,
    ProfileErased,
    ProfileRedirected,
    ProfileWritten,
    Published,
    StockWritten,
    Streamed,
    Suppressed,
)
from resolvers.frozen import fast_new
from resolvers.identity.evidence import RECORD_FORMAT, IdentifierRecord
from resolvers.lanes import stored_profile
from resolvers.lanes.stored_profile import StoredProfile
from resolvers.store import (
    DEFAULT_SCOPE,
    HELD_FIELD,
    HOLDERS_FIELD,
    Commit,
    Kind,
    MembershipChange,
    OutboxRecord,
    Ref,
    StreamEntry,
    Write,
    profile_ref,
    stock_ref,
)
from resolvers.timefmt import format_time
from resolvers.tuples import new_tuple

# Enum members read per event, bound once (prefix: K_ kind): on CPython
# 3.11 a member read off its class costs ~0.1 µs (its metaclass's attribute hook), a
# constant ~0.01 (ADR 0019).
_K_IDENTIFIER: Final = Kind.IDENTIFIER
_K_PROFILE: Final = Kind.PROFILE

_dumps: Final = orjson.dumps
_NON_STR_KEYS: Final = orjson.OPT_NON_STR_KEYS
_encode_with_held: Final = stored_profile.encode_with_held
_right_sized: Final = right_sized


def _json(value: Any) -> bytes:
    """``value`` as JSON; keys that are not strings (a snapshot's counters) as their text.

    ``OPT_NON_STR_KEYS`` makes orjson check every key the slow way (about twice the cost of a
    snapshot's encoding); it writes string keys exactly as the default does, so it is asked
    for only when a value has another key."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


#: ``Cls(*every field)``, cheaper (``resolvers.frozen.fast_new``): a write, an outbox record
#: and a stream entry per profile written, a write per identifier record.
_new_write: Final = fast_new(Write)
_new_outbox: Final = fast_new(OutboxRecord)
_new_stream: Final = fast_new(StreamEntry)

#: The change-stream entry's op of a profile written (encoded once).
_UPSERT: Final = b"upsert"
#: The state of an identifier record without co-occurrences or quarantine (encoded once).
_PLAIN_RECORD: Final = orjson.dumps(IdentifierRecord().to_json())


class _Encoder:
    def __init__(self, versions: Mapping[Ref, int], profile_topic: str) -> None:
        self.versions = versions
        self.profile_topic = profile_topic
        self.writes: list[Write] = []
        self.blind: list[Write] = []
        self.suppress: dict[str, bytes] = {}
        self.outbox: list[OutboxRecord] = []
        self.streams: list[StreamEntry] = []
        self.memberships: list[MembershipChange] = []
        self.states: list[tuple[Ref, bytes, StoredProfile | inventory.SkuStock]] = []
        #: identifier records written that were not loaded ("type:value"): no compare-and-set
        #: would guard them (the pipeline loads them and computes again)
        self.unloaded: list[str] = []

    def next_version(self, ref: Ref) -> int:
        return self.versions.get(ref, 0) + 1

    def publish(self, topic: str, key: str | None, value: bytes | None) -> None:
        self.outbox.append(OutboxRecord(topic, key.encode() if key is not None else None, value))

    def stream(self, name: str, fields: Mapping[str, str]) -> None:
        self.streams.append(StreamEntry(name, {k: v.encode() for k, v in fields.items()}))

    def profile_written(self, effect: ProfileWritten) -> None:
        """The hot one (a write per touched profile): its snapshot encoded once, for the
        outbox and the stored ``d``; its state remembered for ``written``.

        Its three values are kept right-sized (``right_sized``): ``orjson.dumps`` returns
        bytes holding its whole buffer (at least 4 KiB), and a commit keeps them until it is
        done (the in-memory store: for as long as it holds the entity and the outbox record).
        Kept whole, every write's buffers were fresh pages to fault in; copied, each buffer is
        freed at once for the next ``dumps`` (in process, 30,000 simulator events: ~1.2
        fewer minor page faults per event with the in-memory store, ~0.6 fewer when the
        stored values leave the worker's heap after each batch, as a Redis commit's do)."""
        profile, version = effect.profile, effect.version
        pid = profile.profile_id
        key = pid.encode()
        ref = new_tuple(Ref, (_K_PROFILE, pid))  # ``profile_ref(pid)``, inline
        snapshot = effect.snapshot
        try:  # ``_json(snapshot)``, inline
            doc = _right_sized(_dumps(snapshot))
        except TypeError:
            doc = _right_sized(_dumps(snapshot, option=_NON_STR_KEYS))
        state, held = _encode_with_held(profile)
        state, held = _right_sized(state), _right_sized(held)
        self.writes.append(_new_write(ref, version, {"d": doc, "s": state, HELD_FIELD: held}))
        self.states.append((ref, state, profile))
        self.outbox.append(_new_outbox(self.profile_topic, key, doc, version))
        self.streams.append(
            _new_stream("profiles", {"id": key, "op": _UPSERT, "version": str(version).encode()})
        )

    def identifier_written(self, effect: IdentifierWritten) -> None:
        record = effect.record
        id_type, value = effect.identifier  # ``identifier_ref(identifier.key)``, inline
        ref = new_tuple(Ref, (_K_IDENTIFIER, f"{id_type}:{value}"))
        fields: dict[str, bytes] = {}
        if record is not None:
            profile_id, seen_with, quarantined, holders = record  # a named tuple, in C
            if not seen_with and not quarantined:
                # most records learned no co-occurrence: their state is the format alone
                fields["s"] = _PLAIN_RECORD
            elif not quarantined and type(seen_with) is dict:
                # ``record.to_json()`` without its copies: orjson writes tuples as arrays
                fields["s"] = _json({"v": RECORD_FORMAT, "w": seen_with})
            else:
                fields["s"] = _json(record.to_json())
            if profile_id is not None:
                fields["p"] = profile_id.encode()
            if holders:
                fields[HOLDERS_FIELD] = _dumps(holders)
        # ``self.next_version(ref)``, inline: a write per changed identifier record
        version = self.versions.get(ref)
        if version is None:  # not loaded (a profile hash without ``i``: ADR 0029's note)
            self.unloaded.append(ref.name)
            version = 0
        self.writes.append(_new_write(ref, version + 1, fields))

    def suppressed(self, effect: Suppressed) -> None:
        self.suppress[effect.digest] = effect.tombstone

    def profile_redirected(self, effect: ProfileRedirected) -> None:
        pid, into = effect.profile_id, effect.into
        ref = profile_ref(pid)
        self.writes.append(Write(ref, self.next_version(ref), {"r": into.encode()}))
        self.blind.extend(
            Write(profile_ref(old), 1, {"r": into.encode()})
            for old in effect.merged_from
            if old != into
        )
        self.publish(self.profile_topic, pid, _json({"profile_id": pid, "merged_into": into}))
        self.stream("profiles", {"id": pid, "op": "merged", "into": into})

    def profile_erased(self, effect: ProfileErased) -> None:
        pid = effect.profile_id
        ref = profile_ref(pid)
        self.writes.append(Write(ref, self.next_version(ref), {}))
        self.blind.extend(Write(profile_ref(old), 1, {}) for old in effect.merged_from)
        self.publish(self.profile_topic, pid, None)
        self.stream("profiles", {"id": pid, "op": effect.reason})

    def stock_written(self, effect: StockWritten) -> None:
        ref = stock_ref(effect.sku)
        version = self.next_version(ref)
        state, doc = inventory.encode(effect.stock, version)
        self.writes.append(Write(ref, version, {"d": doc, "s": state}))
        self.states.append((ref, state, effect.stock))

    def published(self, effect: Published) -> None:
        value = effect.value
        self.publish(effect.topic, effect.key, _json(value) if value is not None else None)

    def streamed(self, effect: Streamed) -> None:
        self.stream(effect.stream, effect.fields)

    def audiences(self, change: AudiencesChanged) -> None:
        """SADD/SREM on the member sets and one ``enter``/``exit`` record per audience."""
        pid, at = change.profile_id, format_time(change.at)
        for name, member in [(n, True) for n in change.entered] + [
            (n, False) for n in change.exited
        ]:
            self.memberships.append(MembershipChange(name, pid, member))
            record = {
                "profile_id": pid,
                "audience": name,
                "change": "enter" if member else "exit",
                "at": at,
                "version": change.version,
            }
            self.publish(change.topic, pid, _json(record))


#: Each effect type's encoding (effects are final classes: looked up by exact type).
_HANDLERS: Final[dict[type, Callable[[_Encoder, Any], None]]] = {
    ProfileWritten: _Encoder.profile_written,
    IdentifierWritten: _Encoder.identifier_written,
    Suppressed: _Encoder.suppressed,
    ProfileRedirected: _Encoder.profile_redirected,
    ProfileErased: _Encoder.profile_erased,
    StockWritten: _Encoder.stock_written,
    Published: _Encoder.published,
    Streamed: _Encoder.streamed,
    AudiencesChanged: _Encoder.audiences,
}


def encode(
    *,
    versions: Mapping[Ref, int],
    effects: Iterable[Effect],
    event_ids: Iterable[str],
    counts: Counter[Count],
    profile_topic: str,
    scope: str = DEFAULT_SCOPE,
    unsuppressed: Iterable[str] = (),
    written: list[tuple[Ref, bytes, StoredProfile | inventory.SkuStock]] | None = None,
    unloaded: list[str] | None = None,
) -> Commit:
    """The batch's commit: expects every loaded version, marks ``event_ids`` processed.
    ``written``, when given, receives (ref, stored state, value) of every profile and SKU
    ledger the commit writes (what a worker remembers decoded: ``DecodeCache.put``);
    ``unloaded`` the identifier records (``type:value``) it writes without a loaded version
    (nothing expects one: such a commit must not be made)."""
    encoder = _Encoder(versions, profile_topic)
    handlers = _HANDLERS
    for effect in effects:  # by exact type, without a call per effect to find the handler
        handler = handlers.get(type(effect))
        if handler is not None:
            handler(encoder, effect)
    if written is not None:
        written.extend(encoder.states)
    if unloaded is not None:
        unloaded.extend(encoder.unloaded)
    return Commit(
        expect=dict(versions),
        event_ids=tuple(event_ids),
        writes=encoder.writes,
        blind_writes=encoder.blind,
        suppress=encoder.suppress,
        unsuppressed=tuple(sorted(set(unsuppressed) - set(encoder.suppress))),
        outbox=tuple(encoder.outbox),
        streams=tuple(encoder.streams),
        counters=_counters(counts),
        memberships=tuple(encoder.memberships),
        scope=scope,
    )


def _counters(counts: Counter[Count]) -> dict[str, int]:
    """Stats hash increments: each count under its labelled name, and labelled ones also
    under the bare measure (``merges_blocked`` and ``merges_blocked:unique:customer_id``)."""
    out: Counter[str] = Counter()
    for count, n in counts.items():
        if not n:
            continue
        out[count.stat_name()] += n
        if count.stat_name() != count.measure.value:
            out[count.measure.value] += n
    return dict(sorted(out.items()))
