"""What the Kafka broker's own work per event depends on, beyond Loom's requests (ADR 0042).

Kafka creates each new segment's offset and time index as a sparse file of
``log.index.size.max.bytes`` and maps it. The first write into it faults a page in, and the
kernel reads ahead from the disk, zero-filling the sparse file's holes: on a disk read ahead by
8 MiB (the 2-core bench VM's ``read_ahead_kb``), 8 MiB of page cache per index file at Kafka's
default 10 MiB. A bench that creates fresh topics pays that while its backlog is produced, so
the broker's CPU per event depends on these two figures as much as on Loom: the bench records
them with its machine facts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import ConfigResource, ResourceType  # type: ignore[attr-defined]

from streams import kafka_clients
from streams.settings import LoomSettings

#: Bytes per entry of a segment's offset index (relative offset, position) and time index
#: (timestamp, relative offset): Kafka's ``OffsetIndex`` and ``TimeIndex``.
OFFSET_ENTRY_BYTES = 8
TIME_ENTRY_BYTES = 12


def index_holds_segment(index_bytes: int, segment_bytes: int, interval_bytes: int) -> bool:
    """Whether indexes of ``index_bytes`` hold a whole segment's entries (Kafka adds at most one
    per ``interval_bytes`` of log): if not, segments roll when their index fills, early."""
    entries = -(-segment_bytes // interval_bytes)
    return index_bytes // max(OFFSET_ENTRY_BYTES, TIME_ENTRY_BYTES) >= entries


def read_ahead_kb(path: str | Path, sys_root: Path = Path("/sys")) -> int | None:
    """How far the block device holding ``path`` reads ahead, KiB (a partition reads ahead as
    its disk); None when ``path`` is on no block device (tmpfs, overlay) or it cannot be read."""
    try:
        dev = os.stat(path).st_dev
    except OSError:
        return None
    node = sys_root / "dev" / "block" / f"{os.major(dev)}:{os.minor(dev)}"
    for queue in (node / "queue", node.resolve().parent / "queue"):
        try:
            return int((queue / "read_ahead_kb").read_text())
        except (OSError, ValueError):
            continue
    return None


def broker_facts(bootstrap: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """The first broker's index file size and its log directory's read-ahead (when that
    directory is on this machine), or why they are unknown."""
    admin = kafka_clients.admin(LoomSettings(kafka_bootstrap=bootstrap))
    try:
        broker_id = min(admin.list_topics(timeout=timeout_s).brokers)
        resource = ConfigResource(ResourceType.BROKER, str(broker_id))
        configs = admin.describe_configs([resource])[resource].result(timeout=timeout_s)
        index = int(configs["log.index.size.max.bytes"].value)
        segment = int(configs["log.segment.bytes"].value)
        dirs = (configs["log.dirs"].value or configs["log.dir"].value or "").split(",")
    except (KafkaException, KeyError, TypeError, ValueError) as exc:
        return {"error": f"cannot describe the broker: {exc!r}"}
    local = [d for d in dirs if d and os.path.isdir(d)]
    return {
        "index_bytes": index,
        "segment_bytes": segment,
        "log_dir_read_ahead_kb": read_ahead_kb(local[0]) if local else None,
    }


def describe(facts: dict[str, Any]) -> str:
    """One phrase of :func:`broker_facts` for the bench's summary."""
    if "error" in facts:
        return str(facts["error"])
    ahead = facts.get("log_dir_read_ahead_kb")
    disk = "log dir not on this machine" if ahead is None else f"log disk read-ahead {ahead:,} KiB"
    return f"index files {facts['index_bytes'] // 1024:,} KiB, {disk}"
