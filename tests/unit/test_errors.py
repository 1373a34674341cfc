"""One classification of failures: retry, stop, or bisect (streams.errors)."""

from __future__ import annotations

import pytest
import redis
from confluent_kafka import KafkaError, KafkaException
from redis._parsers.base import BaseParser

from resolvers.pipeline import CommitConflictError
from streams.errors import (
    CommitContendedError,
    DeterministicError,
    FatalError,
    KafkaFailedError,
    KafkaUnavailableError,
    LaneError,
    MisconfiguredError,
    RecordRefusedError,
    RedisUnavailableError,
    RetryableError,
    StateLostError,
    classify,
    kafka_error,
)


def server_error(line: str) -> Exception:
    """The exception redis-py raises for a server error reply ``-line`` (its own parser)."""
    exc: Exception = BaseParser.parse_error(line)
    return exc


@pytest.mark.parametrize(
    "line",
    [
        "READONLY You can't write against a read only replica.",
        "LOADING Redis is loading the dataset in memory",
        "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
        "TRYAGAIN Multiple keys request during rehashing of slot",
        "OOM command not allowed when used memory > 'maxmemory'.",
        "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist "
        "to disk.",
        "NOREPLICAS Not enough good replicas to write.",
        "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
        "NOSCRIPT No matching script. Please use EVAL.",
        "ERR max number of clients reached",
        # inside a Lua script Redis keeps the code and appends where
        "OOM command not allowed when used memory > 'maxmemory'. script: ae34, on @user_script:1.",
    ],
)
def test_server_errors_that_pass_are_retried(line: str) -> None:
    assert isinstance(classify(server_error(line)), RedisUnavailableError)


@pytest.mark.parametrize(
    "line",
    [
        "NOPERM User loom has no permissions to run the 'evalsha' command",
        "WRONGPASS invalid username-password pair or user is disabled.",
        "NOAUTH Authentication required.",
        "WRONGTYPE Operation against a key holding the wrong kind of value script: 0a, on @x:1.",
        "MOVED 3999 127.0.0.1:6381",
        "CROSSSLOT Keys in request don't hash to the same slot",
    ],
)
def test_server_errors_that_need_an_operator_stop_the_lane(line: str) -> None:
    assert isinstance(classify(server_error(line)), MisconfiguredError)


def test_a_lua_error_on_this_batchs_data_is_deterministic() -> None:
    err = classify(
        server_error("ERR user_script:1: Expected object key string but found T_END script: 36")
    )
    assert isinstance(err, DeterministicError)


def test_nogroup_is_not_mistaken_for_an_outage() -> None:
    """NOGROUP (the outbox group vanished) needs its own handling (the relay recreates the
    group); it is neither retryable as is nor fatal."""
    err = classify(server_error("NOGROUP No such key 'o' or consumer group 'relay'"))
    assert isinstance(err, DeterministicError)


@pytest.mark.parametrize(
    "exc", [redis.ConnectionError("refused"), redis.TimeoutError("slow"), ConnectionResetError()]
)
def test_connection_failures_are_retried(exc: Exception) -> None:
    assert isinstance(classify(exc), RedisUnavailableError)


@pytest.mark.parametrize(
    "code",
    [
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._MSG_TIMED_OUT,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NOT_COORDINATOR,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.LEADER_NOT_AVAILABLE,
    ],
)
def test_transient_kafka_errors_are_retried(code: int) -> None:
    assert isinstance(classify(KafkaException(KafkaError(code))), KafkaUnavailableError)


@pytest.mark.parametrize(
    "code",
    [
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._AUTHENTICATION,
        KafkaError._SSL,
    ],
)
def test_kafka_authorization_failures_stop_the_lane(code: int) -> None:
    assert isinstance(classify(KafkaException(KafkaError(code))), MisconfiguredError)


def test_librdkafkas_own_flags_decide_unlisted_codes() -> None:
    assert isinstance(kafka_error(KafkaError(KafkaError.UNKNOWN, retriable=True)), RetryableError)
    assert isinstance(kafka_error(KafkaError(KafkaError.UNKNOWN, fatal=True)), FatalError)


def test_a_record_kafka_refuses_is_deterministic_not_retried_forever() -> None:
    err = classify(KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)))
    assert isinstance(err, DeterministicError)


@pytest.mark.parametrize(
    "code",
    [
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_TIMESTAMP,
        KafkaError.UNSUPPORTED_FOR_MESSAGE_FORMAT,
    ],
)
def test_only_the_codes_that_say_so_are_refusals_for_good(code: int) -> None:
    assert isinstance(kafka_error(KafkaError(code)), RecordRefusedError)


@pytest.mark.parametrize(
    "code",
    [KafkaError.UNKNOWN, KafkaError._FAIL, KafkaError.NOT_CONTROLLER, KafkaError._BAD_MSG],
)
def test_a_code_no_list_names_is_retried_not_taken_for_a_refusal(code: int) -> None:
    """A delivery report's error has no flags (``retriable()`` is false even for
    ``_MSG_TIMED_OUT``): an unlisted code was read as "refused for good"."""
    error = kafka_error(KafkaError(code), "outbox relay")
    assert isinstance(error, KafkaFailedError)
    assert isinstance(error, RetryableError)
    assert "outbox relay" in error.describe()


def test_a_full_producer_queue_is_retried() -> None:
    assert isinstance(classify(BufferError("Local: Queue full")), KafkaUnavailableError)


def test_commit_conflicts_are_retried() -> None:
    assert isinstance(classify(CommitConflictError("20 attempts")), CommitContendedError)


def _raise_in_a_stage() -> None:
    from resolvers.stages import parse

    parse.run(None, max_bytes=1)  # type: ignore[arg-type]  # None has no .value


def test_a_bug_is_deterministic_and_says_where_without_the_exception_text() -> None:
    secret = "jane@example.com"
    try:
        raise KeyError(secret)
    except KeyError as exc:
        err = classify(exc)
    assert isinstance(err, DeterministicError)
    assert err.error_class == "KeyError"
    assert err.where == ""  # raised outside Loom's packages: no frame of ours to name
    assert err.describe() == "KeyError"  # the class, never the text (it quotes input)
    assert err.__cause__ is not None

    try:
        _raise_in_a_stage()
    except AttributeError as exc:
        err = classify(exc)
    assert isinstance(err, DeterministicError)
    assert err.stage == "parse"
    assert err.where.startswith("resolvers/stages/parse.py:")
    assert err.describe() == f"AttributeError at {err.where}"


def test_classified_errors_pass_through_and_the_tree_holds() -> None:
    lost = StateLostError("generation gone")
    assert classify(lost) is lost
    for cls in (RedisUnavailableError, KafkaUnavailableError, CommitContendedError):
        assert issubclass(cls, RetryableError)
    for cls in (StateLostError, MisconfiguredError):
        assert issubclass(cls, FatalError)
    for cls in (RetryableError, FatalError, DeterministicError):
        assert issubclass(cls, LaneError)
    assert isinstance(classify(MemoryError()), FatalError)
