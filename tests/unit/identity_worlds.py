"""Builders and hypothesis strategies shared by the identity unit tests.

Atoms are written as identifier keys (``"customer_id:C1"``) with the event that first carried
them; worlds draw atoms over a small pool so that unique conflicts, limits and shared
identifiers are common.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from resolvers.identity.evidence import Atom, Stamp, parse_key, ranked
from resolvers.identity.rules import IdentityRules
from schemas.identifiers import Identifier

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
RULES = IdentityRules()


def i(key: str) -> Identifier:
    """``"email:a@x.no"`` -> the identifier."""
    return parse_key(key)


def stamp(event_id: str, minutes: float = 0) -> Stamp:
    return Stamp(T0 + timedelta(minutes=minutes), event_id)


def atom(
    event_id: str,
    minutes: float,
    *keys: str,
    rules: IdentityRules = RULES,
    ghosts: Iterable[str] = (),
) -> Atom:
    return Atom(ranked((i(k) for k in keys), rules), stamp(event_id, minutes), tuple(ghosts))


def hash_of(ident: Identifier) -> str:
    """A stand-in for the salted suppression hash (distinct per identifier, readable)."""
    return f"h({ident.key})"


#: A small pool: two unique types, a device type, limits that bite (see ``SMALL_RULES``).
POOL = (
    "customer_id:C1",
    "customer_id:C2",
    "customer_id:C3",
    "loyalty_id:L1",
    "loyalty_id:L2",
    "email:a@x",
    "email:b@x",
    "email:c@x",
    "phone:+1",
    "phone:+2",
    "card_token:t1",
    "anonymous_id:d1",
    "anonymous_id:d2",
    "anonymous_id:d3",
    "store_member:m1",
)
SMALL_RULES = IdentityRules(
    limits={"email": 2, "phone": 1, "anonymous_id": 2, "card_token": 2}, default_limit=1
)

_KEYS = st.lists(st.sampled_from(POOL), min_size=1, max_size=4, unique=True)
_MINUTES = st.integers(0, 30)  # equal times happen: the event id breaks ties


@st.composite
def _atoms(draw: st.DrawFn, max_size: int, rules: IdentityRules) -> list[Atom]:
    """Distinct identifier sets, each with its own first event (as the evidence keeps them)."""
    sets = draw(st.lists(_KEYS.map(frozenset), max_size=max_size, unique=True))
    return [
        atom(f"e{n:02d}", draw(_MINUTES), *sorted(keys), rules=rules) for n, keys in enumerate(sets)
    ]


_ATOMS: dict[tuple[int, int], st.SearchStrategy[list[Atom]]] = {}


def atom_worlds(
    max_size: int = 12, rules: IdentityRules = SMALL_RULES
) -> st.SearchStrategy[list[Atom]]:
    key = (max_size, id(rules))
    if key not in _ATOMS:
        _ATOMS[key] = _atoms(max_size, rules)
    return _ATOMS[key]


IDENTIFIERS = st.sampled_from([i(k) for k in POOL])
