"""``loom demo``'s clean slate: an earlier run's consumer groups are deleted, retried while a
broker just started is not yet their coordinator; any other failure stops the demo with a
one-line reason instead of leaving offsets that stop the new run's workers (``state_lost``).
And a demo whose workers never catch up fails instead of telling an empty story."""

from __future__ import annotations

import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams.cli import demo


class Admin:
    """``delete_consumer_groups`` answering from a script: per call, per group, an error code
    or None (deleted)."""

    def __init__(self, script: list[dict[str, int | None]]) -> None:
        self.script = script
        self.asked: list[list[str]] = []

    def delete_consumer_groups(self, groups: list[str], request_timeout: float) -> dict[str, Any]:
        self.asked.append(list(groups))
        answers = self.script.pop(0)
        out: dict[str, Future[None]] = {}
        for group in groups:
            future: Future[None] = Future()
            code = answers[group]
            if code is None:
                future.set_result(None)
            else:
                future.set_exception(KafkaException(KafkaError(code)))
            out[group] = future
        return out


def test_groups_are_retried_while_the_coordinator_is_not_ready() -> None:
    admin = Admin(
        [
            {"p": KafkaError.NOT_COORDINATOR, "i": KafkaError.COORDINATOR_LOAD_IN_PROGRESS},
            {"p": None, "i": KafkaError.COORDINATOR_NOT_AVAILABLE},
            {"i": None},
        ]
    )
    demo.delete_groups(admin, ["p", "i"], time.monotonic() + 30)
    assert admin.asked == [["p", "i"], ["p", "i"], ["i"]]
    assert admin.script == []


def test_a_group_that_does_not_exist_is_fine() -> None:
    admin = Admin([{"p": KafkaError.GROUP_ID_NOT_FOUND, "i": None}])
    demo.delete_groups(admin, ["p", "i"], time.monotonic() + 30)
    assert admin.asked == [["p", "i"]]


def test_another_failure_names_the_group() -> None:
    admin = Admin([{"p": None, "i": KafkaError.NON_EMPTY_GROUP}])
    with pytest.raises(demo.DemoResetError, match="consumer group 'i' of an earlier demo"):
        demo.delete_groups(admin, ["p", "i"], time.monotonic() + 30)


def test_a_coordinator_still_not_ready_at_the_deadline_fails() -> None:
    admin = Admin([{"p": KafkaError.NOT_COORDINATOR}])
    with pytest.raises(demo.DemoResetError, match="consumer group 'p'"):
        demo.delete_groups(admin, ["p"], time.monotonic() - 1)


class TopicAdmin:
    """``delete_topics`` that succeeds (or fails with ``code``) and a ``list_topics`` that
    keeps listing ``stuck``."""

    def __init__(self, stuck: set[str], code: int | None = None) -> None:
        self.stuck, self.code = stuck, code

    def delete_topics(self, names: list[str], operation_timeout: float) -> dict[str, Any]:
        out: dict[str, Future[None]] = {}
        for name in names:
            future: Future[None] = Future()
            if self.code is None:
                future.set_result(None)
            else:
                future.set_exception(KafkaException(KafkaError(self.code)))
            out[name] = future
        return out

    def list_topics(self, timeout: float) -> Any:
        return type("Meta", (), {"topics": dict.fromkeys(self.stuck)})()


def test_topics_gone_from_the_listing_are_deleted() -> None:
    demo.delete_topics(TopicAdmin(stuck={"other"}), ["raw", "dlq"], time.monotonic() - 1)


def test_topics_still_listed_at_the_deadline_fail() -> None:
    with pytest.raises(demo.DemoResetError, match=r"still listed after deletion: \['raw'\]"):
        demo.delete_topics(TopicAdmin(stuck={"raw"}), ["raw", "dlq"], time.monotonic() - 1)


def test_a_refused_topic_deletion_names_the_topic() -> None:
    admin = TopicAdmin(stuck=set(), code=KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(demo.DemoResetError, match="could not delete topic 'raw'"):
        demo.delete_topics(admin, ["raw"], time.monotonic() + 30)


class Consumer:
    def list_topics(self, topic: str, timeout: float) -> Any:
        class Meta:
            topics = {topic: type("T", (), {"partitions": {0: None, 1: None}})()}

        return Meta()


def test_workers_that_never_catch_up_fail_the_demo(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Before: the wait ended at its deadline as if the workers had caught up, and the demo
    told the story of nothing with exit 0 (lanes stopped on ``state_lost``)."""
    monkeypatch.setattr(demo, "uncommitted_or_unknown", lambda consumer, raw, partitions: 14)
    monkeypatch.setattr(demo.time, "sleep", lambda s: None)
    consumers: Any = {"profiles": Consumer(), "inventory": Consumer()}
    workers: Any = {}
    logs = {"profiles": tmp_path / "p.log"}
    settings: Any = type("S", (), {"topics": type("T", (), {"raw": "raw"})()})()
    deadline = time.monotonic() + 0.2
    assert demo._wait_caught_up(settings, consumers, workers, logs, deadline) is True
    err = capsys.readouterr().err
    assert "did not catch up in time (lag: profiles 14, inventory 14)" in err
    assert str(tmp_path / "p.log") in err


def test_a_lag_kafka_cannot_tell_yet_is_not_caught_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A group's coordinator moving answers nothing for a while: the demo keeps waiting (and
    says the lag is not known) rather than failing on the first such answer."""
    monkeypatch.setattr(demo, "uncommitted_or_unknown", lambda consumer, raw, partitions: None)
    monkeypatch.setattr(demo.time, "sleep", lambda s: None)
    consumers: Any = {"profiles": Consumer(), "inventory": Consumer()}
    settings: Any = type("S", (), {"topics": type("T", (), {"raw": "raw"})()})()
    deadline = time.monotonic() + 0.2
    logs = {"profiles": tmp_path / "p.log"}
    assert demo._wait_caught_up(settings, consumers, {}, logs, deadline) is True
    assert "(lag: profiles ?, inventory ?)" in capsys.readouterr().err
