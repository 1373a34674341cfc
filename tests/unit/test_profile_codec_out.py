"""The stored JSON of a group's facts (``resolvers.profile.codec.facts_to_json``) against the
code main c513c0e ran, kept verbatim below: the same document, hence the same bytes.

What changed (issue 17.2, thirteenth pass): a transaction's and a digest's parts are written
inline, without a Python call per transaction, activity and preference (a long history
writes up to 1,000 transactions and ~400 digests of up to 20 activities at every write)."""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson
from commit_codec_reference import transaction_tail
from hypothesis import given, settings
from hypothesis import strategies as st
from profile_worlds import observe_all, small_windows, worlds

from resolvers.profile.codec import facts_to_json
from resolvers.profile.facts import Activity, Digest, DigestKey, Facts, Observation, Recent
from resolvers.profile.facts import Stamped as StampedFact
from resolvers.profile.facts import Transaction as TransactionFact
from resolvers.timefmt import format_time

# --------------------------------------------------------------------------- main c513c0e


def _stamped_out(s: StampedFact) -> tuple[Any, ...]:
    return (s.value, format_time(s.at), s.event_id)


def _activity_out(a: Activity) -> tuple[Any, ...]:
    if a.name is None:
        return (format_time(a.at), a.event_id, a.type, a.channel, a.sku, a.category)
    return (format_time(a.at), a.event_id, a.type, a.channel, a.sku, a.category, a.name)


def _transaction_out(t: TransactionFact) -> list[Any]:
    return [  # since returns name their order (``tests/pipeline/test_audience_returns.py``)
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
        *transaction_tail(t),
    ]


def _ids_out(ids: frozenset[int]) -> str:
    return base64.b64encode(struct.pack(f"<{len(ids)}I", *sorted(ids))).decode()


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


def _recent_out(item: Recent) -> tuple[Any, ...]:
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


def _old_facts_to_json(facts: Facts) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if facts.traits:
        out["t"] = {
            k: (s.value, format_time(s.at), s.event_id) for k, s in sorted(facts.traits.items())
        }
    if facts.region is not None:
        out["r"] = _stamped_out(facts.region)
    if facts.consent.purposes:
        out["c"] = facts.consent.to_json()
    if facts.transactions:
        out["o"] = {k: _transaction_out(t) for k, t in sorted(facts.transactions.items())}
    if facts.recent:
        out["e"] = [_recent_out(item) for _, item in sorted(facts.recent.items())]
    if facts.digests:
        out["d"] = [_digest_out(k, d) for k, d in sorted(facts.digests.items())]
    if facts.latest is not None:
        out["l"] = format_time(facts.latest)
    return out


# --------------------------------------------------------------------------- the property


@st.composite
def named_worlds(draw: st.DrawFn) -> list[Observation]:
    """Worlds of events some of which are named (a ``custom`` event's name in its activity)."""
    events = draw(worlds(60, deletions=draw(st.booleans())))
    names = draw(st.lists(st.sampled_from([None, "compared", "wished"]), max_size=len(events)))
    return [e._replace(name=n) if n else e for e, n in zip(events, names, strict=False)]


@settings(max_examples=200, deadline=None)
@given(events=named_worlds(), recent=st.sampled_from([2, 4, 30]))
def test_the_stored_facts_are_those_main_wrote(events: list[Observation], recent: int) -> None:
    with small_windows(recent_events=recent):  # digests of several activities, husks
        facts = observe_all(events)
    new, old = facts_to_json(facts), _old_facts_to_json(facts)
    assert new == old
    assert orjson.dumps(new) == orjson.dumps(old)
