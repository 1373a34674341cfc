"""The ACL user of ``streams.redis_clients.acl_rules`` can run every command Loom's Lua
scripts call: a script that calls one it cannot fails every batch, only on a secured Redis.
Both the script files (``streams/lua``) and the small scripts kept in their modules."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from streams import lease, reader, shopify_memory
from streams.redis_clients import COMMANDS

SCRIPTS = sorted(
    p.name for p in resources.files("streams").joinpath("lua").iterdir() if p.name.endswith(".lua")
)
CALL = re.compile(r"redis\.p?call\(\s*['\"]([A-Za-z]+)['\"]")


#: The scripts kept inline, by name.
INLINE = {
    "lease.HOLD_SCRIPT": lease.HOLD_SCRIPT,
    "lease.TAKE_SCRIPT": lease.TAKE_SCRIPT,
    "reader.LOOKUP_SCRIPT": reader.LOOKUP_SCRIPT,
    "shopify_memory.APPLY_SCRIPT": shopify_memory.APPLY_SCRIPT,
}


def _text(script: str) -> str:
    if script in INLINE:
        return INLINE[script]
    return resources.files("streams").joinpath("lua", script).read_text(encoding="utf-8")


@pytest.mark.parametrize("script", [*SCRIPTS, *INLINE])
def test_every_command_a_script_calls_is_granted(script: str) -> None:
    text = _text(script)
    called = {m.lower() for m in CALL.findall(text)}
    assert called, f"{script} calls no Redis command the pattern recognises"
    assert not re.search(r"redis\.p?call\(\s*[^'\"\s]", text), f"{script}: a computed command"
    assert called <= set(COMMANDS), f"{script} calls {sorted(called - set(COMMANDS))}"
