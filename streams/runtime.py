"""What a running worker holds: built once at start-up, shared by its batches.

:func:`build_runtime` makes the clients (Redis, the DLQ producer, the relay's producer), the
store, the metrics, the identity rules and the consent policy of one lane's worker;
:meth:`Runtime.context` is the per-batch context the pipeline takes. Nothing here consumes,
retries or decides: :mod:`streams.lane_runner` does that with what this module builds.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property

import redis
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry

from resolvers.audiences import NO_AUDIENCES, AudienceFileError, Audiences, load_audiences
from resolvers.consent import ConsentPolicy, load_policy
from resolvers.context import Context, TopicNames
from resolvers.decode_cache import DecodeCache
from resolvers.identity.rules import IdentityRules, load_rules
from resolvers.pipeline import PROFILES, Lane
from resolvers.store import Kind, StateStore
from schemas.bounds import InputBounds
from schemas.normalize import blocked_by_default
from streams import kafka_clients, redis_clients
from streams.audience_refresh import read_medians
from streams.health import Check
from streams.metrics import WorkerMetrics
from streams.redis_keys import Keys
from streams.redis_store import RedisStore
from streams.relay import PRODUCER_CONFIG, OutboxRelay
from streams.settings import ConfigError, LoomSettings

#: How long a worker uses the category medians it read before reading them again.
MEDIANS_TTL_S = 60.0


def process_name() -> str:
    """This process's name among the relay's Redis consumers and in logs: host and pid."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class Runtime:
    """Everything a running worker of one lane holds."""

    settings: LoomSettings
    store: StateStore
    redis: redis.Redis
    producer: Producer  # dead letters; the relay has its own
    new_relay: Callable[[], OutboxRelay]  # a relay with a new producer (streams.relay)
    metrics: WorkerMetrics
    rules: IdentityRules
    policy: ConsentPolicy
    clock: Callable[[], datetime]
    lane: Lane = PROFILES
    decode_cache: DecodeCache = field(default_factory=DecodeCache)  # bounded in bytes
    audiences: Audiences = NO_AUDIENCES
    #: (monotonic time read, medians): the category medians, read again every MEDIANS_TTL_S
    _medians: tuple[float, dict[str, float]] | None = None
    #: this process's name among the relay's Redis consumers and in logs
    consumer_name: str = field(default_factory=process_name)

    @cached_property
    def _base_context(self) -> Context:
        """The parts of :meth:`context` that never change, built once."""
        return base_context(
            self.settings, self.rules, self.policy, self.audiences, cache=self.decode_cache
        )

    @cached_property
    def bounds(self) -> InputBounds:
        """The input bounds the settings configure (``schemas.bounds``)."""
        s = self.settings
        return InputBounds(
            max_future_skew=timedelta(seconds=s.max_clock_skew_s),
            max_stock_movement=s.max_stock_movement,
        )

    def context(self) -> Context:
        """The context of one batch (attempt): the constant parts, the current time and the
        category medians of the audience pass (when audiences are defined)."""
        if not self.audiences.by_name:
            return replace(self._base_context, now=self.clock())
        return replace(self._base_context, now=self.clock(), medians=self.medians())

    def medians(self) -> dict[str, float]:
        """The category medians the audience pass wrote (read at most every MEDIANS_TTL_S)."""
        now = time.monotonic()
        if self._medians is None or now - self._medians[0] > MEDIANS_TTL_S:
            self._medians = (now, read_medians(self.redis, Keys(self.settings.redis_prefix)))
        return self._medians[1]

    def infra_checks(self) -> dict[str, Check]:
        """Readiness checks: Kafka and Redis answer. Their blocking calls run in a thread of
        their own, so a probe never waits behind a batch."""
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loom-health")

        async def kafka_ok() -> bool:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(thread, lambda: self.producer.list_topics(timeout=2))
            return True

        async def redis_ok() -> bool:
            return bool(await asyncio.get_running_loop().run_in_executor(thread, self.redis.ping))

        return {"kafka": kafka_ok, "redis": redis_ok}


def base_context(
    settings: LoomSettings,
    rules: IdentityRules,
    policy: ConsentPolicy,
    audiences: Audiences,
    *,
    cache: DecodeCache | None = None,
) -> Context:
    """A batch context of these settings (``now`` is replaced per batch)."""
    t = settings.topics
    return Context(
        rules=rules,
        policy=policy,
        topics=TopicNames(
            merges=t.merges,
            profile_changes=t.profile_changes,
            erasures=t.erasures,
            consent_audit=t.consent_audit,
            inventory_changes=t.inventory_changes,
            inventory_alerts=t.inventory_alerts,
            audience_changes=t.audience_changes,
        ),
        salt=settings.suppression_salt.get_secret_value().encode(),
        now=datetime.fromtimestamp(0, UTC),
        default_region=settings.default_region,
        cache=cache,
        audiences=audiences,
    )


def configured_audiences(settings: LoomSettings) -> Audiences:
    """The audiences of ``LOOM_AUDIENCES_FILE``; :class:`ConfigError` (one line) if invalid."""
    try:
        return load_audiences(settings.audiences_file)
    except AudienceFileError as exc:
        raise ConfigError(f"LOOM_AUDIENCES_FILE: {exc}") from None


def configured_rules(settings: LoomSettings) -> tuple[IdentityRules, ConsentPolicy]:
    """The identity rules (with the blocklist) and the consent policy the settings name."""
    base_rules = load_rules(settings.identity_rules_file) if settings.identity_rules_file else None
    policy = load_policy(settings.consent_config_file) if settings.consent_config_file else None
    return with_blocklist(base_rules), policy or ConsentPolicy()


def relay_maker(
    settings: LoomSettings, client: redis.Redis, consumer: str
) -> Callable[[], OutboxRelay]:
    """What builds the outbox relay of the lane whose Redis ``client`` is (each with a new
    producer: :class:`~streams.relay.RelaySupervisor` restarts it so), in a worker or in a
    ``loom relay`` process (ADR 0039)."""
    keys = Keys(settings.redis_prefix)

    def new_relay() -> OutboxRelay:
        return OutboxRelay(
            client,
            kafka_clients.producer(settings, **PRODUCER_CONFIG),
            keys.outbox,
            consumer,
            profiles=keys.kinds[Kind.PROFILE],
            lease=keys.relay_lease,
            lease_s=settings.relay_lease_s,
        )

    return new_relay


def build_runtime(settings: LoomSettings, lane: Lane = PROFILES) -> Runtime:
    client = redis_clients.client(settings)
    rules, policy = configured_rules(settings)
    metrics = WorkerMetrics.create(CollectorRegistry(), lane=lane.name)
    store = RedisStore(
        client,
        prefix=settings.redis_prefix,
        seen_ttl_s=settings.dedupe_ttl_s,
        wait_replicas=settings.redis_wait_replicas,
        commit=settings.redis_commit,
        load=settings.redis_load,
        on_call=lambda op, seconds: metrics.redis_call_seconds.labels(op=op).observe(seconds),
    )
    if store.watch is not None:
        store.watch.on_abort = metrics.commit_aborts.inc
    if store.waves is not None:
        store.waves.on_torn = metrics.loads_torn.inc
    consumer_name = process_name()
    return Runtime(
        settings=settings,
        store=store,
        redis=client,
        producer=kafka_clients.producer(settings),
        new_relay=relay_maker(settings, client, consumer_name),
        consumer_name=consumer_name,
        metrics=metrics,
        rules=rules,
        policy=policy,
        clock=lambda: datetime.now(UTC),
        lane=lane,
        decode_cache=DecodeCache(settings.decode_cache_bytes),
        audiences=configured_audiences(settings),
    )


def with_blocklist(rules: IdentityRules | None) -> IdentityRules:
    """``rules`` (default: the built-in ones) that never link a junk value (``guest``...)."""
    base = rules or IdentityRules()
    return replace(base, is_blocked=blocked_by_default)
