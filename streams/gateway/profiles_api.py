"""Profile lookup over HTTP, for services that cannot speak Redis (``/v1/profiles``,
``/v1/audiences``).

    GET /v1/profiles/email:jane@example.com     the profile holding an identifier (raw values
    GET /v1/profiles/customer_id:C-1001          are normalized like the pipeline; ``?region=NO``
    GET /v1/profiles/p_3f2a...                   for phone numbers), or a profile by id
    GET /v1/audiences/{name}/members?cursor=0&count=100
        {"audience": name, "members": [...], "next_cursor": "..." | null}

Answers are the snapshot JSON ``loom profile get --json`` prints (merge redirects followed).
Authentication: ``Authorization: Bearer <LOOM_GATEWAY_PROFILES_TOKEN>`` (compared in constant
time). Without a configured token the routes are not mounted: every path answers 404, so a
gateway never serves profiles by accident. Errors use the gateway's shape
(``{"success": false, "code", "message"}``): 401 ``unauthorized``, 400 ``invalid_request``,
404 ``not_found``. Member pages come from ``SSCAN`` (a member may appear on two pages; a
cursor of ``null`` means done).
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any, Final

from aiohttp import web

from resolvers.audiences import Audiences
from streams.gateway.errors import BadRequestError, NotFoundError, UnauthorizedError
from streams.reader import InvalidIdentifierError, ProfileReader, split_key

MAX_PAGE: Final = 1000
DEFAULT_PAGE: Final = 100


class ProfilesApi:
    """The front door (``streams.gateway.app.FrontDoor``) of the lookup API."""

    name = "profiles"
    browser_routes: Final = frozenset[str]()  # server to server: no CORS

    def __init__(self, reader: ProfileReader, audiences: Audiences, token: str) -> None:
        if not token:
            raise ValueError("the profiles API needs a token")
        self.reader, self.audiences = reader, audiences
        self._token = token.encode()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/profiles/{key}", self.profile, name="profiles.get"),
            web.get("/v1/audiences/{name}/members", self.members, name="profiles.members"),
        ]

    def _authorize(self, request: web.Request) -> None:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        # a header's bytes 0x80-0xFF arrive as surrogate escapes: encoded back, never an error
        given_bytes = given.encode("utf-8", "surrogateescape")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given_bytes, self._token):
            raise UnauthorizedError("a valid bearer token is required")

    async def profile(self, request: web.Request) -> web.Response:
        self._authorize(request)
        id_type, value = split_key(request.match_info["key"])
        region = request.query.get("region")
        try:
            if id_type is None:
                doc = await asyncio.to_thread(self.reader.get, value)
            else:
                doc = await asyncio.to_thread(self.reader.lookup, id_type, value, region)
        except InvalidIdentifierError as exc:
            raise BadRequestError(str(exc)) from None
        if doc is None:
            raise NotFoundError("no profile for that key")
        return web.json_response(doc)

    async def members(self, request: web.Request) -> web.Response:
        self._authorize(request)
        name = request.match_info["name"]
        if name not in self.audiences.by_name:
            raise NotFoundError("no such audience")
        try:
            cursor = int(request.query.get("cursor", "0"))
            count = int(request.query.get("count", str(DEFAULT_PAGE)))
        except ValueError:
            raise BadRequestError("cursor and count are integers") from None
        if cursor < 0 or not 1 <= count <= MAX_PAGE:
            raise BadRequestError(f"cursor >= 0 and 1 <= count <= {MAX_PAGE}")
        key = self.reader.keys.audience(name)
        following, page = await asyncio.to_thread(
            self.reader.client.sscan, key, cursor, None, count
        )
        body: dict[str, Any] = {
            "audience": name,
            "members": sorted(m.decode() if isinstance(m, bytes) else m for m in page),
            "next_cursor": str(following) if following else None,
        }
        return web.json_response(body)
