"""Redis Sentinel failover in the middle of a stream: the workers follow the new primary and
nothing is lost or counted twice.

``deploy/sentinel.sh`` runs one primary, one replica and three sentinels on loopback. Both
lanes' workers connect through the sentinels with ``LOOM_REDIS_WAIT_REPLICAS=1`` (a batch's
commit returns only once the replica holds it, so the offsets it lets the worker commit are
backed by both nodes). While events flow, the primary is either killed (``kill -9``; it
comes back later as a replica, as an operator would restart it) or demoted by
``SENTINEL FAILOVER`` (clients still connected to it get ``READONLY``, which must be retried,
never skipped). Then every stock level and profile count must be exactly what the events
say, each profile created once.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from e2e_harness import Loom
from loom_servers import Servers

from streams import redis_clients
from streams.settings import LoomSettings

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "sentinel.sh"
EVENTS = 600  # half stock movements over 6 SKUs, half new people
SKUS = 6


class SentinelSetup:
    def __init__(self, free_ports: Callable[[int], list[int]]) -> None:
        ports = free_ports(5)
        self.data_dir = Path(tempfile.mkdtemp(prefix="loom-test-sentinel-"))
        self.env = {
            **os.environ,
            "LOOM_SENTINEL_NODE_PORTS": f"{ports[0]},{ports[1]}",
            "LOOM_SENTINEL_PORTS": ",".join(str(p) for p in ports[2:]),
            "LOOM_DATA_DIR": str(self.data_dir),
        }
        self.sentinel_ports = ports[2:]

    def run(self, action: str, *, check: bool = True) -> str:
        result = subprocess.run(
            ["bash", str(SCRIPT), action], env=self.env, capture_output=True, text=True, check=False
        )
        if check:
            assert result.returncode == 0, f"sentinel.sh {action}: {result.stderr}"
        return result.stdout

    def primary(self) -> int | None:
        """The primary's port as the sentinels report it (None while none answers)."""
        out = self.run("primary", check=False).strip()
        return int(out) if out.isdigit() else None

    def settings(self) -> dict[str, str]:
        lines = self.run("env").splitlines()  # export LOOM_X=value
        return dict(line.removeprefix("export ").split("=", 1) for line in lines)

    def kill_primary(self) -> int:
        port = self.primary()
        assert port is not None
        pid = int((self.data_dir / "sentinel" / f"redis-{port}.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        return port

    def demote_primary(self) -> int:
        port = self.primary()
        assert port is not None
        sentinel = redis.Redis(port=self.sentinel_ports[0])
        try:
            sentinel.execute_command("SENTINEL", "FAILOVER", "loom")
        finally:
            sentinel.close()
        return port

    def wait_for_new_primary(self, old: int, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            port = self.primary()
            if port is not None and port != old:
                return port
            time.sleep(0.2)
        raise TimeoutError(f"no failover away from {old} within {timeout}s")


@pytest.fixture
def sentinel_setup(free_ports: Callable[[int], list[int]]) -> Iterator[SentinelSetup]:
    setup = SentinelSetup(free_ports)
    setup.run("up")
    try:
        yield setup
    finally:
        setup.run("down", check=False)
        shutil.rmtree(setup.data_dir, ignore_errors=True)


@pytest.fixture
def loom_on_sentinel(
    servers: Servers, sentinel_setup: SentinelSetup, tmp_path: Path
) -> Iterator[Loom]:
    env = sentinel_setup.settings()
    connection: dict[str, Any] = {
        "redis_sentinels": env["LOOM_REDIS_SENTINELS"],
        "redis_sentinel_master": env["LOOM_REDIS_SENTINEL_MASTER"],
        "redis_wait_replicas": int(env["LOOM_REDIS_WAIT_REPLICAS"]),
        "retry_backoff_max_s": 1.0,
    }
    admin = LoomSettings(redis_url=env["LOOM_REDIS_URL"], **connection)
    on_sentinel = Servers(
        "sentinel",
        servers.kafka_bootstrap,
        env["LOOM_REDIS_URL"],
        lambda: redis_clients.client(admin),
        connection=connection,
        connection_env={**env, "LOOM_RETRY_BACKOFF_MAX_S": "1"},
    )
    deployment = Loom(on_sentinel, tmp_path)
    try:
        yield deployment
    finally:
        deployment.close()


def events(tag: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(EVENTS):
        base = {"event_id": f"{tag}-{i}", "occurred_at": "2026-11-22T10:00:00+01:00"}
        if i % 2:
            out.append(
                {
                    **base,
                    "type": "inventory_adjusted",
                    "channel": "backoffice",
                    "inventory": {
                        "sku": f"SKU-{(i // 2) % SKUS}",
                        "location_id": "oslo-1",
                        "delta": 1,
                        "reason": "correction",
                    },
                }
            )
        else:
            out.append(
                {
                    **base,
                    "type": "signup",
                    "channel": "web",
                    "region": "NO",
                    "identifiers": {"email": f"person-{tag}-{i}@example.com"},
                    "consent": {"analytics": True},
                }
            )
    return out


@pytest.mark.parametrize(
    "fault",
    [
        # the default: ADR 0021's commit (WATCH, then WAIT on the same connection), ADR 0022's load
        "kill -9 of the primary",
        "kill -9 of the primary, with Lua",  # commit.lua, load.lua
        pytest.param("SENTINEL FAILOVER", marks=pytest.mark.secured_full),
    ],
)
def test_workers_follow_the_new_primary_and_nothing_is_lost_or_doubled(
    fault: str, loom_on_sentinel: Loom, sentinel_setup: SentinelSetup
) -> None:
    loom = loom_on_sentinel
    with_lua = {"LOOM_REDIS_COMMIT": "script", "LOOM_REDIS_LOAD": "script"}
    loom.start_worker(env=with_lua if fault.endswith("with Lua") else None)
    stream = events(f"fo{int(time.time())}")
    third = len(stream) // 3

    def produce_rest() -> None:  # the stream goes on while Redis fails over
        for start in range(third, len(stream), 20):
            loom.produce(stream[start : start + 20])
            time.sleep(0.05)

    loom.produce(stream[:third])
    deadline = time.monotonic() + 60
    while loom.stats().get("profiles_created", 0) < 10:  # the workers are writing
        assert time.monotonic() < deadline, loom.logs()
        time.sleep(0.1)
    rest = threading.Thread(target=produce_rest)
    rest.start()
    old = (
        sentinel_setup.kill_primary()
        if fault.startswith("kill")
        else sentinel_setup.demote_primary()
    )
    new = sentinel_setup.wait_for_new_primary(old)
    if fault.startswith("kill"):
        sentinel_setup.run("up")  # the operator restarts the old node: a replica of the new one
    rest.join(120)
    loom.wait_idle(timeout=240)

    assert new != old
    people = EVENTS // 2
    assert len(loom.profiles()) == people, loom.logs()
    assert loom.stats()["profiles_created"] == people  # each created once, none lost
    for n in range(SKUS):
        doc = loom.stock(f"SKU-{n}")
        assert doc is not None
        expected = sum(1 for i in range(1, EVENTS, 2) if (i // 2) % SKUS == n)
        assert doc["locations"]["oslo-1"]["on_hand"] == expected, f"SKU-{n}"
    assert "retrying" in loom.logs()  # the failover really hit batches in flight
