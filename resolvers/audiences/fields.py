"""The fields an audience expression can read, typed, and how they are read from a snapshot.

An :class:`Env` is one profile at one moment: its snapshot (``loom.profile.v1``: every gated
field already empty where its purpose is not granted now), the evaluation clock ``now`` and
the category-wide repurchase medians the scheduled pass maintains. Time-dependent fields
(``days_since_*``, ``days_until_next_purchase``) are computed here from stored dates and
``now``; nothing time-dependent is stored in the snapshot.

Missing data reads as ``None`` (unknown) except counts and sums, which read as 0: a person
who never bought running shoes has ``category_orders.running == 0`` and an unknown
``days_since_last_purchase.running``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from resolvers.consent import CONSENT_PURPOSES
from resolvers.timefmt import parse_time

Value = float | str | datetime | bool | list[Any] | None
_DAY: Final = timedelta(days=1)


class Type(StrEnum):
    NUMBER = "number"
    STRING = "string"
    DATE = "date"
    BOOL = "bool"
    LIST = "list"
    ANY = "any"  # a zero-party answer: whatever JSON the customer gave


class Env:
    """One profile snapshot at ``now`` (see the module docstring)."""

    __slots__ = ("_times", "medians", "now", "snapshot")

    def __init__(
        self, snapshot: Mapping[str, Any], now: datetime, medians: Mapping[str, float] = {}
    ) -> None:
        self.snapshot, self.now, self.medians = snapshot, now, medians
        self._times: dict[str, datetime] = {}

    def time(self, text: object) -> datetime | None:
        if not isinstance(text, str):
            return None
        parsed = self._times.get(text)
        if parsed is None:
            parsed = self._times[text] = parse_time(text)
        return parsed

    def category(self, name: str) -> Mapping[str, Any]:
        found: Mapping[str, Any] = self.snapshot.get("category_purchases", {}).get(name, {})
        return found

    def interval(self, name: str) -> float | None:
        personal = self.category(name).get("repurchase_interval_days")
        if isinstance(personal, int | float):
            return float(personal)
        return self.medians.get(name)

    def predicted(self, name: str) -> datetime | None:
        last, interval = self.time(self.category(name).get("last_purchase")), self.interval(name)
        if last is None or interval is None:
            return None
        return last + timedelta(days=interval)

    def days_since(self, at: datetime | None) -> float | None:
        return None if at is None else float((self.now - at) // _DAY)


def _number(value: object, default: float | None = 0.0) -> float | None:
    if isinstance(value, bool) or value is None:
        return default
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return default


def _json(value: object) -> Value:
    if isinstance(value, bool | str | list):
        return value
    if isinstance(value, int | float):
        return float(value)
    return None


Getter = Callable[[Env, Sequence[str]], Value]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    type: Type
    keys: int  # path segments after the root (category, currency, ...)
    get: Getter
    doc: str
    time_dependent: bool = False
    allowed_keys: frozenset[str] | None = None  # None = any key


def _snap(name: str) -> Getter:
    return lambda env, _: _json(env.snapshot.get(name))


def _time_of(*path: str) -> Getter:
    def get(env: Env, _: Sequence[str]) -> Value:
        value: Any = env.snapshot
        for part in path:
            value = value.get(part) if isinstance(value, Mapping) else None
        return env.time(value)

    return get


def _money(name: str, default: float | None) -> Getter:
    return lambda env, k: _number(env.snapshot.get(name, {}).get(k[0]), default)


def _days_since(*path: str) -> Getter:
    at = _time_of(*path)
    return lambda env, k: env.days_since(_as_time(at(env, k)))


def _as_time(value: Value) -> datetime | None:
    return value if isinstance(value, datetime) else None


def _days_until(env: Env, k: Sequence[str]) -> Value:
    predicted = env.predicted(k[0])
    return None if predicted is None else float((predicted - env.now) // _DAY)


def _consent(env: Env, k: Sequence[str]) -> Value:
    return bool(env.snapshot.get("consent", {}).get(k[0], {}).get("granted", False))


CATALOG: Final[Mapping[str, FieldSpec]] = {
    "orders": FieldSpec(
        Type.NUMBER,
        0,
        lambda env, _: float(
            env.snapshot.get("orders_online", 0) + env.snapshot.get("orders_in_store", 0)
        ),
        "purchases online and in store",
    ),
    "orders_online": FieldSpec(Type.NUMBER, 0, _snap("orders_online"), "online purchases"),
    "orders_in_store": FieldSpec(Type.NUMBER, 0, _snap("orders_in_store"), "store purchases"),
    "returns": FieldSpec(
        Type.NUMBER,
        0,
        lambda env, _: _number(env.snapshot.get("returns", {}).get("count")),
        "returns",
    ),
    "shopping_mode": FieldSpec(Type.STRING, 0, _snap("shopping_mode"), "online|in_store|..."),
    "preferred_channel": FieldSpec(Type.STRING, 0, _snap("preferred_channel"), "top channel"),
    "preferred_payment_method": FieldSpec(
        Type.STRING, 0, _snap("preferred_payment_method"), "top payment method"
    ),
    "preferred_store": FieldSpec(Type.STRING, 0, _snap("preferred_store"), "top store"),
    "region": FieldSpec(Type.STRING, 0, _snap("region"), "latest region (ISO 3166-1)"),
    "channels": FieldSpec(Type.LIST, 0, _snap("channels"), "channels seen"),
    "first_seen": FieldSpec(Type.DATE, 0, _time_of("first_seen"), "first event"),
    "last_seen": FieldSpec(Type.DATE, 0, _time_of("last_seen"), "latest event"),
    "last_order_at": FieldSpec(Type.DATE, 0, _time_of("last_order", "at"), "latest purchase"),
    "days_since_last_order": FieldSpec(
        Type.NUMBER, 0, _days_since("last_order", "at"), "whole days", time_dependent=True
    ),
    "days_since_last_seen": FieldSpec(
        Type.NUMBER, 0, _days_since("last_seen"), "whole days", time_dependent=True
    ),
    "revenue": FieldSpec(Type.NUMBER, 1, _money("revenue", 0.0), "revenue.<CUR>"),
    "lifetime_value": FieldSpec(
        Type.NUMBER, 1, _money("lifetime_value", 0.0), "lifetime_value.<CUR>: net of returns"
    ),
    "average_order_value": FieldSpec(
        Type.NUMBER, 1, _money("average_order_value", None), "average_order_value.<CUR>"
    ),
    "category_orders": FieldSpec(
        Type.NUMBER,
        1,
        lambda env, k: _number(env.category(k[0]).get("orders")),
        "category_orders.<category>",
    ),
    "category_spend": FieldSpec(
        Type.NUMBER,
        2,
        lambda env, k: _number(env.category(k[0]).get("spend", {}).get(k[1])),
        "category_spend.<category>.<CUR>",
    ),
    "category_affinities": FieldSpec(
        Type.NUMBER,
        1,
        lambda env, k: _number(env.snapshot.get("category_affinities", {}).get(k[0])),
        "category_affinities.<category>",
    ),
    "first_purchase": FieldSpec(
        Type.DATE,
        1,
        lambda env, k: env.time(env.category(k[0]).get("first_purchase")),
        "first_purchase.<category>",
    ),
    "last_purchase": FieldSpec(
        Type.DATE,
        1,
        lambda env, k: env.time(env.category(k[0]).get("last_purchase")),
        "last_purchase.<category>",
    ),
    "repurchase_interval_days": FieldSpec(
        Type.NUMBER,
        1,
        lambda env, k: env.interval(k[0]),
        "repurchase_interval_days.<category>: own median gap, else the category's",
    ),
    "predicted_next_purchase": FieldSpec(
        Type.DATE,
        1,
        lambda env, k: env.predicted(k[0]),
        "predicted_next_purchase.<category>: last purchase + interval",
    ),
    "days_since_last_purchase": FieldSpec(
        Type.NUMBER,
        1,
        lambda env, k: env.days_since(env.time(env.category(k[0]).get("last_purchase"))),
        "days_since_last_purchase.<category>: whole days",
        time_dependent=True,
    ),
    "days_until_next_purchase": FieldSpec(
        Type.NUMBER,
        1,
        _days_until,
        "days_until_next_purchase.<category>: negative when overdue",
        time_dependent=True,
    ),
    "preferences": FieldSpec(
        Type.ANY,
        1,
        lambda env, k: _json(env.snapshot.get("preferences", {}).get(k[0])),
        "preferences.<key>: zero-party answers (survey_answered, profile_updated)",
    ),
    "traits": FieldSpec(
        Type.STRING,
        1,
        lambda env, k: _json(env.snapshot.get("traits", {}).get(k[0])),
        "traits.<name>: what the customer gave",
    ),
    "consent": FieldSpec(
        Type.BOOL,
        1,
        _consent,
        "consent.<purpose>: granted now",
        allowed_keys=frozenset(p.value for p in CONSENT_PURPOSES),
    ),
    "reachable": FieldSpec(
        Type.BOOL,
        1,
        lambda env, k: bool(env.snapshot.get("reachable", {}).get(k[0], False)),
        "reachable.email|phone",
        allowed_keys=frozenset({"email", "phone"}),
    ),
}
