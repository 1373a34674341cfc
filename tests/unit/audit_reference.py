"""``resolvers.stages.audit`` as it was before issue 17's twentieth pass (main 50cb82b),
verbatim but for this docstring: the reference ``test_audit_answers`` compares today's audit
with (each event's denials looked up per event, counted and grouped per event).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any, Final

from resolvers.consent import (
    EMPTY_HISTORY,
    ConsentPolicy,
    Decision,
    EventConsent,
    Gate,
    Reason,
    Source,
    Verdict,
)
from resolvers.effects import Count, Measure, Published
from resolvers.profile.facts import TRANSACTION_TYPES
from resolvers.timefmt import format_time
from schemas.touchpoint import EventType, Touchpoint

NAME = "audit"

#: The ``kind`` of a per-batch record of jurisdiction-default denials.
REGION_DEFAULT_KIND: Final = "region_default"
#: Events listed in one per-batch record at most (a record stays far below Kafka's 1 MB).
EVENTS_PER_RECORD: Final = 500

# The vocabulary's members are ``str``s (StrEnum: they hash, compare and serialize as their
# values), so rows hold them as they are: ``.value`` is a Python-level property, ~20 per event.
_DEFAULT_SOURCE: Final = Source.DEFAULT.value
_DENY: Final = Decision.DENY
_REGION_DEFAULT: Final = Reason.REGION_DEFAULT
_ERASURE: Final = EventType.ERASURE_REQUESTED

# Enum members read per event, bound once (prefix: D_ decision, R_ reason, S_ source): on CPython
# 3.11 a member read off its class costs ~0.1 µs (its metaclass's attribute hook), a
# constant ~0.01 (ADR 0019).
_D_PURGE: Final = Decision.PURGE
_R_GPC: Final = Reason.GPC
_R_REVOKED: Final = Reason.REVOKED
_S_GPC: Final = Source.GPC


#: (purpose, decision, reason, source) of one decision, as the record spells them.
Row = tuple[str, str, str, str]


def _decisions(rows: Sequence[Row]) -> list[dict[str, str]]:
    return [
        {"purpose": purpose, "decision": decision, "reason": reason, "source": source}
        for purpose, decision, reason, source in rows
    ]


#: What the audit makes of one event's verdicts: its rows (the denials), the (purpose,
#: reason) each row counts under, and whether every row is its jurisdiction's default.
_Denials = tuple[tuple[Row, ...], tuple[tuple[str, str], ...], bool]


def _denials(verdicts: tuple[Verdict, ...]) -> _Denials:
    rows: list[Row] = []
    keys: list[tuple[str, str]] = []
    default_only = True
    for v in verdicts:
        if not v.allowed:
            purpose, reason, source = v.purpose, v.reason, v.source
            rows.append((purpose, _DENY, reason, source))
            keys.append((purpose, reason))
            default_only = default_only and reason == _REGION_DEFAULT and source == _DEFAULT_SOURCE
    return tuple(rows), tuple(keys), default_only


def _purges(consent: EventConsent, prior: Callable[[], Gate | None]) -> list[Row]:
    """The purposes the event revoked of ``prior()`` (the person's gate before the batch;
    asked only when the event denies a purpose)."""
    out: list[Row] = []
    for purpose, stated in sorted(consent.own.items()):
        before = prior() if not stated.granted else None
        if before is not None and before.current(purpose).granted:
            reason = _R_GPC if stated.source is _S_GPC else _R_REVOKED
            out.append((purpose, _D_PURGE, reason, stated.source))
    return out


#: The denials of gates without consent history, whose verdicts depend only on the person's
#: region and the event's consent, region and kind (``Gate.verdicts``; one policy per audit):
#: by (person's region, id of the consent, event's region, behavioural), with the consent
#: (the entry holds it, so its id stays its own).
_Remembered = dict[tuple[str | None, int, str | None, bool], tuple[EventConsent, _Denials]]


def _event_denials(
    tp: Touchpoint, consent: EventConsent, gate: Gate, behavioural: bool
) -> _Denials:
    """What ``gate`` denies the event (whose consent is ``consent``)."""
    return _denials(
        gate.verdicts(at=tp.occurred_at, consent=consent, region=tp.region, behavioural=behavioural)
    )


def _none() -> None:
    return None


def audit(
    fresh: Sequence[Touchpoint],
    consents: Sequence[EventConsent],
    owners: Sequence[str | None],
    before: Callable[[str], Gate | None],
    gates: Mapping[str, Gate],
    *,
    policy: ConsentPolicy,
    topic: str,
    now: datetime,
    counts: Counter[Count],
) -> list[Published]:
    """The batch's audit records of the touchpoints ``fresh`` (``consents``: each one's
    ``resolvers.stages.observe.event_consent``); denials and purges counted into ``counts``.
    ``owners``: each event's profile id (None: not placed), in ``fresh``'s order; ``before(pid)`` /
    ``gates``: a person's gate before / after the batch."""
    decided_at = format_time(now)
    out: list[Published] = []
    defaults: dict[tuple[Row, ...], list[list[str | None]]] = {}
    # (purpose, reason) of each denial, counted per event's list of them (few distinct ones;
    # spread per pair at the end: the pairs come first in the same order, see ``_spread``)
    denied_lists: Counter[tuple[tuple[str, str], ...]] = Counter()
    purged: Counter[str] = Counter()
    remembered: _Remembered = {}
    # the denials of verdicts asked already, by their id (a gate answers the same tuple for
    # the same question): (the verdicts, their denials); the entry holds them
    seen: dict[int, tuple[tuple[Verdict, ...], _Denials]] = {}
    for tp, consent, owner in zip(fresh, consents, owners, strict=True):
        # its fields from the model's instance dict (``observe.observation`` says why)
        fields = tp.__dict__
        event_type = fields["type"]
        if event_type is _ERASURE:
            continue
        event_id, region = fields["event_id"], fields["region"]
        gate = gates.get(owner) if owner is not None else None
        if gate is None:
            gate = Gate(policy, EMPTY_HISTORY, region)
        behavioural = event_type not in TRANSACTION_TYPES
        if gate.history.purposes:  # verdicts at this fact's time: asked once
            verdicts = gate.verdicts(
                at=fields["occurred_at"], consent=consent, region=region, behavioural=behavioural
            )
            known = seen.get(id(verdicts))
            if known is None or known[0] is not verdicts:
                known = seen[id(verdicts)] = (verdicts, _denials(verdicts))
            rows, keys, default_only = known[1]
        else:
            asked = (gate.region, id(consent), region, behavioural)
            found = remembered.get(asked)
            if found is None or found[0] is not consent:
                denials = _event_denials(tp, consent, gate, behavioural)
                found = remembered[asked] = (consent, denials)
            rows, keys, default_only = found[1]
        if consent.denies:  # only a denial can revoke
            purges = _purges(consent, partial(before, owner) if owner is not None else _none)
            if purges:
                rows, default_only = (*rows, *purges), False
                for row in purges:
                    purged[row[0]] += 1
        if not rows:
            continue
        denied_lists[keys] += 1  # (none: a purge only)
        if default_only:
            defaults.setdefault(rows, []).append([event_id, owner])
            continue
        out.append(
            Published(
                topic,
                owner,
                {
                    "event_id": event_id,
                    "profile_id": owner,
                    "policy_version": policy.version,
                    "decided_at": decided_at,
                    "decisions": _decisions(rows),
                },
            )
        )
    for (purpose, reason), n in _spread(denied_lists).items():
        counts[Count(Measure.CONSENT_DENIED, purpose, reason)] += n
    for purpose, n in purged.items():
        counts[Count(Measure.CONSENT_PURGED, purpose)] += n
    out.extend(_region_defaults(defaults, topic, policy.version, decided_at))
    return out


def _spread(lists: Counter[tuple[tuple[str, str], ...]]) -> Counter[tuple[str, str]]:
    """Each pair's count from the counts of the lists of pairs, in the order a ``+= 1`` per
    pair of each event would have met them first: a pair is first met in the first event of
    some list that holds it, and the lists are in the order of their first events."""
    out: Counter[tuple[str, str]] = Counter()
    for pairs, n in lists.items():
        for pair in pairs:
            out[pair] += n
    return out


def _region_defaults(
    defaults: Mapping[tuple[Row, ...], list[list[str | None]]],
    topic: str,
    policy_version: str,
    decided_at: str,
) -> Iterator[Published]:
    """The per-batch records of the events whose every decision is the default (by their
    list of decisions), ``EVENTS_PER_RECORD`` events at most each."""
    for rows_key, events in defaults.items():
        decisions = _decisions(rows_key)
        for start in range(0, len(events), EVENTS_PER_RECORD):
            yield Published(
                topic,
                None,
                {
                    "kind": REGION_DEFAULT_KIND,
                    "policy_version": policy_version,
                    "decided_at": decided_at,
                    "decisions": decisions,
                    "events": events[start : start + EVENTS_PER_RECORD],
                },
            )


def rows(record: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """A ``consent.audit`` record of either kind as one row per (event, decision):
    ``event_id``, ``profile_id``, ``policy_version``, ``decided_at``, ``purpose``,
    ``decision``, ``reason``, ``source``."""
    common = {"policy_version": record["policy_version"], "decided_at": record["decided_at"]}
    if record.get("kind") == REGION_DEFAULT_KIND:
        events = [(event_id, profile_id) for event_id, profile_id in record["events"]]
    else:
        events = [(record["event_id"], record["profile_id"])]
    for event_id, profile_id in events:
        for decision in record["decisions"]:
            yield {"event_id": event_id, "profile_id": profile_id, **common, **decision}
