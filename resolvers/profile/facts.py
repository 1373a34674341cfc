"""What a group of events contributes to a profile: a fold that is a function of their SET.

A profile is the union of *groups* (``resolvers.identity``: the events of one account id, or
of one identifier set without an account id). Each group keeps :class:`Facts`, folded with
:func:`observe` one event at a time. Every part is a join, so the facts of a group do not
depend on the order its events arrived in, nor on how they were batched:

* ``traits``: latest value per trait by ``(occurred_at, event_id, value)`` (the data the
  customer gave us; kept regardless of consent, erasure deletes them);
* ``region``: the latest region by time (whose jurisdiction defaults apply);
* ``consent``: the consent history (``resolvers.consent.history``);
* ``transactions``: orders, returns and cancellations, one entry per order id (the latest
  version by time wins) or per return or cancellation event: the transaction ledger a
  retailer keeps anyway (contract and bookkeeping), whatever the consent; only *shown* where
  a purpose allows it;
* ``recent``: behavioural events (views, carts, contacts...) one by one: the newest
  :data:`RECENT_EVENTS` within :data:`RECENT_DAYS` of the group's latest event. Each keeps
  its time, consent statement and region: what it adds to the analytics fields (time,
  channel) and to the personalization ones (category interest, activity, preferences);
* ``digests``: older behaviour rolled up per UTC day, consent statement and region (times,
  channels, counts; interest, top activity, preferences), dropped after
  :data:`BEHAVIOUR_DAYS`.

Nothing here decides consent: the facts keep each event's own consent statement and time
(a digest: its earliest), and ``resolvers.consent.gate`` decides at rendering, against the
person's whole history. The fold only drops what can never serve again (:func:`prune`): the
part of an event (or of a digest: conservatively, from its earliest event) that its own
statement denied or that a later denial of the group revoked. An event or a digest stays as
a husk when both parts are gone (a recent husk rolls up like any event), so events rolled in
later are judged with the ones before them: which events can serve never depends on the
order they came in. Rolling up is where the fold trades detail for size: a day whose digest
straddles a denial loses the events after it. A digest remembers a 32-bit fingerprint of
each of its events (computed when the event rolls up: a recent event's is implied by its
id), so an event redelivered after it rolled up (its dedupe marker expired) is recognised
and counts once (two events of one digest whose fingerprints collide, about n²/2³³ for n
events that day, count as one).

Money is :class:`~decimal.Decimal`; sums are exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from hashlib import blake2b
from types import MappingProxyType
from typing import Final, NamedTuple

import orjson

from resolvers.consent import (
    EMPTY_HISTORY,
    BehaviourPruning,
    ConsentHistory,
    ConsentPolicy,
    EventConsent,
    Purpose,
    behaviour_denials,
    behaviour_never_by_itself,
    from_event,
    later_of,
)
from resolvers.frozen import fast_init, fast_new
from resolvers.timefmt import utc

#: Event types that are a purchase (an order version), a return or a cancellation.
ORDER_TYPES: Final = frozenset({"order_completed", "pos_sale"})
RETURN_TYPE: Final = "order_returned"
#: ``whole`` of a return that gives back the whole order its ``order_id`` names (it has no
#: lines: a full refund): its amount is the order's (``WHOLE_ORDER``), or the one it states
#: (``WHOLE_STATED``); its categories are the order's (``resolvers.profile.render``).
WHOLE_ORDER: Final = 1
WHOLE_STATED: Final = 2
CANCEL_TYPE: Final = "order_cancelled"
#: Event types that give back lines of an order (its purchase of their categories un-counted:
#: ``resolvers.profile.traits``).
GIVE_BACK_TYPES: Final = frozenset({RETURN_TYPE, CANCEL_TYPE})
#: Event types whose facts are transactions (kept for the books), not behaviour.
TRANSACTION_TYPES: Final = ORDER_TYPES | GIVE_BACK_TYPES
#: Event types that are not customer activity (never in ``recent_activity``).
NON_ACTIVITY_TYPES: Final = frozenset(
    {"consent_updated", "erasure_requested", "inventory_adjusted", "inventory_counted"}
)
#: Category interest added per event type carrying ``properties["category"]`` (default 1).
AFFINITY_WEIGHTS: Final[Mapping[str, int]] = MappingProxyType(
    {"product_viewed": 1, "page_view": 1, "cart_updated": 2}
)
DEFAULT_AFFINITY_WEIGHT: Final = 1
#: Category interest added per distinct category of a purchase.
PURCHASE_AFFINITY_WEIGHT: Final = 3
RECENT_ACTIVITY_LIMIT: Final = 20
#: Behavioural events kept one by one: the newest this many, within RECENT_DAYS ...
RECENT_EVENTS: Final = 200
#: ... of the group's latest event; older ones roll up into day digests.
RECENT_DAYS: Final = 30
#: Behaviour (digests) is kept this many days back from the group's latest day.
BEHAVIOUR_DAYS: Final = 400
#: Transactions kept per group: the newest ones.
MAX_TRANSACTIONS: Final = 1000

# Enum members read per group, bound once (prefix: P_ purpose): on CPython 3.11 a member read
# off its class costs ~0.1 µs (its metaclass's attribute hook), a constant ~0.01 (ADR 0019).
_P_ANALYTICS: Final = Purpose.ANALYTICS
_P_PERSONALIZATION: Final = Purpose.PERSONALIZATION

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL: Final = _EPOCH.toordinal()


def day_of(at: datetime) -> int:
    """Days since 1970-01-01 (UTC) of an aware datetime."""
    return utc(at).toordinal() - _EPOCH_ORDINAL


# --------------------------------------------------------------------------- values


@fast_init
@dataclass(frozen=True, slots=True)
class Stamped:
    """A value with the time and event that set it (latest wins)."""

    value: str  # traits: the string; preferences: canonical JSON text
    at: datetime
    event_id: str

    def rank(self) -> tuple[datetime, str, str]:
        return (self.at, self.event_id, self.value)


@fast_init
@dataclass(frozen=True, slots=True)
class Activity:
    at: datetime
    event_id: str
    type: str
    channel: str
    sku: str | None = None
    category: str | None = None
    name: str | None = None  # a ``custom`` event's name (``product_compared``, ...)

    def rank(self) -> tuple[datetime, str]:
        return (self.at, self.event_id)


@fast_init
@dataclass(frozen=True, slots=True)
class OrderFacts:
    """What a purchase or return says (``in_store``: a store sale, not an online order)."""

    order_id: str
    total: Decimal
    currency: str
    payment_method: str | None = None
    location_id: str | None = None
    categories: tuple[str, ...] = ()  # of each line that has one, in the lines' order
    skus: tuple[str, ...] = ()
    in_store: bool = False
    quantities: tuple[int, ...] = ()  # of the lines of ``categories`` (none: 1 each)
    whole: int = 0  # a return of the whole order (no lines): WHOLE_ORDER or WHOLE_STATED
    #: the SKU of each line of ``categories`` (none given: the order's SKUs are unknown)
    category_skus: tuple[str, ...] = ()
    #: (SKU, quantity) of each line without a category
    loose: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if not self.order_id:
            raise ValueError("order_id must not be empty")
        if not self.total.is_finite():
            raise ValueError("total must be a finite Decimal")
        if not self.currency.strip():
            raise ValueError("currency must not be empty")
        if self.quantities and len(self.quantities) != len(self.categories):
            raise ValueError("quantities must be one per category line")
        if self.category_skus and len(self.category_skus) != len(self.categories):
            raise ValueError("category_skus must be one per category line")


_NO_CHANNELS: Final[frozenset[str]] = frozenset()
#: Defaults of named tuples' mappings (read only, shared).
NO_STRINGS: Final[Mapping[str, str]] = MappingProxyType({})


class _ObservationFields(NamedTuple):
    event_id: str
    type: str
    channel: str
    at: datetime
    consent: EventConsent
    explicit: bool = False  # an explicit consent moment (``consent.EXPLICIT_TYPES``)
    region: str | None = None
    traits: Mapping[str, str] = NO_STRINGS
    preferences: Mapping[str, str] = NO_STRINGS  # key -> canonical JSON
    sku: str | None = None
    category: str | None = None
    name: str | None = None  # the event's name, kept for ``custom`` events
    order: OrderFacts | None = None


class Observation(_ObservationFields):
    """One touchpoint as the profile sees it (built by ``resolvers.stages.observe``).

    A named tuple (immutable; one is built per event, and a frozen dataclass's ``__init__``
    sets each of its 13 fields through ``object.__setattr__``: ~10 times the cost). Built by
    its constructor, the event id is checked and the time put in UTC; the lane
    (``resolvers.stages.observe``) builds it with ``tuple.__new__`` from values it has checked
    already (a non-empty event id, a time in UTC): one C call.
    """

    __slots__ = ()

    def __new__(
        cls,
        event_id: str,
        type: str,
        channel: str,
        at: datetime,
        consent: EventConsent,
        *,
        explicit: bool = False,
        region: str | None = None,
        traits: Mapping[str, str] = NO_STRINGS,
        preferences: Mapping[str, str] = NO_STRINGS,
        sku: str | None = None,
        category: str | None = None,
        name: str | None = None,
        order: OrderFacts | None = None,
    ) -> Observation:
        if not event_id:
            raise ValueError("event_id must not be empty")
        if at.tzinfo is not UTC:  # the lane passes UTC times already
            at = utc(at)
        return tuple.__new__(
            cls,
            (
                event_id,
                type,
                channel,
                at,
                consent,
                explicit,
                region,
                traits,
                preferences,
                sku,
                category,
                name,
                order,
            ),
        )


@fast_init
@dataclass(frozen=True, slots=True)
class Transaction:
    """One order version or one return, with what the gate needs (time, consent, region)."""

    key: str  # "order:<order id>", "return:<event id>" or "cancel:<event id>"
    at: datetime
    event_id: str
    type: str
    channel: str
    consent: str  # EventConsent.code of its event
    region: str | None
    is_return: bool
    in_store: bool
    currency: str
    amount: Decimal
    payment_method: str | None = None
    location_id: str | None = None
    categories: tuple[str, ...] = ()
    sku: str | None = None
    #: a return's or a cancellation's order, when it gives back lines (they un-count the
    #: order's purchase of their categories: ``resolvers.profile.traits``)
    order_id: str | None = None
    #: units of each of ``categories`` (none: 1 each)
    units: tuple[int, ...] = ()
    #: a return of the whole order ``order_id`` names (WHOLE_ORDER or WHOLE_STATED; 0: not):
    #: its amount (unless stated) and categories are the order's, where the person has it
    whole: int = 0
    #: a purchase's: the distinct SKUs of the lines of each of ``categories`` (what a line given
    #: back by its SKU alone is attributed by; none: stored before 2026-12-04)
    skus: tuple[tuple[str, ...], ...] = ()
    #: a return's or a cancellation's: (SKU, units) of each SKU it gives back without a category
    loose: tuple[tuple[str, int], ...] = ()

    @property
    def gives_back(self) -> bool:
        """A return or a cancellation: lines given back, no purchase."""
        return self.is_return or self.type == CANCEL_TYPE

    def rank(self) -> tuple[datetime, str]:
        return (self.at, self.event_id)

    def activity(self) -> Activity:
        return Activity(
            self.at,
            self.event_id,
            self.type,
            self.channel,
            self.sku,
            self.categories[0] if self.categories else None,
        )


#: (day, consent code, region or "") of a behaviour digest.
DigestKey = tuple[int, str, str]


@fast_init
@dataclass(frozen=True, slots=True)
class Recent:
    """One behavioural event kept as it was (a one-event digest with its key)."""

    event_id: str
    code: str  # EventConsent.code of the event
    region: str  # "" when the event had none
    digest: Digest

    @property
    def key(self) -> DigestKey:
        return (day_of(self.digest.first_at), self.code, self.region)

    def rank(self) -> tuple[datetime, str]:
        return (self.digest.first_at, self.event_id)


@fast_init
@dataclass(frozen=True, slots=True)
class Digest:
    """One day of behaviour with one consent statement in one region.

    ``seen`` (analytics: ``events``, ``channels``) and ``interest`` (personalization:
    ``categories``, ``activities``, ``preferences``) are kept while they may still serve.
    """

    first_at: datetime
    last_at: datetime
    seen: bool = True
    events: int = 0
    channels: frozenset[str] = frozenset()
    interest: bool = True
    categories: Mapping[str, int] = field(default_factory=dict)
    activities: tuple[Activity, ...] = ()
    preferences: Mapping[str, Stamped] = field(default_factory=dict)
    #: :func:`fingerprint` of every event in the digest (husks too): a redelivered event
    #: that has already rolled up is recognised, so it never counts twice. A recent event's
    #: digest leaves it empty (:data:`IMPLIED_IDS`): its one event's fingerprint is implied
    #: by its event id, and computed when it rolls up (:func:`_roll_up`, ADR 0032).
    ids: frozenset[int] = frozenset()


def fingerprint(event_id: str) -> int:
    """32 bits of BLAKE2b of an event id: what a digest remembers of each of its events
    (~5,800 instructions a call on CPython 3.11: computed only when needed, ADR 0032)."""
    return int.from_bytes(blake2b(event_id.encode(), digest_size=4).digest(), "little")


#: A recent event's digest's ``ids``: its own event's fingerprint, implied (ADR 0032).
IMPLIED_IDS: Final[frozenset[int]] = frozenset()


@fast_init
@dataclass(frozen=True, slots=True)
class Facts:
    traits: Mapping[str, Stamped] = field(default_factory=dict)
    region: Stamped | None = None
    consent: ConsentHistory = EMPTY_HISTORY
    transactions: Mapping[str, Transaction] = field(default_factory=dict)
    recent: Mapping[str, Recent] = field(default_factory=dict)  # event id -> event
    digests: Mapping[DigestKey, Digest] = field(default_factory=dict)
    latest: datetime | None = None  # the group's latest event time (the behaviour horizon)
    #: Its stored JSON once encoded (``resolvers.profile.codec.facts_fragment``): the object is
    #: immutable, and a profile's unchanged groups are written again at every touch. Not a
    #: field of ``__init__``, so ``replace`` never carries it over to other facts.
    encoded: orjson.Fragment | None = field(default=None, init=False, compare=False, repr=False)
    #: The policy :func:`prune` returned these facts under: they are its fixpoint, pruned
    #: again under it they are themselves unless ``also`` denies more (a batch prunes a group
    #: it folded, then again with its accounts' histories). Not a field of ``__init__``.
    pruned: ConsentPolicy | None = field(default=None, init=False, compare=False, repr=False)
    #: The times of the latest denials of analytics and of personalization (None: none) that
    #: ``also`` brought to the pruning under ``pruned``: pruned again with an ``also`` that
    #: denies nothing later than these or the facts' own history, they are themselves. (A
    #: batch prunes every group linked to an account with the account's history, unchanged
    #: ones too: without it, a group whose account denied later than the group itself was
    #: pruned in full again at every batch that loaded it.) Not a field of ``__init__``.
    pruned_also: tuple[datetime | None, datetime | None] = field(
        default=(None, None), init=False, compare=False, repr=False
    )

    @property
    def is_empty(self) -> bool:
        """Equal to :data:`EMPTY_FACTS` (read field by field: no mapping or stamp compared)."""
        return self is EMPTY_FACTS or (
            not self.traits
            and self.region is None
            and not self.consent.purposes
            and not self.transactions
            and not self.recent
            and not self.digests
            and self.latest is None
        )


EMPTY_FACTS: Final = Facts()

#: ``Cls(*every field)``, cheaper (``resolvers.frozen.fast_new``): the fold builds one or more
#: of each per event (a recent event and its digest, an activity, stamps), prune per group,
#: and ``resolvers.profile.codec`` one per part of a stored profile it decodes.
new_stamped: Final = fast_new(Stamped)
new_activity: Final = fast_new(Activity)
new_transaction: Final = fast_new(Transaction)
new_recent: Final = fast_new(Recent)
new_digest: Final = fast_new(Digest)
new_facts: Final = fast_new(Facts)


# --------------------------------------------------------------------------- joins


def lww(a: Mapping[str, Stamped], b: Mapping[str, Stamped]) -> dict[str, Stamped]:
    out = dict(a)
    for key, new in b.items():
        old = out.get(key)
        if old is None or new.rank() > old.rank():
            out[key] = new
    return out


def later(a: Stamped | None, b: Stamped | None) -> Stamped | None:
    if a is None or b is None:
        return b if a is None else a
    return b if b.rank() > a.rank() else a


def top_activities(
    items: Iterable[Activity], limit: int = RECENT_ACTIVITY_LIMIT
) -> tuple[Activity, ...]:
    best: dict[str, Activity] = {}
    for act in items:
        best.setdefault(act.event_id, act)
    return tuple(sorted(best.values(), key=Activity.rank, reverse=True)[:limit])


def _add_counts(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    out = dict(a)
    for key, n in b.items():
        out[key] = out.get(key, 0) + n
    return out


def merge_digests(a: Digest, b: Digest) -> Digest:
    """Both digests' events (disjoint sets of events of one group)."""
    seen, interest = a.seen and b.seen, a.interest and b.interest
    return new_digest(  # positional: every field of ``Digest``, in order
        min(a.first_at, b.first_at),  # first_at
        max(a.last_at, b.last_at),  # last_at
        seen,
        a.events + b.events if seen else 0,  # events
        a.channels | b.channels if seen else frozenset(),  # channels
        interest,
        _add_counts(a.categories, b.categories) if interest else {},  # categories
        top_activities((*a.activities, *b.activities)) if interest else (),  # activities
        lww(a.preferences, b.preferences) if interest else {},  # preferences
        a.ids | b.ids,  # ids
    )


# --------------------------------------------------------------------------- fold


def observe(facts: Facts, obs: Observation, policy: ConsentPolicy) -> Facts:
    """Fold one event into a group's facts, then :func:`prune`. Pure."""
    return prune(fold(facts, obs, policy), policy)


def fold(facts: Facts, obs: Observation, policy: ConsentPolicy) -> Facts:
    """Fold one event into a group's facts without pruning: a batch folds all of a group's
    events, then prunes once (:func:`prune` is idempotent and a function of the facts'
    events, so ``prune(fold(fold(f, a), b))`` is ``observe(observe(f, a), b)``). Only what
    the event's own statement or region excludes for good is left out at once (see
    ``_digest``: pruning drops it whatever the history). Pure."""
    return fold_all(facts, (obs,), policy)


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
        # its fields unpacked once: a named tuple's field read by name is a descriptor call
        # (~210 instructions on CPython 3.11), and a behavioural event's fold read ~25 of them
        # (the whole unpacking: ~1,150)
        (
            event_id,
            kind,
            channel,
            at,
            stated,
            explicit,
            obs_region,
            obs_traits,
            preferences,
            sku,
            category,
            name,
            order,
        ) = obs
        transaction = (
            _transaction(event_id, kind, channel, at, stated.code, obs_region, order)
            if order is not None
            else None
        )
        item: Recent | None = None
        if transaction is None and event_id not in recent:
            code, region_code = stated.code, obs_region or ""
            if digests and _rolled_up(digests, event_id, at, code, region_code):
                continue  # a redelivery of an event already rolled into its day: no change
            item = new_recent(
                event_id,
                code,
                region_code,
                _digest(
                    policy,
                    code,
                    region_code,
                    event_id,
                    kind,
                    channel,
                    at,
                    preferences,
                    sku,
                    category,
                    name,
                ),
            )
        changed = True
        if obs_traits:  # ``lww``, in place on this call's copy
            if own_traits is None:
                traits = own_traits = dict(traits)
            _stamp_into(own_traits, obs_traits, at, event_id)
        if obs_region and (  # ``later``, the new stamp built only when it wins
            region is None
            or (at, event_id, obs_region) > (region.at, region.event_id, region.value)
        ):
            region = new_stamped(obs_region, at, event_id)
        if stated.own:  # an event that states nothing adds no history
            consent = consent.merged(from_event(stated, at, explicit=explicit), bound)
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
        # ``max(latest, at)`` without its call (of equal times, the first is kept)
        latest = at if latest is None or at > latest else latest
    if not changed:
        return facts
    return new_facts(traits, region, consent, transactions, recent, digests, latest)


def _rolled_up(
    digests: Mapping[DigestKey, Digest], event_id: str, at: datetime, code: str, region: str
) -> bool:
    """Whether the event ``event_id`` at ``at`` (an observation's: in UTC) is one already
    rolled into its day's digest (the fold of a group without digests builds no key and
    computes no fingerprint)."""
    # ``day_of``: an observation's time is in UTC already
    rolled = digests.get((at.toordinal() - _EPOCH_ORDINAL, code, region))
    return rolled is not None and fingerprint(event_id) in rolled.ids


def fold_pruned(facts: Facts, observations: Iterable[Observation], policy: ConsentPolicy) -> Facts:
    """``prune(fold_all(facts, observations, policy), policy)``: a batch folds each group's
    events, then prunes once. Where ``facts`` is ``prune``'s fixpoint under ``policy`` (or holds
    no behaviour), what the fold adds is checked instead of calling ``prune`` (see
    :func:`_kept_as_folded`): most groups a batch folds change nothing when pruned. Pure."""
    folded = fold_all(facts, observations, policy)
    if (
        folded is not facts
        and (facts.pruned is policy or (not facts.recent and not facts.digests))
        and _kept_as_folded(folded)
    ):
        object.__setattr__(folded, "pruned", policy)  # as ``prune`` marks what it returns
        return folded
    return prune(folded, policy)


def _kept_as_folded(folded: Facts) -> bool:
    """Whether :func:`_prune` (without ``also``) returns ``folded`` itself, for facts folded
    (:func:`fold_all`) from a fixpoint of :func:`prune` under the policy or from facts without
    behaviour (``fold_pruned``). Then each recent event's digest holds what its own statement
    and region leave (``_digest`` left the rest out, the fixpoint dropped it), so pruning can
    drop only what a denial of the group's history at or after it revokes; and nothing rolls
    up while every recent event is within ``RECENT_DAYS`` of the latest day and they are
    at most ``RECENT_EVENTS``. Facts with digests or too many transactions: not decided here
    (False: ``prune`` decides)."""
    recent = folded.recent
    latest = folded.latest
    if (
        latest is None
        or folded.digests
        or len(recent) > RECENT_EVENTS
        or len(folded.transactions) > MAX_TRANSACTIONS
    ):
        return False
    histories = folded.consent.purposes
    analytics = personalization = None
    if histories:  # ``BehaviourPruning``'s two latest denials
        denial = histories.get(_P_ANALYTICS)
        if denial is not None and denial.last_denial is not None:
            analytics = denial.last_denial.at
        denial = histories.get(_P_PERSONALIZATION)
        if denial is not None and denial.last_denial is not None:
            personalization = denial.last_denial.at
    # ``_to_roll_up``'s cutoff (``day_of(latest)``, inline for a time in UTC)
    day = latest.toordinal() - _EPOCH_ORDINAL if latest.tzinfo is UTC else day_of(latest)
    before = _DAY_STARTS[day - RECENT_DAYS]
    for item in recent.values():
        d = item.digest
        at = d.first_at
        if at < before:
            return False  # it rolls up
        if (d.seen and analytics is not None and analytics >= at) or (
            d.interest and personalization is not None and personalization >= at
        ):
            return False  # a denial of the group revokes a part of it
    return True


def _stamp_into(
    into: dict[str, Stamped], values: Mapping[str, str], at: datetime, event_id: str
) -> None:
    """``lww(into, {k: Stamped(v, at, event_id) ...})`` written into ``into`` itself."""
    for key, value in values.items():
        stamped = new_stamped(value, at, event_id)
        old = into.get(key)
        if old is None or stamped.rank() > old.rank():
            into[key] = stamped


def _transaction(  # noqa: PLR0917 - an observation's fields, read once by the fold
    event_id: str,
    kind: str,
    channel: str,
    at: datetime,
    code: str,
    region: str | None,
    o: OrderFacts,
) -> Transaction | None:
    """The transaction of an observation (its fields, ``code`` its consent's) with an order:
    None unless it is an order, a return or a cancellation."""
    gives_back = kind in GIVE_BACK_TYPES
    if not gives_back and kind not in ORDER_TYPES:
        return None
    is_return = kind == RETURN_TYPE
    categories, units = _category_units(o)
    whole = o.whole if is_return else 0
    skus: tuple[tuple[str, ...], ...] = ()
    loose: tuple[tuple[str, int], ...] = ()
    if gives_back:
        key = f"return:{event_id}" if is_return else f"cancel:{event_id}"
        loose = _loose_units(o.loose)
        # a give-back names its order when it gives back lines, or the whole order
        order_id = o.order_id if categories or loose or whole else None
    else:
        key, order_id = f"order:{o.order_id}", None
        if o.category_skus:
            skus = _category_skus(o, categories)
    return new_transaction(  # positional: every field of ``Transaction``, in order
        key,
        at,
        event_id,
        kind,  # type
        channel,
        code,  # consent
        region,
        is_return,
        o.in_store,
        o.currency.strip().upper(),  # currency
        abs(o.total),  # amount
        o.payment_method,
        o.location_id,
        categories,
        o.skus[0] if o.skus else None,  # sku
        order_id,
        units,
        whole,
        skus,
        loose,
    )


def _category_units(o: OrderFacts) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The order's distinct categories in their first line's order, and the units of each
    (none when every category has one unit, as most orders: nothing more is stored)."""
    categories, quantities = o.categories, o.quantities
    if len(categories) == 1:  # one line with a category (a one-line order): no table
        if not categories[0]:
            return (), ()
        quantity = quantities[0] if quantities else 1
        return categories, (quantity,) if quantity != 1 else ()
    units: dict[str, int] = {}
    # none given: 1 per line
    for category, quantity in zip(categories, quantities or (1,) * len(categories), strict=True):
        if category:
            units[category] = units.get(category, 0) + quantity
    counts = tuple(units.values())
    return tuple(units), counts if counts.count(1) != len(counts) else ()


def _category_skus(o: OrderFacts, categories: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """The distinct SKUs of the lines of each of ``categories`` (the order's), in the lines'
    order."""
    by_category: dict[str, dict[str, None]] = {category: {} for category in categories}
    for category, sku in zip(o.categories, o.category_skus, strict=True):
        if category:
            by_category[category][sku] = None
    return tuple([tuple(by_category[category]) for category in categories])


def _loose_units(lines: tuple[tuple[str, int], ...]) -> tuple[tuple[str, int], ...]:
    """Units per SKU of the lines without a category, sorted by SKU."""
    if not lines:
        return ()
    units: dict[str, int] = {}
    for sku, quantity in lines:
        units[sku] = units.get(sku, 0) + quantity
    return tuple(sorted(units.items()))


class _ChannelSets(dict[str, frozenset[str]]):
    """``frozenset({channel})`` by channel (a digest's channels: immutable, so shared; the
    channels are a small vocabulary, the memo is emptied if it ever grows)."""

    __slots__ = ()

    def __missing__(self, channel: str) -> frozenset[str]:
        if len(self) >= 256:
            self.clear()
        found = self[channel] = frozenset((channel,))
        return found


_channel_set: Final = _ChannelSets().__getitem__


def _digest(  # noqa: PLR0917 - an observation's fields, read once by the fold
    policy: ConsentPolicy,
    code: str,
    region: str,
    event_id: str,
    kind: str,
    channel: str,
    at: datetime,
    preferences: Mapping[str, str],
    sku: str | None,
    category: str | None,
    name: str | None,
) -> Digest:
    """The event (an observation's fields: ``kind`` its type) as a recent event's one-event
    digest (its fingerprint implied: :data:`IMPLIED_IDS`; ``code`` and ``region``: its
    consent's code and its region or ""), without the parts its own consent statement or its
    region's default exclude for good: :func:`prune` would drop them whatever else is known
    (``behaviour_never_by_itself``), so they are not built (an opt-in region's event that
    states nothing is a husk from the start)."""
    never_analytics, never_personalization = behaviour_never_by_itself(policy, code, region)
    if never_analytics and never_personalization:
        return new_digest(at, at, False, 0, _NO_CHANNELS, False, {}, (), {}, IMPLIED_IDS)
    activities: tuple[Activity, ...] = ()
    categories: dict[str, int] = {}
    stamped: dict[str, Stamped] = {}
    if not never_personalization:
        if kind not in NON_ACTIVITY_TYPES:
            activities = (new_activity(at, event_id, kind, channel, sku, category, name),)
        if category:
            categories[category] = AFFINITY_WEIGHTS.get(kind, DEFAULT_AFFINITY_WEIGHT)
        if preferences:  # (most events state none: no comprehension run)
            stamped = {k: new_stamped(v, at, event_id) for k, v in preferences.items()}
    return new_digest(
        at,
        at,
        not never_analytics,
        0 if never_analytics else 1,
        _NO_CHANNELS if never_analytics else _channel_set(channel),
        not never_personalization,
        categories,
        activities,
        stamped,
        IMPLIED_IDS,
    )


def prune(facts: Facts, policy: ConsentPolicy, also: ConsentHistory = EMPTY_HISTORY) -> Facts:
    """Roll old behaviour up, drop what can never serve again (see the module docstring).
    Idempotent, and a function of the facts' events whatever the order they were folded in.

    ``also``: the history of other groups that are the same person's for good (a device's
    account, ``resolvers.lanes.profiles``): their denials revoke this group's behaviour too.
    """
    marked = facts.pruned is policy
    if marked and not _denies_more(also, facts):
        return facts  # its fixpoint (idempotent): nothing more to roll up or drop
    pruned = _prune(facts, policy, also)
    denied = behaviour_denials(also)
    if pruned is facts and marked:  # still the fixpoint of the denials it was pruned with
        before = facts.pruned_also
        denied = (later_of(denied[0], before[0]), later_of(denied[1], before[1]))
    object.__setattr__(pruned, "pruned", policy)
    object.__setattr__(pruned, "pruned_also", denied)
    return pruned


def _denies_more(also: ConsentHistory, facts: Facts) -> bool:
    """Whether ``also`` denies analytics or personalization later than what pruned ``facts``
    under their policy: their own history, and ``also``'s before (``Facts.pruned_also``).
    Pruning reads the denials' times only (``BehaviourPruning``): a fact at or before one of
    them lost that part then, and pruning again with no later one drops nothing more (nor
    rolls anything up: that depends on the facts alone)."""
    if not also.purposes:
        return False
    denials = zip(
        behaviour_denials(also), behaviour_denials(facts.consent), facts.pruned_also, strict=True
    )
    for denied, by_own, before in denials:
        if (
            denied is not None
            and (by_own is None or denied > by_own)
            and (before is None or denied > before)
        ):
            return True
    return False


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
    return new_facts(  # positional: every field of ``Facts``, in order
        facts.traits, facts.region, facts.consent, transactions, recent, digests, facts.latest
    )


def _pruning(
    history: ConsentHistory, policy: ConsentPolicy, also: ConsentHistory
) -> BehaviourPruning:
    """What the group's history, with ``also``'s, never lets behaviour serve (their latest
    denials: the histories are not merged, ~2 µs a purpose, for the two denials read)."""
    return BehaviourPruning(history, policy, also)


def _applied(
    recent: Mapping[str, Recent],
    digests: Mapping[DigestKey, Digest],
    pruned: Mapping[str, Recent] | None,
    dropped: Mapping[DigestKey, Digest | None] | None,
) -> tuple[dict[str, Recent], dict[DigestKey, Digest]]:
    """Copies of ``recent`` and ``digests`` with the changes of :func:`_pruned_recent` and
    :func:`_pruned_digests` (a value replaced keeps its place, as the loops that wrote them
    in place did)."""
    own_recent, own_digests = dict(recent), dict(digests)
    own_recent.update(pruned or {})
    for key, kept in (dropped or {}).items():
        if kept is None:
            del own_digests[key]
        else:
            own_digests[key] = kept
    return own_recent, own_digests


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
            out[event_id] = new_recent(item.event_id, item.code, item.region, kept)
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


#: The first instant of each day (days since 1970-01-01, UTC) :func:`_to_roll_up` compared
#: with (a day's cutoff is asked for every group a batch prunes: remembered).
class _DayStarts(dict[int, datetime]):
    __slots__ = ()

    def __missing__(self, day: int) -> datetime:
        if len(self) >= 4096:
            self.clear()
        start = self[day] = _EPOCH + timedelta(days=day)
        return start


_DAY_STARTS: Final = _DayStarts()


def _to_roll_up(recent: Mapping[str, Recent], cutoff: int) -> list[str]:
    """The events to roll up into their day digests: older than ``cutoff`` (a day), or
    beyond the newest RECENT_EVENTS."""
    before = _DAY_STARTS[cutoff]  # day_of(at) < cutoff: at < that day's 00:00
    old = [e for e, item in recent.items() if item.digest.first_at < before]
    if len(recent) - len(old) > RECENT_EVENTS:
        gone = set(old)
        ranked = sorted(
            (e for e in recent if e not in gone), key=lambda e: recent[e].rank(), reverse=True
        )
        old += ranked[RECENT_EVENTS:]
    return old


def _roll_up(
    recent: dict[str, Recent], digests: dict[DigestKey, Digest], old: Iterable[str]
) -> None:
    """Move the events ``old`` (:func:`_to_roll_up`) into their day digests, each with its
    fingerprint (implied while it was recent: :data:`IMPLIED_IDS`)."""
    for event_id in old:
        item = recent.pop(event_id)
        d = item.digest
        if not d.ids:
            d = new_digest(  # positional: every field of ``Digest``, in order
                d.first_at,
                d.last_at,
                d.seen,
                d.events,
                d.channels,
                d.interest,
                d.categories,
                d.activities,
                d.preferences,
                frozenset((fingerprint(item.event_id),)),  # ids
            )
        have = digests.get(item.key)
        digests[item.key] = d if have is None else merge_digests(have, d)


def _prune_digest(digest: Digest, code: str, region: str, pruning: BehaviourPruning) -> Digest:
    """``digest`` without the parts that can never serve (itself when nothing changes)."""
    never_analytics, never_personalization = pruning.never(digest.first_at, code, region)
    seen = digest.seen and not never_analytics
    interest = digest.interest and not never_personalization
    if seen == digest.seen and interest == digest.interest:
        return digest
    return new_digest(  # positional: every field of ``Digest``, in order
        digest.first_at,
        digest.last_at,
        seen,
        digest.events if seen else 0,  # events
        digest.channels if seen else frozenset(),  # channels
        interest,
        digest.categories if interest else {},  # categories
        digest.activities if interest else (),  # activities
        digest.preferences if interest else {},  # preferences
        digest.ids,
    )


def merge(a: Facts, b: Facts, policy: ConsentPolicy) -> Facts:
    """The facts of both groups' events (disjoint sets): commutative and associative."""
    if a.is_empty or b.is_empty:
        return b if a.is_empty else a
    transactions = dict(a.transactions)
    for tkey, t in b.transactions.items():
        old = transactions.get(tkey)
        if old is None or t.rank() > old.rank():
            transactions[tkey] = t
    digests = dict(a.digests)
    for dkey, d in b.digests.items():
        old_digest = digests.get(dkey)
        digests[dkey] = d if old_digest is None else merge_digests(old_digest, d)
    latest = max((t for t in (a.latest, b.latest) if t is not None), default=None)
    merged = Facts(
        traits=lww(a.traits, b.traits),
        region=later(a.region, b.region),
        consent=a.consent.merged(b.consent, policy.max_explicit_grants),
        transactions=transactions,
        recent={**a.recent, **b.recent},
        digests=digests,
        latest=latest,
    )
    return prune(merged, policy)


def observe_all(
    observations: Iterable[Observation], policy: ConsentPolicy, facts: Facts = EMPTY_FACTS
) -> Facts:
    for obs in observations:
        facts = observe(facts, obs, policy)
    return facts
