"""Create Loom's Kafka topics (idempotent): partitions, durability and cleanup as each needs.

Durability: every topic gets ``LOOM_REPLICATION_FACTOR`` replicas and
``min.insync.replicas = LOOM_MIN_INSYNC_REPLICAS`` (3 and 2 by default, so an ``acks=all``
write survives the loss of a broker; 1 and 1 with ``LOOM_DEVELOPMENT`` for a single local
broker). A cluster with fewer brokers than the replication factor is refused with one line
saying so, never quietly given fewer replicas. Existing topics are left as they are; one
with fewer replicas than configured is logged.

Cleanup: change topics are compacted (the latest record per key is the state); the raw
topic keeps the broker's retention unless ``LOOM_RAW_RETENTION_MS`` is set. That retention
is what bounds a rebuild: ``loom rebuild`` can only replay what the raw topic still holds.
"""

from __future__ import annotations

import logging

from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from streams import kafka_clients
from streams.settings import ConfigError, LoomSettings

log = logging.getLogger(__name__)

DLQ_RETENTION_MS = 30 * 24 * 3600 * 1000
#: Data exports (personal data) wait this long for the retailer to pick them up.
EXPORT_RETENTION_MS = 30 * 24 * 3600 * 1000
_THIRTY_DAYS = {"retention.ms": str(EXPORT_RETENTION_MS), "segment.ms": str(24 * 3600 * 1000)}


def topic_specs(settings: LoomSettings) -> dict[str, tuple[int, dict[str, str]]]:
    """name -> (partitions, config) for every topic Loom reads or writes."""
    t, n = settings.topics, settings.partitions
    _rf, min_isr = settings.topic_replication
    durable = {"min.insync.replicas": str(min_isr)}
    compacted = {**durable, "cleanup.policy": "compact"}
    raw = dict(durable)
    if settings.raw_retention_ms is not None:
        raw["retention.ms"] = str(settings.raw_retention_ms)
    return {
        t.raw: (n, raw),
        t.dlq: (1, {**durable, "retention.ms": str(DLQ_RETENTION_MS)}),
        t.merges: (n, durable),
        # an erased profile's snapshots (before its tombstone) are compacted away within the
        # lag: without it the cleaner skips the active segment and a log under its dirty ratio
        t.profile_changes: (
            n,
            {**compacted, "max.compaction.lag.ms": str(settings.erasure_compaction_lag_ms)},
        ),
        t.erasures: (1, durable),
        t.consent_audit: (n, durable),
        t.audience_changes: (n, durable),
        t.inventory_changes: (n, compacted),
        t.inventory_alerts: (1, durable),
        # stock movements keyed by SKU (LOOM_INVENTORY_ROUTING=by-sku, ADR 0014): as many
        # partitions as the raw topic, so as many inventory workers can share them
        t.stock_movements: (n, durable),
        # the privacy trail (privacy.audit) is kept, naming customers by salted digest only;
        # the requests (a data request names its customer's id: the worker looks it up) and the
        # exports (personal data, for the retailer to pick up) are kept 30 days
        # (a segment goes when its newest record is older: segments of a day bound it to 31)
        t.privacy_requests: (1, {**durable, **_THIRTY_DAYS}),
        t.privacy_audit: (1, {**durable, "retention.ms": "-1"}),
        t.privacy_exports: (1, {**durable, **_THIRTY_DAYS}),
    }


def ensure_topics(settings: LoomSettings, *, timeout: float = 30.0) -> list[str]:
    """Create the missing topics; returns the names created. Raises :class:`ConfigError` when
    the cluster has fewer brokers than the replication factor."""
    admin = kafka_clients.admin(settings)
    metadata = admin.list_topics(timeout=timeout)
    replicas, _min_isr = settings.topic_replication
    specs = topic_specs(settings)
    for name in sorted(specs.keys() & metadata.topics.keys()):
        partitions = metadata.topics[name].partitions.values()
        have = min((len(p.replicas) for p in partitions), default=replicas)
        if have < replicas:
            log.warning(
                "topic %s has %d replica(s); LOOM_REPLICATION_FACTOR is %d", name, have, replicas
            )
    new = [
        NewTopic(name, num_partitions=parts, replication_factor=replicas, config=config)
        for name, (parts, config) in specs.items()
        if name not in metadata.topics
    ]
    if not new:
        return []
    if len(metadata.brokers) < replicas:
        raise ConfigError(
            f"cannot create topics with {replicas} replicas on a cluster of "
            f"{len(metadata.brokers)} broker(s): set LOOM_REPLICATION_FACTOR and "
            "LOOM_MIN_INSYNC_REPLICAS to what the cluster has (LOOM_DEVELOPMENT=true gives "
            "1 and 1 for a single development broker)"
        )
    for name, future in admin.create_topics(new, request_timeout=timeout).items():
        try:
            future.result()
        except Exception as exc:  # TOPIC_ALREADY_EXISTS from a concurrent creator is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
        log.info("created topic %s (%d replicas)", name, replicas)
    return [t.topic for t in new]
