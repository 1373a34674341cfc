"""``loom produce FILE.jsonl|-``: validate and send touchpoints, one JSON object per line.

Each non-blank line is validated against touchpoint v1 and sent keyed by its most stable
identifier (the original bytes are sent, see ``TouchpointProducer.send_json``). ``--raw`` sends
lines unvalidated and unkeyed (to exercise the DLQ); a line larger than a Kafka record may be
is rejected as ``oversize`` by its number, the rest still sent. Batches are kept under the
topic's ``max.message.bytes`` when it can be read, so a line over it fails alone.
Progress goes to stderr every ``--progress-every`` seconds; a summary at the end (counts,
rejected reasons with the first line numbers, and each delivery error with the first line
numbers it failed; never line contents, which may hold personal data). ``--json`` also prints
the summary as one JSON object on stdout.

Exit codes: 0 every line sent and delivered; 1 some lines were rejected by validation (the
rest were sent); 3 some records failed delivery or were still undelivered when the flush timed
out (wins over 1), or Kafka could not be reached at all (one line on stderr); 2 usage errors
(argparse, ``-X``, the configuration) or an unreadable input file; 130 interrupted (Ctrl-C):
the lines read before it are flushed and in the summary (a second Ctrl-C stops the flush).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any, Final

import orjson
from confluent_kafka import KafkaError, KafkaException

from schemas.errors import OVERSIZE, InvalidEvent
from streams.cli.options import add_kafka_options, connect
from streams.producer import DeliveryReport, TouchpointProducer, topic_max_message_bytes

EXIT_OK: Final = 0
EXIT_REJECTED: Final = 1
EXIT_USAGE: Final = 2
EXIT_DELIVERY_FAILED: Final = 3
EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT, like a shell (and `loom`'s other commands)
FIRST_LINES_SHOWN: Final = 5


@dataclass(slots=True)
class ProduceSummary:
    lines: int = 0
    blank: int = 0
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    undelivered: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    first_lines: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    failure_reasons: Counter[str] = field(default_factory=Counter)
    failed_lines: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    seconds: float = 0.0
    interrupted: bool = False  # Ctrl-C: the lines read before it were flushed

    def reject(self, reason: str, line_no: int) -> None:
        self.rejected[reason] += 1
        if len(self.first_lines[reason]) < FIRST_LINES_SHOWN:
            self.first_lines[reason].append(line_no)

    def on_delivery(self, line_no: int, report: DeliveryReport) -> None:
        """The report of line ``line_no``'s record: a failed one is named by its number, as a
        rejected one is (a line the topic refuses as too large was only counted)."""
        if report.ok:
            self.delivered += 1
        else:
            self.failed += 1
            error = report.error or "unknown"
            self.failure_reasons[error] += 1
            lines = self.failed_lines[error]  # the first ones, whatever order reports come in
            lines.append(line_no)
            lines.sort()
            del lines[FIRST_LINES_SHOWN:]

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.failed or self.undelivered:
            return EXIT_DELIVERY_FAILED
        if self.rejected:
            return EXIT_REJECTED
        return EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "blank": self.blank,
            "sent": self.sent,
            "delivered": self.delivered,
            "failed": self.failed,
            "undelivered": self.undelivered,
            "rejected": dict(self.rejected),
            "rejected_first_lines": {k: v for k, v in self.first_lines.items() if v},
            "failure_reasons": dict(self.failure_reasons),
            "failed_first_lines": {k: v for k, v in self.failed_lines.items() if v},
            "seconds": round(self.seconds, 3),
            "rate_per_s": round(self.sent / self.seconds, 1) if self.seconds > 0 else None,
            "exit_code": self.exit_code,
        }

    def render(self) -> str:
        out = [
            f"{f'interrupted after line {self.lines}: ' if self.interrupted else ''}"
            f"lines {self.lines} (blank {self.blank}), sent {self.sent}, "
            f"delivered {self.delivered}, failed {self.failed}, undelivered {self.undelivered}, "
            f"rejected {sum(self.rejected.values())}",
            f"{self.seconds:.2f} s, {self.sent / self.seconds if self.seconds else 0:.0f} lines/s",
        ]
        for reason, count in sorted(self.rejected.items()):
            lines = ", ".join(map(str, self.first_lines[reason]))
            more = ", ..." if count > len(self.first_lines[reason]) else ""
            out.append(f"  rejected {reason}: {count} (lines {lines}{more})")
        for error, count in sorted(self.failure_reasons.items()):
            lines = ", ".join(map(str, self.failed_lines[error]))
            more = ", ..." if count > len(self.failed_lines[error]) else ""
            out.append(f"  delivery failed: {error}: {count} (lines {lines}{more})")
        return "\n".join(out)


def produce_lines(
    producer: TouchpointProducer,
    lines: Iterable[bytes],
    *,
    raw: bool = False,
    progress: IO[str] | None = None,
    progress_every_s: float = 5.0,
    flush_timeout_s: float = 60.0,
) -> ProduceSummary:
    """Send every line; returns the summary (after flushing). Ctrl-C stops the reading: what
    was read is flushed and summed up all the same (before, a 1 s close dropped what was still
    queued and nothing said what had become of the lines read)."""
    summary = ProduceSummary()
    started = last_report = time.monotonic()
    try:
        for line_no, line in enumerate(lines, start=1):
            summary.lines = line_no
            data = line.rstrip(b"\r\n")
            if not data.strip():
                summary.blank += 1
                continue
            callback = functools.partial(summary.on_delivery, line_no)
            try:
                if raw:
                    producer.send_raw(data, on_delivery=callback)
                else:
                    producer.send_json(data, on_delivery=callback)
            except InvalidEvent as exc:
                summary.reject(exc.reason, line_no)
                continue
            except KafkaException as exc:  # larger than a Kafka record may be (--raw)
                if exc.args[0].code() != KafkaError.MSG_SIZE_TOO_LARGE:
                    raise
                summary.reject(OVERSIZE, line_no)
                continue
            summary.sent += 1
            if progress is not None and line_no % 1000 == 0:
                now = time.monotonic()
                if now - last_report >= progress_every_s:
                    last_report = now
                    rejected = sum(summary.rejected.values())
                    progress.write(
                        f"produce: {line_no} lines, {summary.sent / (now - started):.0f}/s, "
                        f"delivered {summary.delivered}, rejected {rejected}\n"
                    )
                    progress.flush()
    except KeyboardInterrupt:
        summary.interrupted = True
    summary.undelivered = producer.flush(flush_timeout_s)
    summary.seconds = time.monotonic() - started
    return summary


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "produce",
        help="validate and send touchpoints from a JSONL file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE", help="JSONL file, or - for stdin")
    parser.add_argument("--topic", help="target topic (default: LOOM_TOPIC_RAW)")
    parser.add_argument("--raw", action="store_true", help="send lines unvalidated, unkeyed")
    parser.add_argument(
        "--progress-every", type=float, default=5.0, metavar="S", help="progress interval (s)"
    )
    parser.add_argument(
        "--flush-timeout", type=float, default=60.0, metavar="S", help="final flush timeout (s)"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    add_kafka_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        stream: IO[bytes] = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except OSError as exc:
        sys.stderr.write(f"produce: cannot read {args.file}: {exc.strerror}\n")
        return EXIT_USAGE
    try:
        settings = connect(args, kafka=True)
    except BaseException:
        stream.close()
        raise
    topic = args.topic or settings.topics.raw
    producer = TouchpointProducer(
        settings, topic=topic, topic_max_bytes=topic_max_message_bytes(settings, topic)
    )
    try:
        with stream:
            summary = produce_lines(
                producer,
                stream,
                raw=args.raw,
                progress=sys.stderr,
                progress_every_s=args.progress_every,
                flush_timeout_s=args.flush_timeout,
            )
    finally:
        producer.close(timeout=1.0)
    # the close may deliver what the final flush did not: count each record once
    summary.undelivered = summary.sent - summary.delivered - summary.failed
    sys.stderr.write(f"produce to {producer.topic}: {summary.render()}\n")
    if args.json:
        sys.stdout.write(orjson.dumps(summary.as_dict()).decode() + "\n")
    return summary.exit_code
