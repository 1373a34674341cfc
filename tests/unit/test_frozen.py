"""``resolvers.frozen.fast_init`` and ``fast_new``: the same instances as the dataclass's own
``__init__``."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import InitVar, dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import resolvers.lanes.stored_profile
import resolvers.pipeline
import resolvers.profile.render  # noqa: F401
from resolvers.frozen import BUILDERS, STOCK_INITS, fast_init, fast_new

_UNSET = object()


def _slots(obj: object) -> list[Any]:
    """Every slot's value (``_UNSET`` when the slot was never set), in slot order."""
    return [getattr(obj, name, _UNSET) for name in type(obj).__slots__]


def _stock(cls: type, *args: Any, **kwargs: Any) -> Any:
    obj = object.__new__(cls)
    STOCK_INITS[cls](obj, *args, **kwargs)
    return obj


@fast_init
@dataclass(frozen=True, slots=True)
class _Every:
    """A field of every kind ``fast_init`` reproduces."""

    a: int
    b: str
    c: int | None = None
    d: list[int] = field(default_factory=list)
    e: dict[str, int] = field(default_factory=dict, compare=False)
    f: int = field(default=7, init=False)
    g: list[int] = field(default_factory=lambda: [1], init=False)
    h: int = field(init=False, compare=False, repr=False)  # never set by ``__init__``
    posted: list[str] = field(default_factory=list, init=False, compare=False)

    def __post_init__(self) -> None:
        self.posted.append(f"{self.a}:{self.b}")


_VALUES = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers()))


@given(
    a=st.integers(),
    b=st.text(max_size=8),
    rest=st.lists(_VALUES, max_size=3),
    by_name=st.booleans(),
)
def test_the_same_slots_as_the_dataclass_init(
    a: int, b: str, rest: list[Any], by_name: bool
) -> None:
    names = ("c", "d", "e")[: len(rest)]
    if by_name:
        args: tuple[Any, ...] = ()
        kwargs = {"a": a, "b": b, **dict(zip(names, rest, strict=True))}
    else:
        args, kwargs = (a, b, *rest), {}
    fast = _Every(*args, **kwargs)
    stock = _stock(_Every, *args, **kwargs)
    assert _slots(fast) == _slots(stock)
    assert fast == stock
    assert fast.posted == [f"{a}:{b}"]  # ``__post_init__`` ran once
    if not rest:  # each instance its own default from a factory
        assert fast.d is not _Every(a, b).d


def test_still_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        _Every(1, "x").a = 2  # type: ignore[misc]


def test_wrong_arguments_still_refused() -> None:
    with pytest.raises(TypeError):
        _Every(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        _Every(1, "x", zzz=3)  # type: ignore[call-arg]


@pytest.mark.parametrize("cls", sorted(STOCK_INITS, key=lambda c: c.__qualname__), ids=str)
def test_every_decorated_class_keeps_its_signature_and_fields(cls: type) -> None:
    """The pipeline's classes: the same parameters (names, kinds, plain defaults) and, where
    no ``__post_init__`` checks the values, the same slots for the same arguments."""
    fast, stock = inspect.signature(cls.__init__), inspect.signature(STOCK_INITS[cls])
    assert list(fast.parameters) == list(stock.parameters)
    factories = {
        f.name for f in dataclasses.fields(cls) if f.default_factory is not dataclasses.MISSING
    }
    for name, p in fast.parameters.items():
        q = stock.parameters[name]
        assert p.kind == q.kind
        assert (p.default is p.empty) == (q.default is q.empty)
        if name not in factories:
            assert p.default is q.default
    if hasattr(cls, "__post_init__"):
        return
    required = [p for n, p in fast.parameters.items() if n != "self" and p.default is p.empty]
    args = [object() for _ in required]
    assert _slots(cls(*args)) == _slots(_stock(cls, *args))
    every = [object() for n in fast.parameters if n != "self"]
    assert _slots(cls(*every)) == _slots(_stock(cls, *every))


def test_refuses_what_it_does_not_reproduce() -> None:
    @dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclass(slots=True)
    class NotFrozen:
        a: int

    @dataclass(frozen=True, slots=True, kw_only=True)
    class KeywordOnly:
        a: int

    @dataclass(frozen=True, slots=True)
    class WithInitVar:
        a: int
        b: InitVar[int]

    for cls in (NoSlots, NotFrozen, KeywordOnly, WithInitVar):
        with pytest.raises(TypeError):
            fast_init(cls)


@dataclass(frozen=True, slots=True)
class _Built:
    """Every kind of field ``fast_new`` sets."""

    a: int
    b: list[int] = field(default_factory=list)
    c: int | None = None
    f: int = field(default=7, init=False)
    g: list[int] = field(default_factory=lambda: [1], init=False)
    h: int = field(init=False, compare=False, repr=False)  # never set by ``__init__``
    posted: list[str] = field(default_factory=list, init=False, compare=False)

    def __post_init__(self) -> None:
        self.posted.append(f"{self.a}:{self.c}")


_new_built = fast_new(_Built)


@given(a=st.integers(), b=st.lists(st.integers(), max_size=2), c=st.none() | st.integers())
def test_a_built_instance_is_the_one_the_class_builds(a: int, b: list[int], c: int | None) -> None:
    built, stock = _new_built(a, b, c), _Built(a, b, c)
    assert type(built) is _Built
    assert _slots(built) == _slots(stock)
    assert built.posted == [f"{a}:{c}"]  # ``__post_init__`` ran once, on a ``_Built``
    assert built.g is not _new_built(a, b, c).g  # each instance its own factory default
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.a = 2  # type: ignore[misc]


@pytest.mark.parametrize("cls", sorted(BUILDERS, key=lambda c: c.__qualname__), ids=str)
def test_every_builder_builds_what_its_class_builds(cls: type) -> None:
    """The decoders' builders: with every field given, the same slots as ``cls(...)``."""
    every = [object() for f in dataclasses.fields(cls) if f.init]
    if hasattr(cls, "__post_init__"):  # its checks need real values: compared by the decode tests
        return
    built = BUILDERS[cls](*every)
    assert type(built) is cls
    assert _slots(built) == _slots(cls(*every))


def test_builders_refuse_what_they_do_not_reproduce() -> None:
    @dataclass(frozen=True, slots=True)
    class Base:
        a: int

    @dataclass(frozen=True, slots=True)
    class Derived(Base):
        b: int

    @dataclass(frozen=True, slots=True, kw_only=True)
    class KeywordOnly:
        a: int

    @dataclass(frozen=True)
    class NoSlots:
        a: int

    for cls in (Derived, KeywordOnly, NoSlots):
        with pytest.raises(TypeError):
            fast_new(cls)
    assert type(fast_new(Base)(1)) is Base
