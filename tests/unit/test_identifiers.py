"""``schemas.identifiers.Identifier``: a ``(type, value)`` tuple that compares, orders and hashes
exactly as the frozen dataclass it replaced (``raw`` outside all three), and is immutable."""

from __future__ import annotations

import copy
import pickle
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.identifiers import BUILTIN_TYPES, Identifier


@dataclass(frozen=True, slots=True, order=True)
class _Reference:
    """The dataclass ``Identifier`` was until the sixth pass of issue 17."""

    type: str
    value: str
    raw: str = field(default="", compare=False, hash=False)


_TYPES = st.sampled_from([*BUILTIN_TYPES, "member_no", "email2", "email_work", "a"])
_TEXT = st.text(max_size=6)
_PAIRS = st.lists(st.tuples(_TYPES, _TEXT, _TEXT), max_size=12)


@settings(max_examples=300, deadline=None)
@given(pairs=_PAIRS)
def test_equality_order_hash_and_set_order_are_the_dataclass_ones(
    pairs: list[tuple[str, str, str]],
) -> None:
    ours = [Identifier(t, v, r) for t, v, r in pairs]
    ref = [_Reference(t, v, r) for t, v, r in pairs]
    as_pairs = lambda xs: [(x.type, x.value, x.raw) for x in xs]  # noqa: E731
    assert as_pairs(sorted(ours)) == as_pairs(sorted(ref))
    assert [hash(x) for x in ours] == [hash(x) for x in ref]
    assert as_pairs(set(ours)) == as_pairs(set(ref))  # same hashes, same insertion: same order
    for a, ra in zip(ours, ref, strict=True):
        for b, rb in zip(ours, ref, strict=True):
            assert (a == b, a < b, a <= b) == (ra == rb, ra < rb, ra <= rb)


def test_raw_is_kept_but_outside_equality() -> None:
    sent, canonical = (
        Identifier("email", "jane@x.com", raw=" Jane@X.com "),
        Identifier("email", "jane@x.com"),
    )
    assert sent == canonical
    assert hash(sent) == hash(canonical)
    assert (sent.raw, canonical.raw) == (" Jane@X.com ", "")
    assert sent.key == str(sent) == "email:jane@x.com"
    assert repr(sent) == repr(_Reference("email", "jane@x.com", " Jane@X.com ")).replace(
        "_Reference", "Identifier"
    )


def test_it_is_immutable_and_round_trips_through_pickle_and_copy() -> None:
    ident = Identifier("phone", "+4798765432", raw="987 65 432")
    for name in ("type", "value", "raw", "other"):
        with pytest.raises(AttributeError):
            setattr(ident, name, "x")
    with pytest.raises(AttributeError):
        del ident.raw
    for again in (pickle.loads(pickle.dumps(ident)), copy.deepcopy(ident), copy.copy(ident)):
        assert (again, again.raw, type(again)) == (ident, ident.raw, Identifier)
    assert (ident.type, ident.value) == tuple(ident)
