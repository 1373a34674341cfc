"""Frozen dataclasses built on the hot path, each field set without ``object.__setattr__``.

A frozen dataclass's generated ``__init__`` sets every field with
``object.__setattr__(self, name, value)``: a lookup of ``__setattr__`` on ``object``, then the
generic attribute protocol, which looks ``name`` up on the class again to find its slot. The
pipeline builds ~15 such objects per event (digests, stamps, groups, verdicts, writes, ...,
issue 17's ninth pass). With ``slots=True`` each field IS a slot, whose member descriptor sets
it directly: :func:`fast_init` gives the class an ``__init__`` that calls each slot's
``__set__`` (bound once, when the class is decorated) instead, about half the cost per field.

The new ``__init__`` has the same signature (positional or keyword, the same defaults and
default factories), sets the same fields in the same order (``init=False`` ones to their
default) and calls ``__post_init__`` when the class has one, so instances are the same; the
class stays frozen (assigning a field still raises ``FrozenInstanceError``). Classes with
features this does not reproduce (keyword-only fields, ``InitVar``s, no slots) are refused
when decorated, never silently built differently. Apply it under ``@dataclass``:

    @fast_init
    @dataclass(frozen=True, slots=True)
    class Stamped: ...
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from collections.abc import Callable
from typing import Any, TypeVar, cast

_T = TypeVar("_T")
#: The sentinel of a parameter whose default is a factory (called per instance).
_FACTORY = object()
#: Each decorated class's own dataclass ``__init__`` (the reference its tests compare with).
STOCK_INITS: dict[type, Any] = {}
#: Each class :func:`fast_new` made a builder for, and the builder (for its tests).
BUILDERS: dict[type, Any] = {}


def _slot_setter(cls: type, name: str) -> Any:
    """The bound ``__set__`` of the slot ``name`` (declared by ``cls`` or a base)."""
    for klass in cls.__mro__:
        found = klass.__dict__.get(name)
        if found is not None:
            if not isinstance(found, types.MemberDescriptorType):
                raise TypeError(f"{cls.__name__}.{name} is not a slot")
            return found.__set__
    raise TypeError(f"{cls.__name__}.{name} has no slot")


def _shape(init: Any) -> list[tuple[str, Any, bool]]:
    """Each parameter's name, kind and whether it has a default."""
    return [
        (p.name, p.kind, p.default is not inspect.Parameter.empty)
        for p in inspect.signature(init).parameters.values()
    ]


def fast_init(cls: type[_T]) -> type[_T]:
    """``cls`` (a frozen dataclass with slots) with an ``__init__`` that sets its slots
    directly (see the module docstring)."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a frozen dataclass with slots")
    names: dict[str, Any] = {"_FACTORY": _FACTORY}
    args: list[str] = []
    body: list[str] = []
    for i, f in enumerate(dataclasses.fields(cast(Any, cls))):
        if f.kw_only:
            raise TypeError(f"{cls.__name__}.{f.name}: keyword-only fields are not supported")
        names[f"_set{i}"] = _slot_setter(cls, f.name)
        has_default = f.default is not dataclasses.MISSING
        has_factory = f.default_factory is not dataclasses.MISSING
        if has_default:
            names[f"_default{i}"] = f.default
        if has_factory:
            names[f"_factory{i}"] = f.default_factory
        if f.init:
            if has_default:
                args.append(f"{f.name}=_default{i}")
            elif has_factory:
                args.append(f"{f.name}=_FACTORY")
            else:
                if args and "=" in args[-1]:  # dataclass refused this already
                    raise TypeError(f"{cls.__name__}.{f.name}: non-default after default")
                args.append(f.name)
            value = (
                f"_factory{i}() if {f.name} is _FACTORY else {f.name}" if has_factory else f.name
            )
        elif has_default:
            value = f"_default{i}"
        elif has_factory:
            value = f"_factory{i}()"
        else:
            continue  # not set by ``__init__`` (as the dataclass's own leaves it)
        body.append(f"    _set{i}(self, {value})")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    source = f"def __init__(self, {', '.join(args)}):\n" + ("\n".join(body) or "    pass") + "\n"
    exec(source, names)  # noqa: S102 - code built above from the class's own field names
    init = names["__init__"]
    if _shape(init) != _shape(cls.__init__):  # e.g. an ``InitVar``: a parameter not a field
        raise TypeError(f"{cls.__name__}: its __init__ has parameters that are not slots")
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    STOCK_INITS[cls] = cls.__init__
    cls.__init__ = init  # type: ignore[method-assign]
    return cls


def fast_new(cls: type[_T]) -> Callable[..., _T]:
    """A builder of ``cls`` instances for a decoder that builds many (a stored profile's
    digests, facts, stamps): ``build(*values)``, every ``__init__`` field in order, positional,
    none left out, is ``cls(*values)``: the same fields set to the same values, ``init=False``
    ones to their default, and the instance's type is ``cls``.

    It is a twin class with the same slots and no ``__setattr__`` of its own, whose
    ``__init__`` sets each slot by plain assignment (the interpreter's specialized slot
    store, ~10 times cheaper than a slot descriptor's ``__set__``) and then makes the object
    a ``cls`` (``__class__`` assignment, which CPython allows between classes of the same
    layout: the same slots over the same base, checked when the twin is made), then calls
    its ``__post_init__`` if it has one. Refused for a class with a base class, keyword-only
    fields, or slots that are not its fields."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a frozen dataclass with slots")
    if cls.__bases__ != (object,):
        raise TypeError(f"{cls.__name__}: a base class is not supported")
    fields = dataclasses.fields(cast(Any, cls))
    if tuple(f.name for f in fields) != tuple(cls.__dict__["__slots__"]):
        raise TypeError(f"{cls.__name__}: its slots are not its fields")
    names: dict[str, Any] = {"_cls": cls}
    args: list[str] = []
    body: list[str] = []
    for i, f in enumerate(fields):
        if f.kw_only:
            raise TypeError(f"{cls.__name__}.{f.name}: keyword-only fields are not supported")
        if f.init:
            args.append(f.name)
            body.append(f"    self.{f.name} = {f.name}")
        elif f.default is not dataclasses.MISSING:
            names[f"_default{i}"] = f.default
            body.append(f"    self.{f.name} = _default{i}")
        elif f.default_factory is not dataclasses.MISSING:
            names[f"_factory{i}"] = f.default_factory
            body.append(f"    self.{f.name} = _factory{i}()")
    body.append("    self.__class__ = _cls")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")  # on the ``cls`` it is now, as ``cls(...)`` does
    source = f"def __init__(self, {', '.join(args)}):\n" + "\n".join(body) + "\n"
    exec(source, names)  # noqa: S102 - code built above from the class's own field names
    twin = type(
        f"_{cls.__name__}Builder",
        (),
        {"__slots__": cls.__dict__["__slots__"], "__init__": names["__init__"]},
    )
    twin.__module__ = cls.__module__
    BUILDERS[cls] = twin
    return cast(Callable[..., _T], twin)


__all__ = ["BUILDERS", "STOCK_INITS", "fast_init", "fast_new"]
