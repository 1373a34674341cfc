"""Identifier types and the canonical identifier value object.

An :class:`Identifier` is what the identity engine links on: a type and a canonical value.
The raw value the producer sent is kept alongside for audit and display, but it never takes
part in equality or hashing, so ``" Jane@X.com "`` and ``"jane@x.com"`` are the same identifier.
"""

from __future__ import annotations

from typing import Final, NamedTuple

CUSTOMER_ID: Final = "customer_id"
EMAIL: Final = "email"
PHONE: Final = "phone"
LOYALTY_ID: Final = "loyalty_id"
CARD_TOKEN: Final = "card_token"  # noqa: S105 - a type name, not a secret
ANONYMOUS_ID: Final = "anonymous_id"
SOCIAL_HANDLE: Final = "social_handle"

#: The built-in identifier types, most stable first. Custom types come from configuration.
BUILTIN_TYPES: Final[tuple[str, ...]] = (
    CUSTOMER_ID,
    LOYALTY_ID,
    EMAIL,
    PHONE,
    CARD_TOKEN,
    SOCIAL_HANDLE,
    ANONYMOUS_ID,
)


class _TypeValue(NamedTuple):
    type: str
    value: str


class Identifier(_TypeValue):
    """A canonical identifier: ``type`` plus normalized ``value`` (``raw`` is informational).

    A tuple of ``(type, value)`` (a named tuple's subclass), so that equality, order and
    hashing are the tuple's, done in C: the identity engine hashes, compares and sorts
    identifiers several times per event, and a dataclass's generated ``__eq__``, ``__lt__``
    and ``__hash__`` are Python calls. Equal, ordered and hashed exactly as the frozen
    dataclass it replaces (``(type, value)``, ``raw`` left out; ``hash`` is
    ``hash((type, value))`` as before), but it also equals the plain tuple ``(type, value)``
    (nothing mixes the two: mypy keeps dicts of identifiers and of ``(type, value)`` keys
    apart). ``raw`` lives in the instance's ``__dict__``, made only when it is not empty.
    Immutable: setting any attribute raises.
    """

    raw: str = ""

    def __new__(cls, type: str, value: str, raw: str = "") -> Identifier:
        self = tuple.__new__(cls, (type, value))
        if raw:
            self.__dict__["raw"] = raw
        return self

    def __getnewargs__(self) -> tuple[str, str, str]:
        return (self.type, self.value, self.raw)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: an Identifier is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: an Identifier is immutable")

    def __repr__(self) -> str:
        return f"Identifier(type={self.type!r}, value={self.value!r}, raw={self.raw!r})"

    @property
    def key(self) -> str:
        """``type:value``, the form used in Redis keys, CLI arguments and logs of hashes."""
        return f"{self.type}:{self.value}"

    def __str__(self) -> str:
        return self.key
