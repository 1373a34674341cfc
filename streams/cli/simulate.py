"""``loom simulate``: deterministic, realistic retail traffic to a JSONL file or to Kafka.

Same ``--seed`` and sizes give the same events (including event ids, so re-sending a run is a
redelivery the pipeline deduplicates). ``--bad-fraction`` mixes invalid records in (with
``--out`` they are written as lines; to Kafka they are sent unvalidated, as ``--raw`` would).
``--rate`` paces sending in events per second of wall time (0 = as fast as possible).

Exit codes: 0 ok; 3 some records failed delivery; 2 usage errors.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Iterator
from typing import IO, Final, TypeVar

from streams.cli.options import add_kafka_options, connect
from streams.simulate import Simulator

T = TypeVar("T")

EXIT_OK: Final = 0
EXIT_USAGE: Final = 2
EXIT_DELIVERY_FAILED: Final = 3


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="generate realistic touchpoint traffic (JSONL or Kafka)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--customers", type=int, default=1000, help="simulated customers (1000)")
    parser.add_argument("--stores", type=int, default=5, help="simulated stores (5)")
    parser.add_argument("--skus", type=int, default=200, help="simulated SKUs (200)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: same seed, same events")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--count", type=int, help="number of records (default 10000)")
    size.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    parser.add_argument("--rate", type=float, default=0.0, help="records per second (0 = max)")
    parser.add_argument(
        "--bad-fraction", type=float, default=0.0, help="share of invalid records, 0..1"
    )
    parser.add_argument("--out", metavar="FILE", help="write JSONL here (- = stdout)")
    parser.add_argument("--topic", help="topic when sending (default: LOOM_TOPIC_RAW)")
    add_kafka_options(parser)
    parser.set_defaults(func=run)


def _paced(
    items: Iterator[T], *, count: int | None, duration: float | None, rate: float
) -> Iterator[T]:
    started = time.monotonic()
    for n, item in enumerate(items):
        if count is not None and n >= count:
            return
        now = time.monotonic()
        if duration is not None and now - started >= duration:
            return
        if rate > 0:
            due = started + n / rate
            if due > now:
                time.sleep(due - now)
        yield item


def run(args: argparse.Namespace) -> int:
    if not 0.0 <= args.bad_fraction <= 1.0:
        sys.stderr.write("simulate: --bad-fraction must be within 0..1\n")
        return EXIT_USAGE
    try:
        sim = Simulator(args.seed, args.customers, args.stores, args.skus)
    except ValueError as exc:
        sys.stderr.write(f"simulate: {exc}\n")
        return EXIT_USAGE
    count = args.count if args.count is not None or args.duration is not None else 10_000
    started = time.monotonic()
    if args.out:
        lines = _paced(
            sim.lines(args.bad_fraction), count=count, duration=args.duration, rate=args.rate
        )
        out: IO[bytes] = sys.stdout.buffer if args.out == "-" else open(args.out, "wb")  # noqa: SIM115
        n = 0
        with out:
            for chunk in _batched(lines, 1000):
                out.write(b"\n".join(chunk) + b"\n")
                n += len(chunk)
        sys.stderr.write(f"simulate: wrote {n} records in {time.monotonic() - started:.1f} s\n")
        return EXIT_OK

    from streams.producer import TouchpointProducer, topic_max_message_bytes

    settings = connect(args, kafka=True)
    topic = args.topic or settings.topics.raw
    items = _paced(
        sim.mixed(args.bad_fraction), count=count, duration=args.duration, rate=args.rate
    )
    valid = bad = 0
    with TouchpointProducer(
        settings, topic=topic, topic_max_bytes=topic_max_message_bytes(settings, topic)
    ) as producer:
        for item in items:
            if isinstance(item, bytes):
                producer.send_raw(item)  # deliberately invalid: the pipeline must DLQ it
                bad += 1
            else:
                producer.send(item)
                valid += 1
        remaining = producer.close(60.0)  # counted below (no DeliveryError)
    stats = producer.stats
    sys.stderr.write(
        f"simulate to {producer.topic}: {valid} valid + {bad} invalid records, "
        f"delivered {stats.delivered}, failed {stats.failed}, undelivered {remaining}, "
        f"{time.monotonic() - started:.1f} s\n"
    )
    return EXIT_DELIVERY_FAILED if stats.failed or remaining else EXIT_OK


def _batched(lines: Iterator[bytes], size: int) -> Iterator[list[bytes]]:
    while chunk := list(itertools.islice(lines, size)):
        yield chunk
