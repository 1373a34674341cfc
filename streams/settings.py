"""Loom's configuration: one frozen object, read once at the entry point and passed down.

Every field maps to an environment variable with the ``LOOM_`` prefix (``kafka_bootstrap`` is
``LOOM_KAFKA_BOOTSTRAP``). The README's configuration table lists them all; a unit test checks
that it does.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Topics(BaseSettings):
    """Kafka topic names. Override one with e.g. ``LOOM_TOPIC_RAW=shop.touchpoints``."""

    model_config = SettingsConfigDict(env_prefix="LOOM_TOPIC_", frozen=True, extra="ignore")

    raw: str = Field("touchpoints.raw", description="incoming touchpoint events (JSON)")
    dlq: str = Field("touchpoints.dlq", description="records that failed a stage, with reason")
    merges: str = Field("identity.merges", description="one record per profile merge")
    profile_changes: str = Field(
        "profiles.changes", description="compacted, keyed by profile id; tombstone on erasure"
    )
    erasures: str = Field("privacy.erasures", description="one record per completed erasure")
    consent_audit: str = Field("consent.audit", description="every consent drop or redaction")
    inventory_changes: str = Field(
        "inventory.changes", description="new stock level per (sku, location)"
    )
    inventory_alerts: str = Field("inventory.alerts", description="oversell alerts")


class LoomSettings(BaseSettings):
    """All runtime settings of Loom. Frozen: build a new one to change anything."""

    model_config = SettingsConfigDict(env_prefix="LOOM_", frozen=True, extra="ignore")

    # --- connections -------------------------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:19092", description="Kafka bootstrap servers")
    redis_url: str = Field("redis://127.0.0.1:16379/0", description="Redis URL")
    redis_prefix: str = Field("loom", description="prefix of every Redis key Loom writes")

    # --- worker -------------------------------------------------------------------------
    app_id: str = Field(
        "loom", description="consumer groups are `<app_id>-profiles` and `<app_id>-inventory`"
    )
    partitions: int = Field(6, ge=1, description="partitions of topics Loom creates")
    raw_retention_ms: int = Field(
        -1,
        ge=-1,
        description="retention of the raw topic Loom creates (-1: forever; `loom rebuild` "
        "replays it, so it is the source of truth)",
    )
    batch_size: int = Field(500, ge=1, le=10_000, description="max events per atomic batch")
    batch_timeout_s: float = Field(
        0.05, gt=0, description="profiles lane: max wait to fill a batch"
    )
    inventory_batch_timeout_s: float = Field(
        0.01, gt=0, description="inventory lane: max wait to fill a batch (latency-bound)"
    )
    max_event_bytes: int = Field(
        64 * 1024, ge=1024, description="records larger than this go to the DLQ"
    )
    max_clock_skew_s: float = Field(
        300.0,
        ge=0,
        description="events stamped further than this in the future go to the DLQ "
        "(future_timestamp)",
    )
    max_stock_movement: int = Field(
        1_000_000,
        ge=1,
        description="larger stock movements (|inventory.delta|, a counted on_hand) go to the DLQ "
        "(out_of_bounds)",
    )
    dlq_max_bytes: int = Field(
        512 * 1024,
        ge=1024,
        le=900 * 1024,
        description="DLQ record values are cut to this size (flagged; the original stays on "
        "the source topic)",
    )
    decode_cache_bytes: int = Field(
        32 * 1024 * 1024,
        ge=0,
        description="memory budget of a worker's cache of decoded entities (0: no cache)",
    )
    dedupe_ttl_s: int = Field(
        7 * 24 * 3600, ge=60, description="how long processed event ids are remembered"
    )
    retry_backoff_max_s: float = Field(
        30.0, gt=0, description="cap of the backoff when Redis or Kafka is unavailable"
    )
    poison_limit: int = Field(
        10,
        ge=0,
        description="more poison records than this within LOOM_POISON_WINDOW_S stop the lane "
        "(circuit breaker: a systemic bug, not bad input)",
    )
    poison_window_s: float = Field(300.0, gt=0, description="window of the poison breaker")
    stuck_after_s: float = Field(
        60.0, gt=0, description="a lane whose loop has not turned for this long is not ready"
    )
    shutdown_timeout_s: float = Field(
        25.0,
        gt=0,
        description="after SIGTERM a worker exits within this, abandoning work in flight "
        "(nothing uncommitted is lost: it is redelivered)",
    )
    web_host: str = Field(
        "127.0.0.1", description="worker HTTP bind address (0.0.0.0 in containers)"
    )
    web_port: int = Field(
        6066, ge=0, description="profiles worker HTTP port: /metrics, /livez, /readyz"
    )
    inventory_web_port: int = Field(
        6067, ge=0, description="inventory worker HTTP port: /metrics, /livez, /readyz"
    )

    # --- identity, consent, privacy ------------------------------------------------------
    identity_rules_file: Path | None = Field(
        None, description="TOML file overriding the identity rules (see docs/identity-rules.toml)"
    )
    consent_config_file: Path | None = Field(
        None, description="TOML file overriding consent jurisdiction defaults"
    )
    suppression_salt: SecretStr = Field(
        SecretStr("loom-dev-salt-change-me"),
        description="salt of identifier hashes in the erasure suppression set",
    )
    default_region: str | None = Field(
        None, description="region assumed for phone numbers when an event has none"
    )

    # --- ops ----------------------------------------------------------------------------
    exporter_port: int = Field(9308, ge=0, description="`loom exporter` Prometheus port")
    lag_window_s: float = Field(
        300.0, gt=0, description="sliding window of the lag status evaluator"
    )

    topics: Topics = Field(default_factory=Topics)

    def group_id(self, lane: str) -> str:
        """The Kafka consumer group of a lane's workers."""
        return f"{self.app_id}-{lane}"

    def batch_timeout_for(self, lane: str) -> float:
        """How long a lane's worker waits to fill a batch."""
        return self.inventory_batch_timeout_s if lane == "inventory" else self.batch_timeout_s

    def web_port_for(self, lane: str) -> int:
        """The HTTP port (``/metrics``, ``/livez``, ``/readyz``) of a lane's worker."""
        return self.inventory_web_port if lane == "inventory" else self.web_port


def load_settings() -> LoomSettings:
    """Read settings from the environment (the only place that does)."""
    return LoomSettings()
