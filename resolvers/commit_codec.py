"""The one module that turns a lane's effects into its batch's atomic store commit.

Per effect: the entity writes (snapshot ``d`` for readers, internal state ``s``), the Kafka
records for the outbox, the Redis change-stream entries and the stats counters. Every write
expects the version the batch loaded (compare-and-set); redirect re-pointing and their
deletions are blind (a redirect never changes meaning).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from resolvers import inventory
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
from resolvers.lanes import stored_profile
from resolvers.store import (
    DEFAULT_SCOPE,
    HELD_FIELD,
    HOLDERS_FIELD,
    Commit,
    MembershipChange,
    OutboxRecord,
    Ref,
    StreamEntry,
    Write,
    identifier_ref,
    profile_ref,
    stock_ref,
)
from resolvers.timefmt import format_time


def _json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


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

    def next_version(self, ref: Ref) -> int:
        return self.versions.get(ref, 0) + 1

    def publish(self, topic: str, key: str | None, value: bytes | None) -> None:
        self.outbox.append(OutboxRecord(topic, key.encode() if key is not None else None, value))

    def stream(self, name: str, fields: Mapping[str, str]) -> None:
        self.streams.append(StreamEntry(name, {k: v.encode() for k, v in fields.items()}))

    def add(self, effect: Effect) -> None:
        match effect:
            case IdentifierWritten(identifier=ident, record=record):
                ref = identifier_ref(ident.key)
                fields: dict[str, bytes] = {}
                if record is not None:
                    fields["s"] = _json(record.to_json())
                    if record.profile_id is not None:
                        fields["p"] = record.profile_id.encode()
                    if record.holders:
                        fields[HOLDERS_FIELD] = _json(list(record.holders))
                self.writes.append(Write(ref, self.next_version(ref), fields))
            case Suppressed(digest=digest, tombstone=tombstone):
                self.suppress[digest] = tombstone
            case ProfileWritten(profile=profile, version=version, snapshot=snapshot):
                pid = profile.profile_id
                doc = _json(snapshot)  # one encoding for the outbox and the stored snapshot
                self.writes.append(
                    Write(
                        profile_ref(pid),
                        version,
                        {
                            "d": doc,
                            "s": stored_profile.encode(profile),
                            HELD_FIELD: _json(profile.held_keys()),
                        },
                    )
                )
                self.publish(self.profile_topic, pid, doc)
                self.stream("profiles", {"id": pid, "op": "upsert", "version": str(version)})
            case ProfileRedirected(profile_id=pid, into=into, merged_from=older):
                ref = profile_ref(pid)
                self.writes.append(Write(ref, self.next_version(ref), {"r": into.encode()}))
                self.blind.extend(
                    Write(profile_ref(old), 1, {"r": into.encode()}) for old in older if old != into
                )
                self.publish(
                    self.profile_topic, pid, _json({"profile_id": pid, "merged_into": into})
                )
                self.stream("profiles", {"id": pid, "op": "merged", "into": into})
            case ProfileErased(profile_id=pid, merged_from=older, reason=reason):
                ref = profile_ref(pid)
                self.writes.append(Write(ref, self.next_version(ref), {}))
                self.blind.extend(Write(profile_ref(old), 1, {}) for old in older)
                self.publish(self.profile_topic, pid, None)
                self.stream("profiles", {"id": pid, "op": reason})
            case StockWritten(sku=sku, stock=stock):
                ref = stock_ref(sku)
                version = self.next_version(ref)
                snap = inventory.snapshot(stock)
                snap["version"] = version
                self.writes.append(
                    Write(ref, version, {"d": _json(snap), "s": _json(stock.to_dict())})
                )
            case Published(topic=topic, key=key, value=value):
                self.publish(topic, key, _json(value) if value is not None else None)
            case Streamed(stream=name, fields=fields_):
                self.stream(name, fields_)
            case AudiencesChanged():
                self.audiences(effect)

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


def encode(
    *,
    versions: Mapping[Ref, int],
    effects: Iterable[Effect],
    event_ids: Iterable[str],
    counts: Counter[Count],
    profile_topic: str,
    scope: str = DEFAULT_SCOPE,
    unsuppressed: Iterable[str] = (),
) -> Commit:
    """The batch's commit: expects every loaded version, marks ``event_ids`` processed."""
    encoder = _Encoder(versions, profile_topic)
    for effect in effects:
        encoder.add(effect)
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
