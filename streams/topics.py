"""Create Loom's Kafka topics (idempotent): partitions and compaction as each topic needs."""

from __future__ import annotations

import logging

from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from streams import kafka_clients
from streams.settings import LoomSettings

log = logging.getLogger(__name__)


def topic_specs(settings: LoomSettings) -> dict[str, tuple[int, dict[str, str]]]:
    """name -> (partitions, config) for every topic Loom reads or writes."""
    t, n = settings.topics, settings.partitions
    compacted = {"cleanup.policy": "compact"}
    return {
        t.raw: (n, {}),
        t.dlq: (1, {"retention.ms": str(30 * 24 * 3600 * 1000)}),
        t.merges: (n, {}),
        t.profile_changes: (n, compacted),
        t.erasures: (1, {}),
        t.consent_audit: (n, {}),
        t.inventory_changes: (n, compacted),
        t.inventory_alerts: (1, {}),
        # the privacy trail is kept (ids only, no e-mail or phone); exports hold personal data
        # and are kept 30 days, for the retailer to pick them up
        t.privacy_requests: (1, {"retention.ms": "-1"}),
        t.privacy_audit: (1, {"retention.ms": "-1"}),
        t.privacy_exports: (1, {"retention.ms": str(30 * 24 * 3600 * 1000)}),
    }


def ensure_topics(settings: LoomSettings, *, timeout: float = 30.0) -> list[str]:
    """Create the missing topics; returns the names created."""
    admin = kafka_clients.admin(settings)
    existing = set(admin.list_topics(timeout=timeout).topics)
    new = [
        NewTopic(name, num_partitions=parts, replication_factor=1, config=config)
        for name, (parts, config) in topic_specs(settings).items()
        if name not in existing
    ]
    if not new:
        return []
    for name, future in admin.create_topics(new, request_timeout=timeout).items():
        try:
            future.result()
        except Exception as exc:  # TOPIC_ALREADY_EXISTS from a concurrent creator is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
        log.info("created topic %s", name)
    return [t.topic for t in new]
