"""State loss is detected, never silently continued: the Redis generation marker.

Redis holds ``P:v1:generation``, a random id created once (``SET NX``) when a lane first
starts on an empty prefix. Every offset a worker commits carries that id as its Kafka commit
metadata, so the committed offsets say which Redis state they were processed against. Two
checks use it:

* at start (:func:`establish`): the lane's committed offsets must carry the generation Redis
  holds. Offsets stamped with another generation, or with one while Redis holds none, mean
  Redis lost the state those offsets imply (a restart without persistence, a flush, another
  server): the worker refuses to process (:class:`~streams.errors.StateLostError`, readiness
  false, one log line saying how to recover: ``loom rebuild``);
* at every batch commit: the commit script checks the generation in the same atomic call
  (:class:`~streams.redis_store.RedisStore`), so a Redis that restarts empty mid-run is caught
  at the next batch and nothing is ever written into it. The same call refuses the commit
  (:func:`rebuild_running`) while a ``loom rebuild`` of the lane holds the lane's lease
  (``P:v1:rebuild-lease:{lane}``) and the store is not that rebuild's: a worker whose start
  check read the group's offsets before the rebuild reset them writes nothing into it.

Offsets committed before markers existed carry no metadata: they are accepted when Redis holds
this lane's state (the marker is created then), refused when it holds none.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

import redis
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from streams.errors import RebuildRunningError, StateLostError
from streams.redis_keys import Keys

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Key patterns (under ``P:v1:``) of each lane's own state; the first is its index.
LANE_KEYS: dict[str, tuple[str, ...]] = {
    "profiles": (
        "profile-index",
        "id:*",
        "profile:*",
        "seen:*",
        "markers:seen:*",
        "commit-seq:seen",
        "suppressed",
        "changes:profiles",
        "audience:*",
        "audience-medians",
        "offsets:profiles",
    ),
    "inventory": (
        "stock-index",
        "stock:*",
        "seen-inventory:*",
        "markers:seen-inventory:*",
        "commit-seq:seen-inventory",
        "changes:inventory",
        "offsets:inventory",
        "offsets:inventory-router",
    ),
}


@dataclass(frozen=True, slots=True)
class Committed:
    """What a group's committed offsets on the raw topic say."""

    partitions: int  # with a committed offset
    generations: frozenset[str]  # the metadata they carry ("" = none: committed before markers)

    @classmethod
    def read(
        cls,
        consumer: Consumer,
        topic: str,
        partitions: Sequence[int],
        *,
        timeout_s: float = 10.0,
        sleep: Callable[[float], object] = time.sleep,
    ) -> Committed:
        """What the group's committed offsets of ``partitions`` say
        (:func:`committed_offsets`)."""
        return cls.of(
            committed_offsets(consumer, topic, partitions, timeout_s=timeout_s, sleep=sleep)
        )

    @property
    def wiping(self) -> bool:
        """Reset by a wiping ``loom rebuild`` that has not said its wipe finished
        (:func:`wiping`)."""
        return any(g.startswith(WIPING) for g in self.generations)

    @property
    def wiping_partial(self) -> bool:
        """Reset by a wiping rebuild that was allowed a partial history (:func:`wiping`)."""
        return any(g.startswith(WIPING + PARTIAL) for g in self.generations)

    @classmethod
    def of(cls, offsets: Sequence[TopicPartition]) -> Committed:
        """What an answer of :func:`committed_offsets` says."""
        done = [tp for tp in offsets if tp.offset >= 0]
        return cls(len(done), frozenset(tp.metadata or "" for tp in done))


def committed_offsets(
    consumer: Consumer,
    topic: str,
    partitions: Sequence[int],
    *,
    timeout_s: float = 10.0,
    sleep: Callable[[float], object] = time.sleep,
) -> list[TopicPartition]:
    """The group's committed offsets of ``partitions``. A group coordinator that is moving or
    still loading (a fresh cluster creates its offsets topic at the first group's first ask),
    or offsets a transaction has not settled yet, are asked again until ``timeout_s``; other
    errors raise at once, the whole answer's or one partition's (librdkafka reports a partition
    whose fetch failed with an error and no offset: read as "never committed", it would let
    :func:`establish` start a new generation on a Redis that lost its state)."""
    asked = [TopicPartition(topic, p) for p in partitions]

    def ask(timeout: float) -> list[TopicPartition]:
        got: list[TopicPartition] = consumer.committed(asked, timeout=timeout)
        failed = next((tp.error for tp in got if tp.error is not None), None)
        if failed is not None:
            raise KafkaException(failed)
        return got

    return ask_coordinator(ask, timeout_s=timeout_s, sleep=sleep)


def ask_coordinator(
    ask: Callable[[float], T],
    *,
    timeout_s: float,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """``ask(timeout)`` (``timeout``: the seconds left, at least 0.1), asked again while it
    raises a ``KafkaException`` whose code is :data:`ASK_AGAIN`, until ``timeout_s``; then,
    or at once for any other error, it raises what ``ask`` raised."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ask(max(0.1, deadline - time.monotonic()))
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            code = error.code() if isinstance(error, KafkaError) else None
            if code not in ASK_AGAIN or time.monotonic() >= deadline:
                raise
            sleep(_COORDINATOR_BACKOFF_S)


#: What a group coordinator answers while it moves or loads (a cluster just started creates
#: its offsets topic at the first group's first ask, and a request meanwhile may get no answer
#: at all: ``_TIMED_OUT``), and a partition's answer while a transaction's offsets are
#: pending: asked again (:func:`ask_coordinator`).
ASK_AGAIN: Final = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.UNSTABLE_OFFSET_COMMIT,
        KafkaError._TIMED_OUT,
    }
)
_COORDINATOR_BACKOFF_S: Final = 0.1


#: The metadata prefix of the offsets a wiping ``loom rebuild`` resets its lane's group to
#: before it deletes the lane's keys; it commits them again, stamped with the generation, once
#: the wipe is done. A worker that starts meanwhile refuses (:func:`establish`): the reset
#: offsets alone carry the generation a wipe keeps, and it would write into a lane being wiped.
WIPING: Final = "wiping:"


#: After :data:`WIPING` in the reset offsets' metadata of a rebuild run with
#: ``--allow-partial``: the ``--resume`` that wipes again replays as that run would have.
PARTIAL: Final = "partial:"


def wiping(generation: str, *, partial: bool = False) -> str:
    """The commit metadata of a wiping rebuild's reset offsets (:data:`WIPING`; ``partial``:
    it was allowed a partial history, :data:`PARTIAL`)."""
    return f"{WIPING}{PARTIAL if partial else ''}{generation}"


def lane_has_state(client: redis.Redis, prefix: str, lane: str) -> bool:
    """Whether Redis holds any of ``lane``'s keys under ``prefix`` (stops at the first)."""
    root = Keys(prefix).root
    for pattern in LANE_KEYS[lane]:
        if "*" not in pattern:
            if client.exists(f"{root}:{pattern}"):
                return True
            continue
        for _ in client.scan_iter(match=f"{root}:{pattern}", count=1000):
            return True
    return False


def rebuild_running(prefix: str, lane: str, *, at_start: bool = False) -> RebuildRunningError:
    """What a commit of ``lane`` is refused with while a ``loom rebuild`` of it holds the
    lane's lease (``P:v1:rebuild-lease:{lane}``, ``streams.rebuild``); ``at_start``: what a
    worker's start check is refused with then (:func:`refuse_during_rebuild`)."""
    done = (
        "it did not join the lane's consumer group and processed nothing"
        if at_start
        else "nothing of this batch was written"
    )
    return RebuildRunningError(
        f"{lane} lane: `loom rebuild --lane {lane}` holds the lane's lease in Redis "
        f"({prefix}:v1:rebuild-lease:{lane}; it runs, or died and the lease has not expired "
        f"yet): this worker started during it, and {done}. Stop "
        f"every {lane} worker, let the rebuild finish (or run it again with --resume), then "
        f"start them (docs/operating.md#rebuilding-a-lane)"
    )


def refuse_during_rebuild(client: redis.Redis, prefix: str, lane: str) -> None:
    """A worker's start check, before it joins the lane's consumer group: raises
    :func:`rebuild_running` while a ``loom rebuild`` of ``lane`` holds the lane's lease. A
    member of the group, even one whose commits the lease then refuses, is assigned partitions
    the rebuild replays, and makes the rebuild's offset commits fail while it stays."""
    if client.exists(Keys(prefix).rebuild_lease(lane)):
        raise rebuild_running(prefix, lane, at_start=True)


def recovery_hint(lane: str) -> str:
    return (
        f"stop every {lane} worker and run `loom rebuild --lane {lane}` (replays the raw topic "
        f"from its earliest offsets into Redis), then start them again "
        f"(docs/operating.md#state-lost)"
    )


def establish(client: redis.Redis, prefix: str, lane: str, committed: Committed) -> str:
    """The generation this lane processes against; raises StateLostError (see the module)."""
    if committed.wiping:
        raise StateLostError(
            f"{lane} lane: `loom rebuild --lane {lane} --wipe` reset the group's offsets and "
            f"has not finished deleting the lane's state (it runs, or it was interrupted). "
            f"Nothing was processed. Let it finish, or run `loom rebuild --lane {lane} "
            f"--resume` (it wipes again), then start the workers."
        )
    key = Keys(prefix).generation
    raw = client.get(key)
    current = raw.decode() if isinstance(raw, bytes) else None
    stamped = committed.generations - {""}
    if current is None:
        if stamped:
            raise StateLostError(
                f"{lane} lane: Redis prefix {prefix!r} has no generation marker, but the "
                f"group's offsets were committed against generation {sorted(stamped)[0]}: "
                f"Redis lost the state they imply (restarted without persistence?). Nothing "
                f"was processed. To recover, {recovery_hint(lane)}."
            )
        if committed.partitions and not lane_has_state(client, prefix, lane):
            raise StateLostError(
                f"{lane} lane: the group has committed offsets but Redis prefix {prefix!r} "
                f"holds none of this lane's state. Nothing was processed. To recover, "
                f"{recovery_hint(lane)}."
            )
        client.set(key, uuid.uuid4().hex, nx=True)  # two workers racing agree on the winner
        raw = client.get(key)
        current = raw.decode() if isinstance(raw, bytes) else ""
        log.info("%s lane: generation %s (new marker in %r)", lane, current, prefix)
        return current
    foreign = stamped - {current}
    if foreign:
        raise StateLostError(
            f"{lane} lane: the group's offsets were committed against generation "
            f"{sorted(foreign)[0]} but Redis prefix {prefix!r} holds generation {current}: "
            f"this Redis is not the state those offsets imply (it was restored, flushed or "
            f"replaced). Nothing was processed. To recover, {recovery_hint(lane)}."
        )
    return current
