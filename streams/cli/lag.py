"""``loom lag``: consumer lag per group, topic and partition, in messages and seconds.

Groups: the two lane groups (``<LOOM_APP_ID>-profiles``, ``<LOOM_APP_ID>-inventory``; one that
does not exist yet is named on stderr), every group on the cluster with ``--all``, or the one
named with ``--group`` (e.g. ``loom-dlq-replay``; one that does not exist is named on stderr,
exit 1). When a broker does not answer the listing (its groups would be missing), one line on
stderr says so, a group asked for and not listed is "not listed" (not "no consumer group"), and
the exit code is 3. Columns match Kafka's
``kafka-consumer-groups --describe`` plus ``LAG-SECONDS``. Internal topics (faust's
``<group>-__assignor-__leader``, Kafka's ``__*``) are hidden unless ``--internal``.

Each group's header says how far behind it is: total lag in messages, the largest per
partition, and in seconds the age of the oldest record not yet consumed ("unknown" when a
partition with lag has no readable record time).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

import orjson

from resolvers.pipeline import LANES
from streams import kafka_clients
from streams.cli.options import add_kafka_options, connect
from streams.lag import GroupLag, LagReader, LagSnapshot, OffsetTimeTable
from streams.settings import LoomSettings

COLUMNS = (
    "GROUP",
    "TOPIC",
    "PARTITION",
    "CURRENT-OFFSET",
    "LOG-END-OFFSET",
    "LAG",
    "LAG-SECONDS",
    "CONSUMER-ID",
    "HOST",
    "CLIENT-ID",
)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("lag", help="consumer lag per partition (messages and seconds)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--group", "-g", help="only this consumer group")
    which.add_argument("--all", action="store_true", help="all groups, not only the lanes'")
    p.add_argument("--json", action="store_true", help="one JSON document per reading")
    p.add_argument(
        "--watch",
        nargs="?",
        type=float,
        const=5.0,
        default=None,
        metavar="SECONDS",
        help="repeat every SECONDS (default 5) until interrupted",
    )
    p.add_argument(
        "--internal",
        action="store_true",
        help="also show internal topics (faust's __assignor-__leader, Kafka's __*)",
    )
    add_kafka_options(p)
    p.set_defaults(func=run)


def lane_groups(settings: LoomSettings) -> list[str]:
    """The consumer groups of the lanes' workers, the ones ``loom lag`` and the exporter watch.

    Not every group with the app id as prefix: ``loom dlq replay``'s group
    (``<app_id>-dlq-replay``) has lag and no commits between replays, which would read as a
    stopped consumer. With ``LOOM_INVENTORY_ROUTING=by-sku``, the inventory workers' router
    group too (ADR 0014)."""
    groups = [settings.group_id(lane) for lane in LANES]
    if settings.inventory_routing == "by-sku":
        groups.append(settings.router_group_id())
    return groups


def reader_for(settings: LoomSettings) -> LagReader:
    """A lag reader on the deployment's Kafka, with its security and client settings."""
    return LagReader(
        settings.kafka_bootstrap, extra_config=kafka_clients.connection_config(settings)
    )


def seconds_behind(group: GroupLag) -> str:
    """``3.214 s``, or ``unknown`` when a lagging partition has no known record time."""
    secs = group.seconds_behind
    return "unknown" if secs is None else f"{secs:.3f} s"


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def render_table(groups: tuple[GroupLag, ...]) -> str:
    """Plain-text table, one section per group (like ConsumerGroupCommand)."""
    out: list[str] = []
    for g in groups:
        out.append(
            f"\nGroup {g.group!r}: state {g.state}, {len(g.members)} member(s), "
            f"lag {g.total_lag} messages (at most {g.max_lag} on one partition), "
            f"{seconds_behind(g)} behind"
        )
        rows = [COLUMNS]
        rows += [
            (
                g.group,
                p.topic,
                str(p.partition),
                _cell(p.committed),
                _cell(p.end),
                _cell(p.lag),
                _cell(p.lag_seconds),
                _cell(p.consumer_id),
                _cell(p.host),
                _cell(p.client_id),
            )
            for p in g.partitions
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
        out.extend(
            " ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
        )
    return "\n".join(out).lstrip("\n")


def snapshot_json(snapshot: LagSnapshot) -> bytes:
    return orjson.dumps(
        {"taken_at": snapshot.taken_at, "groups": [g.to_json() for g in snapshot.groups]}
    )


def _emit(snapshot: LagSnapshot, as_json: bool, out: TextIO) -> None:
    if as_json:
        out.write(snapshot_json(snapshot).decode() + "\n")
    elif snapshot.groups:
        out.write(render_table(snapshot.groups) + "\n")
    else:
        out.write("no consumer groups found\n")
    out.flush()


def run(args: argparse.Namespace) -> int:
    settings = connect(args, kafka=True)
    reader = reader_for(settings)
    table = OffsetTimeTable()
    while True:
        missing: list[str] = []
        listing = reader.list_groups(None if args.all else args.group or settings.app_id)
        if not listing.complete:  # a group not listed may exist: say so, claim nothing gone
            print(f"{listing.describe_errors()}: groups may be missing", file=sys.stderr)
        if args.group:
            groups = [g for g in listing.groups if g == args.group]
            missing = [] if groups else [args.group]
        elif args.all:
            groups = list(listing.groups)
        else:
            groups = [g for g in lane_groups(settings) if g in listing.groups]
            for lane_group in sorted(set(lane_groups(settings)) - set(listing.groups)):
                print(
                    f"no consumer group {lane_group}: no worker of that lane has run"
                    if listing.complete
                    else f"consumer group {lane_group} not listed",
                    file=sys.stderr,
                )
        for group in missing:  # not a DEAD group with "lag 0", which reads as keeping up
            print(
                f"no consumer group {group}"
                if listing.complete
                else f"consumer group {group} not listed",
                file=sys.stderr,
            )
        snapshot = reader.read(groups, table=table, internal=args.internal)
        _emit(snapshot, args.json, sys.stdout)
        if args.watch is None:
            return 3 if not listing.complete else 1 if missing else 0
        time.sleep(max(args.watch, 0.1))
