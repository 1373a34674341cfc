"""Audience definitions: the TOML file (``LOOM_AUDIENCES_FILE``) and membership of a snapshot.

File format (``docs/audiences.toml`` is an example)::

    [audiences.running_reminder]
    description = "Bought running shoes 150-200 days ago: time for a new pair"
    expression = '''category_orders.running >= 1
        and days_since_last_purchase.running between 150 and 200'''
    marketing = true     # membership also requires consent.marketing granted now

Names are 1-64 characters of ``a-z 0-9 _ -`` starting with a letter or digit (they are part
of a Redis key and of CLI arguments). Every error is one line naming the file, the audience
and, for an expression, the column.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from resolvers.audiences.compile import Expression, compile_expression
from resolvers.audiences.fields import Env
from resolvers.audiences.language import ExpressionError

NAME_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_KEYS: Final = frozenset({"description", "expression", "marketing"})


class AudienceFileError(ValueError):
    """The audiences file cannot be used (one line: file, audience, column, what)."""


@dataclass(frozen=True, slots=True)
class Audience:
    name: str
    description: str
    expression: Expression
    marketing: bool

    def matches(self, env: Env) -> bool:
        if self.marketing and not env.snapshot.get("consent", {}).get("marketing", {}).get(
            "granted", False
        ):
            return False
        return self.expression.matches(env)


@dataclass(frozen=True, slots=True)
class Audiences:
    """Every defined audience, by name."""

    by_name: Mapping[str, Audience]

    def __iter__(self) -> Iterator[Audience]:
        return iter(self.by_name.values())

    def __len__(self) -> int:
        return len(self.by_name)

    @property
    def digest(self) -> str:
        """16 hex digits naming these definitions (names, expressions, marketing flags): a
        changed file has another (the audience pass's lock is per definitions)."""
        canonical = json.dumps(
            [[a.name, a.expression.text, a.marketing] for a in self], separators=(",", ":")
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @property
    def time_dependent(self) -> bool:
        return any(a.expression.time_dependent for a in self)

    def members(
        self, snapshot: Mapping[str, Any], now: datetime, medians: Mapping[str, float] = {}
    ) -> frozenset[str]:
        """The audiences ``snapshot`` belongs to at ``now``."""
        env = Env(snapshot, now, medians)
        return frozenset(a.name for a in self if a.matches(env))


NO_AUDIENCES: Final = Audiences({})


def audience(
    name: str, expression: str, *, marketing: bool = False, description: str = ""
) -> Audience:
    """One audience (``ExpressionError`` or ``AudienceFileError`` when invalid)."""
    if not NAME_PATTERN.fullmatch(name):
        raise AudienceFileError(f"audience name {name!r}: use 1-64 of a-z 0-9 _ -")
    return Audience(name, description, compile_expression(expression), marketing)


def from_mapping(data: Mapping[str, Any], source: str = "<audiences>") -> Audiences:
    table = data.get("audiences", {})
    extra = sorted(set(data) - {"audiences"})
    if extra:
        raise AudienceFileError(f"{source}: unknown top-level keys {extra} (use [audiences.NAME])")
    if not isinstance(table, Mapping):
        raise AudienceFileError(f"{source}: 'audiences' must be a table of [audiences.NAME]")
    out: dict[str, Audience] = {}
    for name, body in table.items():
        where = f"{source}: audience {name!r}"
        if not isinstance(body, Mapping):
            raise AudienceFileError(f"{where}: must be a table")
        unknown = sorted(set(body) - _KEYS)
        if unknown:
            raise AudienceFileError(f"{where}: unknown keys {unknown}")
        text, marketing = body.get("expression"), body.get("marketing", False)
        description = body.get("description", "")
        if not isinstance(text, str):
            raise AudienceFileError(f"{where}: 'expression' (a string) is required")
        if not isinstance(marketing, bool) or not isinstance(description, str):
            raise AudienceFileError(f"{where}: 'marketing' is true|false, 'description' a string")
        try:
            out[name] = audience(name, text, marketing=marketing, description=description)
        except ExpressionError as exc:
            raise AudienceFileError(f"{where}: expression {exc}") from None
        except AudienceFileError as exc:
            raise AudienceFileError(f"{source}: {exc}") from None
    return Audiences(dict(sorted(out.items())))


def load_audiences(path: str | Path | None) -> Audiences:
    """The audiences of ``path`` (none when ``path`` is None)."""
    if path is None:
        return NO_AUDIENCES
    try:
        with Path(path).open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise AudienceFileError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise AudienceFileError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise AudienceFileError(f"{path}: not UTF-8 (byte {exc.start})") from None
    return from_mapping(data, str(path))


def changes(before: Iterable[str], after: Iterable[str]) -> tuple[list[str], list[str]]:
    """(entered, exited), each sorted."""
    b, a = set(before), set(after)
    return sorted(a - b), sorted(b - a)
