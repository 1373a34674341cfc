"""The audience expression language: tokens and a recursive-descent parser into a small AST.

Nothing here evaluates anything: :mod:`resolvers.audiences.compile` type-checks the tree
against the field catalog (:mod:`resolvers.audiences.fields`) and turns it into closures. No
``eval``, ``compile`` or ``ast`` of user text anywhere.

Grammar (keywords are case-insensitive; line breaks are spaces)::

    expr     := and_expr ("or" and_expr)*
    and_expr := not_expr ("and" not_expr)*
    not_expr := "not" not_expr | test
    test     := operand [ ("==" | "!=" | "<" | "<=" | ">" | ">=") operand
                        | "between" operand "and" operand
                        | ["not"] "in" "[" literal ("," literal)* "]"
                        | "contains" literal ]
    operand  := NUMBER | STRING | DATE | "true" | "false" | field | "(" expr ")"
    field    := NAME ("." (NAME | STRING))*          e.g. category_orders."trail running"

``NUMBER`` is ``12``, ``-3``, ``12.5``; ``STRING`` is double-quoted with ``\\"`` and ``\\\\``
escapes; ``DATE`` is ``YYYY-MM-DD`` (midnight UTC).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Final


class ExpressionError(ValueError):
    """A syntax or type error at ``column`` (1-based) of an expression."""

    def __init__(self, column: int, message: str) -> None:
        super().__init__(f"column {column}: {message}")
        self.column = column
        self.message = message


#: How deeply parentheses and ``not`` may nest (the parser and the checker recurse per level).
MAX_DEPTH: Final = 64

KEYWORDS: Final = frozenset({"and", "or", "not", "between", "in", "contains", "true", "false"})

_TOKEN: Final = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\d.]))
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|<|>)
  | (?P<punct>[()\[\],.])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # date | number | string | name | keyword | op | punct | end
    text: str
    column: int


def tokenize(text: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            bad = text[pos]
            if bad == '"':
                raise ExpressionError(pos + 1, "unterminated string")
            raise ExpressionError(pos + 1, f"unexpected character {bad!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            word = m.group()
            if kind == "name" and word.lower() in KEYWORDS:
                kind, word = "keyword", word.lower()
            out.append(Token(kind, word, pos + 1))
        pos = m.end()
    out.append(Token("end", "", len(text) + 1))
    return out


# --------------------------------------------------------------------------- the tree

Scalar = float | str | datetime | bool


@dataclass(frozen=True, slots=True)
class Literal:
    value: Scalar
    column: int


@dataclass(frozen=True, slots=True)
class Field:
    path: tuple[str, ...]
    column: int

    @property
    def text(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True, slots=True)
class Compare:
    op: str
    left: Node
    right: Node
    column: int


@dataclass(frozen=True, slots=True)
class Between:
    subject: Node
    low: Node
    high: Node
    column: int


@dataclass(frozen=True, slots=True)
class InList:
    subject: Node
    options: tuple[Literal, ...]
    negated: bool
    column: int


@dataclass(frozen=True, slots=True)
class Contains:
    subject: Node
    item: Literal
    column: int


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node
    column: int


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # "and" | "or"
    operands: tuple[Node, ...]
    column: int


Node = Literal | Field | Compare | Between | InList | Contains | Not | BoolOp


def _unescape(quoted: str) -> str:
    return re.sub(r"\\(.)", r"\1", quoted[1:-1])


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    def deeper(self, column: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(column, f"nested more than {MAX_DEPTH} levels deep")

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def at(self, kind: str, text: str | None = None) -> bool:
        return self.tok.kind == kind and (text is None or self.tok.text == text)

    def expect(self, kind: str, text: str) -> Token:
        if not self.at(kind, text):
            raise ExpressionError(self.tok.column, f"expected {text!r}, found {_shown(self.tok)}")
        return self.take()

    def parse(self) -> Node:
        if self.at("end"):
            raise ExpressionError(1, "empty expression")
        node = self.expr()
        if not self.at("end"):
            raise ExpressionError(self.tok.column, f"unexpected {_shown(self.tok)}")
        return node

    def expr(self) -> Node:
        return self._chain("or", self.and_expr)

    def and_expr(self) -> Node:
        return self._chain("and", self.not_expr)

    def _chain(self, op: str, part: Callable[[], Node]) -> Node:
        first = part()
        operands = [first]
        while self.at("keyword", op):
            self.take()
            operands.append(part())
        if len(operands) == 1:
            return first
        return BoolOp(op, tuple(operands), _column(first))

    def not_expr(self) -> Node:
        if self.at("keyword", "not"):
            column = self.take().column
            self.deeper(column)
            node = Not(self.not_expr(), column)
            self.depth -= 1
            return node
        return self.test()

    def test(self) -> Node:
        left = self.operand()
        tok = self.tok
        if tok.kind == "op":
            self.take()
            return Compare(tok.text, left, self.operand(), tok.column)
        if self.at("keyword", "between"):
            self.take()
            low = self.operand()
            self.expect("keyword", "and")
            return Between(left, low, self.operand(), tok.column)
        if self.at("keyword", "contains"):
            self.take()
            return Contains(left, self.literal(), tok.column)
        negated = False
        if self.at("keyword", "not") and self.tokens[self.i + 1].text == "in":
            self.take()
            negated = True
        if self.at("keyword", "in"):
            self.take()
            self.expect("punct", "[")
            options = [self.literal()]
            while self.at("punct", ","):
                self.take()
                options.append(self.literal())
            self.expect("punct", "]")
            return InList(left, tuple(options), negated, tok.column)
        return left

    def literal(self) -> Literal:
        node = self.operand()
        if not isinstance(node, Literal):
            raise ExpressionError(_column(node), "expected a literal value")
        return node

    def operand(self) -> Node:
        tok = self.take()
        match tok.kind:
            case "number":
                return Literal(float(tok.text), tok.column)
            case "string":
                return Literal(_unescape(tok.text), tok.column)
            case "date":
                try:
                    day = date.fromisoformat(tok.text)
                except ValueError:
                    raise ExpressionError(tok.column, f"not a date: {tok.text}") from None
                return Literal(datetime(day.year, day.month, day.day, tzinfo=UTC), tok.column)
            case "keyword" if tok.text in ("true", "false"):
                return Literal(tok.text == "true", tok.column)
            case "name":
                return self.field(tok)
            case "punct" if tok.text == "(":
                self.deeper(tok.column)
                node = self.expr()
                self.expect("punct", ")")
                self.depth -= 1
                return node
        raise ExpressionError(tok.column, f"expected a value or a field, found {_shown(tok)}")

    def field(self, first: Token) -> Field:
        path = [first.text]
        while self.at("punct", "."):
            self.take()
            tok = self.take()
            if tok.kind in ("name", "keyword"):
                path.append(tok.text)
            elif tok.kind == "string":
                path.append(_unescape(tok.text))
            elif tok.kind == "number" and tok.text.isdigit():
                path.append(tok.text)
            else:
                raise ExpressionError(tok.column, f"expected a name after '.', found {_shown(tok)}")
        return Field(tuple(path), first.column)


def _shown(tok: Token) -> str:
    return "the end" if tok.kind == "end" else repr(tok.text)


def _column(node: Node) -> int:
    return node.column


def parse(text: str) -> Node:
    """The tree of ``text``; :class:`ExpressionError` (with a column) when it is not valid."""
    return _Parser(text).parse()
