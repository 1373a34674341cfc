"""The accounts a group of the profiles lane is linked to, as ``ProfilesBatch._accounts`` (with
its ``_record``) decided them before issue 17's fifteenth pass, kept as the one reference of
that rule for the tests that compare the lane's pruning by accounts with it
(``tests/unit/test_prune_by_accounts.py`` and, through ``tests/pipeline/lane_reference.py``,
``tests/pipeline/test_lane_fold_audit.py``). Verbatim but for the binding (the methods are
functions of ``self``, the batch) and, for a group other than an account group, the rule of
2026-12-04 (ADR 0005's note): the accounts whose erasure would erase it whole. Not used by
Loom."""

from __future__ import annotations

from resolvers.identity.evidence import EMPTY_RECORD, IdentifierRecord
from resolvers.lanes.profiles import ProfilesBatch
from resolvers.lanes.stored_profile import Group
from resolvers.stages import identity
from schemas.identifiers import Identifier


def _accounts(self: ProfilesBatch, res: identity.Resolution, gkey: str, group: Group) -> set[str]:
    """The accounts (``type:value`` of unique identifiers) a group is linked to for good:
    an account group, those its atoms carry; any other (since 2026-12-04, not verbatim), those
    whose erasure would erase it whole: each of its atoms carries the account id, or has an
    identifier that relays (any but a device) seen with it, or has every identifier seen with
    it (the records keep them, capped: the same whatever the order)."""
    rules = self.ctx.rules
    unique = rules.unique_types  # ``rules.is_unique``, inline
    if gkey.startswith("u:"):
        return {i.key for atom in group.atoms.values() for i in atom.ids if i.type in unique}
    out: set[str] | None = None
    for atom in group.atoms.values():
        accounts = [
            (ident, {ident.key} if ident.type in unique else _seen(self, res, ident))
            for ident in atom.ids
        ]
        linked = set.intersection(*(seen for _, seen in accounts))
        for ident, seen in accounts:
            if not rules.is_device(ident.type):
                linked |= seen
        out = linked if out is None else out & linked
    return out or set()


def _seen(self: ProfilesBatch, res: identity.Resolution, ident: Identifier) -> set[str]:
    record = _record(self, res, ident)
    return {f"{unique_type}:{v}" for unique_type, vs in record.seen_with.items() for v in vs}


def _record(self: ProfilesBatch, res: identity.Resolution, ident: Identifier) -> IdentifierRecord:
    written = res.records.get(ident)
    if written is not None:
        return written
    return self.records.get(ident, EMPTY_RECORD)
