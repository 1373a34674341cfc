"""The fold and its pruning as they were before issue 17's fifteenth pass (main 2b8581a),
kept verbatim as the reference the lane's ``fold_pruned`` is compared with
(``test_fold_pruned``): ``prune(fold_all(...))`` and every function of ``resolvers.profile.facts``
the pass changed (built with ``fast_new`` since, or not called by the fold any more); what it
did not change is imported. The windows are this module's own globals: a test that shrinks
``resolvers.profile.facts``' shrinks these too. Not used by Loom."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from gate_reference import denies_behaviour_later

from resolvers.consent import (
    EMPTY_HISTORY,
    ConsentHistory,
    ConsentPolicy,
    behaviour_never_by_itself,
    from_event,
)
from resolvers.profile.facts import (
    _EPOCH_ORDINAL,
    _NO_CHANNELS,
    AFFINITY_WEIGHTS,
    BEHAVIOUR_DAYS,
    DEFAULT_AFFINITY_WEIGHT,
    MAX_TRANSACTIONS,
    NON_ACTIVITY_TYPES,
    ORDER_TYPES,
    RECENT_DAYS,
    RETURN_TYPE,
    Activity,
    BehaviourPruning,
    Digest,
    DigestKey,
    Facts,
    Observation,
    OrderFacts,
    Recent,
    Stamped,
    Transaction,
    _add_counts,
    _applied,
    _to_roll_up,
    day_of,
    fingerprint,
    lww,
    top_activities,
)

__all__ = ["fold_all", "prune"]


def merge_digests(a: Digest, b: Digest) -> Digest:
    """Both digests' events (disjoint sets of events of one group)."""
    seen, interest = a.seen and b.seen, a.interest and b.interest
    return Digest(
        first_at=min(a.first_at, b.first_at),
        last_at=max(a.last_at, b.last_at),
        seen=seen,
        events=a.events + b.events if seen else 0,
        channels=a.channels | b.channels if seen else frozenset(),
        interest=interest,
        categories=_add_counts(a.categories, b.categories) if interest else {},
        activities=top_activities((*a.activities, *b.activities)) if interest else (),
        preferences=lww(a.preferences, b.preferences) if interest else {},
        ids=a.ids | b.ids,
    )


def fold_all(facts: Facts, observations: Iterable[Observation], policy: ConsentPolicy) -> Facts:
    """:func:`fold` of each observation in turn (``fold(fold(facts, a), b)``), with one copy
    of each mapping that changes and one :class:`Facts` at the end instead of one per event
    (a batch folds each group's events at once). ``facts`` itself when none changes them
    (each a redelivery of an event already rolled into its day). Pure."""
    bound = policy.max_explicit_grants
    traits, region, consent = facts.traits, facts.region, facts.consent
    transactions, recent, digests, latest = (
        facts.transactions,
        facts.recent,
        facts.digests,
        facts.latest,
    )
    # this call's own copies of the mappings it changes, made at their first change and
    # written in place from then on (an existing key keeps its place, a new one goes last, as
    # ``lww`` and ``{**old, key: new}`` do)
    own_traits: dict[str, Stamped] | None = None
    own_transactions: dict[str, Transaction] | None = None
    own_recent: dict[str, Recent] | None = None
    changed = False
    for obs in observations:
        at, event_id = obs.at, obs.event_id
        transaction = _transaction(obs) if obs.order is not None else None
        item: Recent | None = None
        if transaction is None and event_id not in recent:
            code, region_code = obs.consent.code, obs.region or ""
            seen_by = fingerprint(event_id)
            # ``day_of``: an observation's time is in UTC already
            rolled = digests.get((at.toordinal() - _EPOCH_ORDINAL, code, region_code))
            if rolled is not None and seen_by in rolled.ids:
                continue  # a redelivery of an event already rolled into its day: no change
            item = Recent(event_id, code, region_code, _digest(obs, policy, seen_by))
        changed = True
        if obs.traits:  # ``lww``, in place on this call's copy
            if own_traits is None:
                traits = own_traits = dict(traits)
            _stamp_into(own_traits, obs.traits, at, event_id)
        if obs.region and (  # ``later``, the new stamp built only when it wins
            region is None
            or (at, event_id, obs.region) > (region.at, region.event_id, region.value)
        ):
            region = Stamped(obs.region, at, event_id)
        if obs.consent.own:  # an event that states nothing adds no history
            consent = consent.merged(from_event(obs.consent, at, explicit=obs.explicit), bound)
        if transaction is not None:
            old_t = transactions.get(transaction.key)
            if old_t is None or transaction.rank() > old_t.rank():
                if own_transactions is None:
                    transactions = own_transactions = dict(transactions)
                own_transactions[transaction.key] = transaction
        elif item is not None:
            if own_recent is None:
                recent = own_recent = dict(recent)
            own_recent[event_id] = item
        latest = at if latest is None else max(latest, at)
    if not changed:
        return facts
    return Facts(traits, region, consent, transactions, recent, digests, latest)


def _stamp_into(
    into: dict[str, Stamped], values: Mapping[str, str], at: datetime, event_id: str
) -> None:
    """``lww(into, {k: Stamped(v, at, event_id) ...})`` written into ``into`` itself."""
    for key, value in values.items():
        stamped = Stamped(value, at, event_id)
        old = into.get(key)
        if old is None or stamped.rank() > old.rank():
            into[key] = stamped


def _transaction(obs: Observation) -> Transaction | None:
    o = obs.order
    # since cancellations give back lines like returns (``test_audience_returns``)
    gives_back = obs.type in (RETURN_TYPE, "order_cancelled")
    if o is None or (obs.type not in ORDER_TYPES and not gives_back):
        return None
    is_return = obs.type == RETURN_TYPE
    whole = o.whole if is_return else 0
    loose: dict[str, int] = {}
    for sku, q in o.loose if gives_back else ():
        loose[sku] = loose.get(sku, 0) + q
    return Transaction(
        key=(
            (f"return:{obs.event_id}" if is_return else f"cancel:{obs.event_id}")
            if gives_back
            else f"order:{o.order_id}"
        ),
        at=obs.at,
        event_id=obs.event_id,
        type=obs.type,
        channel=obs.channel,
        consent=obs.consent.code,
        region=obs.region,
        is_return=is_return,
        in_store=o.in_store,
        currency=o.currency.strip().upper(),
        amount=abs(o.total),
        payment_method=o.payment_method,
        location_id=o.location_id,
        categories=tuple(dict.fromkeys([c for c in o.categories if c])),
        sku=o.skus[0] if o.skus else None,
        # since returns name their order (``tests/pipeline/test_audience_returns.py``)
        order_id=o.order_id if gives_back and (any(o.categories) or loose or whole) else None,
        units=_units(o),
        # a return of the whole order (``tests/pipeline/test_segment_full_refund.py``)
        whole=whole,
        # since lines given back by SKU alone are attributed by the order's SKUs
        skus=_skus(o) if not gives_back else (),
        loose=tuple(sorted(loose.items())),
    )


def _skus(o: OrderFacts) -> tuple[tuple[str, ...], ...]:
    """The distinct SKUs of each distinct category's lines (none when not known)."""
    if not o.category_skus:
        return ()
    names = list(dict.fromkeys([c for c in o.categories if c]))
    return tuple(
        tuple(
            dict.fromkeys([s for c, s in zip(o.categories, o.category_skus, strict=True) if c == n])
        )
        for n in names
    )


def _units(o: OrderFacts) -> tuple[int, ...]:
    """Units per distinct category (none when each has one)."""
    names = list(dict.fromkeys([c for c in o.categories if c]))
    quantities = o.quantities or (1,) * len(o.categories)
    units = [sum(q for c, q in zip(o.categories, quantities, strict=True) if c == n) for n in names]
    return tuple(units) if any(u != 1 for u in units) else ()


def _digest(obs: Observation, policy: ConsentPolicy, seen_by: int) -> Digest:
    """The event as a one-event digest (``seen_by``: its :func:`fingerprint`), without the
    parts its own consent statement or its region's default exclude for good: :func:`prune`
    would drop them whatever else is known (``behaviour_never_by_itself``), so they are not
    built (an opt-in region's event that states nothing is a husk from the start)."""
    never_analytics, never_personalization = behaviour_never_by_itself(
        policy, obs.consent.code, obs.region or ""
    )
    ids = frozenset((seen_by,))
    if never_analytics and never_personalization:
        return Digest(obs.at, obs.at, False, 0, _NO_CHANNELS, False, {}, (), {}, ids)
    activities: tuple[Activity, ...] = ()
    categories: dict[str, int] = {}
    preferences: dict[str, Stamped] = {}
    if not never_personalization:
        if obs.type not in NON_ACTIVITY_TYPES:
            activities = (
                Activity(
                    obs.at, obs.event_id, obs.type, obs.channel, obs.sku, obs.category, obs.name
                ),
            )
        if obs.category:
            categories[obs.category] = AFFINITY_WEIGHTS.get(obs.type, DEFAULT_AFFINITY_WEIGHT)
        at, event_id = obs.at, obs.event_id
        preferences = {k: Stamped(v, at, event_id) for k, v in obs.preferences.items()}
    return Digest(
        obs.at,
        obs.at,
        not never_analytics,
        0 if never_analytics else 1,
        _NO_CHANNELS if never_analytics else frozenset({obs.channel}),
        not never_personalization,
        categories,
        activities,
        preferences,
        ids,
    )


def prune(facts: Facts, policy: ConsentPolicy, also: ConsentHistory = EMPTY_HISTORY) -> Facts:
    """Roll old behaviour up, drop what can never serve again (see the module docstring).
    Idempotent, and a function of the facts' events whatever the order they were folded in.

    ``also``: the history of other groups that are the same person's for good (a device's
    account, ``resolvers.lanes.profiles``): their denials revoke this group's behaviour too.
    """
    if facts.pruned is policy and not denies_behaviour_later(also, facts.consent):
        return facts  # its fixpoint (idempotent): nothing more to roll up or drop
    pruned = _prune(facts, policy, also)
    object.__setattr__(pruned, "pruned", policy)
    return pruned


def _prune(facts: Facts, policy: ConsentPolicy, also: ConsentHistory) -> Facts:
    """:func:`prune`'s work. ``recent`` and ``digests`` are copied only when something
    changes: most groups a batch prunes change nothing (their new events are recent, and
    what their own statements deny was left out when they were folded)."""
    latest = facts.latest
    if latest is None:
        return facts
    latest_day = day_of(latest)
    recent, digests = facts.recent, facts.digests
    own = False  # ``recent`` and ``digests`` are this call's copies
    if recent:
        old = _to_roll_up(recent, latest_day - RECENT_DAYS)
        if old:
            recent, digests, own = dict(recent), dict(digests), True
            _roll_up(recent, digests, old)
    pruning = _pruning(facts.consent, policy, also)
    pruned = _pruned_recent(recent, pruning)
    dropped = _pruned_digests(digests, latest_day - BEHAVIOUR_DAYS, pruning)
    if pruned is not None or dropped is not None:
        recent, digests, own = *_applied(recent, digests, pruned, dropped), True
    transactions = facts.transactions
    if len(transactions) > MAX_TRANSACTIONS:
        newest = sorted(transactions.values(), key=lambda t: (t.rank(), t.key), reverse=True)
        transactions = {t.key: t for t in newest[:MAX_TRANSACTIONS]}
    elif not own:
        return facts
    return Facts(
        traits=facts.traits,
        region=facts.region,
        consent=facts.consent,
        transactions=transactions,
        recent=recent,
        digests=digests,
        latest=facts.latest,
    )


def _pruning(
    history: ConsentHistory, policy: ConsentPolicy, also: ConsentHistory
) -> BehaviourPruning:
    """What the group's history, with ``also``'s, never lets behaviour serve."""
    if also.purposes:
        history = history.merged(also, policy.max_explicit_grants)
    return BehaviourPruning(history, policy)


def _pruned_recent(
    recent: Mapping[str, Recent], pruning: BehaviourPruning
) -> dict[str, Recent] | None:
    """The recent events that lose a part (None: none does)."""
    out: dict[str, Recent] | None = None
    for event_id, item in recent.items():
        d = item.digest
        if not d.seen and not d.interest:
            continue  # a husk: nothing left to drop
        kept = _prune_digest(d, item.code, item.region, pruning)
        if kept is not d:
            if out is None:
                out = {}
            # a husk too: it rolls up as one (the constructor: ``replace`` costs ~3x as much)
            out[event_id] = Recent(item.event_id, item.code, item.region, kept)
    return out


def _pruned_digests(
    digests: Mapping[DigestKey, Digest], horizon: int, pruning: BehaviourPruning
) -> dict[DigestKey, Digest | None] | None:
    """The digests that change: None for a day before ``horizon`` (dropped), else the digest
    without a part (a husk when both parts are gone, see the module docstring). None: none."""
    out: dict[DigestKey, Digest | None] | None = None
    for key, digest in digests.items():
        if key[0] < horizon:
            kept: Digest | None = None
        elif not digest.seen and not digest.interest:
            continue  # a husk
        else:
            kept = _prune_digest(digest, key[1], key[2], pruning)
            if kept is digest:
                continue
        if out is None:
            out = {}
        out[key] = kept
    return out


def _roll_up(
    recent: dict[str, Recent], digests: dict[DigestKey, Digest], old: Iterable[str]
) -> None:
    """Move the events ``old`` (:func:`_to_roll_up`) into their day digests."""
    for event_id in old:
        item = recent.pop(event_id)
        have = digests.get(item.key)
        digests[item.key] = item.digest if have is None else merge_digests(have, item.digest)


def _prune_digest(digest: Digest, code: str, region: str, pruning: BehaviourPruning) -> Digest:
    """``digest`` without the parts that can never serve (itself when nothing changes)."""
    never_analytics, never_personalization = pruning.never(digest.first_at, code, region)
    seen = digest.seen and not never_analytics
    interest = digest.interest and not never_personalization
    if seen == digest.seen and interest == digest.interest:
        return digest
    return Digest(
        first_at=digest.first_at,
        last_at=digest.last_at,
        seen=seen,
        events=digest.events if seen else 0,
        channels=digest.channels if seen else frozenset(),
        interest=interest,
        categories=digest.categories if interest else {},
        activities=digest.activities if interest else (),
        preferences=digest.preferences if interest else {},
        ids=digest.ids,
    )
