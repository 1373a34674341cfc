"""Main 7360a18's ``resolvers.lanes.profiles._Digests``, kept verbatim for
``test_profiles_digests`` (issue 17.2, eighteenth pass): every suppression hash computed when
first asked, none taken from the batch's events."""

from __future__ import annotations

from resolvers.context import suppression_hash
from schemas.identifiers import Identifier


class _Digests(dict[Identifier, str]):
    """Suppression hashes by identifier (by ``(type, value)``, hashed in C), computed when
    first asked (``__missing__``)."""

    __slots__ = ("salt",)

    def __init__(self, salt: bytes) -> None:
        super().__init__()
        self.salt = salt

    def __missing__(self, ident: Identifier) -> str:
        digest = self[ident] = suppression_hash(ident, self.salt)
        return digest
