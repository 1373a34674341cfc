"""``loom gateway`` throughput, CPU per event and request latency (acks=all, real Kafka).

    python -m bench.gateway_bench [--seconds 20] [--concurrency 8] [--rate 1000]

A real ``loom gateway`` process (default settings, a sources file with one write key, topics
``benchgw<tag>.*`` created and deleted) on the broker of ``LOOM_KAFKA_BOOTSTRAP`` (default
127.0.0.1:19092). The load comes from this process (aiohttp client, pre-serialized Segment
messages: page, Product Viewed, identify, Order Completed, each with its own messageId), on
the same machine, so client, gateway and broker share its cores; the client's CPU is reported
too.

1. *throughput*: ``--concurrency`` requests in flight, each ``POST /v1/batch`` of 100
   messages, for ``--seconds``; events/s = events of 200 answers / wall time; CPU per event
   = the gateway process's user+system CPU time (``/proc/<pid>/stat``) / events accepted.
2. *latency*, open loop at ``--rate`` events/s for ``--seconds``, two request shapes: batches
   of 100 (``rate/100`` requests/s: a server SDK) and single events to ``/v1/t`` (``rate``
   requests/s: browsers). Each request is sent at its scheduled time whatever the answers of
   earlier ones, and its latency is measured from that time (no coordinated omission).
   Quantiles are nearest-rank over every request.

Nothing is asserted: the figures are printed and, with ``--json``, written as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import run_main
from bench.e2e_bench import histogram_delta, histogram_summary, quantile
from streams import kafka_clients
from streams.procinfo import process_cpu_s as cpu_seconds
from streams.settings import LoomSettings, Topics

ROOT = Path(__file__).resolve().parents[1]
WRITE_KEY = "wk_bench_gateway_0001"


def messages(n: int, seed: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        person = f"{seed}-{i % 997}"
        common = {
            "messageId": f"{seed}-{i}",
            "anonymousId": f"anon-{person}",
            "timestamp": "2026-11-22T10:00:00.000Z",
            "context": {
                "library": {"name": "analytics.js", "version": "npm:next-1.84.3"},
                "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148",
                "page": {"path": "/shoes", "url": "https://shop.example/shoes"},
            },
        }
        kind = i % 10
        if kind < 4:
            props: dict[str, Any] = {"path": "/shoes", "title": "Shoes"}
            out.append({**common, "type": "page", "name": "Shoes", "properties": props})
        elif kind < 8:
            props = {"product_id": f"P-{i % 500}", "category": "shoes", "price": 49.9}
            out.append({**common, "type": "track", "event": "Product Viewed", "properties": props})
        elif kind == 8:
            traits = {"email": f"{person}@example.com", "firstName": "B"}
            out.append({**common, "type": "identify", "userId": f"C-{person}", "traits": traits})
        else:
            props = {
                "order_id": f"O-{seed}-{i}",
                "total": 99.8,
                "currency": "USD",
                "products": [{"sku": "SKU-1", "price": 49.9, "quantity": 2}],
            }
            out.append(
                {**common, "type": "track", "event": "Order Completed", "userId": f"C-{person}",
                 "properties": props}
            )  # fmt: skip
    return out


def batch_bodies(count: int, size: int) -> list[bytes]:
    tag = uuid.uuid4().hex[:6]
    return [
        orjson.dumps({"batch": messages(size, f"{tag}{b}"), "sentAt": "2026-11-22T10:00:01Z"})
        for b in range(count)
    ]


def single_bodies(count: int) -> list[bytes]:
    return [
        orjson.dumps({**m, "sentAt": "2026-11-22T10:00:01Z"})
        for m in messages(count, uuid.uuid4().hex[:6])
    ]


class Gateway:
    """A ``loom gateway`` subprocess on fresh topics."""

    def __init__(
        self, bootstrap: str, tmp: Path, *, shops: str = "", env: dict[str, str] | None = None
    ) -> None:
        """``shops``: ``[[shopify]]`` tables for the sources file; ``env``: more settings."""
        self.bootstrap = bootstrap
        self.tag = uuid.uuid4().hex[:8]
        sources = tmp / "sources.toml"
        sources.write_text(
            f'[[source]]\nname = "bench"\nchannel = "web"\nregion = "US"\n'
            f'write_key = "{WRITE_KEY}"\n{shops}'
        )
        self.port, self.ops_port = _free_port(), _free_port()
        env = {
            **os.environ,
            "LOOM_KAFKA_BOOTSTRAP": bootstrap,
            "LOOM_DEVELOPMENT": "true",  # single-replica topics on the local broker
            "LOOM_GATEWAY_PORT": str(self.port),
            "LOOM_GATEWAY_OPS_PORT": str(self.ops_port),
            "LOOM_GATEWAY_SOURCES_FILE": str(sources),
            **{
                f"LOOM_TOPIC_{name.upper()}": f"benchgw{self.tag}.{name}"
                for name in Topics.model_fields
            },
            **(env or {}),
        }
        self.log = tmp / "gateway.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli.main", "gateway"],
                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        admin = kafka_clients.admin(LoomSettings(kafka_bootstrap=self.bootstrap))
        ours = [
            n for n in admin.list_topics(timeout=10).topics if n.startswith(f"benchgw{self.tag}.")
        ]
        for fut in admin.delete_topics(ours, operation_timeout=30).values() if ours else ():
            try:
                fut.result(timeout=30)
            except Exception as exc:
                print(f"(could not delete a topic: {exc})", file=sys.stderr)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


HEADERS = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}


async def wait_ready(
    session: aiohttp.ClientSession, url: str, proc: subprocess.Popen[bytes]
) -> None:
    """Until a one-event batch is answered 200 (the topics exist and Kafka acknowledges)."""
    body = single_bodies(1)[0]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("loom gateway exited")
        try:
            async with session.post(f"{url}/v1/t", data=body, headers=HEADERS) as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("loom gateway not accepting after 90 s")


async def throughput(
    session: aiohttp.ClientSession, gw: Gateway, seconds: float, concurrency: int
) -> dict[str, Any]:
    bodies = batch_bodies(200, 100)
    statuses: dict[int, int] = {}
    accepted = 0
    stop_at = time.monotonic() + seconds
    counter = iter(range(10**9))

    async def loop() -> None:
        nonlocal accepted
        while time.monotonic() < stop_at:
            body = bodies[next(counter) % len(bodies)]
            async with session.post(f"{gw.url}/v1/batch", data=body, headers=HEADERS) as resp:
                await resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
                if resp.status == 200:
                    accepted += 100

    cpu0, client0, t0 = cpu_seconds(gw.proc.pid), time.process_time(), time.monotonic()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    wall = time.monotonic() - t0
    cpu, client = cpu_seconds(gw.proc.pid) - cpu0, time.process_time() - client0
    return {
        "batch_size": 100,
        "concurrency": concurrency,
        "seconds": round(wall, 2),
        "events_accepted": accepted,
        "events_per_s": round(accepted / wall),
        "gateway_cpu_s": round(cpu, 2),
        "gateway_cpu_us_per_event": round(cpu / accepted * 1e6, 1) if accepted else None,
        "gateway_cores_busy": round(cpu / wall, 2),
        "client_cpu_s": round(client, 2),
        "statuses": statuses,
    }


async def steady(
    session: aiohttp.ClientSession,
    gw: Gateway,
    *,
    rate: float,
    seconds: float,
    batch: int,
) -> dict[str, Any]:
    """Open loop: requests at their scheduled times, latency from the scheduled time."""
    per_s = rate / batch
    n = int(per_s * seconds)
    bodies = batch_bodies(min(n, 200), batch) if batch > 1 else single_bodies(min(n, 5000))
    path = "/v1/batch" if batch > 1 else "/v1/t"
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.1

    async def one(i: int) -> None:
        due = start + i / per_s
        await asyncio.sleep(max(0.0, due - loop.time()))
        async with session.post(f"{gw.url}{path}", data=bodies[i % len(bodies)],
                                headers=HEADERS) as resp:  # fmt: skip
            await resp.read()
            statuses[resp.status] = statuses.get(resp.status, 0) + 1
        latencies.append(loop.time() - due)

    metrics = f"http://127.0.0.1:{gw.ops_port}/metrics"
    async with session.get(metrics) as resp:
        before = await resp.text()
    cpu0, client0, t0 = cpu_seconds(gw.proc.pid), time.process_time(), time.monotonic()
    await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.monotonic() - t0
    cpu, client = cpu_seconds(gw.proc.pid) - cpu0, time.process_time() - client0
    async with session.get(metrics) as resp:
        after = await resp.text()
    server = histogram_summary(histogram_delta(before, after, "loom_gateway_request_seconds"))
    ok = statuses.get(200, 0) * batch
    latencies.sort()
    return {
        "batch_size": batch,
        "rate_target": rate,
        "rate_achieved": round(ok / wall),
        "requests": n,
        "p50_ms": _ms(quantile(latencies, 0.50)),
        "p99_ms": _ms(quantile(latencies, 0.99)),
        "server_p50_ms": server["p50_ms"],
        "server_p99_ms": server["p99_ms"],
        "server_p99_bucket": server["p99_bucket"],
        "max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
        "gateway_cpu_us_per_event": round(cpu / ok * 1e6, 1) if ok else None,
        "gateway_cores_busy": round(cpu / wall, 2),
        "client_cores_busy": round(client / wall, 2),
        "statuses": statuses,
    }


async def run(bootstrap: str, seconds: float, concurrency: int, rate: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="loom-bench-gw-") as tmp:
        gw = Gateway(bootstrap, Path(tmp))
        try:
            connector = aiohttp.TCPConnector(limit=0)
            timeout = aiohttp.ClientTimeout(total=60)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                await wait_ready(session, gw.url, gw.proc)
                await throughput(session, gw, 3, concurrency)  # warm-up
                results: dict[str, Any] = {
                    "throughput": await throughput(session, gw, seconds, concurrency)
                }
                results["latency"] = [
                    await steady(session, gw, rate=rate, seconds=seconds, batch=100),
                    await steady(session, gw, rate=rate, seconds=seconds, batch=1),
                ]
                return results
        finally:
            gw.stop()


def report(results: dict[str, Any], say: Callable[[str], None] = print) -> None:
    t = results["throughput"]
    say(
        f"gateway throughput (batches of 100, acks=all, {t['concurrency']} in flight): "
        f"{t['events_per_s']:,} events/s; gateway CPU {t['gateway_cpu_us_per_event']} µs/event "
        f"({t['gateway_cores_busy']} cores busy; client {t['client_cpu_s']} s CPU; "
        f"statuses {t['statuses']})"
    )
    for lat in results["latency"]:
        shape = "batches of 100" if lat["batch_size"] > 1 else "single events"
        say(
            f"gateway latency @{lat['rate_target']:.0f} events/s, {shape}: "
            f"p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, max {lat['max_ms']} ms "
            f"(client clock, from the scheduled send); in the gateway p50 {lat['server_p50_ms']} "
            f"ms, p99 {lat['server_p99_ms']} ms (bucket {lat['server_p99_bucket']}); "
            f"achieved {lat['rate_achieved']:,}/s; gateway CPU {lat['gateway_cpu_us_per_event']} "
            f"µs/event ({lat['gateway_cores_busy']} cores, client {lat['client_cores_busy']}; "
            f"statuses {lat['statuses']})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="each phase (20)")
    parser.add_argument("--concurrency", type=int, default=8, help="throughput: in flight (8)")
    parser.add_argument("--rate", type=float, default=1000.0, help="latency: events/s (1000)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    bootstrap = os.environ.get("LOOM_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}; load {load:.2f}")
    results = asyncio.run(run(bootstrap, args.seconds, args.concurrency, args.rate))
    report(results)
    if args.json:
        args.json.write_bytes(
            orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n"
        )
    return 0


if __name__ == "__main__":
    run_main(main)
