"""Connection settings: secrets from files, one-line errors that quote no value, redaction,
topic durability defaults, and the worker's refusal of the development salt."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.cli.main import main
from streams.redact import MASK, redact_config, redact_text, redact_url
from streams.settings import (
    ConfigError,
    LoomSettings,
    load_settings,
    secret_fields,
)
from streams.startup import refuse_unsafe_defaults
from streams.topics import topic_specs

SECRET = "s3cr3t-value-that-must-never-show"


def test_every_secret_can_come_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in secret_fields(LoomSettings):
        path = tmp_path / name
        path.write_text(f"{SECRET}-{name}\n")  # a mounted secret usually ends with a newline
        monkeypatch.setenv(f"LOOM_{name.upper()}_FILE", str(path))
    settings = load_settings()
    for name in secret_fields(LoomSettings):
        assert getattr(settings, name).get_secret_value() == f"{SECRET}-{name}"
    assert SECRET not in repr(settings)
    assert set(settings.secrets()) == {f"{SECRET}-{n}" for n in secret_fields(LoomSettings)}


def test_the_secret_fields_are_the_ones_expected() -> None:
    assert set(secret_fields(LoomSettings)) == {
        "kafka_sasl_password",
        "kafka_oauth_client_secret",
        "kafka_ssl_key_password",
        "gateway_profiles_token",
        "redis_password",
        "redis_sentinel_password",
        "suppression_salt",
    }


def test_a_secret_set_twice_or_unreadable_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOM_REDIS_PASSWORD_FILE", str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match=r"^LOOM_REDIS_PASSWORD_FILE: cannot read .*absent: No"):
        load_settings()
    (tmp_path / "pw").write_text(SECRET)
    monkeypatch.setenv("LOOM_REDIS_PASSWORD_FILE", str(tmp_path / "pw"))
    monkeypatch.setenv("LOOM_REDIS_PASSWORD", SECRET)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert (
        str(caught.value)
        == "LOOM_REDIS_PASSWORD and LOOM_REDIS_PASSWORD_FILE are both set; use one"
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"kafka_security_protocol": "SASL_SSL"},
            "LOOM_KAFKA_SASL_MECHANISM is required with SASL_SSL",
        ),
        (
            {"kafka_sasl_mechanism": "PLAIN", "kafka_sasl_password": SECRET},
            "LOOM_KAFKA_SASL_MECHANISM needs a SASL_* protocol, not PLAINTEXT",
        ),
        (
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "SCRAM-SHA-512",
                "kafka_sasl_password": SECRET,
            },
            "LOOM_KAFKA_SASL_USERNAME is required with SCRAM-SHA-512",
        ),
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "OAUTHBEARER"},
            "LOOM_KAFKA_OAUTH_TOKEN_URL is required with OAUTHBEARER",
        ),
        ({"kafka_ssl_ca_file": "/ca.pem"}, "LOOM_KAFKA_SSL_CA_FILE needs SSL or SASL_SSL"),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_cert_file": "/c.pem"},
            "LOOM_KAFKA_SSL_CERT_FILE and LOOM_KAFKA_SSL_KEY_FILE go together",
        ),
        (
            {"redis_ssl_ca_file": "/ca.pem"},
            "LOOM_REDIS_SSL_CA_FILE needs a rediss:// LOOM_REDIS_URL",
        ),
        (
            {"redis_url": f"redis://u:{SECRET}@h/0", "redis_password": SECRET},
            "LOOM_REDIS_URL holds a password and LOOM_REDIS_PASSWORD is set; use one",
        ),
        (
            {"redis_sentinels": "h:26379"},
            "LOOM_REDIS_SENTINELS and LOOM_REDIS_SENTINEL_MASTER go together",
        ),
        (
            {"redis_sentinels": "h", "redis_sentinel_master": "m"},
            "LOOM_REDIS_SENTINELS: 'h' is not host:port",
        ),
        ({"redis_url": f"http://u:{SECRET}@h"}, "LOOM_REDIS_URL must start with redis://"),
        (
            {"inventory_redis_url": "http://h"},
            "LOOM_INVENTORY_REDIS_URL must start with redis://",
        ),
        (
            {"inventory_redis_url": "rediss://h:6380/0"},
            "LOOM_INVENTORY_REDIS_URL and LOOM_REDIS_URL must both use TLS or neither",
        ),
        (
            {
                "inventory_redis_url": "redis://h2/0",
                "redis_sentinels": "h:26379",
                "redis_sentinel_master": "m",
            },
            "LOOM_INVENTORY_REDIS_URL does not work with Sentinel",
        ),
        (
            {"inventory_redis_url": f"redis://u:{SECRET}@h2/0", "redis_password": SECRET},
            "LOOM_INVENTORY_REDIS_URL holds a password and LOOM_REDIS_PASSWORD is set",
        ),
        (
            {"replication_factor": 2, "min_insync_replicas": 3},
            "LOOM_MIN_INSYNC_REPLICAS (3) exceeds LOOM_REPLICATION_FACTOR (2)",
        ),
        (
            {"relay_lease_s": 5, "relay_interval_s": 2},
            "LOOM_RELAY_LEASE_S (5) must be at least 3 x LOOM_RELAY_INTERVAL_S (2)",
        ),
        ({"kafka_security_protocol": "TLS"}, "LOOM_KAFKA_SECURITY_PROTOCOL: Input should be"),
        ({"redis_commit": "lua"}, "LOOM_REDIS_COMMIT: Input should be 'script' or 'watch'"),
        ({"redis_load": "lua"}, "LOOM_REDIS_LOAD: Input should be 'script' or 'waves'"),
    ],
)
def test_a_configuration_that_cannot_work_is_one_line_naming_it(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(**fields)
    text = str(caught.value)
    assert text.startswith("invalid configuration: ")
    assert message in text
    assert "\n" not in text
    assert SECRET not in text


def test_the_inventory_lane_has_its_own_redis_only_when_configured() -> None:
    shared = LoomSettings(redis_url="redis://one:6379/0", redis_prefix="p")
    assert shared.for_lane("inventory") is shared
    own = LoomSettings(
        redis_url="redis://one:6379/0",
        inventory_redis_url=f"redis://u:{SECRET}@two:6379/1",
        redis_prefix="p",
        redis_username="loom",
    )
    inventory = own.for_lane("inventory")
    assert inventory.redis_url == f"redis://u:{SECRET}@two:6379/1"
    assert (inventory.redis_prefix, inventory.redis_username) == ("p", "loom")
    assert own.for_lane("profiles").redis_url == "redis://one:6379/0"
    assert SECRET not in repr(own)


def test_repr_masks_passwords_in_urls_and_hides_client_overrides() -> None:
    settings = LoomSettings(
        redis_url=f"rediss://loom:{SECRET}@redis.internal:6380/0",
        kafka_config={"sasl.password": SECRET},
        redis_password=None,
    )
    assert SECRET not in repr(settings)
    assert "rediss://loom:***@redis.internal:6380/0" in repr(settings)
    assert SECRET in settings.secrets()
    assert str(settings.redis_url).endswith(f"{SECRET}@redis.internal:6380/0")  # still usable


def test_redaction_helpers() -> None:
    assert redact_url(f"redis://:{SECRET}@h:1/0") == f"redis://:{MASK}@h:1/0"
    assert redact_url("redis://h:1/0") == "redis://h:1/0"
    assert redact_config({"sasl.password": SECRET, "sasl.username": "u", "x": 1}) == {
        "sasl.password": MASK,
        "sasl.username": "u",
        "x": 1,
    }
    text = f"Error connecting to rediss://u:{SECRET}@h:1 with token {SECRET}x"
    assert SECRET not in redact_text(text, [SECRET])


def test_topic_durability_defaults_production_and_development() -> None:
    assert LoomSettings().topic_replication == (3, 2)
    assert LoomSettings(development=True).topic_replication == (1, 1)
    assert LoomSettings(development=True, replication_factor=2).topic_replication == (2, 1)
    specs = topic_specs(LoomSettings(raw_retention_ms=-1))
    assert {config["min.insync.replicas"] for _, config in specs.values()} == {"2"}
    t = LoomSettings().topics
    compacted = {n for n, (_, c) in specs.items() if c.get("cleanup.policy") == "compact"}
    assert compacted == {t.profile_changes, t.inventory_changes}
    assert specs[t.raw][1]["retention.ms"] == "-1"
    assert "retention.ms" not in topic_specs(LoomSettings())[t.raw][1]  # the broker's default


def test_a_worker_refuses_the_development_salt_outside_development() -> None:
    with pytest.raises(ConfigError, match="LOOM_SUPPRESSION_SALT is the public development"):
        refuse_unsafe_defaults(LoomSettings())
    refuse_unsafe_defaults(LoomSettings(development=True))
    refuse_unsafe_defaults(LoomSettings(suppression_salt="a-real-secret"))


def test_loom_worker_exits_with_one_line_before_touching_any_server(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LOOM_DEVELOPMENT", raising=False)
    monkeypatch.delenv("LOOM_SUPPRESSION_SALT", raising=False)
    monkeypatch.setenv("LOOM_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # never reached
    assert main(["worker", "--role", "profiles"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("loom worker: LOOM_SUPPRESSION_SALT is the public development default")


def test_a_password_in_the_redis_url_query_is_masked_and_counts_as_one() -> None:
    # redis-py reads any query argument of the URL as a connection option, the password too
    url = f"rediss://redis.internal:6380/0?password={SECRET}&health_check_interval=5"
    settings = LoomSettings(redis_url=url)
    assert SECRET not in repr(settings)
    assert "password=***&health_check_interval=5" in repr(settings)
    assert SECRET not in redact_url(url)
    assert SECRET not in redact_text(f"cannot connect to {url}")
    assert settings.redis_url == url  # still usable
    with pytest.raises(ConfigError, match="LOOM_REDIS_URL holds a password and LOOM_REDIS_PASS"):
        load_settings(redis_url=url, redis_password="other")


def test_a_malformed_x_option_is_named_without_its_value(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `-X sasl.password:...` (a colon for the `=`): the error names the setting, not the secret
    assert main(["lag", "-X", f"sasl.password:{SECRET}"]) == 2
    err = capsys.readouterr().err
    assert SECRET not in err
    assert err == "loom lag: -X expects KEY=VALUE, got 'sasl.password' ...\n"


def test_every_kafka_setting_a_config_dump_masks_is_a_secret_of_free_text_too() -> None:
    """``redact_config`` masks the values of ``ssl.key.pem`` and ``sasl.oauthbearer.config``
    too; ``secrets()`` took only keys with "password" or "secret", so such a value given with
    ``-X``/``LOOM_KAFKA_CONFIG`` was masked in a config dump but shown in an error message
    (``loom``'s one-line errors are ``redact_text(message, settings.secrets())``)."""
    config = {
        "sasl.password": f"{SECRET}-1",
        "sasl.oauthbearer.client.secret": f"{SECRET}-2",
        "ssl.key.pem": f"{SECRET}-3",
        "sasl.oauthbearer.config": f"principal={SECRET}-4",
        "client.id": "loom-worker",
    }
    settings = LoomSettings(kafka_config=config, redis_password=None)
    masked = {k for k, v in redact_config(config).items() if v == MASK}
    assert masked == set(config) - {"client.id"}
    text = redact_text(f"librdkafka refused: {' '.join(config.values())}", settings.secrets())
    assert SECRET not in text
    assert "loom-worker" in text
