"""The profiles lane's fold, pruning by accounts and consent audit as they were before issue
17's fifteenth pass (main 2b8581a), kept verbatim as the reference the lane is compared with
(``test_lane_fold_audit``): ``ProfilesBatch._fold_facts``, ``_prune_by_accounts`` and
``_account_histories`` (methods: ``self`` is the batch), ``Gate.verdicts`` (``self`` is the
gate), ``resolvers.stages.audit.audit`` and its ``_event_denials``; the ``_accounts`` (and
``_record``) they call is ``tests/accounts_reference.py``'s, the one reference of that rule
(``tests/unit/test_prune_by_accounts.py`` compares with it too). Only the binding changed: the
methods are functions of ``self`` and their calls of each other name these functions. The names
they read are imported; ``install`` puts them in place of today's. Not used by Loom."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from functools import partial
from unittest import mock

from accounts_reference import _accounts

from resolvers.consent import (
    EMPTY_HISTORY,
    ConsentHistory,
    ConsentPolicy,
    EventConsent,
    Gate,
    Verdict,
)
from resolvers.effects import Count, Measure, Published
from resolvers.lanes.profiles import ProfilesBatch
from resolvers.lanes.stored_profile import Group
from resolvers.profile import facts as profile_facts
from resolvers.profile.facts import TRANSACTION_TYPES, Observation
from resolvers.stages import audit as audit_stage
from resolvers.stages import identity, observe
from resolvers.stages.audit import (
    _ERASURE,
    Row,
    _decisions,
    _Denials,
    _denials,
    _none,
    _purges,
    _region_defaults,
)
from resolvers.timefmt import format_time
from schemas.touchpoint import Touchpoint

#: ``resolvers.stages.audit._Remembered`` as it was (the audit's memo of the denials of gates
#: without consent history; its twentieth pass remembers per answer instead).
_Remembered = dict[tuple[str | None, int, str | None, bool], tuple[EventConsent, _Denials]]

# --------------------------------------------------------------------------- ProfilesBatch


def _fold_facts(
    self: ProfilesBatch,
    tps: Sequence[Touchpoint],
    event_ids: Sequence[str],
    times: Sequence[datetime],
    consents: Sequence[EventConsent],
    res: identity.Resolution,
) -> set[str]:
    """Each event's observation (with its time in UTC and its consent) into its group,
    each group pruned once; returns the people touched."""
    policy = self.ctx.policy
    event_group = res.event_group
    by_group: dict[str, list[Observation]] = {}  # group key -> its events, in batch order
    for tp, event_id, at, consent in zip(tps, event_ids, times, consents, strict=True):
        gkey = event_group.get(event_id)
        if gkey is None:
            continue
        obs = observe.observation(tp, at, consent)
        found = by_group.get(gkey)
        if found is None:
            by_group[gkey] = [obs]
        else:
            found.append(obs)
    owner_of_group, people = res.owner_of_group, res.people
    touched: set[str] = set()
    for gkey, observations in by_group.items():
        owner = owner_of_group[gkey]
        groups = people[owner].groups
        group = groups[gkey]
        facts = profile_facts.fold_all(group.facts, observations, policy)
        # ``replace(group, facts=...)`` without its generic machinery (a group is both)
        groups[gkey] = Group(group.atoms, profile_facts.prune(facts, policy))
        touched.add(owner)
    return touched


def _prune_by_accounts(self: ProfilesBatch, res: identity.Resolution) -> set[str]:
    """Denials of an account revoke, in storage too, across the groups linked to it.

    An account's (a unique identifier's) group is its for good, whatever else is learned
    later; so is the evidence that an identifier was seen with an account. So: the
    history of account ``C`` is the merge of the account groups whose atoms carry ``C``;
    an account group is linked to the accounts its atoms carry, any other group to the
    accounts its identifiers were seen with; each group is pruned with the histories of
    the accounts it is linked to. All of it only grows with more events, so the pruning
    does not depend on their order. Where an identifier could still turn out to be
    someone else's (an email two accounts used), both accounts' denials apply to its own
    group (fail closed); a statement made under such an identifier alone never prunes an
    account's data in storage: the gate hides it. Returns the people whose facts changed."""
    policy = self.ctx.policy
    bound = policy.max_explicit_grants
    linked: dict[tuple[str, str], set[str]] = {}
    history = _account_histories(self, res, linked)
    changed: set[str] = set()
    if not history:
        return changed
    for pid, person in res.people.items():
        for gkey, group in list(person.groups.items()):
            facts = group.facts
            if facts.is_empty:
                continue
            accounts = linked.get((pid, gkey))
            if accounts is None:
                accounts = _accounts(self, res, gkey, group)
            also = EMPTY_HISTORY
            for account in sorted(accounts) if len(accounts) > 1 else accounts:
                found = history.get(account)
                if found is not None:
                    also = also.merged(found, bound)
            if also is EMPTY_HISTORY or (also is facts.consent and facts.pruned is policy):
                # (the latter: ``prune``'s fixpoint, nothing denied later than its own)
                continue
            pruned = profile_facts.prune(facts, policy, also)
            if pruned is not facts:
                person.groups[gkey] = replace(group, facts=pruned)
                changed.add(pid)
    return changed


def _account_histories(
    self: ProfilesBatch, res: identity.Resolution, linked: dict[tuple[str, str], set[str]]
) -> dict[str, ConsentHistory]:
    """Each account's history: the merge of the account groups' that carry it. Fills
    ``linked`` with the account groups' accounts (by person and group). An empty history
    merges to nothing (``merged`` returns the other side): an account whose groups stated
    nothing has no entry, and a batch in which none stated anything prunes nothing."""
    bound = self.ctx.policy.max_explicit_grants
    history: dict[str, ConsentHistory] = {}
    for pid, person in res.people.items():
        for gkey, group in person.groups.items():
            if gkey.startswith("u:"):
                accounts = linked[(pid, gkey)] = _accounts(self, res, gkey, group)
                consent = group.facts.consent
                if consent.purposes:
                    for account in accounts:
                        history[account] = history.get(account, EMPTY_HISTORY).merged(
                            consent, bound
                        )
    return history


# --------------------------------------------------------------------------- Gate


def verdicts(
    self: Gate,
    *,
    at: datetime,
    consent: EventConsent,
    region: str | None,
    behavioural: bool = False,
) -> tuple[Verdict, ...]:
    """Every purpose's :meth:`verdict`. Without a consent history (no statement of the
    person, so no denial or grant to compare ``at`` with) they do not depend on ``at``:
    asked once per policy, person's region and distinct consent, region and kind of fact
    (every render and every event's audit asks), whoever the person is."""
    if self.history.purposes:
        return self._verdicts(at, consent, region, behavioural)
    return self._timeless(at, consent, region, behavioural)[2]


# --------------------------------------------------------------------------- resolvers.stages.audit


def _event_denials(
    tp: Touchpoint, consent: EventConsent, gate: Gate, behavioural: bool
) -> _Denials:
    """What ``gate`` denies the event (whose consent is ``consent``)."""
    return _denials(
        gate.verdicts(at=tp.occurred_at, consent=consent, region=tp.region, behavioural=behavioural)
    )


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
    denied: Counter[tuple[str, str]] = Counter()  # (purpose, reason)
    purged: Counter[str] = Counter()
    remembered: _Remembered = {}
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
            rows, keys, default_only = _event_denials(tp, consent, gate, behavioural)
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
        for key in keys:
            denied[key] += 1
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
    for (purpose, reason), n in denied.items():
        counts[Count(Measure.CONSENT_DENIED, purpose, reason)] += n
    for purpose, n in purged.items():
        counts[Count(Measure.CONSENT_PURGED, purpose)] += n
    out.extend(_region_defaults(defaults, topic, policy.version, decided_at))
    return out


@contextlib.contextmanager
def install() -> Iterator[None]:
    """Today's lane with the functions above in place of theirs."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(ProfilesBatch, "_fold_facts", _fold_facts))
        stack.enter_context(
            mock.patch.object(ProfilesBatch, "_prune_by_accounts", _prune_by_accounts)
        )
        stack.enter_context(mock.patch.object(Gate, "verdicts", verdicts))
        stack.enter_context(mock.patch.object(audit_stage, "audit", audit))
        yield
