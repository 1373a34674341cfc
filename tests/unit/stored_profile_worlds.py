"""Stored profiles for properties of their encoding and decoding: one to three groups of zero to
four atoms and generated facts, with or without merged-from ids and audiences."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from identity_worlds import atom_worlds
from profile_worlds import T0, observe_all, small_windows, worlds

from resolvers.identity.evidence import Stamp
from resolvers.lanes.stored_profile import Group, StoredProfile

#: The groups, each as (atoms, a world of observations) before they are folded.
GROUPS = st.lists(st.tuples(atom_worlds(4), worlds(12)), min_size=1, max_size=3)
#: Ids a profile carries as merged-from and audiences (and, as e-mails, identifiers).
EXTRA = st.lists(st.sampled_from(["p_2", "p_3", "x@y.z"]), max_size=2, unique=True)


def stored_profile(groups: list[Any], extra: list[str]) -> StoredProfile:
    """``groups`` (drawn from :data:`GROUPS`) folded with short windows (roll-ups into
    digests, husks, the horizon), as one stored profile."""
    with small_windows():
        built = [(atoms, observe_all(world)) for atoms, world in groups]
    return StoredProfile(
        "p_1",
        Stamp(T0, "e000"),
        {"email": tuple(extra), "customer_id": ("c1",)} if extra else {},
        {
            f"a:{n}": Group({a.key: a for a in atoms}, facts)
            for n, (atoms, facts) in enumerate(built)
        },
        tuple(extra),
        tuple(extra[:1]),
    )
