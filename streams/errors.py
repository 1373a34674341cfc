"""What a failure means for a lane: one exception tree, one classification.

Hierarchy (``LoomError`` and ``InvalidEvent`` live in :mod:`schemas.errors`)::

    LoomError                        base of every error Loom raises on purpose
    ├── InvalidEvent                 bad input: ``parse`` makes it a dead letter, never raised on
    └── LaneError                    a batch, its dead letters or the relay failed; what to do:
        ├── RetryableError           the infrastructure will come back: retry with capped
        │   │                        backoff, commit no offset meanwhile
        │   ├── RedisUnavailableError    connection or timeout, LOADING, READONLY (failover),
        │   │                            MASTERDOWN, TRYAGAIN, OOM, MISCONF, NOREPLICAS, BUSY,
        │   │                            NOSCRIPT, CLUSTERDOWN
        │   ├── KafkaUnavailableError    a broker error librdkafka calls retriable, transport,
        │   │                            timeouts, coordinator moves, full queues, rebalances
        │   ├── KafkaFailedError         any other Kafka error not known to be fatal or to be
        │   │                            about this record (UNKNOWN_SERVER_ERROR, NOT_CONTROLLER)
        │   └── CommitContendedError     the batch lost its compare-and-set too often
        ├── FatalError               retrying cannot help and moving on would lose data: stop
        │   │                        the lane without committing; an operator has to act
        │   ├── StateLostError           Redis does not hold the state the committed offsets
        │   │   │                        imply (generation marker gone or different)
        │   │   └── RebuildRunningError  a ``loom rebuild`` of the lane holds its lease: the
        │   │                            worker started during it (streams.rebuild)
        │   └── MisconfiguredError       NOPERM, authentication, WRONGTYPE in Loom's keys, Redis
        │                                Cluster redirects, Kafka authorization/fatal errors
        └── DeterministicError       anything else: the same input fails the same way (a bug in
            │                        a stage, a record no stage expected): bisect the batch to
            │                        the record, dead-letter it with the reason, move on
            └── RecordRefusedError       Kafka refuses this record for good: only the codes
                                         that say so (too large, invalid, bad timestamp)

:func:`classify` maps any exception (redis-py's, confluent-kafka's, Python's own) to one of the
leaves, keeping the original as ``__cause__``. Everything that decides between retrying,
stopping and bisecting asks it; nothing else in Loom lists third-party exception classes.

:meth:`LaneError.describe` is what logs and DLQ headers show: a server's own message for
infrastructure errors (no payload values in those), but for a deterministic error only the
exception class and where it was raised, because a stage's exception text may quote input.
"""

from __future__ import annotations

import traceback
from pathlib import PurePath
from typing import Final

import redis
from confluent_kafka import KafkaError, KafkaException

from resolvers.pipeline import CommitConflictError
from schemas.errors import LoomError

__all__ = [
    "CommitContendedError",
    "DeterministicError",
    "FatalError",
    "KafkaFailedError",
    "KafkaUnavailableError",
    "LaneError",
    "MisconfiguredError",
    "RebuildRunningError",
    "RecordRefusedError",
    "RedisUnavailableError",
    "RetryableError",
    "StateLostError",
    "classify",
]


class LaneError(LoomError):
    """A failure, classified: its subclass says what the lane does about it."""

    #: short stable name of the class, for metric labels and logs
    kind: str = "error"

    def describe(self) -> str:
        """One line for logs: what failed, without payload values."""
        return str(self) or type(self).__name__


class RetryableError(LaneError):
    kind = "retryable"


class RedisUnavailableError(RetryableError):
    pass


class KafkaUnavailableError(RetryableError):
    pass


class KafkaFailedError(RetryableError):
    """A Kafka error neither librdkafka nor Loom knows to be transient, fatal or about the
    record itself (``UNKNOWN_SERVER_ERROR``, ``NOT_CONTROLLER``, a client's ``_FAIL``...):
    retried with backoff, as an outage is. Read as a refusal for good it had the relay park a
    record at the end of the outbox, where newer records of its key overtook it (ADR 0043's
    note of 2026-12-04); read as deterministic it had a lane bisect a batch and dead-letter
    good events, and the stock router stop."""


class CommitContendedError(RetryableError):
    pass


class FatalError(LaneError):
    kind = "fatal"


class StateLostError(FatalError):
    pass


class RebuildRunningError(StateLostError):
    """A commit of a lane while a ``loom rebuild`` of it holds the lane's lease: refused,
    nothing written (``streams.rebuild``)."""


class MisconfiguredError(FatalError):
    pass


class DeterministicError(LaneError):
    """An error that says nothing about the infrastructure. ``where`` names the deepest frame
    of Loom's own code it was raised in (``resolvers/stages/inventory.py:61 in movements``);
    ``stage`` the pipeline stage module, when it was raised inside one."""

    kind = "deterministic"

    def __init__(self, error_class: str, where: str, stage: str | None) -> None:
        self.error_class, self.where, self.stage = error_class, where, stage
        super().__init__(f"{error_class} at {where}" if where else error_class)


class RecordRefusedError(DeterministicError):
    """Kafka refuses a record whatever the retries (``MSG_SIZE_TOO_LARGE``, ``INVALID_RECORD``
    ...: :data:`_KAFKA_REFUSED`): sending it again fails the same way."""

    def __init__(self, code: str) -> None:
        super().__init__(f"KafkaError {code}", "", None)


# --- Redis --------------------------------------------------------------------------------

#: Server error codes that mean "not now" (redis-py leaves them as a plain ResponseError with
#: the code as the first word of the message).
_REDIS_TRANSIENT_CODES: Final = frozenset(
    {
        "MISCONF",
        "NOREPLICAS",
        "BUSY",
        "LOADING",
        "MASTERDOWN",
        "TRYAGAIN",
        "OOM",
        "READONLY",
        "UNBLOCKED",
    }
)
#: Server error codes that need an operator (Loom's keys hold another type: a foreign writer
#: in the prefix; cluster redirects: layout v1 needs a single primary).
_REDIS_FATAL_CODES: Final = frozenset({"WRONGTYPE", "NOPERM", "NOAUTH", "WRONGPASS", "CROSSSLOT"})

_REDIS_TRANSIENT: Final = (
    redis.ConnectionError,  # includes BusyLoadingError (LOADING) and "max number of clients"
    redis.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.MasterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.NoScriptError,  # a script cache flushed between load and call
)
_REDIS_FATAL: Final = (
    redis.AuthenticationError,
    redis.exceptions.AuthenticationWrongNumberOfArgsError,
    redis.exceptions.AuthorizationError,
    redis.exceptions.NoPermissionError,
    redis.exceptions.MovedError,
    redis.exceptions.AskError,
    redis.exceptions.ClusterCrossSlotError,
)


def _redis(exc: redis.RedisError) -> LaneError | None:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, _REDIS_FATAL):
        return MisconfiguredError(f"Redis refused Loom: {text}")
    if isinstance(exc, _REDIS_TRANSIENT):
        return RedisUnavailableError(text)
    if isinstance(exc, redis.ResponseError):
        code = str(exc).split(" ", 1)[0]
        if code in _REDIS_TRANSIENT_CODES:
            return RedisUnavailableError(text)
        if code in _REDIS_FATAL_CODES:
            return MisconfiguredError(f"Redis refused Loom: {text}")
    return None  # e.g. a Lua error on this batch's data: deterministic


# --- Kafka --------------------------------------------------------------------------------


def _codes(*names: str) -> frozenset[int]:
    return frozenset(getattr(KafkaError, n) for n in names if hasattr(KafkaError, n))


_KAFKA_TRANSIENT: Final = _codes(
    "_TRANSPORT", "_ALL_BROKERS_DOWN", "_TIMED_OUT", "_MSG_TIMED_OUT", "_TIMED_OUT_QUEUE",
    "_QUEUE_FULL", "_WAIT_COORD", "_RESOLVE", "_NODE_UPDATE", "_RETRY", "_PREV_IN_PROGRESS",
    "_IN_PROGRESS", "_MAX_POLL_EXCEEDED", "_ASSIGNMENT_LOST", "_UNKNOWN_PARTITION",
    "_UNKNOWN_BROKER", "_INTR", "_ISR_INSUFF", "_NO_OFFSET", "_STATE", "_DESTROY_BROKER",
    "REQUEST_TIMED_OUT", "NETWORK_EXCEPTION", "BROKER_NOT_AVAILABLE", "NOT_COORDINATOR",
    "COORDINATOR_NOT_AVAILABLE", "COORDINATOR_LOAD_IN_PROGRESS", "REBALANCE_IN_PROGRESS",
    "ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID", "NOT_ENOUGH_REPLICAS",
    "NOT_ENOUGH_REPLICAS_AFTER_APPEND", "LEADER_NOT_AVAILABLE", "NOT_LEADER_FOR_PARTITION",
    "REPLICA_NOT_AVAILABLE", "KAFKA_STORAGE_ERROR", "UNKNOWN_TOPIC_OR_PART",
    "THROTTLING_QUOTA_EXCEEDED", "FENCED_LEADER_EPOCH", "UNKNOWN_LEADER_EPOCH",
    "OFFSET_NOT_AVAILABLE", "UNSTABLE_OFFSET_COMMIT", "STALE_MEMBER_EPOCH",
    "FENCED_MEMBER_EPOCH", "REBOOTSTRAP_REQUIRED",
)  # fmt: skip
_KAFKA_FATAL: Final = _codes(
    "_FATAL", "_AUTHENTICATION", "_SSL", "_INVALID_ARG", "_UNSUPPORTED_FEATURE", "_FENCED",
    "_UNKNOWN_TOPIC", "_UNKNOWN_GROUP", "_NOT_CONFIGURED", "_CRIT_SYS_RESOURCE",
    "TOPIC_AUTHORIZATION_FAILED", "GROUP_AUTHORIZATION_FAILED", "CLUSTER_AUTHORIZATION_FAILED",
    "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", "SASL_AUTHENTICATION_FAILED",
    "UNSUPPORTED_SASL_MECHANISM", "ILLEGAL_SASL_STATE", "UNSUPPORTED_VERSION", "INVALID_CONFIG",
    "INVALID_GROUP_ID", "INVALID_SESSION_TIMEOUT", "INVALID_REQUIRED_ACKS", "POLICY_VIOLATION",
    "PRODUCER_FENCED", "FENCED_INSTANCE_ID", "OFFSET_METADATA_TOO_LARGE",
    "UNSUPPORTED_COMPRESSION_TYPE", "INCONSISTENT_GROUP_PROTOCOL", "GROUP_MAX_SIZE_REACHED",
)  # fmt: skip
#: The codes that say the broker (or librdkafka, before sending) refuses this record itself,
#: whenever it is sent: too large for ``message.max.bytes`` or the topic's
#: ``max.message.bytes``, invalid for the topic (no key on a compacted one), a timestamp
#: outside ``message.timestamp.*.max.ms``, a format the topic cannot hold.
_KAFKA_REFUSED: Final = _codes(
    "MSG_SIZE_TOO_LARGE", "_MSG_SIZE_TOO_LARGE", "INVALID_MSG_SIZE", "RECORD_LIST_TOO_LARGE",
    "INVALID_RECORD", "INVALID_TIMESTAMP", "UNSUPPORTED_FOR_MESSAGE_FORMAT",
)  # fmt: skip


def kafka_error(err: KafkaError, what: str = "Kafka") -> LaneError:
    """Classify one librdkafka error (from an exception, a message or a delivery report).

    A delivery report's error carries no flags (``retriable()`` and ``fatal()`` are false
    whatever the code), and librdkafka ends a delivery with any broker error it does not retry
    itself; so the codes decide: a refusal only for :data:`_KAFKA_REFUSED`, and a code no list
    names is retried (:class:`KafkaFailedError`), never taken for a refusal."""
    text = f"{what}: {err.name()}: {err.str()}"
    code = err.code()
    if err.fatal() or code in _KAFKA_FATAL:
        return MisconfiguredError(text)
    if err.retriable() or code in _KAFKA_TRANSIENT:
        return KafkaUnavailableError(text)
    if code in _KAFKA_REFUSED:  # this record fails whenever it is sent
        return RecordRefusedError(err.name())
    return KafkaFailedError(text)


# --- everything else ------------------------------------------------------------------------

_ROOT: Final = PurePath(__file__).parents[1]


def _origin(exc: BaseException) -> tuple[str, str | None]:
    """``(where, stage)``: the deepest frame inside Loom's packages, and the stage module."""
    where, stage = "", None
    for frame in traceback.extract_tb(exc.__traceback__):
        try:
            rel = PurePath(frame.filename).relative_to(_ROOT)
        except ValueError:
            continue
        if rel.parts[0] not in ("resolvers", "schemas", "streams"):
            continue
        where = f"{rel.as_posix()}:{frame.lineno} in {frame.name}"
        if rel.parts[:2] == ("resolvers", "stages"):
            stage = rel.stem
    return where, stage


def classify(exc: BaseException) -> LaneError:
    """What ``exc`` means for a lane (see the module docstring); the original is the cause."""
    if isinstance(exc, LaneError):
        return exc
    err: LaneError | None = None
    if isinstance(exc, redis.RedisError):
        err = _redis(exc)
    elif isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        err = kafka_error(exc.args[0])
    elif isinstance(exc, BufferError):  # the producer's local queue is full
        err = KafkaUnavailableError(f"Kafka producer queue full: {exc}")
    elif isinstance(exc, CommitConflictError):
        err = CommitContendedError(str(exc))
    elif isinstance(exc, ConnectionError | TimeoutError):  # sockets outside the clients
        err = RedisUnavailableError(f"{type(exc).__name__}: {exc}")
    elif isinstance(exc, MemoryError):
        err = FatalError("the worker ran out of memory")
    if err is None:
        where, stage = _origin(exc)
        err = DeterministicError(type(exc).__name__, where, stage)
    err.__cause__ = exc
    return err
