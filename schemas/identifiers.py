"""Identifier types and the canonical identifier value object.

An :class:`Identifier` is what the identity engine links on: a type and a canonical value.
The raw value the producer sent is kept alongside for audit and display, but it never takes
part in equality or hashing, so ``" Jane@X.com "`` and ``"jane@x.com"`` are the same identifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

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


@dataclass(frozen=True, slots=True, order=True)
class Identifier:
    """A canonical identifier: ``type`` plus normalized ``value`` (``raw`` is informational)."""

    type: str
    value: str
    raw: str = field(default="", compare=False, hash=False)

    @property
    def key(self) -> str:
        """``type:value``, the form used in Redis keys, CLI arguments and logs of hashes."""
        return f"{self.type}:{self.value}"

    def __str__(self) -> str:
        return self.key
