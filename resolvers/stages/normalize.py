"""Stage 2: identifiers to canonical form; junk values are dropped, never linked.

Also computes the salted hash of every identifier, which the store checks against the
suppression set of erased people in the same round trip as the rest of the batch's state.
"""

from __future__ import annotations

from resolvers.context import suppression_hash
from resolvers.steps import Event, Ok
from schemas.normalize import NormalizeConfig, normalize_identifiers

NAME = "normalize"


def run(
    event: Event, *, config: NormalizeConfig, salt: bytes, default_region: str | None = None
) -> Ok:
    tp = event.tp
    normalized = normalize_identifiers(
        tp.identifiers.as_mapping(), region=tp.region or default_region, config=config
    )
    ids = normalized.accepted
    hashes = tuple(suppression_hash(i, salt) for i in ids)
    return Ok(Event(event.record, tp, ids, hashes))
