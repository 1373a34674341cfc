"""The offsets a lane commits, kept beside its state in Redis: where a partition starts when
its group has no committed offset any more.

Kafka deletes an empty consumer group's committed offsets ``offsets.retention.minutes`` after
its last member left (7 days by default). A lane whose workers were stopped that long (an
outage, a paused deployment) started again at the topic's earliest record
(``auto.offset.reset=earliest``) and read again every event it had applied: hours of work on a
long-kept raw topic (``LOOM_RAW_RETENTION_MS``), and once the processed markers had forgotten
them (``LOOM_DEDUPE_TTL_S``, 7 days by default) a stock movement older than its position's kept
ledger could move the stock a second time. So whenever a lane commits offsets to Kafka it also
writes them to ``P:v1:offsets:{lane}`` (a hash: ``{topic}:{partition}`` -> the next offset,
``{topic}:id`` -> the topic's id), and at its start a partition the group has no committed
offset for starts at the kept one (:meth:`KeptOffsets.seeds`).

* Kafka's committed offset wins wherever there is one: a replay reset with Kafka's tool
  (``--reset-offsets``) is honoured; only a partition with none at all is seeded.
* The topic's id (Kafka's UUID of the topic, not its name) is kept with the offsets: a topic
  deleted and created again under the same name is read from its first record, as before (its
  kept offsets say nothing of the new topic's records; seeded, they would skip them).
* Best effort, as Kafka's asynchronous commit: written when the Kafka commit is asked for, by a
  thread of its own (:class:`OffsetKeeper`: the lane's event loop and its rebalance callbacks
  never wait on Redis for it), a failure logged and written again by the next one. What it
  keeps never runs ahead of what the lane applied, so a seeded start reads again at most what a
  restart after a crash does.
* Only while Redis holds the lane's generation (``streams.generation``; a ``WATCH``
  transaction): a Redis that restarted empty gets nothing from a lane about to stop on it.
* ``loom rebuild --wipe`` deletes it with the lane's other keys (``streams.generation``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final

import redis
from confluent_kafka import TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient

from streams import kafka_clients
from streams.redis_keys import Keys
from streams.settings import LoomSettings

log = logging.getLogger(__name__)

#: The field after ``{topic}:`` that holds the topic's id.
ID_FIELD: Final = "id"
#: How long a closing lane (or router) waits for Redis to take the offsets it keeps: what it
#: kept before stays a lower bound of what it applied.
KEEP_ON_CLOSE_S: Final = 2.0


def topic_id(admin: AdminClient, topic: str, timeout_s: float = 10.0) -> str:
    """Kafka's id of ``topic`` (``DescribeTopics``); raises the broker's ``KafkaException``."""
    futures = admin.describe_topics(TopicCollection([topic]), request_timeout=timeout_s)
    description = futures[topic].result(timeout=timeout_s)
    return str(description.topic_id)


class KeptOffsets:
    """One lane's offsets of ``topic`` (whose Kafka id is ``topic_id``) in the hash ``key``,
    written only while Redis holds the state they belong to: ``generation_key`` holding
    ``generation`` (``streams.generation``; None: the one it holds at the first write, kept
    from then on). A Redis that restarted empty gets nothing from a lane about to stop."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        topic: str,
        topic_id: str,
        *,
        generation_key: str,
        generation: str | None,
    ) -> None:
        self.client = client
        self.key = key
        self.topic = topic
        self.topic_id = topic_id
        self.generation_key = generation_key
        self.generation = generation

    def keep(self, offsets: Sequence[TopicPartition]) -> None:
        """Write ``offsets`` (those being committed to Kafka) with the topic's id, in a
        transaction that checks the generation first (``WATCH``); a Redis failure or a
        generation Redis no longer holds is logged, never raised."""
        topic = self.topic
        mapping: dict[str | int | float | bytes | bytearray | memoryview[int], Any] = {
            f"{topic}:{tp.partition}": str(tp.offset)
            for tp in offsets
            if tp.topic == topic and tp.offset >= 0
        }
        if not mapping:
            return
        mapping[f"{topic}:{ID_FIELD}"] = self.topic_id
        found: list[str | None] = []

        def write(pipe: Any) -> None:
            raw = pipe.get(self.generation_key)
            current = raw.decode() if isinstance(raw, bytes) else raw
            if current is None or (self.generation is not None and current != self.generation):
                found.append(current)
                return
            self.generation = current
            pipe.multi()
            pipe.hset(self.key, mapping=mapping)

        try:
            self.client.transaction(write, self.generation_key)
        except redis.RedisError as exc:
            log.warning(
                "offsets of %s not kept in Redis (%s); the next commit writes them again",
                topic,
                type(exc).__name__,
            )
            return
        if found and self.generation is not None:  # (none yet: no state to keep them beside)
            log.warning(
                "offsets of %s not kept in Redis: it holds generation %s, not the lane's %s",
                topic,
                found[0],
                self.generation,
            )

    def seeds(self, committed: Sequence[TopicPartition]) -> dict[tuple[str, int], int]:
        """Per partition of ``committed`` (the group's committed offsets of the topic) that has
        none, the kept offset; nothing if the kept offsets are another topic's (its id)."""
        topic = self.topic
        missing = sorted(tp.partition for tp in committed if tp.topic == topic and tp.offset < 0)
        if not missing:
            return {}
        fields = [f"{topic}:{ID_FIELD}", *(f"{topic}:{p}" for p in missing)]
        kept, *values = self.client.hmget(self.key, fields)
        if kept is None:
            return {}
        kept_id = kept.decode() if isinstance(kept, bytes) else str(kept)
        if kept_id != self.topic_id:
            log.warning(
                "the offsets kept in Redis are of another topic %s (id %s, now %s): "
                "partitions without a committed offset start at the earliest record",
                topic,
                kept_id,
                self.topic_id,
            )
            return {}
        return {(topic, p): int(value) for p, value in zip(missing, values, strict=True) if value}


class OffsetKeeper:
    """``write`` (:meth:`KeptOffsets.keep`) on a thread of its own. A Redis that does not
    answer held its caller for the client's timeout (10 s): the lane's event loop (its health
    endpoints with it) or a rebalance callback (the whole group's rebalance). The latest offset
    of each partition waits here; each write takes all that waits."""

    def __init__(self, write: Callable[[list[TopicPartition]], None]) -> None:
        self._write = write
        self._waiting: dict[tuple[str, int], TopicPartition] = {}
        self._changed = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="loom-offsets-keeper", daemon=True)
        self._thread.start()

    def keep(self, offsets: Sequence[TopicPartition]) -> None:
        """Hand ``offsets`` to the thread (never waits on Redis)."""
        if not offsets:
            return
        with self._changed:
            self._waiting.update(((tp.topic, tp.partition), tp) for tp in offsets)
            self._changed.notify()

    def stop(self, group: str) -> None:
        """:meth:`close` within :data:`KEEP_ON_CLOSE_S`, with one warning line if Redis had not
        taken what waited by then."""
        if not self.close(KEEP_ON_CLOSE_S):
            log.warning("%s: Redis did not take the offsets to keep within %g s; it keeps "
                        "the ones before", group, KEEP_ON_CLOSE_S)  # fmt: skip

    def close(self, timeout_s: float) -> bool:
        """Write what waits, then stop; waits ``timeout_s`` at most. False if the thread was
        still writing then (Redis not answering: the kept offsets stay as they were)."""
        with self._changed:
            self._closing = True
            self._changed.notify()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._waiting and not self._closing:
                    self._changed.wait()
                if not self._waiting:  # closing, nothing left to write
                    return
                offsets, self._waiting = list(self._waiting.values()), {}
            try:
                self._write(offsets)
            except Exception:  # a writer's fault must not end the thread: the next one tries
                log.exception("offsets not kept in Redis")


def start_keeping(
    settings: LoomSettings,
    client: redis.Redis,
    name: str,
    topic: str,
    committed: Sequence[TopicPartition],
    *,
    generation: str | None,
    keeper: OffsetKeeper | None,
    known_id: str | None = None,
) -> tuple[dict[tuple[str, int], int], OffsetKeeper]:
    """At a start: the offsets kept under ``P:v1:offsets:{name}`` for ``topic`` (its Kafka id
    asked now, unless ``known_id``) where ``committed`` (the group's committed offsets) has
    none, and the keeper of what the group commits from now on (``keeper``, if a start that
    failed made one already: one thread for the process's life). ``generation``: see
    :class:`KeptOffsets`. The group's committed offsets are handed to the keeper at once: no
    worker commits (so keeps) a partition no record reaches after its start (a lane upgraded
    from a release that kept nothing)."""
    keys = Keys(settings.redis_prefix)
    kept = KeptOffsets(
        client, keys.offsets(name), topic,
        known_id or topic_id(kafka_clients.admin(settings), topic),
        generation_key=keys.generation, generation=generation,
    )  # fmt: skip
    seeds = kept.seeds(committed)
    keeper = keeper or OffsetKeeper(kept.keep)
    keeper.keep([tp for tp in committed if tp.offset >= 0])
    return seeds, keeper


def kept_seeds(
    settings: LoomSettings,
    client: redis.Redis,
    name: str,
    topic: str,
    *,
    topic_id: str,
    committed: Sequence[TopicPartition],
) -> dict[tuple[str, int], int]:
    """Where ``committed`` (a group's committed offsets of ``topic``) has none, the offsets
    kept under ``P:v1:offsets:{name}`` for the topic whose Kafka id is ``topic_id``; read
    only (the stock router's read of the direct inventory lane's)."""
    keys = Keys(settings.redis_prefix)
    kept = KeptOffsets(
        client, keys.offsets(name), topic, topic_id,
        generation_key=keys.generation, generation=None,
    )  # fmt: skip
    return kept.seeds(committed)
