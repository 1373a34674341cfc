"""``loom rebuild --lane L``: replay a lane from the raw topic into Redis, then hand over.

See :mod:`streams.rebuild` for the preconditions and the switch-over; the runbook is
``docs/operating.md#rebuilding-a-lane``. Exit codes: 0 rebuilt, 1 failed or interrupted
(``--resume`` continues), 2 refused (a precondition; the message says what to do), 3 Kafka or
Redis did not answer (e.g. a group coordinator still loading after a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from resolvers.pipeline import LANES
from streams.cli.options import connect


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "rebuild", help="replay a lane from the raw topic's earliest offsets into Redis"
    )
    p.add_argument("--lane", required=True, choices=sorted(LANES), help="the lane to rebuild")
    p.add_argument(
        "--wipe",
        action="store_true",
        help="delete the lane's keys under LOOM_REDIS_PREFIX first (needs --yes)",
    )
    p.add_argument("--yes", action="store_true", help="confirm --wipe")
    p.add_argument(
        "--resume", action="store_true", help="continue an interrupted rebuild from its offsets"
    )
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="go on although retention deleted the raw topic's oldest records",
    )
    p.set_defaults(func=run)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from streams.batch_runner import BatchAbandoned, LaneStopped
    from streams.rebuild import Rebuild, RebuildRefusedError
    from streams.runtime import build_runtime
    from streams.topics import ensure_topics

    if args.wipe and not args.yes:
        say(f"--wipe deletes every {args.lane} key in Redis: add --yes to confirm")
        return 2
    logging.getLogger("streams").setLevel(logging.WARNING)  # the progress lines tell the story
    # one line naming a server that does not answer (exit 3), as every command: a Kafka down was
    # a bare KafkaError 30 s later
    settings = connect(args, kafka=True, redis=True, lane=args.lane)
    ensure_topics(settings)
    rebuild = Rebuild(
        build_runtime(settings, LANES[args.lane]),
        wipe=args.wipe,
        resume=args.resume,
        allow_partial=args.allow_partial,
        progress=say,
    )

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, rebuild.stop)
        return await rebuild.run()

    try:
        report = asyncio.run(main())
    except RebuildRefusedError as exc:
        say(f"loom rebuild: {exc}")
        return 2
    except LaneStopped as exc:
        say(f"loom rebuild: stopped ({exc}); fix the cause, then rerun with --resume")
        return 1
    except BatchAbandoned:
        say("loom rebuild: interrupted; rerun with --resume to continue")
        return 1
    if rebuild.stopping.is_set():
        say(
            f"loom rebuild: interrupted after {report.records:,} records; "
            f"rerun with --resume to continue"
        )
        return 1
    say(
        f"rebuilt the {report.lane} lane: {report.records:,} records in {report.seconds:.1f} s "
        f"({report.dead_letters} dead letters), generation {report.generation}"
    )
    if report.outbox_left:
        say(f"{report.outbox_left} outbox records still wait; the workers' relays deliver them")
    say(
        f"{settings.group_id(report.lane)} now continues from the end offsets: start the "
        f"{report.lane} workers (loom worker --role {report.lane})"
    )
    return 0
