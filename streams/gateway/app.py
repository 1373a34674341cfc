"""The gateway's aiohttp application: front doors mounted side by side, and what they share.

A front door is a set of routes for one inbound format (:class:`FrontDoor`): the Segment API
today (:mod:`streams.gateway.segment_api`), Shopify webhooks next, each with its own mapping
module in :mod:`schemas.inbound`. The app adds, for all of them: the error answers of
:mod:`streams.gateway.errors`, request metrics labelled by front door (taken from the route
name, ``"<front door>.<route>"``), CORS for the routes browsers call (``browser_routes``), and
admission (:func:`admit`: at most so many requests with a body at once, refused before their
bodies are read).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from aiohttp import web
from aiohttp.typedefs import Middleware

from streams.errors import classify
from streams.gateway.errors import GatewayError, OverloadedError
from streams.gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Headers browsers may send cross-origin: the Segment SDK's, gzip bodies, and RudderStack's
#: browser SDK's ``AnonymousId`` (base64 of the anonymous id, sent with every event; the body
#: has it too). A header missing here fails the preflight and the browser never sends.
CORS_ALLOW_HEADERS = "Authorization, Content-Type, Content-Encoding, X-Retry-Count, AnonymousId"
CORS_MAX_AGE_S = 86400


class FrontDoor(Protocol):
    """One inbound format's routes. ``browser_routes``: the names of those browsers call
    (answered with CORS headers and preflights); any other route, of this door or another,
    gets neither (empty for server-to-server doors)."""

    @property
    def name(self) -> str: ...

    @property
    def browser_routes(self) -> frozenset[str]: ...

    def routes(self) -> list[web.RouteDef]: ...


def build_app(
    front_doors: Sequence[FrontDoor],
    metrics: GatewayMetrics,
    cors_origins: str,
    *,
    max_requests: int | None = None,
) -> web.Application:
    """``max_requests``: requests with a body taken at once (:func:`admit`); ``None``: any."""
    browser_routes = frozenset(name for d in front_doors for name in d.browser_routes)
    middlewares = [
        cors(browser_routes, parse_origins(cors_origins)),
        answer_errors,
        observe(metrics),
    ]
    if max_requests is not None:
        middlewares.append(admit(max_requests))
    app = web.Application(
        middlewares=middlewares,
        # bodies are decompressed by streams.gateway.body, within the front door's limit
        handler_args={"auto_decompress": False},
    )
    for door in front_doors:
        app.add_routes(door.routes())
    return app


def parse_origins(setting: str) -> frozenset[str] | None:
    """``None`` for any origin (``*``), else the set of allowed origins."""
    origins = {o.strip().rstrip("/") for o in setting.split(",") if o.strip()}
    return None if "*" in origins else frozenset(origins)


def cors(browser_routes: frozenset[str], origins: frozenset[str] | None) -> Middleware:
    """CORS for the routes browsers call (``browser_routes``, by name) and nothing else: a
    preflight is answered here when the request it announces (its method, on its path) would
    reach one of them, and their every answer (errors included, so a browser can read a 429)
    carries ``Access-Control-Allow-Origin``. Any other route, and a path no route serves, gets
    no CORS headers. Credentials are never allowed: the write key authenticates, not cookies."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if await reached(request) not in browser_routes:
            return await handler(request)
        origin = request.headers.get("Origin")
        allowed = "*" if origins is None else origin if origin in origins else None
        if request.method == "OPTIONS":
            response: web.StreamResponse = web.Response(status=204 if allowed else 403)
            if allowed:
                response.headers["Access-Control-Allow-Methods"] = "POST, GET, OPTIONS"
                response.headers["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
                response.headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE_S)
        else:
            response = await handler(request)
        if allowed:
            response.headers["Access-Control-Allow-Origin"] = allowed
            response.headers["Access-Control-Expose-Headers"] = "Retry-After"
        if origins is not None:  # added to what the route's answer already varies on
            vary = response.headers.get("Vary")
            response.headers["Vary"] = f"{vary}, Origin" if vary else "Origin"
        return response

    return middleware


async def reached(request: web.Request) -> str | None:
    """The name of the route a request reaches; for a preflight (an ``OPTIONS`` with an
    ``Access-Control-Request-Method``), the one the request it announces would: that method on
    its path. An ``OPTIONS`` naming no method is not a preflight (Fetch): it is routed as it is."""
    announced = request.headers.get("Access-Control-Request-Method")
    if request.method != "OPTIONS" or not announced:
        return request.match_info.route.name
    return (await request.app.router.resolve(request.clone(method=announced))).route.name


def observe(metrics: GatewayMetrics) -> Middleware:
    """Count every answer by front door and code, and time it."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.name or ""
        door = route.partition(".")[0] if "." in route else "none"
        start = time.perf_counter()
        code = "internal"
        try:
            response = await handler(request)
            code = "ok" if response.status < 400 else f"http_{response.status}"
            return response
        except GatewayError as exc:
            code = exc.code
            raise
        except web.HTTPException as exc:
            code = f"http_{exc.status}"
            raise
        finally:
            metrics.requests.labels(door, code).inc()
            metrics.request_seconds.labels(door).observe(time.perf_counter() - start)

    return middleware


def admit(limit: int) -> Middleware:
    """At most ``limit`` requests with a body at once, counted from when their headers arrive
    (the handler runs before the body is read) to their answer; one more is answered 429 with
    Retry-After without reading its body. The bodies held (each within the front door's
    limit) are so bounded before anything else is: many slow or concurrent large posts cannot
    exhaust memory before the in-flight check of the events sees them."""
    active = 0

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal active
        if not request.body_exists:
            return await handler(request)
        if active >= limit:
            raise OverloadedError(f"{limit} requests are being received; try again shortly")
        active += 1
        try:
            return await handler(request)
        finally:
            active -= 1

    return middleware


@web.middleware
async def answer_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A :class:`GatewayError` becomes its Segment-shaped answer; a bug becomes a 500 that
    says nothing of the request (and is logged)."""
    try:
        return await handler(request)
    except GatewayError as exc:
        return exc.response()
    except web.HTTPException:
        raise
    except Exception as exc:
        route = request.match_info.route.resource
        where = route.canonical if route is not None else "?"  # the route, never the path: it
        # has PII; and the error's class and where it was raised, never its text or traceback
        # (a bug's exception may quote the request: an e-mail address, a phone number)
        log.error(
            "gateway: unexpected error on %s %s: %s",
            request.method,
            where,
            classify(exc).describe(),
        )
        return web.json_response(
            {"success": False, "code": "internal", "message": "internal error"}, status=500
        )
