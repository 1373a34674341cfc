"""What the reader commands (``profile``, ``inventory``, ``erase --wait``) share: their Redis
client and JSONL export."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

import orjson
import redis

from streams import redis_clients
from streams.cli.options import connect
from streams.settings import ConfigError, LoomSettings

PROGRESS_EVERY = 10_000


def redis_target(
    args: argparse.Namespace, lane: str = "profiles"
) -> tuple[redis.Redis, str, LoomSettings]:
    """The client and key prefix the arguments (else the settings) name for ``lane``'s state,
    and the settings; the server is checked first (one line and exit 1 if it cannot be used)."""
    settings = connect(args, redis=True, lane=lane)
    return redis_clients.client(settings), settings.redis_prefix, settings


class ExportTargetError(ConfigError):
    """The ``--out`` file cannot be written (one line, exit 2 like a usage error)."""


def export_jsonl(docs: Iterable[Mapping[str, Any]], out: Path | None, noun: str) -> int:
    """Write ``docs`` as JSON lines to ``out`` (stdout if None), progress on stderr."""
    try:
        sink: TextIO = out.open("w", encoding="utf-8") if out else sys.stdout
    except OSError as exc:
        raise ExportTargetError(f"cannot write {out}: {exc.strerror}") from None
    started = time.monotonic()
    count = 0
    try:
        for doc in docs:
            sink.write(orjson.dumps(doc).decode() + "\n")
            count += 1
            if count % PROGRESS_EVERY == 0:
                print(f"exported {count} {noun} ...", file=sys.stderr)
    finally:
        if out:
            sink.close()
        else:
            sink.flush()
    where = f" to {out}" if out else ""
    print(f"exported {count} {noun}{where} in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return count
