"""The README's reference tables stay true: every setting (with its default), topic, worker
metric and local-infrastructure variable is listed."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from streams.gateway.metrics import GatewayMetrics
from streams.metrics import WorkerMetrics
from streams.privacy_worker import PrivacyMetrics
from streams.redis_clients import acl_rules
from streams.settings import LoomSettings, Topics

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented() -> None:
    missing = [
        f"LOOM_{name.upper()}"
        for name in LoomSettings.model_fields
        if name != "topics" and f"`LOOM_{name.upper()}`" not in README
    ]
    assert missing == []


def configuration_table() -> dict[str, str]:
    """The README's configuration table: setting name (lower case) -> its default cell."""
    section = README.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `LOOM_([A-Z0-9_]+)` \| ([^|]*) \|", section, flags=re.MULTILINE)
    return {name.lower(): default.strip() for name, default in rows}


def rendered(value: object) -> str:
    """A default as the table writes it: `true`, `0.05`, `{}`, `127.0.0.1:19092`."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def test_every_setting_is_documented_with_its_default() -> None:
    """The table's default of each setting whose default is a value (not unset or secret)."""
    table = configuration_table()
    wrong = {}
    for name, field in LoomSettings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if name == "topics" or default is None or isinstance(default, SecretStr):
            continue
        cell = table.get(name, "(not in the table)")
        if not cell.startswith(f"`{rendered(default)}`"):
            wrong[name] = (rendered(default), cell)
    assert wrong == {}


@pytest.mark.parametrize("script", ["deploy/infra.sh", "deploy/sentinel.sh"])
def test_every_local_infrastructure_variable_is_documented(script: str) -> None:
    """The variables a deploy script's header lists under "Environment" are in the README's
    paragraph on the local infrastructure."""
    header = (ROOT / script).read_text(encoding="utf-8").split("# Environment (all optional):\n")[1]
    lines = []
    for line in header.splitlines():
        if not line.startswith("# ") or not line[1:].strip():
            break
        lines.append(line)
    listed = {m for line in lines for m in re.findall(r"^#\s+(LOOM_[A-Z_]+)", line)}
    assert len(listed) >= 4  # the header was found and read
    paragraph = README.split("Local infrastructure (`deploy/infra.sh`", 1)[1].split("\n\n", 1)[0]
    assert sorted(v for v in listed if f"`{v}`" not in paragraph) == []


def test_every_topic_is_documented_with_its_setting() -> None:
    for name, field in Topics.model_fields.items():
        assert f"`{field.default}` (`LOOM_TOPIC_{name.upper()}`)" in README


@pytest.mark.parametrize(
    ("create", "one"),
    [
        (WorkerMetrics.create, "loom_events_total"),
        (GatewayMetrics.create, "loom_gateway_requests_total"),
        (PrivacyMetrics.create, "loom_privacy_requests_total"),
    ],
    ids=["worker", "gateway", "privacy-worker"],
)
def test_every_metric_is_documented(
    create: Callable[[CollectorRegistry], object], one: str
) -> None:
    registry = CollectorRegistry()
    create(registry)
    names = {m.name + ("_total" if m.type == "counter" else "") for m in registry.collect()}
    assert one in names
    assert sorted(n for n in names if f"`{n}`" not in README) == []


def test_the_redis_acl_line_is_the_one_loom_needs() -> None:
    """The README's ACL line is what the secured tier runs the workers under."""
    assert f"ACL SETUSER loom on >CHANGE-ME {acl_rules('loom')}\n" in README
