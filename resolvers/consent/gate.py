"""The one place Loom decides whether a piece of a person's data may serve a purpose.

A *fact* (an order, a return, a day of browsing) carries its time, its region and the
consent statements of the event(s) it came from. Against the person's whole consent history
(``resolvers.consent.history``, the merge of every event of the person, so the answer does
not depend on the order events arrived in) and the person's region, the :class:`Gate` says,
per purpose:

1. ``necessary`` always serves;
2. an unreadable consent signal on the event serves nothing (``invalid_signal``);
3. a denial at or after the fact's time denies it for good: revocation wins, and a later
   grant never legitimises data from before a denial (``revoked`` / ``gpc``);
4. granted at the fact's time: its own statement if the event made one. Otherwise a
   *behavioural* fact (a view, a cart, a contact: tracking) has only the jurisdiction default
   of its own region (no region: unknown, which grants nothing), and only while no denial of
   the person is in force, so whether it may ever serve is mostly known from the event
   alone; a *transaction* (kept anyway, for the books) may serve on an explicit grant of the
   person (consent update, sign-up, loyalty form, account settings) after their latest
   denial and not after it, or, when the person never stated anything up to then, on the
   default of its region (``region_default``);
5. and still granted now: the person's latest statement, or the default of their current
   region if they never made one (a move to an opt-in region denies what a default allowed).

Never fails open: what cannot be established is denied (``history_truncated`` when the
answer lies among explicit grants older than the kept ones). Profile rendering, the consent
audit and the fold's pruning all ask this module; nothing else decides.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import count
from types import MappingProxyType
from typing import Final

from resolvers.consent.history import EMPTY_HISTORY, ConsentHistory, PurposeHistory
from resolvers.consent.policy import ConsentPolicy
from resolvers.consent.signals import EventConsent, Statement, from_code
from resolvers.consent.vocabulary import CONSENT_PURPOSES, Purpose, Reason, Source
from resolvers.frozen import fast_init, fast_new

# Enum members read per event, bound once (prefix: P_ purpose, R_ reason, S_ source): on CPython
# 3.11 a member read off its class costs ~0.1 µs (its metaclass's attribute hook), a
# constant ~0.01 (ADR 0019).
_P_ANALYTICS: Final = Purpose.ANALYTICS
_P_NECESSARY: Final = Purpose.NECESSARY
_P_PERSONALIZATION: Final = Purpose.PERSONALIZATION
_R_GPC: Final = Reason.GPC
_R_GRANTED: Final = Reason.GRANTED
_R_HISTORY_TRUNCATED: Final = Reason.HISTORY_TRUNCATED
_R_INVALID_SIGNAL: Final = Reason.INVALID_SIGNAL
_R_LATE_GRANT: Final = Reason.LATE_GRANT
_R_NO_CONSENT: Final = Reason.NO_CONSENT
_R_REGION_DEFAULT: Final = Reason.REGION_DEFAULT
_R_REVOKED: Final = Reason.REVOKED
_S_CONSENT_UPDATED: Final = Source.CONSENT_UPDATED
_S_GPC: Final = Source.GPC
_S_INVALID: Final = Source.INVALID


@fast_init
@dataclass(frozen=True, slots=True)
class Verdict:
    purpose: Purpose
    allowed: bool
    reason: Reason
    source: str


@fast_init
@dataclass(frozen=True, slots=True)
class Current:
    """The person's current choice for a purpose (what the snapshot's ``consent`` shows)."""

    granted: bool
    at: datetime | None
    source: str


#: ``Verdict(*every field)``, cheaper (``resolvers.frozen.fast_new``): the audit asks every
#: purpose's verdict of each event of a person with a consent history.
_new_verdict: Final = fast_new(Verdict)


#: Sources as they are: the vocabulary's members are ``str``s (StrEnum) and ``.value`` is a
#: Python-level property, asked several times per event here.
_DEFAULT: Final[str] = Source.DEFAULT
_NECESSARY: Final = Verdict(Purpose.NECESSARY, True, Reason.ALWAYS, _DEFAULT)


#: What ``ConsentHistory.of`` answers for a purpose without history.
_NO_HISTORY: Final = PurposeHistory()


def _denial_reason(source: str) -> Reason:
    return _R_GPC if source == _S_GPC else _R_NO_CONSENT


class Gate:
    """Consent decisions for one person: ``history`` is the merge of all their events'."""

    __slots__ = ("_after", "_now", "history", "policy", "region")

    def __init__(self, policy: ConsentPolicy, history: ConsentHistory, region: str | None):
        self.policy, self.history, self.region = policy, history, region
        self._now: _Now | None = None  # the current choices, when first asked
        self._after: _After | None = None  # its history's times and verdicts (``_PLACES``)

    def _choices(self) -> _Now:
        """Every purpose's current choice and the purposes granted now, computed once (for a
        person without consent history: the defaults of their region, shared by all such
        gates of the policy)."""
        policy, region = self.policy, self.region
        now: _Now
        if self.history.purposes:
            currents = self._compute_currents()
            now = (currents, frozenset([p for p, c in currents.items() if c.granted]))
        else:
            key = (id(policy), region)
            found = _DEFAULT_NOW.get(key)
            if found is None or found[0] is not policy:
                currents = self._compute_currents()
                granted = frozenset(p for p, c in currents.items() if c.granted)
                found = (policy, MappingProxyType(currents), granted)
                if len(_DEFAULT_NOW) >= _DEFAULT_NOW_SIZE:
                    _DEFAULT_NOW.clear()
                _DEFAULT_NOW[key] = found
            now = (found[1], found[2])
        self._now = now
        return now

    def _compute_currents(self) -> dict[Purpose, Current]:
        """Each purpose's current choice: the latest statement, else the region's default."""
        purposes = self.history.purposes
        defaults = self.policy.default_for(self.region)
        currents: dict[Purpose, Current] = {}
        for purpose in CONSENT_PURPOSES:
            h = purposes.get(purpose)
            latest = h.latest if h is not None else None
            currents[purpose] = (
                _DEFAULT_CURRENT[purpose in defaults]
                if latest is None
                else Current(latest.granted, latest.at, latest.source)
            )
        return currents

    def current(self, purpose: Purpose) -> Current:
        return (self._now or self._choices())[0][purpose]

    def currents(self) -> Mapping[Purpose, Current]:
        """Every purpose's :meth:`current` (of ``CONSENT_PURPOSES``)."""
        return (self._now or self._choices())[0]

    def granted_now(self) -> frozenset[Purpose]:
        return (self._now or self._choices())[1]

    def verdict(
        self,
        purpose: Purpose,
        *,
        at: datetime,
        consent: EventConsent,
        region: str | None,
        behavioural: bool = False,
    ) -> Verdict:
        """May a fact at ``at`` (with its event's ``consent``, in ``region``) serve ``purpose``?"""
        if purpose is _P_NECESSARY:
            return _NECESSARY
        if consent.invalid:
            return _new_verdict(purpose, False, _R_INVALID_SIGNAL, _S_INVALID)
        # ``history.of`` and ``consent.stated``, inline (asked per fact and purpose)
        h = self.history.purposes.get(purpose, _NO_HISTORY)
        own = consent.own.get(purpose)
        if own is not None and not own.granted:
            return _new_verdict(purpose, False, _denial_reason(own.source), own.source)
        denial = h.last_denial
        if denial is not None and denial.at >= at:
            reason = _R_GPC if denial.source is _S_GPC else _R_REVOKED
            return _new_verdict(purpose, False, reason, denial.source)
        if own is None and behavioural:
            at_time = self._behaviour_default(purpose, h, at, region)
        else:
            at_time = self._at_time(purpose, h, own, at, region)
        if not at_time.allowed:
            return at_time
        now = (self._now or self._choices())[0][purpose]  # ``current``
        if not now.granted:  # e.g. the person's region moved to an opt-in jurisdiction
            return _new_verdict(purpose, False, _R_REGION_DEFAULT, now.source)
        return at_time

    def _behaviour_default(
        self, purpose: Purpose, h: PurposeHistory, at: datetime, region: str | None
    ) -> Verdict:
        """A behavioural fact that stated nothing: its region's default, unless a denial of
        the person is in force at its time (their latest one, not lifted by an explicit
        grant since)."""
        default = _DEFAULT_VERDICTS[purpose, purpose in self.policy.default_for(region)]
        if not default.allowed or h.last_denial is None:
            return default
        lifted = h.explicit_grant_between(h.last_denial.at, at)
        if lifted is None:
            return _new_verdict(purpose, False, _R_HISTORY_TRUNCATED, "history")
        if not lifted:
            source = h.last_denial.source
            return _new_verdict(purpose, False, _denial_reason(source), source)
        return default

    def _at_time(
        self,
        purpose: Purpose,
        h: PurposeHistory,
        own: Statement | None,
        at: datetime,
        region: str | None,
    ) -> Verdict:
        if own is not None:  # a grant (denials were handled by the caller)
            return _new_verdict(purpose, True, _R_GRANTED, own.source)
        after = h.last_denial.at if h.last_denial is not None else None
        found = h.explicit_grant_between(after, at)
        if found is None:
            return _new_verdict(purpose, False, _R_HISTORY_TRUNCATED, "history")
        if found:
            return _new_verdict(purpose, True, _R_GRANTED, _S_CONSENT_UPDATED)
        if h.last_denial is not None:  # a denial was in force at the fact's time
            source = h.last_denial.source
            return _new_verdict(purpose, False, _denial_reason(source), source)
        if purpose in self.policy.default_for(region or self.region):
            return _new_verdict(purpose, True, _R_REGION_DEFAULT, _DEFAULT)
        latest = h.latest
        late = latest is not None and latest.granted and latest.at > at
        reason = _R_LATE_GRANT if late else _R_REGION_DEFAULT
        return _new_verdict(purpose, False, reason, _DEFAULT)

    def serves(
        self,
        *,
        at: datetime,
        consent: EventConsent,
        region: str | None,
        behavioural: bool = False,
        purposes: frozenset[Purpose] | None = None,
    ) -> frozenset[Purpose]:
        """The purposes (besides ``necessary``) a fact may serve; with ``purposes``, only
        which of those (the others are not asked: a render asks only what it shows)."""
        if not self.history.purposes:
            allowed = self._timeless(at, consent, region, behavioural)[3]
            return allowed if purposes is None else allowed & purposes
        # with a history: every purpose's verdict, remembered (``_placed``): asked per purpose
        # (a render's 4,658 asks of gates with a history, the bench's 20,200 events), they
        # cost ~2.2k instructions per profiles event more (``ip_cg.sh``, bench/README)
        allowed = self._placed(at, consent, region, behavioural)[1]
        if purposes is None:
            return allowed
        if _P_NECESSARY in purposes:  # not among ``CONSENT_PURPOSES``: always serves
            return (allowed & purposes) | _ONLY_NECESSARY
        return allowed & purposes

    def verdicts(
        self,
        *,
        at: datetime,
        consent: EventConsent,
        region: str | None,
        behavioural: bool = False,
    ) -> tuple[Verdict, ...]:
        """Every purpose's :meth:`verdict`. Without a consent history (no statement of the
        person, so no denial or grant to compare ``at`` with) they do not depend on ``at``:
        asked once per policy, person's region and distinct consent, region and kind of fact
        (every render and every event's audit asks), whoever the person is. With one, they
        depend on ``at`` only through its place among the history's times: asked once per
        shape of the history (:func:`_shape`), place, consent's code, region and kind of fact
        and person's region (:data:`_SHAPED`)."""
        if self.history.purposes:
            return self._placed(at, consent, region, behavioural)[0]
        return self._timeless(at, consent, region, behavioural)[2]

    def _placed(
        self, at: datetime, consent: EventConsent, region: str | None, behavioural: bool
    ) -> _Shaped:
        """:meth:`_verdicts` of a gate with a history and the purposes they allow, remembered
        by the history's shape and the place of ``at`` among its times (see :data:`_SHAPED`)."""
        times, shape = self._after or self._start_after()
        # ``at``'s place: how many of the history's times are before it, and how many are
        # at or before it (the two differ when ``at`` is one of them)
        key = (
            shape,
            bisect_left(times, at),
            bisect_right(times, at),
            consent.code,
            region,
            behavioural,
            self.region,
        )
        found = _SHAPED.get(key)
        if found is None:
            if len(_SHAPED) >= _SHAPED_SIZE:
                _SHAPED.clear()
            verdicts = self._verdicts(at, consent, region, behavioural)
            allowed = frozenset([v.purpose for v in verdicts if v.allowed])
            found = _SHAPED[key] = (verdicts, allowed)
        return found

    def _start_after(self) -> _After:
        """The history's times and its shape (:data:`_PLACES`), found or made: every time the
        history holds (every purpose's latest statement, its last denial, its kept and
        dropped grants), distinct and sorted."""
        history, policy = self.history, self.policy
        key = (id(history), id(policy))
        found = _PLACES.get(key)
        if found is None or found[0] is not history or found[1] is not policy:
            times: set[datetime] = set()
            for h in history.purposes.values():
                if h.latest is not None:
                    times.add(h.latest.at)
                if h.last_denial is not None:
                    times.add(h.last_denial.at)
                times.update([g.at for g in h.grants])
                if h.dropped is not None:
                    times.add(h.dropped)
            ordered = sorted(times)
            if len(_PLACES) >= _PLACES_SIZE:
                _PLACES.clear()
            found = _PLACES[key] = (history, policy, (ordered, _shape(history, policy, ordered)))
        after = self._after = found[2]
        return after

    def _verdicts(
        self, at: datetime, consent: EventConsent, region: str | None, behavioural: bool
    ) -> tuple[Verdict, ...]:
        """:meth:`verdict` of each of ``CONSENT_PURPOSES``, in order, with what every purpose
        reads (the history's purposes, the event's statements, the current choices) read
        once: the audit asks this of every event of a person with a consent history."""
        if consent.invalid:
            return tuple(
                [
                    _NECESSARY
                    if p is _P_NECESSARY
                    else _new_verdict(p, False, _R_INVALID_SIGNAL, _S_INVALID)
                    for p in CONSENT_PURPOSES
                ]
            )
        histories, stated = self.history.purposes, consent.own
        currents: Mapping[Purpose, Current] | None = None
        out: list[Verdict] = []
        for purpose in CONSENT_PURPOSES:
            if purpose is _P_NECESSARY:
                out.append(_NECESSARY)
                continue
            h = histories.get(purpose, _NO_HISTORY)
            own = stated.get(purpose)
            if own is not None and not own.granted:
                out.append(_new_verdict(purpose, False, _denial_reason(own.source), own.source))
                continue
            denial = h.last_denial
            if denial is not None and denial.at >= at:
                reason = _R_GPC if denial.source is _S_GPC else _R_REVOKED
                out.append(_new_verdict(purpose, False, reason, denial.source))
                continue
            if own is None and behavioural:
                at_time = self._behaviour_default(purpose, h, at, region)
            else:
                at_time = self._at_time(purpose, h, own, at, region)
            if at_time.allowed:
                if currents is None:
                    currents = (self._now or self._choices())[0]
                now = currents[purpose]
                if not now.granted:  # as ``verdict``: the current choice withdraws it
                    at_time = _new_verdict(purpose, False, _R_REGION_DEFAULT, now.source)
            out.append(at_time)
        return tuple(out)

    def _timeless(
        self, at: datetime, consent: EventConsent, region: str | None, behavioural: bool
    ) -> _Timeless:
        """The remembered answers of a gate without consent history (see :data:`_TIMELESS`)."""
        policy = self.policy
        key = (id(policy), id(consent), self.region, region, behavioural)
        found = _TIMELESS.get(key)
        if found is None or found[1] is not consent or found[0] is not policy:
            verdicts = self._verdicts(at, consent, region, behavioural)
            found = (policy, consent, verdicts, frozenset(v.purpose for v in verdicts if v.allowed))
            if len(_TIMELESS) >= _TIMELESS_SIZE:
                _TIMELESS.clear()
            _TIMELESS[key] = found
        return found


#: A history's times (distinct, sorted) and the id of its shape (:func:`_shape`).
_After = tuple[list[datetime], int]
#: The times and shape of the histories of gates, shared by every gate of the same history
#: object and policy (a person's gate is built anew for each batch; their history is the same
#: object while no event changed it: the decode cache keeps it). By (id of the history, id of
#: the policy): (the history, the policy, :data:`_After`); an entry holds what its key's ids
#: are of, so they stay theirs while it lives. Bounded: emptied when full.
_PLACES: Final[dict[tuple[int, int], tuple[ConsentHistory, ConsentPolicy, _After]]] = {}
_PLACES_SIZE: Final = 4096


def _shape(history: ConsentHistory, policy: ConsentPolicy, times: list[datetime]) -> int:
    """The id of ``history``'s shape under ``policy``: what its verdicts read of it, each of
    its times replaced by its rank among ``times`` (all of them, distinct and sorted).

    The verdicts compare a fact's time ``at`` and the history's times only with each other
    (a denial at or after ``at``, an explicit grant in (last denial, ``at``], a dropped grant
    likewise, a latest statement later than ``at``) and read, besides, each purpose's latest
    statement's grant and source and its last denial's source (never a kept grant's source,
    nor a time's value): two histories of one shape, each asked at a time of the same place
    among its own times, answer alike. A person's history is a new object whenever an event
    changes it, but most are of a few shapes (the bench's 20,200 events: 1,806 new histories,
    92 shapes, 3,103 of 3,662 computed verdicts asked before of an equal shape and question).
    Interned (:data:`_SHAPES`): a new shape gets an id never given before."""
    rank = {t: i for i, t in enumerate(times)}
    parts = []
    for purpose, h in history.purposes.items():  # in purpose order (``ConsentHistory``)
        latest, denial, dropped = h.latest, h.last_denial, h.dropped
        parts.append(
            (
                purpose,
                None if latest is None else (latest.granted, rank[latest.at], latest.source),
                None if denial is None else (rank[denial.at], denial.source),
                tuple([rank[g.at] for g in h.grants]),
                None if dropped is None else rank[dropped],
            )
        )
    key = (id(policy), tuple(parts))
    found = _SHAPES.get(key)
    if found is None or found[0] is not policy:
        if len(_SHAPES) >= _SHAPES_SIZE:
            _SHAPES.clear()  # the ids already given stay unique: _SHAPED keeps no stale hit
        found = _SHAPES[key] = (policy, next(_SHAPE_IDS))
    return found[1]


#: Shapes (:func:`_shape`) by (id of the policy, shape): (the policy, the shape's id); an entry
#: holds the policy, so its id stays its own. Bounded: emptied when full.
_SHAPES: Final[dict[tuple[int, tuple[object, ...]], tuple[ConsentPolicy, int]]] = {}
_SHAPES_SIZE: Final = 4096
#: Where the shapes' ids come from: each one is given once (an emptied :data:`_SHAPES` never
#: gives an old id to a new shape).
_SHAPE_IDS: Final = count()
#: Every purpose's verdict of a fact and the purposes they allow (``serves``).
_Shaped = tuple[tuple[Verdict, ...], frozenset[Purpose]]
#: ``serves`` of a gate with a history asked for ``necessary``: it always serves.
_ONLY_NECESSARY: Final = frozenset([Purpose.NECESSARY])
#: The verdicts of gates with a consent history, shared by every gate of a history of the same
#: shape (:func:`_shape`, which holds the policy's): by (the shape's id, the place of the
#: fact's time among the history's times (how many are before it, how many at or before it),
#: the fact's consent's code (its statements and validity: what the verdicts read of it), the
#: fact's region and kind, the person's region (the current choices and the default of a fact
#: without region depend on it)). A key holds values only, no object's id. Bounded: emptied
#: when full (the bench's run: 814 distinct questions, the audit's and the render's).
_SHAPED: Final[dict[tuple[int, int, int, str, str | None, bool, str | None], _Shaped]] = {}
_SHAPED_SIZE: Final = 4096
#: (policy, consent, every purpose's verdict, the purposes allowed) of a gate without history.
_Timeless = tuple[ConsentPolicy, EventConsent, tuple[Verdict, ...], frozenset[Purpose]]
#: The answers of gates without consent history, shared by all of them: they depend on the
#: policy, the person's region and the fact's consent, region and kind, not on the fact's time
#: nor on whose it is. By (id of the policy, id of the event's consent, the person's region,
#: the fact's region, behavioural); an entry holds the policy and the consent, so their ids
#: stay theirs while it lives. Events' consents are mostly memoized (few distinct objects);
#: those of events with vendor signals are not, so the memo is emptied when full.
_TIMELESS: Final[dict[tuple[int, int, str | None, str | None, bool], _Timeless]] = {}
_TIMELESS_SIZE: Final = 4096


#: Verdicts and current choices are immutable: the jurisdiction defaults' few are shared.
_DEFAULT_VERDICTS: Final = {
    (p, granted): Verdict(p, granted, Reason.REGION_DEFAULT, _DEFAULT)
    for p in Purpose
    for granted in (True, False)
}
_DEFAULT_CURRENT: Final = {granted: Current(granted, None, _DEFAULT) for granted in (True, False)}
#: A gate's current choices (per purpose) and the purposes granted now.
_Now = tuple[Mapping[Purpose, Current], frozenset[Purpose]]
#: Those of people without consent history, by (id of the policy, region): (the policy, ...);
#: the entry holds the policy, so its id stays its own. Bounded: emptied when full.
_DEFAULT_NOW: Final[dict[tuple[int, str | None], tuple[ConsentPolicy, *_Now]]] = {}
_DEFAULT_NOW_SIZE: Final = 4096


def never_serves(
    history: ConsentHistory,
    purpose: Purpose,
    *,
    at: datetime,
    consent: EventConsent,
    policy: ConsentPolicy,
    region: str | None,
) -> bool:
    """True when no event, past or future, can make a *behavioural* fact serve ``purpose``:
    its own event denied it or was unreadable, it stated nothing and its region's default
    does not grant it, or ``history`` holds a denial at or after it. All of this only ever
    becomes more true, so the fold may drop such data for good (``history`` must be a subset
    of the person's: the fact's own group's history is)."""
    if _never_by_itself(purpose, consent, policy, region):
        return True
    denial = history.of(purpose).last_denial
    return denial is not None and denial.at >= at


def _never_by_itself(
    purpose: Purpose, consent: EventConsent, policy: ConsentPolicy, region: str | None
) -> bool:
    """:func:`never_serves` whatever the history: the fact's own event denied ``purpose`` or
    was unreadable, or it stated nothing and its region's default does not grant it."""
    if consent.invalid:
        return True
    own = consent.stated(purpose)
    if own is not None and not own.granted:
        return True
    return own is None and purpose not in policy.default_for(region)


class BehaviourPruning:
    """:func:`never_serves` for analytics and personalization, asked for every behavioural
    fact of a group at once (the fold's pruning, ``resolvers.profile.facts``): ``history``'s
    denials are read once, and what each consent code and region says by itself is
    remembered for every history (few distinct ones; bounded, emptied when full)."""

    __slots__ = ("_analytics", "_personalization", "policy")

    def __init__(
        self, history: ConsentHistory, policy: ConsentPolicy, also: ConsentHistory = EMPTY_HISTORY
    ):
        """``also``: another history whose denials revoke too, as if merged into ``history``
        (only the latest denials are read: the later of each pair, no merge built)."""
        self.policy = policy
        self._analytics, self._personalization = behaviour_denials(history)
        if also.purposes:
            analytics, personalization = behaviour_denials(also)
            self._analytics = later_of(self._analytics, analytics)
            self._personalization = later_of(self._personalization, personalization)

    def never(self, at: datetime, code: str, region: str) -> tuple[bool, bool]:
        """(analytics, personalization): :func:`never_serves` of a behavioural fact at ``at``
        whose event's consent has ``code`` (``EventConsent.code``), in ``region`` ("": none)."""
        never_analytics, never_personalization = behaviour_never_by_itself(
            self.policy, code, region
        )
        analytics, personalization = self._analytics, self._personalization
        return (
            never_analytics or (analytics is not None and analytics >= at),
            never_personalization or (personalization is not None and personalization >= at),
        )


def behaviour_never_by_itself(policy: ConsentPolicy, code: str, region: str) -> tuple[bool, bool]:
    """(analytics, personalization): :func:`never_serves` of a behavioural fact whose event's
    consent has ``code`` (``EventConsent.code``), in ``region`` ("": none), whatever the
    history (its own statement or its region's default excludes it for good). Memoized."""
    key = (id(policy), code, region)
    found = _BY_ITSELF.get(key)
    if found is None or found[0] is not policy:
        consent = from_code(code)
        found = (
            policy,
            _never_by_itself(Purpose.ANALYTICS, consent, policy, region or None),
            _never_by_itself(Purpose.PERSONALIZATION, consent, policy, region or None),
        )
        if len(_BY_ITSELF) >= _BY_ITSELF_SIZE:
            _BY_ITSELF.clear()
        _BY_ITSELF[key] = found
    return found[1], found[2]


def behaviour_denials(history: ConsentHistory) -> tuple[datetime | None, datetime | None]:
    """The times of ``history``'s latest denials of analytics and of personalization (None:
    none): all that :class:`BehaviourPruning` reads of a history. Merged histories' latest
    denials are the later of each pair (``PurposeHistory.merged``), so of their times the
    latest (a denial's key orders by its time first)."""
    if not history.purposes:  # most groups have none: nothing to read
        return None, None
    analytics = history.of(_P_ANALYTICS).last_denial
    personalization = history.of(_P_PERSONALIZATION).last_denial
    return (
        analytics.at if analytics is not None else None,
        personalization.at if personalization is not None else None,
    )


def later_of(a: datetime | None, b: datetime | None) -> datetime | None:
    """The later of two times of which either may be None (none)."""
    if a is None or b is None:
        return b if a is None else a
    return b if b > a else a


#: What a behavioural fact's own consent code and region say by itself, per policy: (the
#: policy, never analytics, never personalization), by (id of the policy, code, region); the
#: entry holds the policy, so its id stays its own.
_BY_ITSELF: Final[dict[tuple[int, str, str], tuple[ConsentPolicy, bool, bool]]] = {}
_BY_ITSELF_SIZE: Final = 4096
