"""Builders shared by every test tier (``tests/`` is on ``sys.path`` through its conftest).

Import as ``from builders import make_context``; ``pipeline_helpers`` re-exports them for the
pipeline tier.
"""

from __future__ import annotations

from datetime import UTC, datetime

from resolvers.consent import ConsentPolicy
from resolvers.context import Context, TopicNames
from resolvers.identity.rules import IdentityRules
from schemas.normalize import DEFAULT, is_blocked

#: The fixed "now" of batches built by the tests.
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def make_context(now: datetime = NOW) -> Context:
    """A batch context with the default identity rules and consent policy, no decode cache."""
    rules = IdentityRules(is_blocked=lambda t, v: is_blocked(t, v, DEFAULT))
    return Context(
        rules=rules, policy=ConsentPolicy(), topics=TopicNames(), salt=b"test-salt", now=now
    )
