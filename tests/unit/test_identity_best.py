"""A group's best identifier (``resolvers.stages.identity._best``) stops at each atom's first
identifier still linking (an atom's identifiers are ranked): the same answer as the version
that ranked every identifier of every atom (kept verbatim below)."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st
from identity_worlds import POOL, RULES, SMALL_RULES, atom_worlds, i

from resolvers.identity.evidence import Atom
from resolvers.identity.rules import IdentityRules
from resolvers.stages.identity import _best


def old_best(
    atoms: Mapping[str, Atom], left_out: set[tuple[str, str]], rules: IdentityRules
) -> tuple[str, str] | None:
    """``_best`` before this pass, verbatim."""
    index = rules.rank_index
    unlisted = len(index)
    best: tuple[int, str, str] | None = None
    for atom in atoms.values():
        for ident in atom.ids:
            id_type, value = ident.type, ident.value
            if (id_type, value) in left_out:
                continue
            rank = (index.get(id_type, unlisted), id_type, value)  # as ``ranked`` orders
            if best is None or rank < best:
                best = rank
    return (best[1], best[2]) if best is not None else None


LEFT_OUT = st.sets(st.sampled_from(POOL)).map(lambda ks: {(i(k).type, i(k).value) for k in ks})


@settings(max_examples=300, deadline=None)
@given(atoms=atom_worlds(6, RULES), left_out=LEFT_OUT, rules=st.sampled_from([RULES, SMALL_RULES]))
def test_the_best_identifier_is_the_best_of_each_atoms_first_one_still_linking(
    atoms: list[Atom], left_out: set[tuple[str, str]], rules: IdentityRules
) -> None:
    group = {f"k{n}": a for n, a in enumerate(atoms)}
    assert _best(group, left_out, rules) == old_best(group, left_out, rules)
