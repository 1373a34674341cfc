"""Stage: the consent audit of a batch (pure): per event, what its person's consent denied it
and the purposes it revoked, as records of the ``consent.audit`` topic (ADR 0011).

Two kinds of record, no identifiers or traits in either:

* **per event**, keyed by the profile id, for an event with any decision that is not its
  jurisdiction's default (a statement's denial, a revocation, a purge, GPC, an unreadable
  signal, a late grant, a truncated history): ``event_id``, ``profile_id``,
  ``policy_version``, ``decided_at`` and all of its ``decisions``;
* **per batch** (``kind: region_default``, no key), for the events whose every decision is
  the jurisdiction default of the ``policy_version`` (reason ``region_default``, source
  ``default``: e.g. ``marketing`` and ``ads`` of a US shopper who stated nothing): one record
  per distinct list of ``decisions`` with the ``events`` it applies to, as
  ``[event_id, profile_id]`` pairs (at most ``EVENTS_PER_RECORD`` per record).

``rows`` reads either kind back as one row per (event, decision): nothing is lost, an event
is in exactly one record.
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


class _Answer:
    """One distinct answer of the batch's gates (what the audit makes of one verdicts tuple,
    ``_denials``) and what the events that got it add up to: how many have a denial, the
    per-batch list of those whose every decision is the default, and the per-event records'
    ``decisions`` (built once, shared by the batch's records: nothing mutates a record).
    ``of``: the object its memo key holds the id of (the consent or the verdicts), kept so
    the id stays its own."""

    __slots__ = ("decisions", "default_only", "events", "keys", "n", "of", "rows")

    def __init__(self, of: object, verdicts: tuple[Verdict, ...]):
        self.of = of
        self.rows, self.keys, self.default_only = _denials(verdicts)
        self.n = 0  # the batch's events that got it and have a denial
        self.events: list[list[str | None]] | None = None  # ``defaults[rows]``, when first met
        self.decisions: list[dict[str, str]] | None = None  # ``_decisions(rows)``, when first met


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
    version = policy.version
    out: list[Published] = []
    defaults: dict[tuple[Row, ...], list[list[str | None]]] = {}
    purged: Counter[str] = Counter()
    # Each distinct answer once, in the order of its first event, counted per answer: per
    # event only its memo's lookup, a count and its record (or its place in a default list);
    # counting, grouping and building records' decisions per event cost ~4.5k instructions
    # per profiles event more (the audit's replay; ``run_batch``: -3.7k, bench/README).
    # By the verdicts' id for a gate with a history (a gate answers the same tuple for the
    # same question); without one, whose verdicts depend only on the person's region and the
    # event's consent, region and kind (one policy per audit), by (person's region, id of the
    # consent, event's region, behavioural)
    answers: list[_Answer] = []
    remembered: dict[int | tuple[str | None, int, str | None, bool], _Answer] = {}
    for tp, consent, owner in zip(fresh, consents, owners, strict=True):
        # its fields from the model's instance dict (``observe.observation`` says why)
        fields = tp.__dict__
        event_type = fields["type"]
        if event_type is _ERASURE:
            continue
        region = fields["region"]
        gate = gates.get(owner) if owner is not None else None
        if gate is None:
            gate = Gate(policy, EMPTY_HISTORY, region)
        behavioural = event_type not in TRANSACTION_TYPES
        verdicts: tuple[Verdict, ...] | None = None
        if gate.history.purposes:  # verdicts at this fact's time: asked once
            verdicts = gate.verdicts(
                at=fields["occurred_at"], consent=consent, region=region, behavioural=behavioural
            )
            asked: int | tuple[str | None, int, str | None, bool] = id(verdicts)
            of: object = verdicts
        else:
            asked, of = (gate.region, id(consent), region, behavioural), consent
        answer = remembered.get(asked)
        if answer is None or answer.of is not of:
            if verdicts is None:
                verdicts = gate.verdicts(
                    at=fields["occurred_at"],
                    consent=consent,
                    region=region,
                    behavioural=behavioural,
                )
            answer = remembered[asked] = _Answer(of, verdicts)
            answers.append(answer)
        rows = answer.rows
        if rows:
            # counted per answer (its denials' (purpose, reason) pairs), spread at the end
            answer.n += 1
        if consent.denies:  # only a denial can revoke
            prior = partial(before, owner) if owner is not None else _none
            revoked = _revoked(consent, prior, rows, purged)
            if revoked is not None:
                out.append(
                    _record(topic, owner, fields, version, decided_at=decided_at, rows=revoked)
                )
                continue
        if not rows:
            continue
        if answer.default_only:
            events = answer.events
            if events is None:
                events = answer.events = defaults.setdefault(rows, [])
            events.append([fields["event_id"], owner])
            continue
        decisions = answer.decisions
        if decisions is None:
            decisions = answer.decisions = _decisions(rows)
        out.append(
            Published(
                topic,
                owner,
                {
                    "event_id": fields["event_id"],
                    "profile_id": owner,
                    "policy_version": version,
                    "decided_at": decided_at,
                    "decisions": decisions,
                },
            )
        )
    _count(answers, purged, counts)
    out.extend(_region_defaults(defaults, topic, version, decided_at))
    return out


def _revoked(
    consent: EventConsent,
    prior: Callable[[], Gate | None],
    rows: tuple[Row, ...],
    purged: Counter[str],
) -> tuple[Row, ...] | None:
    """``rows`` and the purposes the event revoked (``_purges``, counted into ``purged``);
    None when it revoked none."""
    purges = _purges(consent, prior)
    if not purges:
        return None
    for row in purges:
        purged[row[0]] += 1
    return (*rows, *purges)


def _record(
    topic: str,
    owner: str | None,
    fields: Mapping[str, Any],
    policy_version: str,
    *,
    decided_at: str,
    rows: Sequence[Row],
) -> Published:
    """The per-event record of an event that revoked a purpose (``rows``: all its decisions)."""
    return Published(
        topic,
        owner,
        {
            "event_id": fields["event_id"],
            "profile_id": owner,
            "policy_version": policy_version,
            "decided_at": decided_at,
            "decisions": _decisions(rows),
        },
    )


def _count(answers: Sequence[_Answer], purged: Counter[str], counts: Counter[Count]) -> None:
    """The batch's denials (each answer's, under its (purpose, reason) pairs) and purges into
    ``counts``, in the order a ``+= 1`` per event would have met them first: the answers are
    in the order of their first events, which is the order their lists of pairs were met."""
    denied_lists: Counter[tuple[tuple[str, str], ...]] = Counter()
    for answer in answers:
        if answer.n:
            denied_lists[answer.keys] += answer.n
    for (purpose, reason), n in _spread(denied_lists).items():
        counts[Count(Measure.CONSENT_DENIED, purpose, reason)] += n
    for purpose, n in purged.items():
        counts[Count(Measure.CONSENT_PURGED, purpose)] += n


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
