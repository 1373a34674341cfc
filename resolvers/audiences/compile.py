"""Type-check an expression tree against the field catalog and turn it into closures.

Evaluation uses three-valued logic: a comparison with an unknown value (``None``: a date the
person does not have, a zero-party answer they never gave, a value of another type) is
unknown; ``not`` unknown is unknown; ``and``/``or`` follow Kleene (``false and unknown`` is
false, ``true or unknown`` is true). A profile is a member only when the whole expression is
*true*, so ``not days_since_last_purchase.running < 30`` does not catch people who never
bought running shoes.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from resolvers.audiences.fields import CATALOG, Env, Type, Value
from resolvers.audiences.language import (
    Between,
    BoolOp,
    Compare,
    Contains,
    ExpressionError,
    Field,
    InList,
    Literal,
    Node,
    Not,
    parse,
)

Fn = Callable[[Env], Value]

_ORDERED: Final = frozenset({Type.NUMBER, Type.DATE, Type.STRING, Type.ANY})
_OPS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True, slots=True)
class Expression:
    """A checked expression: ``matches(env)`` is True only when it evaluates to true."""

    text: str
    fn: Fn
    fields: frozenset[str]  # the dotted paths it reads
    time_dependent: bool

    def matches(self, env: Env) -> bool:
        return self.fn(env) is True


def _type_of(value: object) -> Type:
    if isinstance(value, bool):
        return Type.BOOL
    if isinstance(value, float | int):
        return Type.NUMBER
    if isinstance(value, datetime):
        return Type.DATE
    return Type.STRING


def _kind(value: Value) -> type | None:
    """The runtime class two values must share to compare (None: unknown)."""
    if value is None or isinstance(value, list):
        return None
    if isinstance(value, bool):
        return bool
    if isinstance(value, int | float):
        return float
    return type(value)


def _compatible(a: Type, b: Type) -> bool:
    return a == b or Type.ANY in (a, b)


class _Checker:
    def __init__(self) -> None:
        self.fields: set[str] = set()
        self.time_dependent = False

    def build(self, node: Node) -> tuple[Type, Fn]:
        match node:
            case Literal(value=value):
                return _type_of(value), lambda _env, v=value: v
            case Field():
                return self.field(node)
            case Compare():
                return self.compare(node)
            case Between():
                return self.between(node)
            case InList():
                return self.in_list(node)
            case Contains():
                return self.contains(node)
            case Not(operand=operand):
                inner = self.boolean(operand, "not")
                # a value that is not true or false (an answer of another type) is unknown
                return Type.BOOL, lambda env: not v if isinstance(v := inner(env), bool) else None
            case BoolOp(op=op, operands=operands):
                parts = tuple(self.boolean(o, op) for o in operands)
                return Type.BOOL, _kleene(parts, decisive=op == "or")
        raise AssertionError(node)  # pragma: no cover - every node kind is matched

    def boolean(self, node: Node, where: str) -> Fn:
        typ, fn = self.build(node)
        if typ not in (Type.BOOL, Type.ANY):
            raise ExpressionError(node.column, f"'{where}' needs a condition, got a {typ}")
        return fn

    def field(self, node: Field) -> tuple[Type, Fn]:
        root, keys = node.path[0], node.path[1:]
        spec = CATALOG.get(root)
        if spec is None:
            raise ExpressionError(node.column, f"unknown field {root!r}")
        if len(keys) != spec.keys:
            shape = root + "".join(f".<{i + 1}>" for i in range(spec.keys))
            raise ExpressionError(node.column, f"field {node.text!r} must look like {shape}")
        if spec.allowed_keys is not None and keys[0] not in spec.allowed_keys:
            allowed = ", ".join(sorted(spec.allowed_keys))
            raise ExpressionError(node.column, f"{node.text!r}: {root} is one of {allowed}")
        self.fields.add(node.text)
        self.time_dependent |= spec.time_dependent
        get = spec.get
        return spec.type, lambda env: get(env, keys)

    def compare(self, node: Compare) -> tuple[Type, Fn]:
        lt, left = self.build(node.left)
        rt, right = self.build(node.right)
        if not _compatible(lt, rt):
            raise ExpressionError(node.column, f"cannot compare a {lt} with a {rt}")
        if node.op not in ("==", "!=") and not ({lt, rt} <= _ORDERED):
            raise ExpressionError(node.column, f"'{node.op}' needs numbers, dates or strings")
        if Type.LIST in (lt, rt):
            raise ExpressionError(node.column, "a list is tested with 'contains'")
        op = _OPS[node.op]

        def fn(env: Env) -> Value:
            a, b = left(env), right(env)
            kind = _kind(a)
            if kind is None or kind is not _kind(b):
                return None
            return op(a, b)

        return Type.BOOL, fn

    def between(self, node: Between) -> tuple[Type, Fn]:
        typ, subject = self.build(node.subject)
        (low_t, low), (high_t, high) = self.build(node.low), self.build(node.high)
        if typ not in _ORDERED or not (_compatible(typ, low_t) and _compatible(typ, high_t)):
            raise ExpressionError(
                node.column, f"'between' needs bounds of the subject's type ({typ})"
            )

        def fn(env: Env) -> Value:
            v, lo, hi = subject(env), low(env), high(env)
            kind = _kind(v)
            if kind is None or kind is not _kind(lo) or kind is not _kind(hi):
                return None
            return bool(lo <= v <= hi)  # type: ignore[operator]

        return Type.BOOL, fn

    def in_list(self, node: InList) -> tuple[Type, Fn]:
        typ, subject = self.build(node.subject)
        for option in node.options:
            if not _compatible(typ, _type_of(option.value)):
                raise ExpressionError(
                    option.column, f"a {_type_of(option.value)} in a list for a {typ}"
                )
        options = frozenset((_kind(o.value), o.value) for o in node.options)  # true is not 1
        negated = node.negated

        def fn(env: Env) -> Value:
            v = subject(env)
            if v is None or isinstance(v, list):
                return None
            return ((_kind(v), v) in options) != negated

        return Type.BOOL, fn

    def contains(self, node: Contains) -> tuple[Type, Fn]:
        typ, subject = self.build(node.subject)
        if typ not in (Type.LIST, Type.ANY):
            raise ExpressionError(node.column, f"'contains' needs a list, got a {typ}")
        item = node.item.value

        def fn(env: Env) -> Value:
            v = subject(env)
            if not isinstance(v, list):
                return None
            return any(_kind(x) is _kind(item) and x == item for x in v)

        return Type.BOOL, fn


def _kleene(parts: tuple[Fn, ...], decisive: bool) -> Fn:
    """Three-valued ``and`` (``decisive`` False) or ``or`` (True): a part equal to ``decisive``
    decides; otherwise an unknown part makes the whole unknown."""

    neutral = not decisive

    def fn(env: Env) -> Value:
        unknown = False
        for part in parts:
            v = part(env)
            if v is decisive:
                return decisive
            if v is not neutral:
                unknown = True
        return None if unknown else neutral

    return fn


def compile_expression(text: str) -> Expression:
    """Parse and check ``text``; :class:`ExpressionError` with a column when it is invalid."""
    node = parse(text)
    checker = _Checker()
    typ, fn = checker.build(node)
    if typ is not Type.BOOL and typ is not Type.ANY:
        raise ExpressionError(node.column, f"the expression is a {typ}, not a condition")
    return Expression(text, fn, frozenset(checker.fields), checker.time_dependent)
