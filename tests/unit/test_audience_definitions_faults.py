"""Audience definitions (a review of 2026-12-04; each test failed before): a bad definition
is a one-line error, never a crash (a ``RecursionError`` for a deep nesting, a
``UnicodeDecodeError`` for a file that is not UTF-8); three-valued evaluation treats a value
that is not a condition as unknown under ``not`` too."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from resolvers.audiences import Env, compile_expression
from streams.runtime import configured_audiences
from streams.settings import ConfigError, LoomSettings

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "expression",
    ["(" * 200 + "orders > 1" + ")" * 200, "not " * 600 + "orders > 1"],
    ids=["parentheses", "not"],
)
def test_a_deeply_nested_expression_stops_a_worker_with_one_config_line(
    tmp_path: Path, expression: str
) -> None:
    path = tmp_path / "audiences.toml"
    path.write_text(f'[audiences.r]\nexpression = "{expression}"\n')
    assert config_line(path).startswith(
        f"LOOM_AUDIENCES_FILE: {path}: audience 'r': expression column "
    )


def test_an_audiences_file_that_is_not_utf8_stops_a_worker_with_one_config_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audiences.toml"
    path.write_bytes(b'[audiences.r]\ndescription = "caf\xe9"\nexpression = "orders >= 1"\n')
    assert config_line(path).startswith(f"LOOM_AUDIENCES_FILE: {path}: not UTF-8")


def config_line(path: Path) -> str:
    """The one-line error a worker stops with for the audiences file ``path``."""
    with pytest.raises(ConfigError) as info:
        configured_audiences(LoomSettings(audiences_file=path))
    text = str(info.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("answer", ["", "no", 0, 1, [], ["weekly"]])
def test_not_of_an_answer_that_is_not_true_or_false_is_unknown(answer: object) -> None:
    """README: "a value of another type is unknown ... `not unknown` is unknown", as ``and``
    and ``or`` already treat it. ``not preferences.newsletter`` caught everyone whose answer
    was "", 0 or [] (and not those who answered "no")."""
    expression = compile_expression("not preferences.newsletter")
    env = Env({"preferences": {"newsletter": answer}}, NOW)
    assert expression.fn(env) is None
    assert not expression.matches(env)
    assert compile_expression("not preferences.newsletter").matches(
        Env({"preferences": {"newsletter": False}}, NOW)
    )
