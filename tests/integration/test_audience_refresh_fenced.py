"""``loom audiences refresh`` commits as the profiles lane does, so it is fenced as the lane's
workers are (ADR 0044): it refuses while a ``loom rebuild --lane profiles`` holds the lane's
lease, a rebuild that starts during its pass refuses its next commit, and a Redis that lost
the lane's state (another generation) takes nothing from it. Before, its store checked no
generation: it wrote memberships and ``audiences.changes`` into a lane being rebuilt.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import pytest
import redis
from builders import NOW
from test_audience_pass_clock import DUE, changes, event, lane, members

from resolvers.timefmt import format_time
from streams.cli import audiences as audiences_cli
from streams.cli.main import main
from streams.redis_keys import Keys
from streams.redis_store import RedisStore

AUDIENCES_TOML = '[audiences.reminder]\nexpression = "days_since_last_order between 150 and 200"\n'


@pytest.fixture
def refresh(
    redis_url: str, redis_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """The command's argv, with an audiences file of the reminder."""
    file = tmp_path / "audiences.toml"
    file.write_text(AUDIENCES_TOML)
    monkeypatch.setenv("LOOM_AUDIENCES_FILE", str(file))
    return ["audiences", "refresh", "--redis-url", redis_url, "--prefix", redis_prefix]


@pytest.fixture
def store(redis_client: redis.Redis, redis_prefix: str) -> RedisStore:
    """The buyer's order at NOW (the reminder due at DUE), and the lane's generation (as a
    worker's start check leaves it)."""
    made = RedisStore(redis_client, prefix=redis_prefix)
    line = {"sku": "S-1", "quantity": 1, "unit_price": "100.00"}
    order = {"order_id": "o1", "total": "100.00", "currency": "NOK", "lines": [line]}
    lane(made, event("o1", NOW, type="order_completed", order=order), 0, NOW)
    redis_client.set(Keys(redis_prefix).generation, "g-1")
    return made


def test_a_refresh_started_during_a_rebuild_refuses_and_writes_nothing(
    store: RedisStore,
    redis_client: redis.Redis,
    redis_prefix: str,
    refresh: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    redis_client.set(Keys(redis_prefix).rebuild_lease("profiles"), "rebuild-token", ex=60)
    at = format_time(DUE + timedelta(minutes=1))
    assert main([*refresh, "--now", at]) == 3
    err = capsys.readouterr().err
    assert "loom rebuild --lane profiles" in err, err
    assert err.count("\n") == 1, err  # one line
    assert members(redis_client, store) == set()
    assert changes(redis_client, store) == []


@pytest.mark.parametrize(
    ("during", "said"),
    [
        # a rebuild starts: its lease taken at the first batch's clock read
        ("lease", "loom rebuild --lane profiles` holds the lane's lease in Redis"),
        # the state is replaced (another generation)
        ("generation", "no longer holds generation g-1"),
    ],
)
def test_what_happens_during_the_pass_refuses_its_commits(
    during: str,
    said: str,
    store: RedisStore,
    redis_client: redis.Redis,
    redis_prefix: str,
    refresh: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    keys = Keys(redis_prefix)

    class Clock(datetime):  # each batch reads the clock
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Any:
            if during == "lease":
                redis_client.set(keys.rebuild_lease("profiles"), "r", ex=60)
            else:
                redis_client.set(keys.generation, "g-2")
            return DUE + timedelta(minutes=1)

    monkeypatch.setattr(audiences_cli, "datetime", Clock)
    assert main(refresh) == 3
    err = capsys.readouterr().err
    assert said in err, err
    assert "stopped after 0 profiles, the batch refused" in err, err
    assert members(redis_client, store) == set()
    assert changes(redis_client, store) == []


def test_without_a_rebuild_the_refresh_moves_the_buyer(
    store: RedisStore, redis_client: redis.Redis, refresh: list[str]
) -> None:
    pid = next(iter(redis_client.smembers(store.keys.profile_index))).decode()  # type: ignore[call-overload]
    assert main([*refresh, "--now", format_time(DUE + timedelta(minutes=1))]) == 0
    assert members(redis_client, store) == {pid}
    assert changes(redis_client, store) == ["reminder:enter"]
