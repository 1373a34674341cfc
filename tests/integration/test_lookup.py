"""The profile reader against real Redis, after a real pipeline run: lookup by any identifier.

Round trips are counted on the client (every command goes through ``execute_command``), so
"one round trip per lookup" is asserted, not assumed.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from builders import make_context

from resolvers.pipeline import run_batch
from resolvers.steps import RawRecord
from resolvers.store import Write, profile_ref
from schemas.normalize import DEFAULT
from schemas.touchpoint import dump_touchpoint
from streams.cli import profile as profile_cli
from streams.reader import InvalidIdentifierError, ProfileReader
from streams.redis_store import RedisStore
from streams.simulate import Simulator

pytestmark = pytest.mark.integration


def records(events: list[bytes]) -> list[RawRecord]:
    return [
        RawRecord(value=v, topic="touchpoints.raw", partition=0, offset=i)
        for i, v in enumerate(events)
    ]


def run(store: RedisStore, events: list[dict[str, Any]] | list[bytes], size: int = 100) -> None:
    raw = [e if isinstance(e, bytes) else orjson.dumps(e) for e in events]
    for start in range(0, len(raw), size):
        run_batch(
            records(raw[start : start + size]), store, make_context, max_bytes=65536, config=DEFAULT
        )


class CountingRedis(redis.Redis):
    """A client that counts commands sent (a pipeline's commands count once per execute)."""

    calls = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        type(self).calls += 1
        return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]


@pytest.fixture
def counting(redis_url: str) -> type[CountingRedis]:
    return type("Counting", (CountingRedis,), {"calls": 0})


def ev(event_id: str, ids: dict[str, str], at: str = "2026-11-20T10:00:00+01:00") -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "signup",
        "channel": "web",
        "occurred_at": at,
        "region": "NO",
        "identifiers": ids,
        "consent": {"analytics": True, "personalization": True},
    }


def variants(id_type: str, value: str) -> list[str]:
    """Raw spellings a caller may use that the pipeline normalizes to ``value``."""
    if id_type == "email":
        return [value, f"  {value.upper()} ", value.title()]
    if id_type == "phone":
        return [value, f" {value} ", f"{value[:3]} {value[3:6]} {value[6:]}", "00" + value[1:]]
    if id_type == "social_handle":
        return [value, f"@{value.upper()}", f" @{value} "]
    if id_type in ("customer_id", "loyalty_id"):
        return [value, f"  {value}\t"]
    return [value]  # card_token, anonymous_id: kept exactly as sent


def live_snapshots(client: Any, prefix: str) -> dict[str, dict[str, Any]]:
    out = {}
    for pid in client.smembers(f"{prefix}:v1:profile-index"):
        raw = client.hget(f"{prefix}:v1:profile:{pid.decode()}", "d")
        assert raw is not None
        out[pid.decode()] = orjson.loads(raw)
    return out


def test_lookup_by_every_identifier_is_one_round_trip(
    redis_url: str, redis_prefix: str, counting: type[CountingRedis]
) -> None:
    client = counting.from_url(redis_url)
    store = RedisStore(client, prefix=redis_prefix)
    sim = Simulator(seed=7, customers=40, stores=3, skus=20)
    events = [dump_touchpoint(tp) for tp in itertools.islice(sim.events(), 600)]
    run(store, events)
    snapshots = live_snapshots(client, redis_prefix)
    assert len(snapshots) > 20

    reader = ProfileReader(client, redis_prefix)
    reader.get("warm-up")  # loads the script once; every later call is a single EVALSHA
    checked = 0
    for pid, snap in snapshots.items():
        for id_type, values in snap["identifiers"].items():
            for value in values:
                region = "NO" if id_type == "phone" else None
                for raw in variants(id_type, value):
                    before = counting.calls
                    found = reader.lookup(id_type, raw, region=region)
                    assert counting.calls - before == 1
                    assert found is not None, (id_type, pid)
                    assert found["profile_id"] == pid
                    assert found == snap
                    checked += 1
        before = counting.calls
        assert reader.get(pid) == snap
        assert counting.calls - before == 1
    assert checked > 100
    types = {t for s in snapshots.values() for t in s["identifiers"]}
    assert {"email", "phone", "anonymous_id", "customer_id"} <= types


def test_absorbed_profile_id_and_its_identifiers_lead_to_the_survivor(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    store = RedisStore(redis_client, prefix=redis_prefix)
    run(store, [ev("e1", {"anonymous_id": "anon-A", "email": "a@example.com"})])
    run(
        store,
        [
            ev(
                "e2",
                {"customer_id": "C-1", "email": "b@example.com"},
                at="2026-11-20T11:00:00+01:00",
            )
        ],
    )
    run(
        store,
        [
            ev(
                "e3",
                {"anonymous_id": "anon-A", "customer_id": "C-1"},
                at="2026-11-20T12:00:00+01:00",
            )
        ],
    )
    reader = ProfileReader(redis_client, redis_prefix)
    survivor = reader.lookup("email", "A@example.com")
    assert survivor is not None
    (absorbed,) = survivor["merged_from"]
    assert (
        redis_client.hget(f"{redis_prefix}:v1:profile:{absorbed}", "r")
        == survivor["profile_id"].encode()
    )
    assert reader.get(absorbed) == survivor
    for id_type, raw in [
        ("email", " b@EXAMPLE.com"),
        ("customer_id", "C-1 "),
        ("anonymous_id", "anon-A"),
    ]:
        assert reader.lookup(id_type, raw) == survivor
    assert survivor["identifiers"]["email"] == ["a@example.com", "b@example.com"]


def test_redirect_chains_are_followed_up_to_eight_hops(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    store = RedisStore(redis_client, prefix=redis_prefix)
    names = [f"p_h{i}" for i in range(11)]
    writes = [Write(profile_ref(a), 2, {"r": b.encode()}) for a, b in itertools.pairwise(names)]
    snap = {"profile_id": names[-1], "version": 1}
    writes.append(Write(profile_ref(names[-1]), 1, {"d": orjson.dumps(snap), "s": b"{}"}))
    from resolvers.store import Commit

    assert store.commit(Commit({}, (), blind_writes=writes)).ok
    reader = ProfileReader(redis_client, redis_prefix)
    assert reader.get(names[-1]) == snap
    assert reader.get(names[2]) == snap  # 8 hops
    assert reader.get(names[1]) is None  # 9 hops: beyond the limit
    assert reader.get("p_unknown") is None


def test_unknown_and_invalid_identifiers(redis_client: redis.Redis, redis_prefix: str) -> None:
    reader = ProfileReader(redis_client, redis_prefix)
    assert reader.lookup("email", "nobody@example.com") is None
    for id_type, raw in [
        ("email", "not-an-email"),
        ("phone", "1234567890"),
        ("customer_id", "guest"),
        ("shoe_size", "42"),
    ]:
        with pytest.raises(InvalidIdentifierError) as info:
            reader.lookup(id_type, raw)
        assert raw not in str(info.value)  # the message never carries the value


def _cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="loom")
    profile_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


def test_cli_get_and_export(
    redis_url: str,
    redis_client: redis.Redis,
    redis_prefix: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = RedisStore(redis_client, prefix=redis_prefix)
    run(
        store,
        [
            ev(
                "e1", {"email": "jane@example.com", "customer_id": "C-7", "phone": "+47 912 34 567"}
            ),
            ev("e2", {"email": "ola@example.com"}),
            ev("e3", {"anonymous_id": "anon-9"}),
        ],
    )
    conn = ("--redis-url", redis_url, "--prefix", redis_prefix)

    args = _cli("profile", "get", "email: Jane@Example.com", "--json", *conn)
    assert args.func(args) == 0
    jane = orjson.loads(capsys.readouterr().out)
    assert jane["identifiers"]["customer_id"] == ["C-7"]

    args = _cli("profile", "get", "customer_id:C-7", *conn)
    assert args.func(args) == 0
    human = capsys.readouterr().out
    assert human.startswith(f"Profile {jane['profile_id']}  (version ")
    assert "jane@example.com" in human
    assert "+4791234567" in human

    args = _cli("profile", "get", jane["profile_id"], "--json", *conn)
    assert args.func(args) == 0
    assert orjson.loads(capsys.readouterr().out) == jane

    args = _cli("profile", "get", "phone:912 34 567", "--region", "NO", "--json", *conn)
    assert args.func(args) == 0
    assert orjson.loads(capsys.readouterr().out)["profile_id"] == jane["profile_id"]

    args = _cli("profile", "get", "email:missing@example.com", *conn)
    assert args.func(args) == 1
    assert "no profile" in capsys.readouterr().err
    args = _cli("profile", "get", "email:guest", *conn)
    assert args.func(args) == 2
    assert "guest" not in capsys.readouterr().err

    out = tmp_path / "profiles.jsonl"
    args = _cli("profiles", "export", "--out", str(out), *conn)
    assert args.func(args) == 0
    assert "exported 3 profiles" in capsys.readouterr().err
    lines = [orjson.loads(line) for line in out.read_text().splitlines()]
    assert {p["profile_id"] for p in lines} == set(live_snapshots(redis_client, redis_prefix))
    assert jane in lines

    args = _cli("profiles", "export", *conn)
    assert args.func(args) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 3
    assert "exported 3 profiles in" in captured.err
