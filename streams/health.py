"""Worker health and metrics over HTTP: ``/livez``, ``/readyz``, ``/metrics``.

Built on aiohttp and served from the worker's own event loop, on
purpose: a request is answered only when that loop runs, so a blocked loop fails ``/livez`` the
way an orchestrator should see it. A stdlib ``http.server`` thread would keep answering while
the loop is stuck. A heartbeat task also measures loop lag (how late its last wake-up was, or
how overdue it is): ``/livez`` fails when that exceeds ``max_loop_lag_s``, e.g. right after
the loop was blocked by a synchronous call.

``/readyz`` runs every check concurrently (sync or async callables returning bool; an exception
counts as failing, and so does an async check that exceeds ``check_timeout_s``) and answers 200
only when all pass, else 503 with the failing check names. A sync check runs on the loop itself,
without a timeout: it must be a quick, non-blocking read (e.g. of an assignment); anything doing
I/O is an async check that runs its blocking call in a thread. Checks typically are ``kafka``
(reachable), ``redis`` (reachable) and ``partitions`` (assigned). Responses carry names and
booleans only.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["Check", "HealthServer"]

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[bool]] | Callable[[], bool]


class HealthServer:
    """``HealthServer(host, port, registry, checks)``; ``await start()``, ``await stop()``.

    ``port=0`` binds an ephemeral port; :attr:`port` tells which after ``start``."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        checks: Mapping[str, Check],
        *,
        check_timeout_s: float = 2.0,
        heartbeat_s: float = 0.5,
        max_loop_lag_s: float = 10.0,
    ) -> None:
        self._host = host
        self._port = port
        self._registry = registry
        self._checks = dict(checks)
        self._check_timeout_s = check_timeout_s
        self._heartbeat_s = heartbeat_s
        self._max_loop_lag_s = max_loop_lag_s
        self._runner: web.AppRunner | None = None
        self._beat_task: asyncio.Task[None] | None = None
        self._last_beat = time.monotonic()
        self._last_lateness = 0.0
        self._bound_port: int | None = None

    @property
    def port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("server not started")
        return self._bound_port

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def start(self) -> None:
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        self._runner = runner
        addresses: list[Any] = list(runner.addresses)
        self._bound_port = int(addresses[0][1]) if addresses else self._port
        self._last_beat = time.monotonic()
        self._beat_task = asyncio.create_task(self._beat())
        log.info("health server on %s:%d", self._host, self._bound_port)

    async def stop(self) -> None:
        if self._beat_task is not None:
            self._beat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat_task
            self._beat_task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _beat(self) -> None:
        while True:
            due = time.monotonic() + self._heartbeat_s
            await asyncio.sleep(self._heartbeat_s)
            self._last_beat = time.monotonic()
            self._last_lateness = max(0.0, self._last_beat - due)

    def loop_lag_s(self) -> float:
        """How late the loop last woke the heartbeat, or how overdue it is now."""
        overdue = time.monotonic() - self._last_beat - self._heartbeat_s
        return max(0.0, overdue, self._last_lateness)

    async def _livez(self, _request: web.Request) -> web.Response:
        lag = self.loop_lag_s()
        ok = lag <= self._max_loop_lag_s
        return web.json_response(
            {"alive": ok, "loop_lag_s": round(lag, 3)}, status=200 if ok else 503
        )

    async def _run_check(self, check: Check) -> bool:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, self._check_timeout_s)
        except Exception:  # a failing probe is a "no", never a 500
            log.debug("readiness check raised", exc_info=True)
            return False
        return result is True

    async def run_checks(self) -> dict[str, bool]:
        names = list(self._checks)
        results = await asyncio.gather(*(self._run_check(self._checks[n]) for n in names))
        return dict(zip(names, results, strict=True))

    async def _readyz(self, _request: web.Request) -> web.Response:
        results = await self.run_checks()
        failing = sorted(n for n, ok in results.items() if not ok)
        ready = not failing
        return web.json_response(
            {"ready": ready, "checks": results, "failing": failing},
            status=200 if ready else 503,
        )

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
