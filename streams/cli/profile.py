"""``loom profile get`` and ``loom profiles export``: read profiles the way downstream services do.

    loom profile get email:jane@example.com      # any identifier type:value (raw is fine)
    loom profile get customer_id:C-1001 --json
    loom profile get p_3f2a...                   # a profile id (merge redirects followed)
    loom profiles export --out profiles.jsonl    # every live profile, JSONL; progress on stderr

Both read through :class:`streams.reader.ProfileReader` (one round trip per lookup).
Exit codes: 0 found / exported, 1 not found, 2 not a valid identifier.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import orjson

from streams.cli.options import add_redis_options
from streams.cli.reading import export_jsonl, redis_target
from streams.reader import InvalidIdentifierError, ProfileReader, split_key

#: Snapshot fields shown first by the human output, in this order; the rest follow.
LEADING = ("profile_id", "version", "created_at", "merged_from", "identifiers")


def register(subparsers: Any) -> None:
    one = subparsers.add_parser("profile", help="read one profile by identifier or profile id")
    one_sub = one.add_subparsers(dest="profile_command", metavar="ACTION", required=True)
    get = one_sub.add_parser("get", help="look a profile up by type:value or profile id")
    get.add_argument(
        "key", help="identifier as TYPE:VALUE (email:jane@example.com) or a profile id (p_...)"
    )
    get.add_argument("--region", help="default region for phone numbers (e.g. NO)")
    get.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    add_redis_options(get)
    get.set_defaults(func=run_get)

    many = subparsers.add_parser("profiles", help="bulk operations on profiles")
    many_sub = many.add_subparsers(dest="profiles_command", metavar="ACTION", required=True)
    export = many_sub.add_parser("export", help="every live profile as JSON lines")
    export.add_argument("--out", type=Path, help="write to FILE instead of stdout")
    add_redis_options(export)
    export.set_defaults(func=run_export)


def _reader(args: argparse.Namespace) -> ProfileReader:
    client, prefix, settings = redis_target(args)
    return ProfileReader(client, prefix, default_region=settings.default_region)


parse_key = split_key


def run_get(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    reader = _reader(args)
    id_type, value = parse_key(args.key)
    try:
        if id_type is None:
            snapshot = reader.get(value)
        else:
            snapshot = reader.lookup(id_type, value, region=args.region)
    except InvalidIdentifierError as exc:
        print(f"loom profile get: {exc}", file=sys.stderr)
        return 2
    finally:
        reader.client.close()
    if snapshot is None:
        what = f"{id_type} identifier" if id_type else "profile id"
        print(f"loom profile get: no profile for that {what}", file=sys.stderr)
        return 1
    if args.json:
        out.write(orjson.dumps(snapshot, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out.write(render(snapshot))
    return 0


def _empty(value: Any) -> bool:
    return value is None or value in ("", [], {})


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_scalar(v) for v in value)
    return str(value)


def _lines(value: Any, indent: int) -> list[str]:
    pad = "  " * indent
    if isinstance(value, Mapping):
        lines = []
        for k, v in value.items():
            if _empty(v):
                continue
            if isinstance(v, Mapping) or (
                isinstance(v, list) and any(isinstance(x, Mapping) for x in v)
            ):
                lines.append(f"{pad}{k}:")
                lines.extend(_lines(v, indent + 1))
            else:
                lines.append(f"{pad}{k}: {_scalar(v)}")
        return lines
    if isinstance(value, list):
        lines = []
        for item in value:
            if isinstance(item, Mapping):
                inner = _lines(item, indent + 1)
                if inner:
                    lines.append(f"{pad}- {inner[0].strip()}")
                    lines.extend(inner[1:])
            else:
                lines.append(f"{pad}- {_scalar(item)}")
        return lines
    return [f"{pad}{_scalar(value)}"]


def render(snapshot: Mapping[str, Any]) -> str:
    """Human-readable profile: header, identifiers, then every non-empty field."""
    head = f"Profile {snapshot.get('profile_id', '?')}  (version {snapshot.get('version', '?')})"
    lines = [head, "=" * len(head)]
    rest = {k: v for k, v in snapshot.items() if k not in ("profile_id", "version", "schema")}
    ordered = {k: rest[k] for k in LEADING if k in rest} | rest
    lines.extend(_lines(ordered, 0))
    return "\n".join(lines) + "\n"


def run_export(args: argparse.Namespace) -> int:
    reader = _reader(args)
    try:
        export_jsonl(reader.iter_profiles(), args.out, "profiles")
    finally:
        reader.client.close()
    return 0
