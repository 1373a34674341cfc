"""``loom inventory get`` and ``loom inventory export``: read stock the way storefronts do.

    loom inventory get SKU-1                      # table: every location and the totals
    loom inventory get SKU-1 --location oslo-1    # one location
    loom inventory get SKU-1 --json               # the snapshot document as JSON
    loom inventory export --out stock.jsonl       # every SKU's snapshot, JSONL; progress on stderr

Both read through :class:`streams.inventory_reader.InventoryReader` (one round trip per SKU).
Exit codes: 0 found / exported, 1 SKU (or location) not found.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, TextIO

import orjson

from streams.cli.options import add_redis_options
from streams.cli.reading import export_jsonl, redis_target
from streams.inventory_reader import InventoryReader

#: Progress line on stderr every this many exported SKUs.

COLUMNS: Final = (
    ("location", "location"),
    ("on_hand", "on hand"),
    ("committed", "committed"),
    ("available", "available"),
    ("available_to_sell", "to sell"),
    ("oversold", "oversold"),
    ("last_count_at", "last count"),
    ("updated_at", "updated"),
)
NUMERIC: Final = frozenset({"on_hand", "committed", "available", "available_to_sell"})


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("inventory", help="read stock snapshots (per SKU, per location)")
    sub = parser.add_subparsers(dest="inventory_command", metavar="ACTION", required=True)
    get = sub.add_parser("get", help="one SKU's stock across locations")
    get.add_argument("sku", help="the SKU")
    get.add_argument("--location", help="show only this location id")
    get.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    add_redis_options(get)
    get.set_defaults(func=run_get)

    export = sub.add_parser("export", help="every SKU's snapshot as JSON lines")
    export.add_argument("--out", type=Path, help="write to FILE instead of stdout")
    add_redis_options(export)
    export.set_defaults(func=run_export)


def _reader(args: argparse.Namespace) -> InventoryReader:
    client, prefix, _ = redis_target(args, lane="inventory")
    return InventoryReader(client, prefix)


def run_get(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    reader = _reader(args)
    try:
        doc = reader.get(args.sku)
    finally:
        reader.client.close()
    if doc is None:
        print(f"loom inventory get: no stock known for sku {args.sku!r}", file=sys.stderr)
        return 1
    if args.location is not None:
        location = doc.get("locations", {}).get(args.location)
        if location is None:
            print(
                f"loom inventory get: sku {args.sku!r} has no stock at {args.location!r}",
                file=sys.stderr,
            )
            return 1
        doc = {
            "sku": doc["sku"],
            "version": doc.get("version"),
            "locations": {args.location: location},
        }
    if args.json:
        out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out.write(render(doc))
    return 0


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "YES" if value else ""
    return str(value)


def render(doc: Mapping[str, Any]) -> str:
    """A fixed-width table: one row per location, then TOTAL when the totals are present."""
    head = f"SKU {doc.get('sku', '?')}  (version {doc.get('version', '?')})"
    rows: list[list[str]] = [[title for _, title in COLUMNS]]
    for location_id, loc in doc.get("locations", {}).items():
        rows.append([location_id, *(_cell(loc.get(k)) for k, _ in COLUMNS[1:])])
    totals = doc.get("totals")
    if totals is not None:
        rows.append(["TOTAL", *(_cell(totals.get(k)) for k, _ in COLUMNS[1:])])
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [head, ""]
    for row in rows:
        cells = [
            cell.rjust(width) if key in NUMERIC else cell.ljust(width)
            for (key, _), cell, width in zip(COLUMNS, row, widths, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def run_export(args: argparse.Namespace) -> int:
    reader = _reader(args)
    try:
        export_jsonl(reader.iter_all(), args.out, "skus")
    finally:
        reader.client.close()
    return 0
