"""The worker's audience pass logs a crash (a bug) without the exception's text: it may quote a
profile's traits."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
import redis

from streams import audience_schedule
from streams.redis_store import RedisStore
from streams.settings import LoomSettings


def test_a_crashed_pass_is_logged_without_the_profiles_data(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    email = "jane.doe@example.com"
    stopping = asyncio.Event()

    def crash(*_: Any) -> None:
        stopping.set()  # one pass, then the loop ends
        raise KeyError(email)  # a bug in the pass, quoting a trait

    monkeypatch.setattr(audience_schedule, "_run_once", crash)
    rt = SimpleNamespace(
        store=RedisStore(redis.Redis(), prefix="p"), settings=LoomSettings(audiences_refresh_s=60)
    )

    async def main() -> None:
        await audience_schedule.run(rt, stopping)  # type: ignore[arg-type]

    with caplog.at_level("DEBUG"):
        asyncio.run(main())
    assert email not in caplog.text
    [line] = [r for r in caplog.records if r.name == "streams.audience_schedule"]
    assert "audience pass crashed (KeyError at " in line.getMessage()
    assert line.exc_info is None
