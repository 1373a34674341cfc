"""Chaos tier harness: real Kafka, a real ``redis-server`` of the test's own (so it can be
restarted, made read-only or full), real ``loom worker`` processes, and the picture of what a
run left behind, to compare with a clean run of the same input.

* :class:`~local_infra.RedisServer` (tests/local_infra.py): one ``redis-server`` on a free
  port, with or without AOF; ``restart()`` after SIGKILL (state survives only with AOF);
* :class:`Chaos`: an e2e :class:`~e2e_harness.Loom` deployment on that server, whose workers
  get a fixed health port each and, optionally, a fault (``LOOM_CHAOS``, see
  ``inject/sitecustomize.py``);
* :class:`Picture`: what must not depend on faults: the event ids each lane processed, every
  person's identifiers with their order counts and revenue, every stock position, the last
  stock level per position on ``inventory.changes``, and the DLQ deduplicated by source offset.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import loom_servers
import orjson
import pytest
from e2e_harness import Loom
from local_infra import RedisServer
from prometheus_client.parser import text_string_to_metric_families

from streams.redis_store import processed_ids

INJECT = Path(__file__).resolve().parent / "inject"


def dlq_key(value: bytes | None) -> str:
    """How a DLQ record is named in a :class:`Picture`: ``id:<event_id>`` when its bytes are a
    JSON object with a string ``event_id``, else ``raw:<sha256 prefix>`` of the bytes."""
    try:
        event_id = orjson.loads(value or b"").get("event_id")
    except (orjson.JSONDecodeError, AttributeError):
        event_id = None
    if isinstance(event_id, str):
        return f"id:{event_id}"
    return f"raw:{hashlib.sha256(value or b'').hexdigest()[:16]}"


def free_loopback_ports(count: int) -> list[int]:
    """``count`` distinct ports the kernel reports free on 127.0.0.1."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


@dataclass(frozen=True)
class Picture:
    """What a run left behind that must not depend on faults (see the module docstring)."""

    seen: Mapping[str, frozenset[str]]  # lane -> processed event ids
    people: Mapping[frozenset[str], tuple[Any, ...]]
    stock: Mapping[str, Mapping[str, tuple[int, int]]]  # sku -> location -> (on_hand, committed)
    levels: Mapping[str, tuple[int, ...]]  # sku@location -> on_hand values on inventory.changes
    dlq: Mapping[str, str]  # dlq_key(original value) -> reason (deduplicated by source offset)

    def diff(self, other: Picture) -> dict[str, Any]:
        """What differs from ``other`` (the reference), in numbers and a few examples."""
        out: dict[str, Any] = {}
        for lane in sorted(set(self.seen) | set(other.seen)):
            lost = other.seen.get(lane, frozenset()) - self.seen.get(lane, frozenset())
            extra = self.seen.get(lane, frozenset()) - other.seen.get(lane, frozenset())
            if lost or extra:
                out[f"seen {lane}"] = {"lost": len(lost), "extra": len(extra)}
        wrong_people = {k for k in set(self.people) | set(other.people)
                        if self.people.get(k) != other.people.get(k)}  # fmt: skip
        if wrong_people:
            out["people"] = {"differ": len(wrong_people), "of": len(other.people)}
        wrong_stock = {s for s in set(self.stock) | set(other.stock)
                       if self.stock.get(s) != other.stock.get(s)}  # fmt: skip
        if wrong_stock:
            example = sorted(wrong_stock)[0]
            out["stock"] = {
                "differ": len(wrong_stock),
                "of": len(other.stock),
                "example": (example, self.stock.get(example), other.stock.get(example)),
            }
        # at least once; in commit order per position without faults (one relay at a time,
        # ADR 0043), but a relay killed or a broker restarted mid-delivery may send a level
        # again later: the final level of every position the reference published must be
        # among the levels published for it
        final = {f"{sku}@{loc}": on_hand for sku, locs in other.stock.items()
                 for loc, (on_hand, _committed) in locs.items()}  # fmt: skip
        missing = {k for k in other.levels if final.get(k) not in self.levels.get(k, ())}
        if missing:
            out["inventory.changes"] = {
                "final level missing": len(missing),
                "of": len(other.levels),
            }
        return out


class Chaos(Loom):
    """An e2e deployment on the test's own Redis server, with faults."""

    def __init__(
        self, kafka: str, server: RedisServer, tmp: Path, ports: Callable[[int], list[int]]
    ) -> None:
        super().__init__(loom_servers.plain(kafka, server.url), tmp)
        self.server = server
        self._ports = ports
        self.port: dict[Any, int] = {}

    def start_lane(
        self, role: str, *, fault: Mapping[str, Any] | None = None, **env: str
    ) -> subprocess.Popen[bytes]:
        """One worker of ``role`` with its own health port (``self.port[proc]``)."""
        (port,) = self._ports(1)
        extra = {
            "LOOM_WEB_PORT": str(port),
            "LOOM_INVENTORY_WEB_PORT": str(port),
            "LOOM_RETRY_BACKOFF_MAX_S": "1",
            "LOOM_SHUTDOWN_TIMEOUT_S": "15",
            **env,
        }
        if fault is not None:
            extra["LOOM_CHAOS"] = orjson.dumps(fault).decode()
            extra["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(INJECT), os.environ.get("PYTHONPATH", "")) if p
            )
        (proc,) = self.start_worker(role, env=extra)
        self.port[proc] = port
        return proc

    def start_lane_relay(self, role: str, **env: str) -> subprocess.Popen[bytes]:
        """One ``loom relay`` of ``role`` with its own health port (``self.port[proc]``)."""
        (port,) = self._ports(1)
        extra = {
            "LOOM_RELAY_WEB_PORT": str(port),
            "LOOM_INVENTORY_RELAY_WEB_PORT": str(port),
            "LOOM_RETRY_BACKOFF_MAX_S": "1",
            **env,
        }
        (proc,) = self.start_relay(role, env=extra)
        self.port[proc] = port
        return proc

    def wait_ready(self, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
        self.wait_for(lambda: self.health(self.port[proc])[0] == 200, "ready", timeout)

    def metric(self, proc: subprocess.Popen[bytes], name: str) -> dict[tuple[str, ...], float]:
        """Samples of ``name`` on the worker's /metrics, keyed by their label values in label
        name order; ``{}`` while the worker does not answer."""
        url = f"http://127.0.0.1:{self.port[proc]}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return {}
        return {
            tuple(v for _, v in sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == name
        }

    def expect_exit(
        self, proc: subprocess.Popen[bytes], code: int | set[int], within_s: float
    ) -> float:
        """Wait for ``proc`` to exit with ``code`` (one of) within ``within_s``; the seconds
        it took."""
        started = time.monotonic()
        try:
            got = proc.wait(within_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker still running {within_s} s after SIGTERM\n{self.logs()}")
        assert got in (code if isinstance(code, set) else {code}), f"exit {got}\n{self.logs()}"
        self.workers.remove(proc)  # an expected exit, not a crash for _check_workers
        return time.monotonic() - started

    # --- the picture ---------------------------------------------------------------------
    def picture(self) -> Picture:
        prefix = self.root.removesuffix(":v1")
        # routed by SKU (ADR 0014), the inventory lane marks "{event_id} {sku}"
        seen: dict[str, set[str]] = {
            lane: {m.partition(" ")[0] for m in processed_ids(self.redis, prefix, lane)}
            for lane in ("profiles", "inventory")
        }
        stock: dict[str, dict[str, tuple[int, int]]] = {}
        for key in self.redis.scan_iter(f"{self.root}:stock:*", count=1000):
            snap = orjson.loads(self.redis.hget(key, "d"))  # type: ignore[arg-type]
            stock[key.decode().rsplit(":", 1)[1]] = {
                loc: (v["on_hand"], v["committed"]) for loc, v in snap["locations"].items()
            }
        levels: dict[str, list[int]] = {}
        for key, value in self.decoded(self.settings.topics.inventory_changes):
            if key is not None and value is not None:
                levels.setdefault(key, []).append(value["on_hand"])
        return Picture(
            seen={k: frozenset(v) for k, v in seen.items()},
            people=self.people(),
            stock=stock,
            levels={k: tuple(v) for k, v in levels.items()},
            dlq=self.dlq(),
        )

    def dlq(self) -> dict[str, str]:
        """``dlq_key`` of the original -> reason of every DLQ record, deduplicated by source
        offset (the DLQ is at least once); fails if two records of one source disagree."""
        by_source: dict[tuple[bytes, ...], tuple[str, str]] = {}
        for msg in self.topic_records(self.settings.topics.dlq):
            h = {k: v for k, v in msg.headers() or []}
            source = (h["loom.source_topic"], h["loom.source_partition"], h["loom.source_offset"])
            entry = (dlq_key(msg.value()), h["loom.reason"].decode())
            assert by_source.setdefault(source, entry) == entry
        return dict(by_source.values())

    def produce_all(self, events: Iterable[Mapping[str, Any] | bytes]) -> int:
        return self.produce(events)
