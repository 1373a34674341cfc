"""Audiences: computed segments of profiles, defined in a file, kept in real time.

* :mod:`~resolvers.audiences.language` the expression language's tokens and parser;
* :mod:`~resolvers.audiences.fields` what an expression can read, typed, from a snapshot and
  a clock;
* :mod:`~resolvers.audiences.compile` type checking and evaluation (three-valued);
* :mod:`~resolvers.audiences.definitions` the audiences file and a snapshot's memberships.

Membership changes are the profiles lane's effects (``resolvers.lanes.profiles``: each write,
merges, erasures) and the scheduled pass's (``streams.audience_refresh``).
"""

from resolvers.audiences.compile import Expression, compile_expression
from resolvers.audiences.definitions import (
    NO_AUDIENCES,
    Audience,
    AudienceFileError,
    Audiences,
    audience,
    from_mapping,
    load_audiences,
)
from resolvers.audiences.fields import CATALOG, Env
from resolvers.audiences.language import ExpressionError

__all__ = [
    "CATALOG",
    "NO_AUDIENCES",
    "Audience",
    "AudienceFileError",
    "Audiences",
    "Env",
    "Expression",
    "ExpressionError",
    "audience",
    "compile_expression",
    "from_mapping",
    "load_audiences",
]
