"""Stage 2: identifiers to canonical form; junk values are dropped, never linked.

Also computes the salted hash of every identifier, which the store checks against the
suppression set of erased people in the same round trip as the rest of the batch's state.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

from resolvers.context import suppression_hash
from schemas.identifiers import BUILTIN_TYPES, PHONE, Identifier
from schemas.normalize import (
    DEFAULT,
    NormalizeConfig,
    Rejected,
    normalize_identifiers,
    normalize_one,
)
from schemas.touchpoint import Touchpoint

NAME = "normalize"


@lru_cache(maxsize=8_192)
def _accepted(
    id_type: str, raw: str, region: str | None, salt: bytes
) -> tuple[Identifier, str] | None:
    """One raw identifier under the default configuration: its identifier and suppression hash,
    or None if it is rejected. Memoized (pure; a customer's values repeat, phones cost a parse
    each), bounded small like ``schemas.normalize``'s memo (anonymous ids never come back); keyed
    by region only for phone numbers, the one type whose normalization reads it."""
    result = normalize_one(id_type, raw, region=region, config=DEFAULT)
    if isinstance(result, Rejected):
        return None
    return result, suppression_hash(result, salt)


def identifiers(
    tp: Touchpoint, *, config: NormalizeConfig, salt: bytes, default_region: str | None = None
) -> tuple[tuple[Identifier, ...], tuple[str, ...]]:
    """The accepted identifiers of ``tp`` and their suppression hashes (:func:`run`'s)."""
    fields = tp.__dict__  # its fields (``resolvers.stages.observe.observation`` says why)
    region = fields["region"] or default_region
    if config is not DEFAULT:
        ids = normalize_identifiers(
            tp.identifiers.as_mapping(), region=region, config=config
        ).accepted
        return ids, tuple(suppression_hash(i, salt) for i in ids)
    # The workers' configuration: there only the built-in types can be accepted (custom ones
    # are unknown), in ``BUILTIN_TYPES`` order, as ``normalize_identifiers`` orders them.
    # ``Identifiers.builtin()``, inline: its instance dict (a method read off a model goes
    # through the attribute hook too)
    raw_of: Mapping[str, str | None] = fields["identifiers"].__dict__
    accepted: list[Identifier] = []
    hashes: list[str] = []
    for id_type in BUILTIN_TYPES:
        raw = raw_of[id_type]
        if raw is not None:
            done = _accepted(id_type, raw, region if id_type == PHONE else None, salt)
            if done is not None:
                accepted.append(done[0])
                hashes.append(done[1])
    return tuple(accepted), tuple(hashes)
