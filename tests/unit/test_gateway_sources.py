"""Write-key configuration (streams.gateway.sources): the TOML file, lookups, clear errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from schemas.touchpoint import Channel
from streams.gateway.sources import SourcesError, WriteKeys

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
