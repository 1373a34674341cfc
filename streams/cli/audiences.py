"""``loom audiences``: the audiences of ``LOOM_AUDIENCES_FILE`` and their members.

    loom audiences list                        # name, marketing, time-dependent, members
    loom audiences show running-shoe-reminder  # the definition and the member count
    loom audiences members big-spenders        # profile ids, one a line (SSCAN)
    loom audiences members big-spenders --count
    loom audiences preview 'orders >= 3 and consent.marketing'   # count and a sample, unsaved
    loom audiences refresh [--now 2026-12-01T00:00:00Z]          # the scheduled pass, now

Exit codes: 0 done, 1 no such audience, 2 an invalid file or expression (one line naming the
file, the audience and the column).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from resolvers.audiences import Audience, Audiences, Env, ExpressionError, compile_expression
from resolvers.timefmt import TimeFormatError, parse_time
from streams.audience_refresh import AudienceRefresh, read_medians
from streams.cli.options import add_redis_options
from streams.cli.reading import PROGRESS_EVERY, redis_target
from streams.errors import RebuildRunningError, StateLostError
from streams.reader import ProfileReader
from streams.redis_keys import Keys
from streams.redis_store import RedisStore
from streams.runtime import base_context, configured_audiences, configured_rules
from streams.settings import ConfigError, LoomSettings

SAMPLE: Final = 10


def register(subparsers: Any) -> None:
    top = subparsers.add_parser("audiences", help="audiences: definitions, members, preview")
    sub = top.add_subparsers(dest="audiences_command", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="every audience of LOOM_AUDIENCES_FILE with its size")
    ls.set_defaults(func=run_list)
    show = sub.add_parser("show", help="one audience's definition and size")
    show.add_argument("name", help="the audience's name in LOOM_AUDIENCES_FILE")
    show.set_defaults(func=run_show)
    members = sub.add_parser("members", help="the profile ids of an audience")
    members.add_argument("name", help="the audience's name in LOOM_AUDIENCES_FILE")
    members.add_argument("--count", action="store_true", help="print only how many")
    members.set_defaults(func=run_members)
    preview = sub.add_parser("preview", help="evaluate an expression over the profiles")
    preview.add_argument("expression", help="an audience expression (see README: Audiences)")
    preview.add_argument("--sample", type=int, default=SAMPLE, help="ids to show (default 10)")
    preview.add_argument("--now", help="evaluate at this RFC 3339 time (default: now)")
    preview.set_defaults(func=run_preview)
    refresh = sub.add_parser("refresh", help="run the scheduled pass once, now")
    refresh.add_argument(
        "--now", help="the pass's clock for every batch, RFC 3339 (default: now, read per batch)"
    )
    refresh.add_argument("--batch", type=int, default=200, help="profiles per commit")
    refresh.set_defaults(func=run_refresh)
    for p in (ls, show, members, preview, refresh):
        add_redis_options(p)


def _clock(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        return parse_time(text)
    except TimeFormatError as exc:
        raise ConfigError(f"--now: {exc}") from None


def _audience(audiences: Audiences, name: str) -> Audience | None:
    found = audiences.by_name.get(name)
    if found is None:
        known = ", ".join(audiences.by_name) or "none defined (LOOM_AUDIENCES_FILE)"
        print(f"loom audiences: no audience {name!r} (known: {known})", file=sys.stderr)
    return found


def _target(args: argparse.Namespace) -> tuple[Any, Keys, LoomSettings, Audiences]:
    client, prefix, settings = redis_target(args)
    return client, Keys(prefix), settings, configured_audiences(settings)


def run_list(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    client, keys, _, audiences = _target(args)
    for a in audiences:
        flags = ", ".join(
            f for f, on in (("marketing", a.marketing), ("time", a.expression.time_dependent)) if on
        )
        out.write(f"{a.name}\t{client.scard(keys.audience(a.name))}\t{flags or '-'}\n")
    return 0


def run_show(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    client, keys, _, audiences = _target(args)
    a = _audience(audiences, args.name)
    if a is None:
        return 1
    out.write(
        f"name: {a.name}\ndescription: {a.description}\nexpression: {a.expression.text}\n"
        f"marketing: {'yes' if a.marketing else 'no'}\n"
        f"time-dependent: {'yes' if a.expression.time_dependent else 'no'}\n"
        f"reads: {', '.join(sorted(a.expression.fields))}\n"
        f"members: {client.scard(keys.audience(a.name))}\n"
    )
    return 0


def run_members(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    client, keys, _, audiences = _target(args)
    if _audience(audiences, args.name) is None:
        return 1
    key = keys.audience(args.name)
    if args.count:
        out.write(f"{client.scard(key)}\n")
        return 0
    for member in client.sscan_iter(key, count=1000):
        out.write((member.decode() if isinstance(member, bytes) else member) + "\n")
    return 0


def run_preview(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        expression = compile_expression(args.expression)
    except ExpressionError as exc:
        print(f"loom audiences preview: {exc}", file=sys.stderr)
        return 2
    client, keys, settings, _ = _target(args)
    now, medians = _clock(args.now), read_medians(client, keys)
    reader = ProfileReader(client, settings.redis_prefix)
    scanned, matched = 0, 0
    sample: list[str] = []
    for doc in reader.iter_profiles():
        scanned += 1
        if expression.matches(Env(doc, now, medians)):
            matched += 1
            if len(sample) < args.sample:
                sample.append(doc["profile_id"])
        if scanned % PROGRESS_EVERY == 0:
            print(f"scanned {scanned} profiles, {matched} match ...", file=sys.stderr)
    out.write(f"{matched} of {scanned} profiles match\n")
    out.writelines(f"{pid}\n" for pid in sample)
    return 0


#: Why ``loom audiences refresh`` refuses while a rebuild of the profiles lane runs.
_REBUILDING: Final = (
    "`loom rebuild --lane profiles` holds the lane's lease in Redis: nothing is refreshed while "
    "it runs (it evaluates every profile's audiences itself after its replay); run the refresh "
    "again once it finished"
)


def fenced_store(client: Any, settings: LoomSettings) -> RedisStore:
    """The profiles lane's store for a pass that commits as the lane does, fenced as its
    workers are (ADR 0044): refused while a rebuild of the lane holds its lease, and each
    commit checked against the generation Redis holds now and the lease (nothing written if
    a rebuild started or the state was replaced meanwhile)."""
    prefix = settings.redis_prefix
    if client.exists(Keys(prefix).rebuild_lease("profiles")):
        raise RebuildRunningError(f"{_REBUILDING}; nothing was written")
    store = RedisStore(client, prefix=prefix, seen_ttl_s=settings.dedupe_ttl_s)
    marker = client.get(store.keys.generation)  # none before a worker's first start
    store.generation = marker.decode() if marker is not None else None
    return store


def run_refresh(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    client, keys, settings, audiences = _target(args)
    # the clock is read for each batch, as the worker's pass reads it (``AudienceRefresh``):
    # read once here, a lane write after it would be undone at the older clock
    fixed = None if args.now is None else _clock(args.now)
    context = base_context(settings, *configured_rules(settings), audiences)
    medians = read_medians(client, keys)
    store = fenced_store(client, settings)
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done = n
        if n % PROGRESS_EVERY < args.batch:
            print(f"refreshed {n} profiles ...", file=sys.stderr)

    try:
        report = AudienceRefresh(
            store,
            client,
            lambda: replace(context, now=fixed or _clock(None), medians=medians),
            batch=args.batch,
            progress=progress,
        ).run()
    except StateLostError as exc:
        what = _REBUILDING if isinstance(exc, RebuildRunningError) else str(exc)
        raise StateLostError(f"{what}; stopped after {done} profiles, the batch refused") from None
    out.write(
        f"{report.profiles} profiles in {report.seconds:.1f}s: {report.moved} moved "
        f"({sum(report.entered.values())} entries, {sum(report.exited.values())} exits), "
        f"{report.conflicts} conflicts retried, {report.left_to_the_lane} left to the lane "
        f"(it kept writing them), {len(report.medians)} category medians\n"
    )
    return 0
