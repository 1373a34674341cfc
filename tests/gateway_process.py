"""A real ``loom gateway`` process for the integration and e2e tiers.

Started with the deployment's environment plus a sources file of test write keys, on free
loopback ports; ``stop()`` sends SIGTERM (graceful) and waits. Used by
tests/integration/test_gateway.py and the SDK tests in tests/e2e.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from local_infra import free_ports

ROOT = Path(__file__).resolve().parents[1]

#: Test write keys -> (source name, channel, region, currency). US: analytics allowed by
#: default, so a journey's order and revenue show in the profile without a consent event.
WRITE_KEYS: Mapping[str, tuple[str, str, str, str]] = {
    "wk_test_web_0001": ("web-shop", "web", "US", "USD"),
    "wk_test_app_0001": ("ios-app", "app", "US", "USD"),
    "wk_test_server_01": ("backend", "backoffice", "US", "USD"),
}
WEB_KEY, APP_KEY, SERVER_KEY = WRITE_KEYS

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def free_port() -> int:
    (port,) = free_ports(1)
    return port


def write_sources(path: Path, keys: Mapping[str, tuple[str, str, str, str]] = WRITE_KEYS) -> Path:
    tables = [
        f'[[source]]\nname = "{name}"\nchannel = "{channel}"\nregion = "{region}"\n'
        f'currency = "{currency}"\nwrite_key = "{key}"\n'
        for key, (name, channel, region, currency) in keys.items()
    ]
    path.write_text("\n".join(tables))
    return path


class GatewayProcess:
    """``shops``: ``[[shopify]]`` tables appended to the sources file (tests/shopify_shop.py)."""

    def __init__(
        self, env: Mapping[str, str], tmp: Path, *, shops: str = "", **settings: str
    ) -> None:
        self.port, self.ops_port = free_port(), free_port()
        self.log_path = tmp / f"gateway-{self.port}.log"
        sources = write_sources(tmp / f"sources-{self.port}.toml")
        if shops:
            sources.write_text(sources.read_text() + "\n" + shops)
        self.env = {
            **env,
            "LOOM_GATEWAY_PORT": str(self.port),
            "LOOM_GATEWAY_OPS_PORT": str(self.ops_port),
            "LOOM_GATEWAY_SOURCES_FILE": str(sources),
            **{f"LOOM_GATEWAY_{k.upper()}": v for k, v in settings.items()},
        }
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli.main", "gateway"],
                env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self._wait_live(timeout=60)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.ops_port}"

    def _wait_live(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"loom gateway exited {self.proc.returncode}:\n{self.logs()}")
            try:
                with urllib.request.urlopen(f"{self.ops_url}/livez", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"loom gateway not live after {timeout}s:\n{self.logs()}")

    def metric(self, name: str, **labels: str) -> float:
        """A sample of the gateway's /metrics (0 when absent)."""
        with urllib.request.urlopen(f"{self.ops_url}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        for line in text.splitlines():
            match = _SAMPLE.match(line)
            if match and match["name"] == name:
                found = dict(_LABEL.findall(match["labels"] or ""))
                if found == labels:
                    return float(match["value"])
        return 0.0

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)


def environment(kafka: str, topics: Mapping[str, str], **extra: str) -> dict[str, str]:
    """The environment of a Loom process on ``kafka`` with these topic names."""
    return {
        **os.environ,
        "LOOM_KAFKA_BOOTSTRAP": kafka,
        "LOOM_DEVELOPMENT": "true",  # single-replica topics on the test broker
        **{f"LOOM_TOPIC_{name.upper()}": value for name, value in topics.items()},
        **extra,
    }
