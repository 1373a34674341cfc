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
    privacy_requests: str = Field(
        "privacy.requests", description="every privacy request received (Shopify's webhooks)"
    )
    privacy_exports: str = Field(
        "privacy.exports", description="data exports for the retailer to send (personal data)"
    )
    privacy_audit: str = Field(
        "privacy.audit", description="what Loom did about each privacy request"
    )


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
    dedupe_ttl_s: int = Field(
        7 * 24 * 3600, ge=60, description="how long processed event ids are remembered"
    )
    retry_backoff_max_s: float = Field(
        30.0, gt=0, description="cap of the backoff when Redis or Kafka is unavailable"
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

    # --- gateway (HTTP collection API, `loom gateway`) -----------------------------------
    gateway_host: str = Field(
        "127.0.0.1", description="`loom gateway` bind address (0.0.0.0 to serve other hosts)"
    )
    gateway_port: int = Field(
        8088, ge=0, description="`loom gateway` port (Segment API /v1/*, /shopify/webhooks)"
    )
    gateway_ops_port: int = Field(
        6068, ge=0, description="`loom gateway` /metrics, /livez, /readyz port (same host)"
    )
    gateway_sources_file: Path | None = Field(
        None, description="TOML file of the write keys and Shopify shops (required)"
    )
    gateway_max_event_bytes: int = Field(
        32 * 1024, ge=1024, description="largest event accepted (Segment: 32 KB)"
    )
    gateway_max_batch_bytes: int = Field(
        500 * 1024, ge=1024, description="largest request body, decompressed (Segment: 500 KB)"
    )
    gateway_max_in_flight: int = Field(
        20_000, ge=1, description="events awaiting Kafka's ack before requests get 429"
    )
    gateway_ack_timeout_s: float = Field(
        5.0, gt=0, description="longest wait for Kafka's ack of a request's events, then 503"
    )
    gateway_cors_origins: str = Field(
        "*", description="origins browsers may send from: `*` or a comma-separated list"
    )
    gateway_shopify_order_ttl_s: int = Field(
        120 * 24 * 3600,
        ge=3600,
        description="how long the gateway remembers a Shopify order (its customer, its stock)",
    )

    # --- privacy worker (`loom privacy-worker`) ------------------------------------------
    privacy_web_port: int = Field(
        6069, ge=0, description="`loom privacy-worker` /metrics, /livez, /readyz port"
    )

    topics: Topics = Field(default_factory=Topics)

    def group_id(self, lane: str) -> str:
        """The Kafka consumer group (= faust app id) of a lane's workers."""
        return f"{self.app_id}-{lane}"


def load_settings() -> LoomSettings:
    """Read settings from the environment (the only place that does)."""
    return LoomSettings()
