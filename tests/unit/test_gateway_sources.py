"""Write-key configuration (streams.gateway.sources): the TOML file, lookups, clear errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from shopify_shop import signature

from schemas.touchpoint import Channel
from streams.gateway.sources import GatewayConfig, SourcesError, WriteKeys

GOOD = """
[[source]]
name = "web-shop"
channel = "web"
region = "no"
currency = "NOK"
write_key = "wk_web_0123456789"

[[source]]
name = "backend"
channel = "backoffice"
write_key_sha256 = "{hashed}"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sources.toml"
    path.write_text(text)
    return path


def test_keys_map_to_their_sources(tmp_path: Path) -> None:
    hashed = hashlib.sha256(b"wk_server_secret").hexdigest()
    keys = WriteKeys.from_file(write(tmp_path, GOOD.format(hashed=hashed)))
    web = keys.source_for("wk_web_0123456789")
    assert web is not None
    assert (web.name, web.channel, web.region, web.currency) == (
        "web-shop",
        Channel.WEB,
        "NO",
        "NOK",
    )
    backend = keys.source_for("wk_server_secret")  # the file held only its hash
    assert backend is not None
    assert (backend.name, backend.region, backend.currency) == ("backend", None, "USD")
    assert keys.source_for("wk_web_012345678") is None
    assert keys.source_for("") is None
    assert keys.source_for(None) is None
    assert [s.name for s in keys.sources()] == ["backend", "web-shop"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[source]]\nname = 'x'\nchannel = 'web'\n", "exactly one of write_key"),
        ("[[source]]\nname = 'x'\nchannel = 'fax'\nwrite_key = 'k' \n", "source.0.channel"),
        ("[[source]]\nname = 'Web Shop'\nchannel = 'web'\nwrite_key = '12345678'\n", "name"),
        ("[[source]]\nname = 'x'\nchannel = 'web'\nwrite_key = 'short'\n", "write_key"),
        ("source = []\n", "source"),
        ("[[source]\n", "not valid TOML"),
        (
            "[[source]]\nname='a'\nchannel='web'\nwrite_key='12345678'\n"
            "[[source]]\nname='b'\nchannel='app'\nwrite_key='12345678'\n",
            "same write key",
        ),
    ],
    ids=["no-key", "channel", "name", "short-key", "empty", "toml", "duplicate"],
)
def test_bad_files_give_one_line_errors_without_keys(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(SourcesError) as info:
        WriteKeys.from_file(write(tmp_path, text))
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert "12345678" not in message


def test_missing_configuration_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(SourcesError, match="LOOM_GATEWAY_SOURCES_FILE"):
        WriteKeys.from_file(None)
    with pytest.raises(SourcesError, match="cannot read"):
        WriteKeys.from_file(tmp_path / "absent.toml")


SHOP_TABLE = """
[[shopify]]
name = "jsmith"
domain = "JSmith.myshopify.com"
secrets = ["shpss_current_secret_1", "shpss_previous_secret"]
region = "us"
online_location = "24826418"
[shopify.locations]
"24826418" = "ottawa-warehouse"
"905684977" = "ottawa-store"
[shopify.skus]
"IPOD2008PINK" = "SKU-IPOD-PINK"
[shopify.inventory_items]
"271878346596884015" = "SKU-IPOD-PINK"
"""


def test_shopify_shops_come_from_the_same_file_and_verify_their_webhooks(tmp_path: Path) -> None:
    config = GatewayConfig.from_file(write(tmp_path, SHOP_TABLE))
    assert config.keys.sources() == []
    [shop] = config.shops.all()
    assert (shop.name, shop.domain, shop.region, shop.currency) == (
        "jsmith",
        "jsmith.myshopify.com",
        "US",
        "USD",
    )
    assert shop.online_location == "ottawa-warehouse"  # mapped to Loom's id
    assert shop.inventory_items == {"271878346596884015": "SKU-IPOD-PINK"}
    raw = b'{"id": 1}'
    for secret in ("shpss_current_secret_1", "shpss_previous_secret"):
        assert config.shops.verified("jsmith.myshopify.com", raw, signature(raw, secret)) == shop
    assert config.shops.verified(
        "JSMITH.myshopify.com", raw, signature(raw, "shpss_current_secret_1")
    )
    assert (
        config.shops.verified("jsmith.myshopify.com", raw, signature(raw, "wrong-secret")) is None
    )
    assert (
        config.shops.verified("other.myshopify.com", raw, signature(raw, "shpss_previous_secret"))
        is None
    )
    assert (
        config.shops.verified(
            "jsmith.myshopify.com", raw + b" ", signature(raw, "shpss_previous_secret")
        )
        is None
    )
    assert config.shops.verified("jsmith.myshopify.com", raw, None) is None


def test_sources_and_shops_live_side_by_side(tmp_path: Path) -> None:
    hashed = hashlib.sha256(b"wk_server_secret").hexdigest()
    config = GatewayConfig.from_file(write(tmp_path, GOOD.format(hashed=hashed) + SHOP_TABLE))
    assert [s.name for s in config.keys.sources()] == ["backend", "web-shop"]
    assert [s.name for s in config.shops.all()] == ["jsmith"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('online_location = "24826418"', 'online_location = "1"'), "online_location"),
        (('name = "jsmith"', 'name = "J Smith"'), "shopify.0.name"),
        (('"shpss_previous_secret"', '"short"'), "shopify.0.secrets.1"),
        (("secrets = [", "secrets = []\nx = ["), "shopify.0"),
        (('"905684977" = "ottawa-store"', '"905684977" = "ottawa store"'), "locations"),
    ],
    ids=["online-location", "name", "short-secret", "no-secret", "location-id"],
)
def test_bad_shop_tables_give_one_line_errors_without_secrets(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    text = SHOP_TABLE.replace(*change)
    assert text != SHOP_TABLE
    with pytest.raises(SourcesError) as info:
        GatewayConfig.from_file(write(tmp_path, text))
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert "shpss_" not in message
    assert "'short'" not in message


def test_a_domain_configured_twice_is_refused(tmp_path: Path) -> None:
    twice = SHOP_TABLE + SHOP_TABLE.replace('name = "jsmith"', 'name = "other"')
    with pytest.raises(SourcesError, match="unique"):
        GatewayConfig.from_file(write(tmp_path, twice))


def test_a_gateway_serving_shopify_refuses_the_development_salt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It keeps salted hashes of redacted customers: never with the public default salt (one
    line, exit 2, before anything starts). Write keys alone do not need a salt."""
    from streams.cli.main import main

    for name in ("LOOM_DEVELOPMENT", "LOOM_SUPPRESSION_SALT", "LOOM_SUPPRESSION_SALT_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert main(["gateway", "--sources", str(write(tmp_path, SHOP_TABLE))]) == 2
    error = capsys.readouterr().err
    assert "LOOM_SUPPRESSION_SALT" in error
    assert len(error.strip().splitlines()) == 1
