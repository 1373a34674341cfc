"""Named tuples built on the hot path in one C call (issue 17).

A ``NamedTuple``'s generated ``__new__`` is a Python function; ``tuple.__new__(cls, values)``
builds the same instance in C. It takes ALL the fields, in their order, and checks neither
their number nor their types: use it only where the values are the class's fields in full (each
call site names the constructor it stands for) and a class's own ``__new__`` has no check the
caller has not made already. Anything else calls the class.
"""

from __future__ import annotations

from typing import Final

#: ``new_tuple(Cls, (field, ...))``: ``Cls(field, ...)`` without its Python ``__new__``.
new_tuple: Final = tuple.__new__
