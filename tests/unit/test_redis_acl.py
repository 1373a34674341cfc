"""The ACL user of ``streams.redis_clients.acl_rules`` can run every command Loom's Lua
scripts call: a script that calls one it cannot fails every batch, only on a secured Redis."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from streams.redis_clients import COMMANDS

SCRIPTS = sorted(
    p.name for p in resources.files("streams").joinpath("lua").iterdir() if p.name.endswith(".lua")
)
CALL = re.compile(r"redis\.p?call\(\s*['\"]([A-Za-z]+)['\"]")


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_command_a_script_calls_is_granted(script: str) -> None:
    text = resources.files("streams").joinpath("lua", script).read_text(encoding="utf-8")
    called = {m.lower() for m in CALL.findall(text)}
    assert called, f"{script} calls no Redis command the pattern recognises"
    assert not re.search(r"redis\.p?call\(\s*[^'\"\s]", text), f"{script}: a computed command"
    assert called <= set(COMMANDS), f"{script} calls {sorted(called - set(COMMANDS))}"
