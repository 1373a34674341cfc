"""docker-compose passes every Loom setting through to the Loom containers (an empty value
means unset), and its secured example configures every connection setting it needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.settings import LoomSettings, load_settings, secret_fields

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
SECURED = (ROOT / "deploy" / "compose" / "secured.yml").read_text(encoding="utf-8")


def test_every_setting_reaches_the_loom_containers() -> None:
    missing = []
    for name in LoomSettings.model_fields:
        if name == "topics":
            continue
        env = f"LOOM_{name.upper()}"
        # secrets pass as files only: never a secret value in the compose environment
        wanted = f"{env}_FILE" if name in secret_fields(LoomSettings) else env
        if f"  {wanted}:" not in COMPOSE:
            missing.append(wanted)
    assert missing == []


def test_the_compose_environment_holds_no_secret_value() -> None:
    for name in secret_fields(LoomSettings):
        assert f"  LOOM_{name.upper()}:" not in COMPOSE + SECURED


def test_an_empty_variable_is_an_unset_one(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAFKA_SASL_MECHANISM", "KAFKA_CONFIG", "PARTITIONS", "REDIS_SENTINELS"):
        monkeypatch.setenv(f"LOOM_{name}", "")
    settings = load_settings()
    assert (settings.kafka_sasl_mechanism, settings.kafka_config) == (None, {})
    assert (settings.partitions, settings.redis_sentinels) == (6, None)


def test_the_secured_example_connects_with_sasl_ssl_tls_and_an_acl_user() -> None:
    for line in (
        "LOOM_KAFKA_SECURITY_PROTOCOL: SASL_SSL",
        "LOOM_KAFKA_SASL_MECHANISM: SCRAM-SHA-512",
        'LOOM_REDIS_URL: "rediss://redis:6379/0"',
        "LOOM_REDIS_USERNAME: loom",
        'LOOM_DEVELOPMENT: "false"',
    ):
        assert line in SECURED
