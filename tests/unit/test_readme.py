"""The README's reference tables stay true: every setting, topic and worker metric is listed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from streams.gateway.metrics import GatewayMetrics
from streams.metrics import WorkerMetrics
from streams.privacy_worker import PrivacyMetrics
from streams.redis_clients import acl_rules
from streams.settings import LoomSettings, Topics

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented() -> None:
    missing = [
        f"LOOM_{name.upper()}"
        for name in LoomSettings.model_fields
        if name != "topics" and f"`LOOM_{name.upper()}`" not in README
    ]
    assert missing == []


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
