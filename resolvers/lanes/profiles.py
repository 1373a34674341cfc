"""The profiles lane's batch: the evidence a load returned in, effects out.

    dedupe -> identity -> facts -> render (-> consent audit)

* ``dedupe``   events this lane processed already change nothing;
* ``identity`` who each event belongs to, recomputed from the evidence when it changed
               (``resolvers.stages.identity``): erasures, atoms, shared identifiers, people;
* ``facts``    each event's observation (``resolvers.stages.observe``) folds into its group's
               facts (``resolvers.profile.facts``);
* ``render``   every person the batch touched gets a new snapshot through the consent gate
               (``resolvers.profile.render``); the consent audit records, per event, what its
               person's consent denied.

Every output is an effect (``resolvers.effects``); ``resolvers.commit_codec`` turns them into
the batch's one atomic store commit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC

import orjson

from resolvers.consent import EMPTY_HISTORY, ConsentHistory, Decision, Gate
from resolvers.context import Context, suppression_hash
from resolvers.decode_cache import DecodeCache
from resolvers.effects import Count, IdentifierWritten, Measure, ProfileWritten, Published
from resolvers.identity.erasure import Tombstone
from resolvers.identity.evidence import IdentifierRecord, Stamp, parse_key, ranked
from resolvers.identity.rules import IdentityRules
from resolvers.lanes.inventory import LaneOutcome
from resolvers.lanes.stored_profile import Group, StoredProfile, decode
from resolvers.profile import facts as profile_facts
from resolvers.profile.facts import Facts, Stamped
from resolvers.profile.render import Person, render
from resolvers.stages import dedupe, identity, observe
from resolvers.steps import DUPLICATE, OK, Event
from resolvers.store import HELD_FIELD, HOLDERS_FIELD, Kind, Loaded, Ref, profile_ref
from resolvers.timefmt import format_time
from schemas.identifiers import Identifier
from schemas.touchpoint import EventType


def _profile_decoder(ref: Ref, rules: IdentityRules) -> Callable[[bytes], StoredProfile]:
    return lambda raw: decode(ref.name, raw, rules)


def _decode_record(raw: bytes) -> Mapping[str, object]:
    data: Mapping[str, object] = orjson.loads(raw)
    return data


@dataclass
class ProfilesBatch:
    """What one load returned, decoded: records, tombstones, live profiles, redirects."""

    ctx: Context
    versions: dict[Ref, int]
    records: dict[Identifier, IdentifierRecord]
    tombstones: dict[str, Tombstone]  # by salted hash
    profiles: dict[str, StoredProfile]
    redirects: dict[str, str]
    seen: frozenset[str]

    @classmethod
    def from_loaded(
        cls, loaded: Loaded, ctx: Context, hashes: Mapping[str, Identifier]
    ) -> ProfilesBatch:
        """``hashes``: the suppression hash of every identifier the request asked about."""
        cache = ctx.cache or DecodeCache(max_entries=0)
        versions: dict[Ref, int] = {}
        records: dict[Identifier, IdentifierRecord] = {}
        profiles: dict[str, StoredProfile] = {}
        redirects: dict[str, str] = {}
        rules = ctx.rules
        for ref, entity in loaded.entities.items():
            versions[ref] = entity.version
            if not entity.exists:
                continue
            fields = entity.fields
            if ref.kind is Kind.IDENTIFIER:
                pid = fields.get("p")
                state = cache.get(ref, fields.get("s", b"{}"), _decode_record)
                holders = orjson.loads(fields.get(HOLDERS_FIELD, b"[]"))
                records[parse_key(ref.name)] = IdentifierRecord.from_json(
                    state, pid.decode() if pid is not None else None, holders
                )
            elif ref.kind is Kind.PROFILE:
                if "r" in fields:
                    redirects[ref.name] = fields["r"].decode()
                elif "s" in fields:
                    profiles[ref.name] = cache.get(ref, fields["s"], _profile_decoder(ref, rules))
        tombstones = {
            digest: Tombstone.from_json(orjson.loads(raw))
            for digest, raw in loaded.suppressed.items()
        }
        return cls(ctx, versions, records, tombstones, profiles, redirects, loaded.seen)

    # ------------------------------------------------------------------ the lane
    def run(self, events: Sequence[Event]) -> LaneOutcome:
        out = LaneOutcome()
        fresh, duplicates = dedupe.fresh(events, self.seen)
        for event in duplicates:
            out.outcomes[(event.tp.type.value, DUPLICATE)] += 1
        out.processed = [e.tp.event_id for e in fresh]
        resolution = identity.resolve(self._evidence(), (self._sighting(e) for e in fresh))
        out.counts.update(resolution.counts)
        touched = self._fold_facts(fresh, resolution)
        gates = self._render(resolution, touched, out)
        self._audit(fresh, resolution, gates, out)
        out.effects.extend(
            IdentifierWritten(ident, record) for ident, record in sorted(resolution.records.items())
        )
        out.effects.extend(resolution.suppressed)
        out.effects.extend(resolution.redirected)
        out.effects.extend(resolution.erased)
        out.effects.extend(resolution.published)
        for event in fresh:
            outcome = resolution.outcomes.get(event.tp.event_id, OK)
            out.outcomes[(event.tp.type.value, outcome)] += 1
        return out

    def _evidence(self) -> identity.Evidence:
        ctx = self.ctx
        salt = ctx.salt
        return identity.Evidence(
            rules=ctx.rules,
            hash_of=lambda ident: suppression_hash(ident, salt),
            records=self.records,
            tombstones=self.tombstones,
            profiles=self.profiles,
            redirected=frozenset(self.redirects),
            topics={"merges": ctx.topics.merges, "erasures": ctx.topics.erasures},
        )

    def _sighting(self, event: Event) -> identity.Sighting:
        tp = event.tp
        return identity.Sighting(
            event_id=tp.event_id,
            stamp=Stamp(tp.occurred_at.astimezone(UTC), tp.event_id),
            ids=ranked(event.identifiers, self.ctx.rules),
            erase=tp.type is EventType.ERASURE_REQUESTED,
        )

    def _fold_facts(self, fresh: Sequence[Event], res: identity.Resolution) -> set[str]:
        """Each event's observation into its group; returns the people touched."""
        touched: set[str] = set()
        bound = self.ctx.policy.max_explicit_grants
        for event in fresh:
            gkey = res.event_group.get(event.tp.event_id)
            if gkey is None:
                continue
            owner = res.owner_of_group[gkey]
            person = res.people[owner]
            group = person.groups[gkey]
            folded = profile_facts.observe(group.facts, observe.observation(event.tp), bound=bound)
            person.groups[gkey] = replace(group, facts=folded)
            touched.add(owner)
        return touched

    def _gate(self, groups: Sequence[Facts]) -> Gate:
        consent: ConsentHistory = EMPTY_HISTORY
        region: Stamped | None = None
        bound = self.ctx.policy.max_explicit_grants
        for facts in groups:
            consent = consent.merged(facts.consent, bound)
            region = profile_facts.later(region, facts.region)
        return Gate(self.ctx.policy, consent, region.value if region is not None else None)

    def _render(
        self, res: identity.Resolution, touched: set[str], out: LaneOutcome
    ) -> dict[str, Gate]:
        gates: dict[str, Gate] = {}
        for pid in sorted(res.people):
            person = res.people[pid]
            if pid not in touched and not person.changed:
                continue
            stored = person.stored()
            groups = [g.facts for g in stored.groups.values()]
            gate = gates[pid] = self._gate(groups)
            version = self.versions.get(profile_ref(pid), 0) + 1
            snapshot = render(
                Person(
                    profile_id=pid,
                    version=version,
                    identifiers=stored.identifiers,
                    groups=groups,
                    created_at=stored.first.at,
                    merged_from=stored.merged_from,
                ),
                gate,
            )
            out.effects.append(ProfileWritten(stored, version, snapshot))
        return gates

    def _audit(
        self,
        fresh: Sequence[Event],
        res: identity.Resolution,
        gates: Mapping[str, Gate],
        out: LaneOutcome,
    ) -> None:
        """Per event, what its person's consent denies it (the ``consent.audit`` topic)."""
        policy = self.ctx.policy
        decided_at = format_time(self.ctx.now)
        for event in fresh:
            tp = event.tp
            if tp.type is EventType.ERASURE_REQUESTED:
                continue
            gkey = res.event_group.get(tp.event_id)
            owner = res.owner_of_group.get(gkey) if gkey is not None else None
            gate = gates.get(owner) if owner is not None else None
            if gate is None:
                gate = Gate(policy, EMPTY_HISTORY, tp.region)
            verdicts = gate.verdicts(
                at=tp.occurred_at, consent=observe.event_consent(tp), region=tp.region
            )
            denied = [v for v in verdicts if not v.allowed]
            for v in denied:
                out.counts[Count(Measure.CONSENT_DENIED, v.purpose.value, v.reason.value)] += 1
            if denied:
                out.effects.append(
                    Published(
                        self.ctx.topics.consent_audit,
                        owner,
                        {
                            "event_id": tp.event_id,
                            "profile_id": owner,
                            "policy_version": policy.version,
                            "decided_at": decided_at,
                            "decisions": [
                                {
                                    "purpose": v.purpose.value,
                                    "decision": Decision.DENY.value,
                                    "reason": v.reason.value,
                                    "source": v.source,
                                }
                                for v in denied
                            ],
                        },
                    )
                )


def held(profile: StoredProfile) -> bytes:
    """The held-identifiers field (``HELD_FIELD``): keys the store loads with the profile."""
    return orjson.dumps(profile.held_keys())


__all__ = ["HELD_FIELD", "Group", "ProfilesBatch", "held"]
