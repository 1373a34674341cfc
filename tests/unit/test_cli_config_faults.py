"""The `loom` commands' configuration handling (server-free; a review of 2026-12-04): what
the README promises of every setting and of the exit codes.

* a Redis URL that cannot be parsed is a one-line configuration error (exit 2) that quotes no
  part of the password, never a traceback (a password holding ``#``, ``/`` or ``?`` that was not
  percent-encoded made redis-py quote its first characters as "the port");
* a port setting outside 0..65535 is refused when the settings are read (it was accepted, and
  ``loom relay``/``loom exporter`` died with an OverflowError traceback at bind);
* a librdkafka setting librdkafka refuses (``-X``, ``LOOM_KAFKA_CONFIG``) is a configuration
  that cannot work: exit 2 as documented, not 3 ("Kafka or Redis unreachable").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.cli.main import main
from streams.settings import ConfigError, LoomSettings, load_settings

PASSWORD_HEAD = "Xy9kQ2mZ"  # what precedes the special character of the password


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("LOOM_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("special", ["#", "/", "?"])
def test_a_redis_url_that_cannot_be_parsed_is_one_line_without_the_password(
    special: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis://:{PASSWORD_HEAD}{special}rest@127.0.0.1:6379/0"
    rc = main(["profile", "get", "email:jane@example.com", "--redis-url", url])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.splitlines()) == 1
    assert "LOOM_REDIS_URL" in err
    assert PASSWORD_HEAD not in err


def test_an_unparseable_loom_redis_url_is_refused_when_the_settings_are_read() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(redis_url="redis://127.0.0.1:notaport/0")
    assert "LOOM_REDIS_URL" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load_settings(inventory_redis_url=f"redis://:{PASSWORD_HEAD}#x@h:1/0")
    assert "LOOM_INVENTORY_REDIS_URL" in str(caught.value)
    assert PASSWORD_HEAD not in str(caught.value)


PORT_FIELDS = sorted(name for name in LoomSettings.model_fields if name.endswith("_port"))


def test_the_port_fields_are_the_ones_expected() -> None:
    assert PORT_FIELDS == [
        "exporter_port",
        "gateway_ops_port",
        "gateway_port",
        "inventory_relay_web_port",
        "inventory_web_port",
        "privacy_web_port",
        "relay_web_port",
        "web_port",
    ]


@pytest.mark.parametrize("field", PORT_FIELDS)
def test_a_port_over_65535_is_a_configuration_error(field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(**{field: 70000})
    assert f"LOOM_{field.upper()}" in str(caught.value)


@pytest.mark.parametrize(
    "override", ["bogus.property=1", "linger.ms=abc"], ids=["unknown", "bad-value"]
)
def test_a_librdkafka_setting_librdkafka_refuses_exits_2(
    override: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    rc = main(["produce", str(path), "--bootstrap-server", "127.0.0.1:1", "-X", override])
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert rc == 2, err


def test_an_invalid_loom_kafka_config_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOOM_KAFKA_CONFIG", '{"no.such.property": "1"}')
    monkeypatch.setenv("LOOM_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    rc = main(["lag"])
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert rc == 2, err


@pytest.mark.parametrize(
    "command", [["relay", "--role", "profiles"], ["exporter"], ["gateway"], ["privacy-worker"]]
)
def test_a_port_option_outside_the_range_is_a_usage_error(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--port 70000`` was taken as given, and the server died binding it with an
    ``OverflowError`` traceback (the settings' range, checked since, did not cover the
    option)."""
    with pytest.raises(SystemExit) as exited:
        main([*command, "--port", "70000"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "70000 is not a port (0-65535)" in err
    assert "Traceback" not in err
