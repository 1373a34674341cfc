"""The command line is consistent: help everywhere, Kafka's and Redis's option names on every
command that talks to them, safe defaults, and ``loom lag``'s header."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from streams.cli import exporter
from streams.cli.lag import render_table
from streams.cli.main import build_parser
from streams.cli.options import lane_settings, settings_from
from streams.lag import GroupLag, PartitionLag, is_internal_topic

KAFKA_COMMANDS = {
    "lag", "exporter", "worker", "demo", "produce", "simulate", "erase", "dlq replay",
    "gateway", "privacy-worker",
}  # fmt: skip
REDIS_COMMANDS = {
    "worker", "demo", "profile get", "profiles export", "inventory get", "inventory export",
    "erase", "gateway", "privacy-worker",
}  # fmt: skip


def commands(
    parser: argparse.ArgumentParser, path: str = ""
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every (sub)command parser with its path (``"dlq replay"``), the root as ``""``."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, f"{path} {name}".strip())


def subcommand_help(parser: argparse.ArgumentParser) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            out |= {choice.dest: choice.help for choice in action._choices_actions}
    return out


def test_every_command_and_every_option_has_help() -> None:
    missing = []
    for path, parser in commands(build_parser()):
        for name, text in subcommand_help(parser).items():
            if not text:
                missing.append(f"command {path} {name}".strip())
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{path or 'loom'}: {action.option_strings or action.dest}")
    assert missing == []


def test_the_walk_sees_every_command() -> None:
    paths = {path for path, _ in commands(build_parser())}
    assert KAFKA_COMMANDS | REDIS_COMMANDS | {"infra", "profile", "profiles", "dlq"} <= paths


def options(parser: argparse.ArgumentParser) -> dict[str, str]:
    return {opt: action.dest for action in parser._actions for opt in action.option_strings}


@pytest.mark.parametrize("path", sorted(KAFKA_COMMANDS))
def test_kafka_commands_take_bootstrap_server_its_alias_and_x(path: str) -> None:
    parser = dict(commands(build_parser()))[path]
    found = options(parser)
    assert found["--bootstrap-server"] == found["--bootstrap"] == "bootstrap_server"
    assert found["-X"] == "kafka_overrides"


@pytest.mark.parametrize("path", sorted(REDIS_COMMANDS))
def test_redis_commands_take_redis_url(path: str) -> None:
    assert options(dict(commands(build_parser()))[path])["--redis-url"] == "redis_url"


def test_options_override_the_environment_and_x_adds_to_loom_kafka_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOOM_KAFKA_CONFIG", '{"socket.timeout.ms": "1000", "linger.ms": "1"}')
    monkeypatch.setenv("LOOM_KAFKA_BOOTSTRAP", "env:9092")
    args = build_parser().parse_args(
        ["lag", "--bootstrap", "cli:9092", "-X", "linger.ms=50", "-X", "acks=all"]
    )
    settings = settings_from(args)
    assert settings.kafka_bootstrap == "cli:9092"
    assert settings.kafka_config == {"socket.timeout.ms": "1000", "linger.ms": "50", "acks": "all"}
    args = build_parser().parse_args(
        ["profile", "get", "email:a@b.c", "--redis-url", "rediss://r:6380/1", "--prefix", "shop"]
    )
    settings = settings_from(args)
    assert (settings.redis_url, settings.redis_prefix) == ("rediss://r:6380/1", "shop")


def test_the_inventory_lane_uses_its_own_redis_unless_the_command_line_names_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOOM_INVENTORY_REDIS_URL", "redis://inventory:6379/0")
    plain = build_parser().parse_args(["inventory", "get", "SKU-1"])
    assert str(lane_settings(plain, "inventory").redis_url) == "redis://inventory:6379/0"
    assert str(lane_settings(plain, "profiles").redis_url) != "redis://inventory:6379/0"
    told = build_parser().parse_args(["inventory", "get", "SKU-1", "--redis-url", "redis://cli/2"])
    assert str(lane_settings(told, "inventory").redis_url) == "redis://cli/2"


def test_the_exporter_binds_loopback_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOM_WEB_HOST", raising=False)
    args = build_parser().parse_args(["exporter"])
    assert exporter.listen_host(args, settings_from(args)) == "127.0.0.1"
    monkeypatch.setenv("LOOM_WEB_HOST", "0.0.0.0")  # a container
    assert exporter.listen_host(args, settings_from(args)) == "0.0.0.0"
    args = build_parser().parse_args(["exporter", "--host", "10.0.0.5"])
    assert exporter.listen_host(args, settings_from(args)) == "10.0.0.5"


def test_internal_topics_are_faust_and_kafka_ones() -> None:
    assert is_internal_topic("loom-profiles-__assignor-__leader")
    assert is_internal_topic("__consumer_offsets")
    assert not is_internal_topic("touchpoints.raw")
    assert not is_internal_topic("shop__raw")


def group(*partitions: tuple[int | None, float | None]) -> GroupLag:
    rows = tuple(
        PartitionLag("touchpoints.raw", i, 0 if lag is not None else None, lag or 0, lag, secs)
        for i, (lag, secs) in enumerate(partitions)
    )
    return GroupLag("loom-profiles", "STABLE", False, (), rows)


def header(g: GroupLag) -> str:
    return render_table((g,)).splitlines()[0]


def test_lag_header_says_how_far_behind_in_messages_and_seconds() -> None:
    assert header(group((5, 2.5), (3, 7.25), (0, 0.0))) == (
        "Group 'loom-profiles': state STABLE, 0 member(s), lag 8 messages "
        "(at most 5 on one partition), 7.250 s behind"
    )
    # a lagging partition whose record time is unknown: not "0 s behind"
    assert header(group((5, None), (3, 7.25))).endswith(
        "lag 8 messages (at most 5 on one partition), unknown behind"
    )
    assert header(group((0, 0.0), (None, None))).endswith("0.000 s behind")
