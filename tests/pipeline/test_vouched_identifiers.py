"""The replay's blocklist (``IdentityRules.blocks``) is not asked again of the identifiers the
batch's normalization accepted under the same predicate (``run_batch`` vouches for them: issue
17.2, ~9k instructions per new identifier), and is still asked of anything else."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from builders import make_context
from pipeline_helpers import record

from resolvers.context import Context
from resolvers.identity.rules import IdentityRules
from resolvers.pipeline import PROFILES, run_batch
from resolvers.store import InMemoryStore
from schemas.normalize import DEFAULT, NormalizeConfig
from streams.runtime import with_blocklist

EVENTS = [
    {
        "event_id": f"evt-{i}",
        "type": "page_view",
        "channel": "web",
        "occurred_at": "2026-11-22T10:00:00Z",
        "region": "NO",
        "identifiers": identifiers,
    }
    for i, identifiers in enumerate(
        [
            {"email": "Kari.Nordmann@Example.no", "anonymous_id": "dev-1"},
            {"customer_id": " C-42 ", "phone": "+47 912 34 567"},
            {"social_handle": "@Kari_N", "card_token": "tok_1"},
        ]
    )
]


def _asked(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """The keys the replay asks ``IdentityRules.blocks`` (its memo's misses)."""
    asked: list[tuple[str, str]] = []
    blocks = IdentityRules.blocks

    def recording(self: IdentityRules, key: tuple[str, str]) -> bool:
        asked.append(key)
        return blocks(self, key)

    monkeypatch.setattr(IdentityRules, "blocks", recording)
    return asked


def _context(rules: IdentityRules) -> Callable[[], Context]:
    base = replace(make_context(), rules=rules)
    return lambda: base


def test_identifiers_normalization_accepted_are_not_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked = _asked(monkeypatch)
    result = run_batch(
        [record(e, i) for i, e in enumerate(EVENTS)],
        InMemoryStore(),
        _context(with_blocklist(IdentityRules())),  # the workers' rules
        max_bytes=64 * 1024,
        config=DEFAULT,
        lane=PROFILES,
    )
    assert result.processed == len(EVENTS)
    assert asked == []


def test_identifiers_normalized_under_another_configuration_are_still_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A configuration that lets ``guest`` through normalizes it; the replay's blocklist (the
    default one) still leaves it out: the event links nobody."""
    asked = _asked(monkeypatch)
    config = NormalizeConfig(blocked_values=frozenset())
    event = {**EVENTS[0], "identifiers": {"customer_id": "guest"}}
    result = run_batch(
        [record(event)],
        InMemoryStore(),
        _context(with_blocklist(IdentityRules())),
        max_bytes=64 * 1024,
        config=config,
        lane=PROFILES,
    )
    assert set(asked) == {("customer_id", "guest")}
    assert result.outcomes == {("page_view", "unattributed"): 1}
