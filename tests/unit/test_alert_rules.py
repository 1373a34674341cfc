"""Prometheus config and alert rules: `promtool check` and `promtool test rules`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

PROM_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (apt-get install -y prometheus); CI installs it",
)


def promtool(*args: str, cwd: Path = PROM_DIR) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


def test_rules_are_valid() -> None:
    res = promtool("check", "rules", "alerts.yml")
    assert res.returncode == 0, res.stdout + res.stderr


def test_prometheus_config_is_valid() -> None:
    res = promtool("check", "config", "prometheus.yml")
    assert res.returncode == 0, res.stdout + res.stderr


def test_alert_unit_tests_pass() -> None:
    res = promtool("test", "rules", "alerts_test.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_every_alert_has_a_unit_test_and_a_runbook_anchor() -> None:
    rules = (PROM_DIR / "alerts.yml").read_text()
    tests = (PROM_DIR / "alerts_test.yml").read_text()
    names = [line.split(":", 1)[1].strip() for line in rules.splitlines() if "- alert:" in line]
    assert len(names) >= 6
    for name in names:
        assert f"alertname: {name}" in tests, name
        assert f"docs/operating.md#{name.lower()}" in rules, name


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    """Guards against promtool passing vacuously: a test expecting no alert where one fires."""
    shutil.copy(PROM_DIR / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "bad_test.yml").write_text(
        """rule_files: [alerts.yml]
evaluation_interval: 1m
tests:
  - interval: 30s
    input_series:
      - series: 'up{job="loom-worker",instance="w:6066"}'
        values: '0x10'
    alert_rule_test:
      - eval_time: 3m
        alertname: LoomWorkerDown
        exp_alerts: []
"""
    )
    res = promtool("test", "rules", "bad_test.yml", cwd=tmp_path)
    assert res.returncode != 0
    assert "LoomWorkerDown" in res.stdout + res.stderr


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Every Grafana panel query parses (checked as recording rules by promtool)."""
    dashboard = json.loads((PROM_DIR.parent / "grafana" / "loom-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 12
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {
                        "record": f"dashboard:q{i}",
                        "expr": e.replace("$__rate_interval", "5m").replace("$group", ".*"),
                    }
                    for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    (tmp_path / "dash_rules.yml").write_text(json.dumps(rules))  # JSON is valid YAML
    res = promtool("check", "rules", "dash_rules.yml", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for needed in ("messages", "seconds", "status", "throughput", "dlq", "latency", "redis"):
        assert needed in titles, needed
