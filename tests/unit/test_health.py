"""HealthServer over real HTTP on 127.0.0.1 (ephemeral port) with fake checks."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

from prometheus_client import CollectorRegistry

from streams.health import HealthServer
from streams.metrics import WorkerMetrics


def get(port: int, path: str) -> tuple[int, str, str]:
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


async def fetch(port: int, path: str) -> tuple[int, str, str]:
    return await asyncio.to_thread(get, port, path)


class Flag:
    def __init__(self, value: bool) -> None:
        self.value = value

    def __call__(self) -> bool:
        return self.value


def test_readyz_is_503_with_failing_checks_until_all_pass() -> None:
    async def main() -> None:
        kafka, partitions = Flag(True), Flag(False)

        async def redis_ok() -> bool:
            await asyncio.sleep(0)
            return True

        def broken() -> bool:
            raise ConnectionError("down")

        server = HealthServer(
            "127.0.0.1", 0, CollectorRegistry(),
            {"kafka": kafka, "redis": redis_ok, "partitions": partitions},
        )  # fmt: skip
        await server.start()
        try:
            status, ctype, body = await fetch(server.port, "/readyz")
            assert status == 503
            assert ctype.startswith("application/json")
            doc = json.loads(body)
            assert doc == {
                "ready": False,
                "checks": {"kafka": True, "redis": True, "partitions": False},
                "failing": ["partitions"],
            }
            partitions.value = True
            status, _, body = await fetch(server.port, "/readyz")
            assert (status, json.loads(body)["ready"]) == (200, True)
            kafka.value = False
            status, _, body = await fetch(server.port, "/readyz")
            assert (status, json.loads(body)["failing"]) == (503, ["kafka"])
        finally:
            await server.stop()

        # an exception in a check is a failing check, not a 500
        server = HealthServer("127.0.0.1", 0, CollectorRegistry(), {"redis": broken})
        await server.start()
        try:
            status, _, body = await fetch(server.port, "/readyz")
            assert (status, json.loads(body)["failing"]) == (503, ["redis"])
        finally:
            await server.stop()

    asyncio.run(main())


def test_slow_async_check_times_out_as_failing() -> None:
    async def main() -> None:
        async def hangs() -> bool:
            await asyncio.sleep(30)
            return True

        server = HealthServer(
            "127.0.0.1", 0, CollectorRegistry(), {"kafka": hangs}, check_timeout_s=0.2
        )
        await server.start()
        try:
            started = time.monotonic()
            status, _, body = await fetch(server.port, "/readyz")
            assert time.monotonic() - started < 5
            assert (status, json.loads(body)["failing"]) == (503, ["kafka"])
        finally:
            await server.stop()

    asyncio.run(main())


def test_livez_reports_a_blocked_loop() -> None:
    async def main() -> None:
        server = HealthServer(
            "127.0.0.1", 0, CollectorRegistry(), {}, heartbeat_s=0.05, max_loop_lag_s=0.3
        )
        await server.start()
        try:
            status, _, body = await fetch(server.port, "/livez")
            assert status == 200
            assert json.loads(body)["alive"] is True
            # block the loop while a request is waiting: it is answered late, and as not alive
            pending = asyncio.get_running_loop().run_in_executor(None, get, server.port, "/livez")
            time.sleep(0.8)  # noqa: ASYNC251 (blocking the loop on purpose)
            status, _, body = await pending
            assert status == 503
            assert json.loads(body)["loop_lag_s"] >= 0.3
            await asyncio.sleep(0.2)
            status, _, _ = await fetch(server.port, "/livez")
            assert status == 200
        finally:
            await server.stop()

    asyncio.run(main())


def test_metrics_serves_the_worker_registry_in_prometheus_text_format() -> None:
    async def main() -> None:
        m = WorkerMetrics.create(CollectorRegistry(), lane="inventory")
        m.count_event("pos_sale", "ok", 7)
        server = HealthServer("127.0.0.1", 0, m.registry, {})
        await server.start()
        try:
            status, ctype, body = await fetch(server.port, "/metrics")
        finally:
            await server.stop()
        assert status == 200
        assert ctype.startswith("text/plain")
        assert 'loom_events_total{lane="inventory",outcome="ok",type="pos_sale"} 7.0' in body

    asyncio.run(main())
