"""One ``loom gateway`` process: the Kafka sink, the front doors, the HTTP and ops servers.

The Segment door is always mounted; the Shopify door when shops are configured, with its memory
on the deployment's Redis (then ``/readyz`` also checks Redis).

:class:`Gateway` is started and stopped inside a running event loop (tests and the benchmark
use it that way, on port 0); :func:`run_gateway` runs one until SIGTERM/SIGINT. Stopping is
graceful: the listener closes, requests in progress get their answer (up to the ack timeout),
then the producer flushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web
from confluent_kafka import KafkaException
from prometheus_client import CollectorRegistry

from schemas.errors import LoomError
from streams import redis_clients
from streams.gateway.app import FrontDoor, build_app
from streams.gateway.metrics import GatewayMetrics
from streams.gateway.profiles_api import ProfilesApi
from streams.gateway.segment_api import SegmentApi
from streams.gateway.shopify_api import ShopifyWebhooks
from streams.gateway.shopify_shops import Shops
from streams.gateway.sink import KafkaSink, Sink
from streams.gateway.sources import GatewayConfig, WriteKeys
from streams.health import Check, HealthServer
from streams.reader import ProfileReader
from streams.runtime import configured_audiences
from streams.settings import ConfigError, LoomSettings
from streams.shopify_memory import RedisShopifyMemory, ShopifyMemory
from streams.topics import ensure_topics

log = logging.getLogger(__name__)


class GatewayStartError(LoomError):
    """The gateway could not start (a port in use, an address it cannot bind): one line."""


class Gateway:
    """``await start()``, ``await stop()``; :attr:`url` once started."""

    def __init__(
        self,
        settings: LoomSettings,
        keys: WriteKeys,
        *,
        shops: Shops | None = None,
        memory: ShopifyMemory | None = None,
        sink: Sink | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.sink: Sink = sink if sink is not None else KafkaSink(settings)
        self.metrics = GatewayMetrics.create(self.registry, in_flight=lambda: self.sink.in_flight)
        self.front_doors: list[FrontDoor] = [SegmentApi(keys, self.sink, self.metrics, settings)]
        checks: dict[str, Check] = {"kafka": self.sink.ready}
        self.memory: ShopifyMemory | None = None
        self.reader: ProfileReader | None = None
        if shops:  # the Shopify door, with its memory in Redis
            self.memory = memory if memory is not None else shopify_memory(settings)
            self.front_doors.append(
                ShopifyWebhooks(shops, self.memory, self.sink, self.metrics, settings)
            )
            checks["redis"] = self._memory_ready
        token = settings.gateway_profiles_token
        if token is not None and token.get_secret_value():
            self.reader = ProfileReader(
                redis_clients.client(settings, socket_timeout=2.0),
                settings.redis_prefix,
                default_region=settings.default_region,
            )
            audiences = configured_audiences(settings)
            self.front_doors.append(ProfilesApi(self.reader, audiences, token.get_secret_value()))
            checks.setdefault("redis", self._reader_ready)
        self.app = build_app(
            self.front_doors,
            self.metrics,
            settings.gateway_cors_origins,
            max_requests=settings.gateway_max_requests,
        )
        self.health = HealthServer(
            settings.gateway_host, settings.gateway_ops_port, self.registry, checks
        )
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("gateway not started")
        return f"http://{self.settings.gateway_host}:{self.port}"

    async def start(self) -> None:
        runner = web.AppRunner(
            self.app, access_log=None, shutdown_timeout=self.settings.gateway_ack_timeout_s + 5
        )
        await runner.setup()
        self._runner = runner
        host, port = self.settings.gateway_host, self.settings.gateway_port
        try:
            await web.TCPSite(runner, host, port).start()
            addresses: list[Any] = list(runner.addresses)
            self.port = int(addresses[0][1])
            await self.health.start()
        except OSError as exc:
            await self.stop()
            raise GatewayStartError(
                f"cannot listen on {host} (ports {port} and {self.settings.gateway_ops_port}): "
                f"{exc.strerror or exc}"
            ) from None

    async def _memory_ready(self) -> bool:
        assert self.memory is not None
        return await asyncio.to_thread(self.memory.ping)

    async def _reader_ready(self) -> bool:
        assert self.reader is not None
        return bool(await asyncio.to_thread(self.reader.client.ping))

    def broken(self) -> bool:
        """The sink can never deliver again (a fatal Kafka producer error): restart."""
        return self.sink.broken()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.health.stop()
        await asyncio.to_thread(self.sink.close)
        if self.memory is not None:
            self.memory.close()
        if self.reader is not None:
            self.reader.client.close()


def shopify_memory(settings: LoomSettings) -> RedisShopifyMemory:
    """The Shopify door's memory on the deployment's Redis."""
    return RedisShopifyMemory(
        redis_clients.client(settings, socket_timeout=2.0),
        settings.redis_prefix,
        order_ttl_s=settings.gateway_shopify_order_ttl_s,
        salt=settings.suppression_salt.get_secret_value().encode(),
    )


async def serve(settings: LoomSettings, config: GatewayConfig) -> int:
    """Run a gateway until SIGTERM or SIGINT (0), or until its producer failed fatally (3)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    gateway = Gateway(settings, config.keys, shops=config.shops)
    try:
        await gateway.start()
        names = ", ".join(s.name for s in config.keys.sources()) or "none"
        shops = ", ".join(s.name for s in config.shops.all()) or "none"
        log.info(
            "loom gateway on %s (sources: %s; shopify shops: %s); /metrics, /livez, /readyz "
            "on port %d",
            gateway.url,
            names,
            shops,
            gateway.health.port,
        )
        topics = asyncio.create_task(ensure_topics_in_background(settings))
        while not stop.is_set() and not gateway.broken():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        topics.cancel()
        log.info("loom gateway stopping: answering requests in progress, then flushing")
        return 3 if gateway.broken() else 0
    finally:
        await gateway.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)


async def ensure_topics_in_background(settings: LoomSettings, *, max_backoff_s: float = 30) -> None:
    """Create missing topics; while Kafka does not answer, retry with backoff (the gateway
    serves meanwhile, answering 503 until Kafka acknowledges). Each attempt runs on a daemon
    thread, so stopping the gateway never waits for one."""
    backoff = 1.0
    while True:
        try:
            await _on_daemon_thread(lambda: ensure_topics(settings, timeout=10))
            return
        except ConfigError as exc:  # e.g. fewer brokers than LOOM_REPLICATION_FACTOR
            log.error("cannot create the topics: %s", exc)
            return
        except KafkaException as exc:
            log.warning(
                "kafka unreachable (%s); answering 503 until it is, retrying in %.0f s",
                exc.args[0].str() if exc.args else exc,
                backoff,
            )
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, max_backoff_s)


async def _on_daemon_thread(fn: Callable[[], object]) -> object:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[object] = loop.create_future()

    def settle(outcome: object, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(outcome)

    def work() -> None:
        try:
            outcome = fn()
        except BaseException as exc:
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, outcome, None)

    threading.Thread(target=work, name="gateway-topics", daemon=True).start()
    return await future


def run_gateway(settings: LoomSettings, config: GatewayConfig) -> int:
    return asyncio.run(serve(settings, config))
