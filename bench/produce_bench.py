"""Producer throughput and validation cost.

    python -m bench.produce_bench --lines 1000000

1. generates ``--lines`` JSONL lines with the simulator into a temp dir (not timed);
2. times ``parse_touchpoint`` (+ ``record_key``) over the first ``--validate-lines`` lines in
   process (µs/event, single core);
3. times ``loom produce FILE`` as a subprocess to a fresh topic on the broker (events/s,
   wall time including interpreter start and the final flush), then deletes the topic.

Bootstrap: ``LOOM_KAFKA_BOOTSTRAP`` (default 127.0.0.1:19092).
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

from bench import run_main
from schemas.touchpoint import parse_touchpoint, record_key
from streams.simulate import Simulator


def generate(path: Path, lines: int, seed: int) -> float:
    started = time.perf_counter()
    sim = Simulator(seed, customers=max(100, lines // 50), stores=20, skus=500)
    with path.open("wb") as out:
        it = sim.lines()
        while lines > 0 and (chunk := list(itertools.islice(it, min(10_000, lines)))):
            out.write(b"\n".join(chunk) + b"\n")
            lines -= len(chunk)
    return time.perf_counter() - started


def validation_cost(path: Path, n: int) -> tuple[int, float, float]:
    with path.open("rb") as f:
        lines = [line.rstrip(b"\n") for line in itertools.islice(f, n)]
    started = time.perf_counter()
    for line in lines:
        parse_touchpoint(line)
    parse_s = time.perf_counter() - started
    tps = [parse_touchpoint(line) for line in lines]
    started = time.perf_counter()
    for tp in tps:
        record_key(tp)
    key_s = time.perf_counter() - started
    return len(lines), parse_s, key_s


def produce(path: Path, bootstrap: str) -> tuple[float, dict[str, object]]:
    topic = f"bench-produce-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "LOOM_KAFKA_BOOTSTRAP": bootstrap, "LOOM_DEVELOPMENT": "true"}
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli.main", "produce", str(path), "--topic", topic,
         "--json", "--progress-every", "10"],
        env=env, capture_output=True, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - started
    try:
        from streams import kafka_clients
        from streams.settings import LoomSettings

        admin = kafka_clients.admin(LoomSettings(kafka_bootstrap=bootstrap))
        for fut in admin.delete_topics([topic], operation_timeout=30).values():
            fut.result(timeout=30)
    except Exception as exc:
        print(f"(could not delete {topic}: {exc})", file=sys.stderr)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr.decode(errors="replace"))
    return wall, orjson.loads(proc.stdout or b"{}")


def main() -> int:
    parser = argparse.ArgumentParser(description="loom produce throughput + validation cost")
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--validate-lines", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-produce", action="store_true")
    args = parser.parse_args()
    bootstrap = os.environ.get("LOOM_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="loom-bench-") as tmp:
        path = Path(tmp) / "events.jsonl"
        gen_s = generate(path, args.lines, args.seed)
        size = path.stat().st_size
        print(f"generated {args.lines} lines, {size / 1e6:.1f} MB in {gen_s:.1f} s")
        n, parse_s, key_s = validation_cost(path, min(args.validate_lines, args.lines))
        print(
            f"validation: parse_touchpoint {parse_s / n * 1e6:.1f} µs/event, "
            f"record_key {key_s / n * 1e6:.1f} µs/event (over {n} events, 1 core)"
        )
        if not args.skip_produce:
            wall, summary = produce(path, bootstrap)
            delivered = summary.get("delivered")
            print(
                f"loom produce: {delivered} delivered in {wall:.1f} s wall "
                f"= {args.lines / wall:.0f} events/s (in-loop {summary.get('rate_per_s')}/s, "
                f"exit {summary.get('exit_code')})"
            )
    return 0


if __name__ == "__main__":
    run_main(main)
