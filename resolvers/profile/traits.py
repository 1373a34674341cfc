"""Computed purchase traits: what a person's allowed purchases add up to, per category.

:class:`PurchaseTraits` is fed by :func:`resolvers.profile.render.render` with every
transaction analytics may use (one version per order id, through the consent gate), so the
traits are a function of the set of the person's events (ADR 0005), like the other aggregates:

* ``category_purchases``: per category, ``orders`` (purchases with a line of the category,
  not all of whose units of it their order's returns and cancellations gave back),
  ``spend`` per currency (the whole order total counts toward each category it has a line
  of: events carry no per-line amount that always adds up to the total), ``first_purchase``
  and ``last_purchase`` (times) and ``repurchase_interval_days``: the median gap in whole
  UTC days between the person's consecutive purchase days of the category (None with fewer
  than two purchase days);
* ``preferred_channel``: the channel of most purchases, ties broken by name.

``lifetime_value`` (per currency, purchases minus returns) is rendered with these traits from
the revenue and returns the render already sums (``resolvers.profile.render``).

Time-dependent traits (days since the last purchase, the predicted next purchase) are not
here: they depend on *when* one looks, so they are computed at evaluation time from these
stored dates and an injected clock (``resolvers.audiences.fields``).
"""

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
    """Accumulates allowed transactions (mutable scratch of one render).

    A purchase counts toward a category unless what its order gives back (the returns and
    cancellations naming the order: ``Transaction.order_id``) adds up to at least the units
    of the category it bought: a customer who sent the running shoes back, or cancelled them,
    did not buy running shoes, and a second pair given back does not move the last purchase
    of the pair kept. A line given back by its SKU alone (no category: Shopify's refunds and
    cancellations) counts toward the category of the order's lines of that SKU, when the
    purchase stored its lines' SKUs (``Transaction.skus``) and the SKU is of one category
    there. Whatever order the purchase and its give-backs come in, the sums are the same."""

    channels: dict[str, int] = field(default_factory=dict)
    purchases: list[Transaction] = field(default_factory=list)
    #: (order id, category) -> units its returns and cancellations gave back
    returned: dict[tuple[str, str], int] = field(default_factory=dict)
    #: (order id, SKU) -> units given back without a category
    loose: dict[tuple[str, str], int] = field(default_factory=dict)
    adder: Callable[[Decimal, Decimal], Decimal] = Decimal.__add__

    def add(self, t: Transaction, adder: Callable[[Decimal, Decimal], Decimal]) -> None:
        """Count ``t`` (a purchase, a return or a cancellation); ``adder`` is the render's exact
        decimal add."""
        self.adder = adder
        if t.gives_back:
            order = t.order_id
            if order is not None:
                units, returned = t.units, self.returned
                for i, name in enumerate(t.categories):
                    key = (order, name)
                    returned[key] = returned.get(key, 0) + (units[i] if units else 1)
                loose = self.loose
                for sku, n in t.loose:
                    key = (order, sku)
                    loose[key] = loose.get(key, 0) + n
            return
        self.channels[t.channel] = self.channels.get(t.channel, 0) + 1
        self.purchases.append(t)

    @property
    def categories(self) -> dict[str, _Category]:
        """Per category, the purchases its give-backs left standing (computed at each call)."""
        categories: dict[str, _Category] = {}
        adder, returned, loose = self.adder, self.returned, self.loose
        for t in self.purchases:
            # a give-back is rare: only then is the purchase's order looked up
            names = _standing(t, returned, loose) if returned or loose else t.categories
            if not names:
                continue
            at, currency, amount, day = t.at, t.currency, t.amount, day_of(t.at)
            for name in names:
                cat = categories.get(name)
                if cat is None:  # (``setdefault`` would build a scratch per line of every order)
                    cat = categories[name] = _Category()
                cat.orders += 1
                spend = cat.spend
                spend[currency] = adder(spend.get(currency, _ZERO), amount)
                if cat.first is None or at < cat.first:  # ``min``, inline
                    cat.first = at
                if cat.last is None or at > cat.last:  # ``max``, inline
                    cat.last = at
                cat.days.add(day)
        return categories

    def fields(self, money: Callable[[Decimal, str], str]) -> dict[str, Any]:
        """The snapshot fields; ``money`` formats an amount in its currency."""
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


#: A category's first spend is added to this (``Decimal(0)``, built once).
_ZERO = Decimal(0)


def _standing(
    t: Transaction, returned: dict[tuple[str, str], int], loose: dict[tuple[str, str], int]
) -> list[str]:
    """The categories of purchase ``t`` whose units its order's returns and cancellations did
    not all give back (``returned``: units given back per (order id, category); ``loose``:
    per (order id, SKU) without a category, attributed by ``t.skus`` to the one category of
    the order's lines of that SKU)."""
    order, units, names = t.key.removeprefix("order:"), t.units, t.categories
    back = [returned.get((order, name), 0) for name in names]
    if loose and t.skus:
        of: dict[str, int] = {}  # SKU -> its one category's index (-1: of several)
        for i, skus in enumerate(t.skus):
            for sku in skus:
                of[sku] = i if of.get(sku, i) == i else -1
        for sku, i in of.items():
            if i >= 0:
                back[i] += loose.get((order, sku), 0)
    return [name for i, name in enumerate(names) if back[i] < (units[i] if units else 1)]
