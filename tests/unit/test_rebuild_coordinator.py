"""``loom rebuild``'s questions to a group coordinator that moves or is still loading (a cluster
just started): asked again within a bound, then one line; other errors as they are."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams.rebuild import _no_coordinator, group_members
from streams.startup import InfraError


class AnsweringAdmin:
    """Answers ``describe_consumer_groups`` with each of ``answers`` in turn: an exception is
    the future's, ``None`` a future that never completes, a number that many members."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.asked: list[float] = []

    def describe_consumer_groups(self, groups: list[str], request_timeout: float) -> Any:
        self.asked.append(request_timeout)
        answer, future = self.answers.pop(0), Future[Any]()
        if isinstance(answer, BaseException):
            future.set_exception(answer)
        elif answer is not None:
            future.set_result(type("Description", (), {"members": [object()] * answer})())
        return {groups[0]: future}


def _error(code: int) -> KafkaException:
    return KafkaException(KafkaError(code))


@pytest.mark.parametrize(
    "code",
    [
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError._TIMED_OUT,
    ],
)
def test_a_coordinator_that_moves_or_loads_is_asked_again(code: int) -> None:
    admin = AnsweringAdmin(_error(code), _error(code), 2)
    waits: list[float] = []
    assert group_members(admin, "g", timeout_s=30, sleep=waits.append) == 2  # type: ignore[arg-type]
    assert len(admin.asked) == 3
    assert len(waits) == 2


def test_no_answer_at_all_is_a_timeout_not_a_bare_timeout_error() -> None:
    """A future that never completes was a TimeoutError: a traceback, not the CLI's line."""
    admin = AnsweringAdmin(None)
    with pytest.raises(KafkaException) as raised:
        group_members(admin, "g", timeout_s=0.0, sleep=lambda s: None)  # type: ignore[arg-type]
    assert raised.value.args[0].code() == KafkaError._TIMED_OUT


def test_other_errors_raise_at_once() -> None:
    admin = AnsweringAdmin(_error(KafkaError.GROUP_AUTHORIZATION_FAILED), 0)
    with pytest.raises(KafkaException):
        group_members(admin, "g", timeout_s=30, sleep=lambda s: None)  # type: ignore[arg-type]
    assert len(admin.asked) == 1


def test_a_coordinator_still_loading_at_the_bound_is_one_line_saying_what_to_do() -> None:
    admin = AnsweringAdmin(*[_error(KafkaError.COORDINATOR_LOAD_IN_PROGRESS)] * 3)
    with pytest.raises(InfraError) as raised, _no_coordinator("loom-profiles", 0.0):
        group_members(admin, "loom-profiles", timeout_s=0.0, sleep=lambda s: None)  # type: ignore[arg-type]
    (line,) = str(raised.value).splitlines()
    assert "loom-profiles" in line
    assert "COORDINATOR_LOAD_IN_PROGRESS" in line
    assert "run the same rebuild again" in line


def test_another_error_is_not_taken_for_a_loading_coordinator() -> None:
    with pytest.raises(KafkaException), _no_coordinator("loom-profiles", 60.0):
        raise _error(KafkaError.GROUP_AUTHORIZATION_FAILED)
