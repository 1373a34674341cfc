"""main 2b8581a's ``resolvers/profile/traits.py``, verbatim below this docstring (its own
docstring dropped): what ``render_reference`` counts purchase traits with. Not imported by
Loom. Changed since: a return that names its order gives back that order's units of its
categories, and a category's purchase fully given back does not count (``_returned``, below;
``tests/pipeline/test_audience_returns.py``); a cancellation gives back like a return, and a
line given back by its SKU alone gives back the units of the order's category of that SKU
(when the purchase stored its lines' SKUs and the SKU is of one of its categories only)."""

# ruff: noqa
# mypy: ignore-errors
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from statistics import median
from typing import Any

from resolvers.profile.facts import Transaction, day_of
from resolvers.timefmt import format_time


def empty_trait_fields() -> dict[str, Any]:
    """The analytics-gated snapshot fields this module fills, with their empty values."""
    return {"category_purchases": {}, "preferred_channel": None}


def median_gap(days: Iterable[int]) -> float | None:
    """Median gap between consecutive distinct days (None with fewer than two days)."""
    ordered = sorted(set(days))
    if len(ordered) < 2:
        return None
    return float(median(b - a for a, b in itertools.pairwise(ordered)))


@dataclass
class _Category:
    orders: int = 0
    spend: dict[str, Decimal] = field(default_factory=dict)
    first: datetime | None = None
    last: datetime | None = None
    days: set[int] = field(default_factory=set)


@dataclass
class PurchaseTraits:
    """Accumulates allowed transactions (mutable scratch of one render)."""

    categories: dict[str, _Category] = field(default_factory=dict)
    channels: dict[str, int] = field(default_factory=dict)

    seen: list[Transaction] = field(default_factory=list)

    def add(self, t: Transaction, adder: Callable[[Decimal, Decimal], Decimal]) -> None:
        """Count ``t`` (a purchase or a return); ``adder`` is the render's exact decimal add."""
        self.seen.append(t)
        self.adder = adder

    def _count(self, t: Transaction, adder: Callable[[Decimal, Decimal], Decimal]) -> None:
        if _gives_back(t):
            return
        self.channels[t.channel] = self.channels.get(t.channel, 0) + 1
        for name in t.categories:
            if _returned(self.seen, t, name):
                continue
            cat = self.categories.setdefault(name, _Category())
            cat.orders += 1
            cat.spend[t.currency] = adder(cat.spend.get(t.currency, Decimal(0)), t.amount)
            cat.first = t.at if cat.first is None else min(cat.first, t.at)
            cat.last = t.at if cat.last is None else max(cat.last, t.at)
            cat.days.add(day_of(t.at))

    def fields(self, money: Callable[[Decimal, str], str]) -> dict[str, Any]:
        """The snapshot fields; ``money`` formats an amount in its currency."""
        for t in self.seen:
            self._count(t, self.adder)
        self.seen = []
        if not self.channels:  # no purchase counted (most renders): nothing to sort
            return {"category_purchases": {}, "preferred_channel": None}
        ranked = sorted(self.channels.items(), key=lambda kv: (-kv[1], kv[0]))
        return {
            "category_purchases": {
                name: {
                    "orders": cat.orders,
                    "spend": {cur: money(v, cur) for cur, v in sorted(cat.spend.items())},
                    "first_purchase": format_time(cat.first) if cat.first else None,
                    "last_purchase": format_time(cat.last) if cat.last else None,
                    "repurchase_interval_days": median_gap(cat.days),
                }
                for name, cat in sorted(self.categories.items())
            },
            "preferred_channel": ranked[0][0] if ranked else None,
        }


def _units(t: Transaction, name: str) -> int:
    return t.units[t.categories.index(name)] if t.units else 1


def _gives_back(t: Transaction) -> bool:
    return t.is_return or t.type == "order_cancelled"


def _returned(seen: list[Transaction], purchase: Transaction, name: str) -> bool:
    """Whether the returns and cancellations naming ``purchase``'s order give back all its
    units of ``name``."""
    order = purchase.key.removeprefix("order:")
    back = sum(
        _units(r, name)
        for r in seen
        if _gives_back(r) and r.order_id == order and name in r.categories
    )
    if purchase.skus:
        mine = set(purchase.skus[purchase.categories.index(name)])
        others = {
            sku
            for other, skus in zip(purchase.categories, purchase.skus)
            if other != name
            for sku in skus
        }
        back += sum(
            n
            for r in seen
            if _gives_back(r) and r.order_id == order
            for sku, n in r.loose
            if sku in mine and sku not in others
        )
    return back >= _units(purchase, name)
