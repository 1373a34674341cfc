"""``loom gateway``'s Shopify door: webhooks/s, CPU per webhook, latency against Shopify's 5 s.

    python -m bench.shopify_bench [--seconds 15] [--concurrency 8] [--rate 100]

A real ``loom gateway`` process with one shop (a sources file with its ``[[shopify]]`` table),
on the broker of ``LOOM_KAFKA_BOOTSTRAP`` and the Redis of ``LOOM_REDIS_URL`` (defaults
127.0.0.1:19092, redis://127.0.0.1:16379/0), on topics ``benchgw<tag>.*`` and the Redis prefix
``benchshop<tag>``, both removed at the end. The load: signed ``orders/create`` webhooks (the
payload of tests/fixtures/shopify/orders_create.json, two lines, so each is 5 touchpoints: the
order and two transfers of two records each), each its own order id and webhook id, sent from
this process (aiohttp), on the same machine.

1. *throughput*: ``--concurrency`` webhooks in flight for ``--seconds``; webhooks/s = 200
   answers / wall time; CPU per webhook = the gateway's user+system CPU time / webhooks
   answered 200 (HMAC, the order memo in Redis, mapping, acks=all, the memory write);
2. *latency*, open loop at ``--rate`` webhooks/s for ``--seconds``: each webhook sent at its
   scheduled time, latency from that time (no coordinated omission); nearest-rank quantiles.
   Shopify counts a webhook failed after 5 s.

Nothing is asserted: figures are printed and, with ``--json``, written as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import run_main
from bench.e2e_bench import quantile
from bench.gateway_bench import ROOT, Gateway
from streams import redis_clients
from streams.procinfo import process_cpu_s as cpu_seconds
from streams.settings import LoomSettings

SECRET = "shpss_bench_secret_0001"
DOMAIN = "bench.myshopify.com"
FIXTURE = ROOT / "tests" / "fixtures" / "shopify" / "orders_create.json"
SHOP = f"""
[[shopify]]
name = "bench"
domain = "{DOMAIN}"
secrets = ["{SECRET}"]
region = "US"
online_location = "24826418"
[shopify.locations]
"24826418" = "warehouse"
"""


class ShopifyGateway(Gateway):
    """The gateway subprocess with a shop, on a Redis prefix of its own."""

    def __init__(self, bootstrap: str, redis_url: str, tmp: Path) -> None:
        self.prefix = f"benchshop{uuid.uuid4().hex[:8]}"
        self.redis_url = redis_url
        env = {"LOOM_REDIS_URL": redis_url, "LOOM_REDIS_PREFIX": self.prefix}
        super().__init__(bootstrap, tmp, shops=SHOP, env=env)

    def stop(self) -> None:
        super().stop()
        client = redis_clients.client(LoomSettings(redis_url=self.redis_url))
        keys = list(client.scan_iter(f"{self.prefix}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
        client.close()


def webhooks(n: int) -> list[tuple[bytes, dict[str, str]]]:
    """``n`` signed ``orders/create`` deliveries, each a new order."""
    template = orjson.loads(FIXTURE.read_bytes())
    tag = uuid.uuid4().int % 10**9
    out = []
    for i in range(n):
        body = orjson.dumps({**template, "id": tag * 10**6 + i, "name": f"#{i}"})
        digest = hmac.new(SECRET.encode(), body, hashlib.sha256).digest()
        out.append(
            (
                body,
                {
                    "Content-Type": "application/json",
                    "X-Shopify-Topic": "orders/create",
                    "X-Shopify-Shop-Domain": DOMAIN,
                    "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode(),
                    "X-Shopify-Webhook-Id": str(uuid.uuid4()),
                    "X-Shopify-API-Version": "2026-07",
                },
            )
        )
    return out


async def post(session: aiohttp.ClientSession, url: str, hook: tuple[bytes, dict[str, str]]) -> int:
    body, headers = hook
    async with session.post(f"{url}/shopify/webhooks", data=body, headers=headers) as resp:
        await resp.read()
        return resp.status


async def wait_ready(session: aiohttp.ClientSession, gw: ShopifyGateway) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if gw.proc.poll() is not None:
            raise RuntimeError("loom gateway exited")
        try:
            if await post(session, gw.url, webhooks(1)[0]) == 200:
                return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("loom gateway not accepting webhooks after 90 s")


async def throughput(
    session: aiohttp.ClientSession, gw: ShopifyGateway, seconds: float, concurrency: int
) -> dict[str, Any]:
    hooks = webhooks(int(seconds * 2000))
    statuses: dict[int, int] = {}
    stop_at = time.monotonic() + seconds
    cpu0, wall0 = cpu_seconds(gw.proc.pid), time.monotonic()
    position = 0

    async def one() -> None:
        nonlocal position
        while time.monotonic() < stop_at and position < len(hooks):
            hook = hooks[position]
            position += 1
            status = await post(session, gw.url, hook)
            statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(one() for _ in range(concurrency)))
    wall, cpu = time.monotonic() - wall0, cpu_seconds(gw.proc.pid) - cpu0
    ok = statuses.get(200, 0)
    return {
        "webhooks_per_s": round(ok / wall, 1),
        "gateway_cpu_ms_per_webhook": round(cpu / max(ok, 1) * 1000, 3),
        "statuses": statuses,
        "concurrency": concurrency,
        "seconds": round(wall, 1),
    }


async def latency(
    session: aiohttp.ClientSession, gw: ShopifyGateway, seconds: float, rate: float
) -> dict[str, Any]:
    n = int(seconds * rate)
    hooks = webhooks(n)
    start = time.monotonic() + 0.5
    took: list[float] = []
    statuses: dict[int, int] = {}

    async def one(i: int) -> None:
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        status = await post(session, gw.url, hooks[i])
        took.append(time.monotonic() - due)
        statuses[status] = statuses.get(status, 0) + 1

    cpu0 = cpu_seconds(gw.proc.pid)
    await asyncio.gather(*(one(i) for i in range(n)))
    cpu = cpu_seconds(gw.proc.pid) - cpu0
    took.sort()
    return {
        "rate": rate,
        "p50_ms": round((quantile(took, 0.5) or 0) * 1000, 1),
        "p99_ms": round((quantile(took, 0.99) or 0) * 1000, 1),
        "max_ms": round(took[-1] * 1000, 1) if took else None,
        "over_5s": sum(1 for t in took if t > 5),
        "gateway_cpu_ms_per_webhook": round(cpu / max(statuses.get(200, 0), 1) * 1000, 3),
        "statuses": statuses,
    }


async def run(args: argparse.Namespace, gw: ShopifyGateway) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        await wait_ready(session, gw)
        flat = await throughput(session, gw, args.seconds, args.concurrency)
        print(
            f"shopify orders/create ({args.concurrency} in flight): {flat['webhooks_per_s']:,} "
            f"webhooks/s ({flat['webhooks_per_s'] * 5:,.0f} touchpoints/s); gateway CPU "
            f"{flat['gateway_cpu_ms_per_webhook']} ms per webhook; answers {flat['statuses']}"
        )
        steady = await latency(session, gw, args.seconds, args.rate)
        print(
            f"shopify @{args.rate:g} webhooks/s: p50 {steady['p50_ms']} ms, p99 "
            f"{steady['p99_ms']} ms, max {steady['max_ms']} ms, over 5 s: {steady['over_5s']}; "
            f"gateway CPU {steady['gateway_cpu_ms_per_webhook']} ms per webhook; answers "
            f"{steady['statuses']}"
        )
    return {"throughput": flat, "latency": steady}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    bootstrap = os.environ.get("LOOM_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    redis_url = os.environ.get("LOOM_REDIS_URL", "redis://127.0.0.1:16379/0")
    with tempfile.TemporaryDirectory() as tmp:
        gw = ShopifyGateway(bootstrap, redis_url, Path(tmp))
        try:
            results = asyncio.run(run(args, gw))
        finally:
            gw.stop()
    if args.json:
        args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    run_main(main)
