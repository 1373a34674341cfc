"""Export the versioned JSON Schema files of the event contract.

``python -m schemas.export`` (re)writes ``schemas/json/touchpoint-v1.json`` from the pydantic
models; ``python -m schemas.export --check`` exits 1 when a committed file is stale (a unit test
does the same). Commit the regenerated file together with any model change.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import orjson

from schemas.touchpoint import SCHEMA_VERSION, Touchpoint

JSON_DIR: Final = Path(__file__).parent / "json"


def touchpoint_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of touchpoint v1, as producers should validate it."""
    schema = Touchpoint.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://loom.dev/schemas/touchpoint-v{SCHEMA_VERSION}.json",
        **schema,
    }


def rendered() -> dict[str, bytes]:
    """File name -> exact bytes of every exported schema."""
    opts = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE
    return {f"touchpoint-v{SCHEMA_VERSION}.json": orjson.dumps(touchpoint_schema(), option=opts)}


def stale_files(directory: Path = JSON_DIR) -> list[str]:
    """Names of the schema files that are missing or differ from the models."""
    return [
        name
        for name, content in rendered().items()
        if not (directory / name).is_file() or (directory / name).read_bytes() != content
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    parser.add_argument("--dir", type=Path, default=JSON_DIR, help="output directory")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.dir)
        for name in stale:
            sys.stderr.write(f"stale: {name} (run python -m schemas.export)\n")
        return 1 if stale else 0
    args.dir.mkdir(parents=True, exist_ok=True)
    for name, content in rendered().items():
        (args.dir / name).write_bytes(content)
        sys.stderr.write(f"wrote {args.dir / name}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
