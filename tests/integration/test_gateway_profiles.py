"""The gateway's profile lookup API (``streams.gateway.profiles_api``) on a real Redis, after a
real pipeline run: the same JSON as ``loom profile get --json``, bearer-token auth, SSCAN
pages of an audience's members; no token configured, no API."""

from __future__ import annotations

import argparse
import asyncio
import io
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

import orjson
import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer
from builders import make_context
from prometheus_client import CollectorRegistry

from resolvers.audiences import Audiences, audience
from resolvers.context import Context
from resolvers.pipeline import run_batch
from resolvers.steps import RawRecord
from schemas.normalize import DEFAULT
from streams.cli import profile as profile_cli
from streams.gateway.app import build_app
from streams.gateway.metrics import GatewayMetrics
from streams.gateway.profiles_api import ProfilesApi
from streams.gateway.server import Gateway
from streams.gateway.sink import MemorySink
from streams.gateway.sources import WriteKeys
from streams.reader import ProfileReader
from streams.redis_store import RedisStore
from streams.settings import load_settings

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
AUDIENCES = Audiences({"signed-up": audience("signed-up", 'traits.first_name != ""')})
T = TypeVar("T")


def _context() -> Context:
    return replace(make_context(), audiences=AUDIENCES)


def signup(i: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"e{i}",
            "type": "signup",
            "channel": "web",
            "occurred_at": "2026-11-20T10:00:00Z",
            "region": "NO",
            "identifiers": {"customer_id": f"C{i}", "email": f"c{i}@example.com"},
            "traits": {"first_name": f"Name{i}"},
        }
    )


@pytest.fixture
def deployment(redis_url: str) -> tuple[redis.Redis, str]:
    client = redis.Redis.from_url(redis_url)
    prefix = f"gwp{uuid.uuid4().hex[:8]}"
    store = RedisStore(client, prefix=prefix)
    records = [RawRecord(signup(i), "touchpoints.raw", 0, i) for i in range(25)]
    run_batch(records, store, _context, max_bytes=65536, config=DEFAULT)
    return client, prefix


def serve(
    client: redis.Redis, prefix: str, scenario: Callable[[TestClient[Any, Any]], Awaitable[T]]
) -> T:
    api = ProfilesApi(ProfileReader(client, prefix), AUDIENCES, TOKEN)
    app = build_app([api], GatewayMetrics.create(CollectorRegistry()), "*")

    async def main() -> T:
        async with TestClient(TestServer(app)) as http:
            return await scenario(http)

    return asyncio.run(main())


def test_a_profile_by_identifier_or_id_is_the_cli_json(
    deployment: tuple[redis.Redis, str], redis_url: str
) -> None:
    client, prefix = deployment

    async def scenario(http: TestClient[Any, Any]) -> tuple[Any, ...]:
        by_email = await http.get("/v1/profiles/email: C3@Example.com ", headers=AUTH)
        doc = await by_email.json()
        by_id = await http.get(f"/v1/profiles/{doc['profile_id']}", headers=AUTH)
        missing = await http.get("/v1/profiles/customer_id:nobody", headers=AUTH)
        invalid = await http.get("/v1/profiles/email:guest", headers=AUTH)
        return by_email.status, doc, await by_id.json(), missing.status, invalid.status

    status, doc, by_id, missing, invalid = serve(client, prefix, scenario)
    assert (status, missing, invalid) == (200, 404, 400)
    assert doc == by_id
    assert doc["identifiers"]["customer_id"] == ["C3"]
    assert doc["audiences"] == ["signed-up"]
    out = io.StringIO()
    args = argparse.Namespace(
        key="customer_id:C3", region=None, json=True, redis_url=redis_url, prefix=prefix
    )
    assert profile_cli.run_get(args, out) == 0
    assert orjson.loads(out.getvalue()) == doc


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}]
)
def test_without_the_token_nothing_is_served(
    deployment: tuple[redis.Redis, str], headers: dict[str, str]
) -> None:
    client, prefix = deployment

    async def scenario(http: TestClient[Any, Any]) -> tuple[int, Any, int]:
        one = await http.get("/v1/profiles/customer_id:C1", headers=headers)
        members = await http.get("/v1/audiences/signed-up/members", headers=headers)
        return one.status, await one.json(), members.status

    status, body, members = serve(client, prefix, scenario)
    assert (status, members) == (401, 401)
    assert body["code"] == "unauthorized"
    assert "C1" not in orjson.dumps(body).decode()


def test_members_are_paginated_by_cursor(deployment: tuple[redis.Redis, str]) -> None:
    client, prefix = deployment

    async def scenario(http: TestClient[Any, Any]) -> tuple[list[str], int, int, int]:
        seen: list[str] = []
        cursor: str | None = "0"
        pages = 0
        while cursor is not None:
            resp = await http.get(
                "/v1/audiences/signed-up/members", params={"cursor": cursor, "count": "5"},
                headers=AUTH,
            )  # fmt: skip
            page = await resp.json()
            seen += page["members"]
            cursor, pages = page["next_cursor"], pages + 1
        unknown = await http.get("/v1/audiences/nope/members", headers=AUTH)
        bad = await http.get("/v1/audiences/signed-up/members?count=0", headers=AUTH)
        return seen, pages, unknown.status, bad.status

    seen, pages, unknown, bad = serve(client, prefix, scenario)
    members = {m.decode() for m in client.smembers(f"{prefix}:v1:audience:signed-up")}  # type: ignore[union-attr]
    assert len(members) == 25
    assert set(seen) == members
    assert pages > 1
    assert (unknown, bad) == (404, 400)


def test_no_token_no_api() -> None:
    with pytest.raises(ValueError, match="needs a token"):
        ProfilesApi(ProfileReader(redis.Redis()), AUDIENCES, "")


def test_the_gateway_mounts_the_api_only_with_a_token(redis_url: str) -> None:
    def routes(**extra: Any) -> set[str]:
        settings = load_settings(redis_url=redis_url, **extra)
        gw = Gateway(settings, WriteKeys.of({}), sink=MemorySink())
        names = {r.name for r in gw.app.router.routes() if r.name}
        if gw.reader is not None:
            gw.reader.client.close()
        return names

    assert not any(name.startswith("profiles.") for name in routes())
    assert {"profiles.get", "profiles.members"} <= routes(gateway_profiles_token=TOKEN)
