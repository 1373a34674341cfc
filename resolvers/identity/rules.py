"""Identity resolution rules: type priority, per-profile limits, unique types, shared
identifiers (quarantine), device types.

The rules are configuration, not code. :class:`IdentityRules` holds retail defaults and
:func:`load_rules` reads the ``[identity]`` table of a TOML file (every key is documented in
``docs/identity-rules.toml``). Blocked values are a normalization concern; the engine only
asks an injected predicate (``IdentityRules.is_blocked``) so it refuses them defensively
without importing the normalizer. The pipeline passes ``schemas.normalize.is_blocked``.

Pure module: no I/O except :func:`load_rules`, which reads one file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from schemas.identifiers import (
    ANONYMOUS_ID,
    BUILTIN_TYPES,
    CARD_TOKEN,
    CUSTOMER_ID,
    EMAIL,
    LOYALTY_ID,
    PHONE,
    SOCIAL_HANDLE,
)

#: Maximum number of values of each type one profile may hold.
DEFAULT_LIMITS: Final[Mapping[str, int]] = MappingProxyType(
    {
        CUSTOMER_ID: 1,
        LOYALTY_ID: 1,
        EMAIL: 5,
        PHONE: 5,
        CARD_TOKEN: 10,
        SOCIAL_HANDLE: 5,
        ANONYMOUS_ID: 50,
    }
)
DEFAULT_UNIQUE_TYPES: Final[frozenset[str]] = frozenset({CUSTOMER_ID, LOYALTY_ID})
DEFAULT_CUSTOM_LIMIT: Final = 5
DEFAULT_QUARANTINE_THRESHOLD: Final = 3
#: Identifier types of devices, which people share (a family tablet, a shop's kiosk).
DEFAULT_DEVICE_TYPES: Final[frozenset[str]] = frozenset({ANONYMOUS_ID})
#: Per-type thresholds overriding ``quarantine_threshold``: a device seen with two
#: people's account ids is shared, and links neither.
DEFAULT_QUARANTINE_THRESHOLDS: Final[Mapping[str, int]] = MappingProxyType({ANONYMOUS_ID: 1})


#: Identifiers whose blocked-value answer :meth:`IdentityRules.blocks` remembers.
MAX_BLOCKED_MEMO: Final = 8192


class RulesError(ValueError):
    """The identity rules are inconsistent or the rules file is malformed."""


def never_blocked(id_type: str, value: str) -> bool:
    """The default blocked-value predicate: rejects nothing (the normalizer's is injected)."""
    return False


@dataclass(frozen=True, slots=True)
class IdentityRules:
    """How identifiers link into profiles. Immutable; build one at start-up and pass it down.

    * ``priority``: identifier types, most trustworthy first. Types not listed (custom types
      that only appear in ``limits``, or unexpected ones) rank after every listed type,
      ordered by name. On a conflict the lowest-priority identifiers are dropped.
    * ``limits``: maximum distinct values of a type on one profile; ``default_limit`` for
      types not listed. No profile ever exceeds its limits.
    * ``unique_types``: a profile holds at most one value of these (:meth:`limit` is 1 for
      them; a ``limits`` entry other than 1 for one is a :class:`RulesError`), and two
      profiles holding different values never merge.
    * ``quarantine_threshold``: a non-unique identifier seen in events together with more
      than this many distinct values of one unique type is quarantined (shared: it links
      nobody, and events carrying only it update no profile); ``quarantine_thresholds``
      overrides it per type (default: 1 for ``anonymous_id``, so a device two account ids
      were seen on is shared).
    * ``device_types``: identifier types of devices. An erasure forgets a person's devices
      but does not follow them to the other identifiers seen on them (a device is shared;
      ``resolvers.identity.erasure``).
    * ``is_blocked(type, value)``: values that must never link.
    """

    priority: tuple[str, ...] = BUILTIN_TYPES
    limits: Mapping[str, int] = field(default_factory=lambda: DEFAULT_LIMITS)
    default_limit: int = DEFAULT_CUSTOM_LIMIT
    unique_types: frozenset[str] = DEFAULT_UNIQUE_TYPES
    quarantine_threshold: int = DEFAULT_QUARANTINE_THRESHOLD
    quarantine_thresholds: Mapping[str, int] = field(
        default_factory=lambda: DEFAULT_QUARANTINE_THRESHOLDS
    )
    device_types: frozenset[str] = DEFAULT_DEVICE_TYPES
    is_blocked: Callable[[str, str], bool] = never_blocked
    #: Each listed type's place in ``priority`` (unlisted types rank after all, by name:
    #: :meth:`rank`). A field, not a property: read once per identifier set.
    rank_index: Mapping[str, int] = field(init=False, repr=False, compare=False)
    _blocked: dict[tuple[str, str], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.priority)) != len(self.priority):
            raise RulesError("identity priority lists a type twice")
        if self.default_limit < 1:
            raise RulesError("default_limit must be >= 1")
        if self.quarantine_threshold < 1:
            raise RulesError("quarantine_threshold must be >= 1")
        for id_type, threshold in self.quarantine_thresholds.items():
            if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1:
                raise RulesError(f"quarantine threshold of {id_type!r} must be an integer >= 1")
            if id_type in self.unique_types:
                raise RulesError(f"{id_type!r} is a unique type: it is never quarantined")
        for id_type, limit in self.limits.items():
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise RulesError(f"limit of {id_type!r} must be an integer >= 1")
            if id_type in self.unique_types and limit != 1:
                raise RulesError(f"{id_type!r} is a unique type, its limit must be 1")
        object.__setattr__(self, "limits", MappingProxyType(dict(self.limits)))
        object.__setattr__(
            self, "quarantine_thresholds", MappingProxyType(dict(self.quarantine_thresholds))
        )
        object.__setattr__(self, "rank_index", {t: i for i, t in enumerate(self.priority)})
        object.__setattr__(self, "_blocked", {})

    @property
    def blocked_memo(self) -> Mapping[tuple[str, str], bool]:
        """:meth:`blocks`' answers so far, by ``(type, value)``: a hot loop looks there
        first."""
        return self._blocked

    def blocks(self, key: tuple[str, str]) -> bool:
        """``is_blocked(type, value)``, memoized (a pure predicate; bounded)."""
        answer = self._blocked.get(key)
        if answer is None:
            if len(self._blocked) >= MAX_BLOCKED_MEMO:
                self._blocked.clear()
            answer = self._blocked[key] = self.is_blocked(*key)
        return answer

    def vouch_unblocked(self, keys: Collection[tuple[str, str]]) -> None:
        """Remember ``keys`` as :meth:`blocks` answers False for them, without asking
        ``is_blocked``: the caller vouches for them (identifiers normalization accepted under
        the predicate ``is_blocked`` is, ``resolvers.pipeline.run_batch``). A new identifier
        otherwise costs the replay one ``is_blocked`` call (~9k instructions, about half an
        identifier per profiles event: issue 17.2)."""
        memo = self._blocked
        if len(memo) + len(keys) >= MAX_BLOCKED_MEMO:  # (not emptied by the replay's next ask)
            memo.clear()
        memo.update(dict.fromkeys(keys, False))

    def limit(self, id_type: str) -> int:
        """Maximum distinct values of ``id_type`` on one profile."""
        if id_type in self.unique_types:
            return 1
        return self.limits.get(id_type, self.default_limit)

    def is_unique(self, id_type: str) -> bool:
        return id_type in self.unique_types

    def rank(self, id_type: str) -> tuple[int, str]:
        """Sort key of a type: lower is more trustworthy."""
        return (self.rank_index.get(id_type, len(self.rank_index)), id_type)

    def threshold(self, id_type: str) -> int:
        """More than this many distinct values of one unique type seen with an identifier of
        ``id_type`` make it shared (quarantined)."""
        return self.quarantine_thresholds.get(id_type, self.quarantine_threshold)

    def cooccurrence_cap(self, id_type: str) -> int:
        """How many distinct unique values per type an identifier record remembers."""
        return self.threshold(id_type) + 1

    def is_device(self, id_type: str) -> bool:
        return id_type in self.device_types


_KEYS: Final = frozenset(
    {
        "priority",
        "limits",
        "default_limit",
        "unique_types",
        "quarantine_threshold",
        "quarantine_thresholds",
        "device_types",
    }
)


def rules_from_mapping(
    table: Mapping[str, Any],
    *,
    is_blocked: Callable[[str, str], bool] = never_blocked,
) -> IdentityRules:
    """Build rules from the contents of an ``[identity]`` table; missing keys keep defaults.

    ``limits`` entries are laid over :data:`DEFAULT_LIMITS` (so a file may set only the types
    it changes), except that every unique type starts at 1: a file may make ``email`` unique
    without also setting its limit, while setting a unique type's limit to anything but 1 is
    still an error. Custom types listed in ``priority`` but not in ``limits`` get
    ``default_limit``.
    """
    unknown = set(table) - _KEYS
    if unknown:
        raise RulesError(f"unknown identity rule keys: {sorted(unknown)}")
    kwargs: dict[str, Any] = {"is_blocked": is_blocked}
    if "priority" in table:
        kwargs["priority"] = tuple(_str_list(table["priority"], "priority"))
    unique = DEFAULT_UNIQUE_TYPES
    if "unique_types" in table:
        unique = frozenset(_str_list(table["unique_types"], "unique_types"))
        kwargs["unique_types"] = unique
    limits = dict(DEFAULT_LIMITS)
    limits.update(dict.fromkeys(unique, 1))  # a default limit never applies to a unique type
    raw_limits = table.get("limits", {})
    if not isinstance(raw_limits, Mapping):
        raise RulesError("limits must be a table of type = integer")
    limits.update(raw_limits)
    kwargs["limits"] = limits
    if "device_types" in table:
        kwargs["device_types"] = frozenset(_str_list(table["device_types"], "device_types"))
    if "quarantine_thresholds" in table:
        thresholds = table["quarantine_thresholds"]
        if not isinstance(thresholds, Mapping):
            raise RulesError("quarantine_thresholds must be a table of type = integer")
        kwargs["quarantine_thresholds"] = {**DEFAULT_QUARANTINE_THRESHOLDS, **thresholds}
    for key in ("default_limit", "quarantine_threshold"):
        if key in table:
            value = table[key]
            if not isinstance(value, int) or isinstance(value, bool):
                raise RulesError(f"{key} must be an integer")
            kwargs[key] = value
    return IdentityRules(**kwargs)


def load_rules(
    path: str | Path,
    *,
    is_blocked: Callable[[str, str], bool] = never_blocked,
) -> IdentityRules:
    """Read the ``[identity]`` table of a TOML rules file (absent table = all defaults)."""
    try:
        with Path(path).open("rb") as fh:
            document = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{path}: {exc}") from exc
    table = document.get("identity", {})
    if not isinstance(table, Mapping):
        raise RulesError(f"{path}: [identity] must be a table")
    return rules_from_mapping(table, is_blocked=is_blocked)


def _str_list(value: object, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise RulesError(f"{key} must be a list of non-empty strings")
    return list(value)


__all__ = [
    "DEFAULT_CUSTOM_LIMIT",
    "DEFAULT_DEVICE_TYPES",
    "DEFAULT_LIMITS",
    "DEFAULT_QUARANTINE_THRESHOLD",
    "DEFAULT_QUARANTINE_THRESHOLDS",
    "DEFAULT_UNIQUE_TYPES",
    "IdentityRules",
    "RulesError",
    "load_rules",
    "never_blocked",
    "rules_from_mapping",
]
