"""Builders shared by every test tier (``tests/`` is on ``sys.path`` through its conftest).

Import as ``from builders import make_context``; ``pipeline_helpers`` re-exports them for the
pipeline tier.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import fields, is_dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from hypothesis import strategies as st

from resolvers.consent import ConsentPolicy
from resolvers.context import Context, TopicNames
from resolvers.identity.rules import IdentityRules
from resolvers.inventory import Movement, MovementKind
from resolvers.profile.facts import Facts, fingerprint
from schemas.normalize import blocked_by_default

#: The fixed "now" of batches built by the tests.
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def make_context(now: datetime = NOW) -> Context:
    """A batch context with the default identity rules and consent policy, no decode cache."""
    rules = IdentityRules(is_blocked=blocked_by_default)  # the workers' blocklist
    return Context(
        rules=rules, policy=ConsentPolicy(), topics=TopicNames(), salt=b"test-salt", now=now
    )


T = TypeVar("T")


def permuted(items: Sequence[T], keys: Sequence[int]) -> list[T]:
    """``items`` reordered by sort ``keys`` drawn by a test (missing keys count as 0, ties
    keep the order): an arbitrary permutation that hypothesis shrinks well and an
    ``@example`` can spell out."""
    rank = [(keys[i] if i < len(keys) else 0, i) for i in range(len(items))]
    return [items[i] for _, i in sorted(rank)]


def split(items: Sequence[T], cuts: Sequence[int]) -> list[list[T]]:
    """``items`` cut into consecutive parts at ``cuts`` (taken modulo ``len(items) + 1``)."""
    bounds = sorted({0, len(items), *(c % (len(items) + 1) for c in cuts)})
    return [list(items[lo:hi]) for lo, hi in itertools.pairwise(bounds)]


def with_fingerprints(facts: Facts) -> Facts:
    """``facts`` with each recent event's fingerprint written into its digest's ``ids``, as the
    fold and the decoder built them before ADR 0032 (now implied by the event id: empty until
    the event rolls up): what a reference kept from before it compares equal to."""
    recent = {
        event_id: item
        if item.digest.ids
        else replace(item, digest=replace(item.digest, ids=frozenset((fingerprint(event_id),))))
        for event_id, item in facts.recent.items()
    }
    return replace(facts, recent=recent)


@st.composite
def stock_movements(
    draw: st.DrawFn,
    event_ids: st.SearchStrategy[str],
    locations: Sequence[str],
    times: st.SearchStrategy[datetime],
    sku: str = "SKU-1",
) -> Movement:
    """One movement of ``sku``'s stock for the inventory properties: any kind, a quantity
    (below 0 only for an adjustment), an optional reason; its id, location and time drawn as
    the caller's property needs them (ids that repeat, times that tie...)."""
    kind = draw(st.sampled_from(list(MovementKind)))
    low = -4 if kind is MovementKind.ADJUSTMENT else 0
    return Movement(
        event_id=draw(event_ids),
        sku=sku,
        location_id=draw(st.sampled_from(locations)),
        kind=kind,
        quantity=draw(st.integers(low, 5)),
        occurred_at=draw(times),
        reason=draw(st.sampled_from([None, "damaged"])),
    )


def canonical(value: Any, *, memos: bool = True) -> Any:
    """``value`` as nested lists that keep every type name, field and mapping order (for
    comparing results field by field). ``memos=False`` leaves out the dataclass fields out of
    comparison, memos of the value (``Facts.encoded``, ``pruned``): two paths that build the
    same value may leave different ones."""
    if isinstance(value, dict):
        return [
            "dict",
            [[canonical(k, memos=memos), canonical(v, memos=memos)] for k, v in value.items()],
        ]
    if isinstance(value, set | frozenset):
        return [type(value).__name__, sorted(repr(canonical(v, memos=memos)) for v in value)]
    if isinstance(value, tuple | list):
        return [type(value).__name__, [canonical(v, memos=memos) for v in value]]
    if is_dataclass(value) and not isinstance(value, type):
        names = [f.name for f in fields(value) if memos or f.compare]
        return [
            type(value).__name__,
            [[n, canonical(getattr(value, n), memos=memos)] for n in names],
        ]
    return [type(value).__name__, value]
