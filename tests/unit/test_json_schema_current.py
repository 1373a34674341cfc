"""The committed JSON Schema files match the pydantic models."""

from __future__ import annotations

from pathlib import Path

import orjson

from schemas.export import JSON_DIR, main, rendered, stale_files


def test_committed_schema_files_are_current() -> None:
    stale = stale_files()
    assert stale == [], f"stale JSON Schema files {stale}: run `python -m schemas.export`"


def test_schema_describes_the_contract() -> None:
    schema = orjson.loads((JSON_DIR / "touchpoint-v1.json").read_bytes())
    assert schema["$id"].endswith("touchpoint-v1.json")
    assert set(schema["required"]) == {"event_id", "type", "channel", "occurred_at"}
    event_types = schema["$defs"]["EventType"]["enum"]
    assert len(event_types) == 20
    assert {"inventory_counted", "custom"} <= set(event_types)
    assert schema["properties"]["name"]["anyOf"][0]["maxLength"] == 256


def test_check_detects_a_stale_file(tmp_path: Path) -> None:
    assert main(["--dir", str(tmp_path)]) == 0
    assert main(["--check", "--dir", str(tmp_path)]) == 0
    (name,) = rendered()
    (tmp_path / name).write_bytes(b"{}\n")
    assert main(["--check", "--dir", str(tmp_path)]) == 1
