"""``make bench``: every Loom benchmark with modest sizes, one summary table, one JSON file.

    python -m bench [--events 30000] [--workers 1,2] [--rates 1000] [--runs 5] [--seconds 30]
                    [--sample 20] [--inventory-redis own|shared] [--skip-others]
                    [--soak-events 120000] [--out bench/results/latest.json]

1. the component benches of the other modules, as subprocesses with small sizes:
   ``identity_bench`` (pure identity core), ``store_bench`` (run_batch on Redis vs in-memory),
   ``produce_bench`` (producer SDK validation cost and ``loom produce`` rate), ``gateway_bench``
   (``loom gateway``: events/s accepted with acks=all, CPU per event, p99 at 1,000 events/s),
   ``shopify_bench`` (its Shopify door: webhooks/s, CPU per webhook, p99 at 100 webhooks/s);
2. ``e2e_bench.throughput_runs``: throughput with one worker per role (profiles, inventory),
   then ``raw_limit`` on the same topic, then throughput with two workers per role; CPU per
   event of every process (each role, Redis, the broker, the raw consumer) from /proc, each
   run as % of the raw limit, CAS retries as % of batches, exactness (``e2e_bench``);
3. ``e2e_bench.latency_runs``: ``--runs`` consecutive runs at each of ``--rates`` (default 5 at
   1000/s, the target of issues 7.6 and 17.4: POS sale -> inventory visible p99 <= 100 ms in
   4 of 5), one worker per role, each run's p99 and how many met the target;
4. ``soak_bench.soak``: ``--soak-events`` through one worker per role, RSS and decode-cache
   memory sampled every 10,000 events (flat once the working set is loaded).

Kafka and Redis: ``LOOM_KAFKA_BOOTSTRAP`` / ``LOOM_REDIS_URL`` when set; otherwise the local
defaults (127.0.0.1:19092, redis://127.0.0.1:16379/0), started with ``deploy/infra.sh up`` only
if they do not answer, and then stopped again at the end (what was running stays running).
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import re
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench import e2e_bench, run_child, run_main, soak_bench
from bench.broker_facts import broker_facts
from bench.broker_facts import describe as describe_broker
from bench.interpreters import facts as interpreter_facts
from streams import redis_clients
from streams.settings import LoomSettings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "latest.json"

#: (module, argv, [(label, regex capturing a number, unit)]) of the other engineers' benches.
OTHERS: tuple[tuple[str, list[str], list[tuple[str, str, str]]], ...] = (
    (
        "identity_bench",
        ["--customers", "10000", "--events", "50000"],
        [("identity core (resolve+apply)", r"([\d,]+) decisions/s", "decisions/s")],
    ),
    (
        "store_bench",
        ["--events", "5000", "--customers", "2000"],
        [
            ("run_batch profiles lane, in-memory", r"profiles/memory\s+([\d,]+) ev", "events/s"),
            ("run_batch profiles lane, Redis", r"profiles/redis\s+([\d,]+) ev", "events/s"),
            ("run_batch inventory lane, in-memory", r"inventory/memory\s+([\d,]+) ev", "events/s"),
            ("run_batch inventory lane, Redis", r"inventory/redis\s+([\d,]+) ev", "events/s"),
        ],
    ),
    (
        "audience_bench",
        ["--events", "10000", "--customers", "2000", "--profiles", "100000"],
        [
            ("audiences: 20 evaluated per profile write", r"difference ([\d.]+) µs per", "µs"),
            ("  the 20 audiences alone, per snapshot", r"audiences alone: ([\d.]+) µs", "µs"),
            (
                "audience pass, 100,000 profiles, none move",
                r"first pass: \d+ profiles in ([\d.]+)s",
                "s",
            ),
            ("audience pass, 180 days later (moves)", r"later: \d+ profiles in ([\d.]+)s", "s"),
        ],
    ),
    (
        "produce_bench",
        ["--lines", "50000", "--validate-lines", "10000"],
        [
            ("producer validation", r"parse_touchpoint ([\d.]+) µs/event", "µs/event"),
            ("loom produce (CLI, wall)", r"= (\d+) events/s", "events/s"),
        ],
    ),
    (
        "gateway_bench",
        ["--seconds", "15"],
        [
            (
                "gateway accepted, batches of 100, acks=all",
                r"in flight\): ([\d,]+) events/s",
                "events/s",
            ),
            (
                "  gateway CPU per event (batches of 100)",
                r"events/s; gateway CPU ([\d.]+) µs",
                "µs/event",
            ),
            (
                "gateway @1000/s, batches of 100: p99",
                r"batches of 100: p50 [\d.]+ ms, p99 ([\d.]+)",
                "ms",
            ),
            (
                "  p99 inside the gateway (its histogram)",
                r"batches of 100: .*?in the gateway p50 [\d.]+ ms, p99 ([\d.]+)",
                "ms",
            ),
            (
                "gateway @1000/s, single events: p99",
                r"single events: p50 [\d.]+ ms, p99 ([\d.]+)",
                "ms",
            ),
            (
                "  p99 inside the gateway (its histogram)",
                r"single events: .*?in the gateway p50 [\d.]+ ms, p99 ([\d.]+)",
                "ms",
            ),
            (
                "  gateway CPU per event (single events)",
                r"single events: .*?gateway CPU ([\d.]+) µs",
                "µs/event",
            ),
        ],
    ),
    (
        "shopify_bench",
        ["--seconds", "15"],
        [
            (
                "gateway Shopify orders/create, acks=all",
                r"in flight\): ([\d,.]+) webhooks/s",
                "webhooks/s",
            ),
            (
                "  gateway CPU per webhook",
                r"webhooks/s \(.*?gateway CPU ([\d.]+) ms",
                "ms/webhook",
            ),
            ("gateway Shopify @100/s: p99", r"webhooks/s: p50 [\d.]+ ms, p99 ([\d.]+)", "ms"),
        ],
    ),
)


def say(msg: str) -> None:
    print(f"\033[1m==>\033[0m {msg}", file=sys.stderr, flush=True)


# --- infrastructure ------------------------------------------------------------------------


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def ensure_infra() -> tuple[str, str, bool]:
    """(kafka bootstrap, redis url, started_by_us)."""
    kafka = os.environ.get("LOOM_KAFKA_BOOTSTRAP")
    url = os.environ.get("LOOM_REDIS_URL")
    if kafka and url:
        return kafka, url, False
    kafka = kafka or "127.0.0.1:19092"
    url = url or "redis://127.0.0.1:16379/0"
    if answers("127.0.0.1", 19092) and answers("127.0.0.1", 16379):
        return kafka, url, False
    say("Kafka/Redis not answering: deploy/infra.sh up")
    subprocess.run(["bash", str(ROOT / "deploy" / "infra.sh"), "up"], check=True)
    return kafka, url, True


# --- machine facts ---------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def kafka_version() -> str:
    """From the broker JVM's classpath (kafka_2.13-X.jar) when it runs on this machine."""
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            args = Path(cmdline).read_bytes().split(b"\0")
        except OSError:
            continue
        if b"kafka.Kafka" not in args:
            continue
        for i, arg in enumerate(args[:-1]):
            if arg in (b"-cp", b"-classpath"):
                for entry in args[i + 1].decode().split(":"):
                    for jar in glob.glob(entry if entry.endswith("*") else entry + "*"):
                        m = re.search(r"kafka_[\d.]+-([\d.]+)\.jar$", jar)
                        if m:
                            return m.group(1)
    return "unknown (broker not local)"


def machine_facts(kafka: str, redis_url: str) -> dict[str, Any]:
    import confluent_kafka

    client = redis_clients.client(LoomSettings(redis_url=redis_url))
    info: Any = client.info("server")
    client.close()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "ram_gib": ram_gib(),
        "cpu_model": cpu_model(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "interpreter": interpreter_facts(),  # which build: ADR 0041
        "kafka": kafka_version(),
        "broker": broker_facts(kafka),  # its index files and their disk's read-ahead: ADR 0042
        "redis": info.get("redis_version"),
        "confluent_kafka": confluent_kafka.version(),
        "librdkafka": confluent_kafka.libversion()[0],
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


# --- the other benches ----------------------------------------------------------------------


def run_others(kafka: str, url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows, raw = [], []
    env = {**os.environ, "LOOM_KAFKA_BOOTSTRAP": kafka, "LOOM_REDIS_URL": url}
    for module, argv, patterns in OTHERS:
        say(f"bench.{module} {' '.join(argv)}")
        started = time.monotonic()
        proc = run_child(
            [sys.executable, "-m", f"bench.{module}", *argv], timeout=300, cwd=ROOT, env=env
        )
        out = proc.stdout + proc.stderr
        print("\n".join(f"    {line}" for line in proc.stdout.splitlines()), file=sys.stderr)
        raw.append(
            {
                "module": module,
                "argv": argv,
                "exit_code": proc.returncode,
                "seconds": round(time.monotonic() - started, 1),
                "stdout": proc.stdout,
            }
        )
        for label, pattern, unit in patterns:
            m = re.search(pattern, out)
            value = float(m.group(1).replace(",", "")) if m else None
            rows.append({"bench": module, "what": label, "value": value, "unit": unit})
    return rows, raw


# --- summary --------------------------------------------------------------------------------


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.1f} {unit}" if value < 100 else f"{value:,.0f} {unit}"


def table(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "",
        f"Loom benchmark, {m['date']}",
        f"machine: {m['nproc']} cores ({m['cpu_model']}), {m['ram_gib']} GiB RAM, "
        f"Python {m['python']} ({m['interpreter']['executable']}, libpython "
        f"{m['interpreter']['libpython']}), Kafka {m['kafka']} "
        f"({describe_broker(m.get('broker', {'error': 'not recorded'}))}), Redis {m['redis']}; "
        f"load average at start {m['loadavg_start'][0]} (shared machine)",
        "",
        f"{'measurement':<52} {'result':>24}",
        "-" * 77,
    ]

    def row(what: str, result: str) -> None:
        lines.append(f"{what:<52} {result:>24}")

    for r in results.get("components", []):
        row(r["what"], fmt(r["value"], r["unit"]))
    e2e = results.get("e2e", {})
    raw = e2e.get("raw_limit")
    if raw:
        row("raw limit: Kafka -> pipelined SET, no logic", fmt(raw["events_per_s"], "events/s"))
        for name, us in raw.get("cpu_us_per_event", {}).items():
            row(f"  raw limit CPU per event: {name}", fmt(us, "µs"))
    for t in e2e.get("throughput", []):
        n = t["workers"]
        both = f"e2e {n} worker(s) per role, produced -> visible"
        pct = t.get("pct_of_raw_limit")
        row(both, fmt(t["events_per_s_visible"], "events/s") + (f" ({pct}% raw)" if pct else ""))
        for lane, figures in sorted(t.get("lanes", {}).items()):
            lane_pct = figures.get("pct_of_raw_limit")
            row(
                f"  {lane} lane visible",
                fmt(figures["events_per_s_visible"], "events/s")
                + (f" ({lane_pct}% raw)" if lane_pct else ""),
            )
            row(
                f"  {lane} CAS conflicts: parts retried / parts, events recomputed",
                f"{figures['commit_conflicts']} / {figures['commit_parts']} "
                f"({figures['conflicted_pct_of_parts']}%), "
                f"{figures['recomputed_events']} ({figures['recomputed_pct_of_events']}%)",
            )
        for name, us in t.get("cpu_us_per_event", {}).items():
            row(f"  CPU per event: {name}", fmt(us, "µs"))
        exact = t.get("exactness", {})
        row(
            "  exact (event ids marked in Redis = produced)",
            ", ".join(f"{lane} {v['exact']}" for lane, v in sorted(exact.items())),
        )
        row(
            f"e2e {n} worker(s) per role, produced -> committed",
            fmt(t["events_per_s_committed"], "events/s"),
        )
    for per_rate in e2e.get("latency", []):
        for i, lat in enumerate(per_rate["runs"], 1):
            v = lat["pos_to_inventory_visible"]
            at = f"@{lat['rate_achieved']:.0f}/s run {i}"
            row(f"POS -> inventory visible p50 / p99 {at}", f"{v['p50_ms']} / {v['p99_ms']} ms")
            for lane, h in sorted(lat["event_to_snapshot_histogram"].items()):
                drain = lat["drain_after_last_send_s"][lane]
                row(f"  {lane}: event -> snapshot p99, drain", f"{h['p99_ms']} ms, {drain} s")
        row(
            f"POS -> inventory p99 <= {per_rate['target_p99_ms']:.0f} ms @{per_rate['rate']:.0f}/s",
            f"{per_rate['runs_within_target']} of {len(per_rate['runs'])} runs",
        )
    soak = results.get("soak")
    if soak:
        first, last = soak["samples"][1], soak["samples"][-1]
        for lane in sorted(soak["growth_after_first_third"]):
            row(
                f"soak {lane} RSS at {first['events']:,} / {last['events']:,} events",
                f"{first[lane]} / {last[lane]} MiB",
            )
            row(
                "  growth after the first third (w/o cache)",
                f"{soak['growth_after_first_third'][lane]:+.1%} "
                f"({soak['growth_after_first_third_without_cache'][lane]:+.1%})",
            )
        row("soak flat (RSS minus the bounded cache)", str(soak["flat"]))
    lines.append("-" * 77)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--events", type=int, default=30_000, help="e2e backlog size (30000: issue 17's)"
    )
    parser.add_argument("--workers", default="1,2", help="e2e worker counts (1,2)")
    parser.add_argument("--rates", default="1000", help="latency runs, events/s each (1000)")
    parser.add_argument("--runs", type=int, default=5, help="consecutive latency runs per rate")
    parser.add_argument(
        "--inventory-redis", choices=("own", "shared"), default="own",
        help="inventory lane on its own Redis (LOOM_INVENTORY_REDIS_URL, else one the bench "
        "starts; ADR 0008) or on the profiles lane's (own)",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, default=30.0, help="latency phase s (30)")
    parser.add_argument("--sample", type=int, default=20, help="1 in N POS sales probed (20)")
    parser.add_argument("--skip-others", action="store_true", help="only the e2e benches")
    parser.add_argument(
        "--soak-events", type=int, default=120_000, help="soak run length (0: no soak)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    args = parser.parse_args(argv)

    kafka, url, started_infra = ensure_infra()
    results: dict[str, Any] = {"machine": machine_facts(kafka, url), "kafka": kafka}
    results["settings"] = {
        "events": args.events, "workers": args.workers, "rates": args.rates,
        "seconds": args.seconds, "runs": args.runs, "sample": args.sample, "partitions": 6,
        "inventory_redis": args.inventory_redis,
        "worker": "loom worker defaults: batch_size 500, batch_timeout_s 0.05 (profiles), "
        "inventory_batch_timeout_s 0.01, commit every 1 s",
    }  # fmt: skip
    began = time.monotonic()
    try:
        if not args.skip_others:
            results["components"], results["component_outputs"] = run_others(kafka, url)
        workers = [int(w) for w in args.workers.split(",") if w]
        with e2e_bench.inventory_redis(args.inventory_redis) as inventory_url:
            say(f"e2e throughput: {args.events} events, {workers} worker(s) per role, raw limit")
            e2e: dict[str, Any] = e2e_bench.throughput_runs(
                kafka, url, events=args.events, workers=workers, inventory_redis_url=inventory_url
            )
            results["e2e"] = e2e
            e2e["latency"] = e2e_bench.latency_runs(
                kafka, url, rates=[float(r) for r in args.rates.split(",") if r],
                runs=args.runs, seconds=args.seconds, sample=args.sample,
                inventory_redis_url=inventory_url,
            )  # fmt: skip
        if args.soak_events:
            say(f"soak: {args.soak_events} events, worker RSS sampled every 10,000")
            results["soak"] = soak_bench.soak(
                kafka, url, events=args.soak_events, chunk=10_000, customers=5_000, rate=2000
            )
    finally:
        results["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        results["total_seconds"] = round(time.monotonic() - began, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
        if started_infra:
            say("stopping the Kafka/Redis this run started (deploy/infra.sh down)")
            subprocess.run(["bash", str(ROOT / "deploy" / "infra.sh"), "down"], check=False)
    print(table(results))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
