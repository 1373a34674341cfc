"""The Shopify end-to-end deployment: the test's Loom (its lane workers), a gateway serving the
test shop and ``loom privacy-worker``; the gateway's memory of the shop is deleted after."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from e2e_harness import ROOT, Loom
from gateway_process import GatewayProcess
from shopify_shop import shop_toml


@contextlib.contextmanager
def shopify_deployment(loom: Loom, tmp_path: Path) -> Iterator[tuple[Loom, GatewayProcess]]:
    gateway = GatewayProcess(loom.env, tmp_path, shops=shop_toml())
    log = (tmp_path / "privacy-worker.log").open("wb")
    privacy = subprocess.Popen(
        [sys.executable, "-m", "streams.cli.main", "privacy-worker"],
        env={**loom.env, "LOOM_PRIVACY_WEB_PORT": "0"}, cwd=ROOT, stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    loom.start_worker()
    try:
        yield loom, gateway
    finally:
        assert gateway.stop() == 0, gateway.logs()
        loom.stop([privacy])
        log.close()
        for key in loom.redis.scan_iter(f"{loom.settings.redis_prefix}:shopify:*"):
            loom.redis.delete(key)
