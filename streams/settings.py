"""Loom's configuration: one frozen object, read once at the entry point and passed down.

Every field maps to an environment variable with the ``LOOM_`` prefix (``kafka_bootstrap`` is
``LOOM_KAFKA_BOOTSTRAP``). The README's configuration table lists them all; a unit test checks
that it does.

Secrets are :class:`~pydantic.SecretStr` (masked in ``repr`` and logs) and each can also be
read from a file: ``LOOM_<NAME>_FILE=/run/secrets/...`` (a mounted Kubernetes or Docker
secret; one trailing newline is dropped). Setting both ``LOOM_<NAME>`` and ``LOOM_<NAME>_FILE``
is an error. :func:`load_settings` turns every configuration problem into one
:class:`ConfigError` line that names the variables and never quotes their values.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self
from urllib.parse import parse_qs, urlsplit

from pydantic import AfterValidator, Field, SecretStr, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from streams.redact import is_secret_key, redact_url

ENV_PREFIX: Final = "LOOM_"

#: The suppression salt a fresh checkout uses; a worker refuses it outside development.
DEV_SALT: Final = "loom-dev-salt-change-me"

#: Durability of the topics Loom creates: production and ``LOOM_DEVELOPMENT`` defaults.
PRODUCTION_REPLICATION: Final = (3, 2)  # replication factor, min.insync.replicas
DEVELOPMENT_REPLICATION: Final = (1, 1)

KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
InventoryRouting = Literal["direct", "by-sku"]
RedisCommit = Literal["script", "watch"]
RedisLoad = Literal["script", "waves"]
CommitClaims = Literal["auto", "on", "off"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]


class ConfigError(ValueError):
    """The configuration cannot work; the message is one line, names settings, quotes no value."""


class RedactedStr(str):
    """A string (a URL) whose ``repr`` masks the password in its user info."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(redact_url(str(self)))


def _redacted(value: str) -> str:
    return RedactedStr(value)


#: A URL that may carry a password: validated as a string, shown redacted.
UrlWithSecret = Annotated[str, AfterValidator(_redacted)]


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


class SecretFilesSource(PydanticBaseSettingsSource):
    """``LOOM_<NAME>_FILE``: a secret field's value read from a file (after the environment)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ does the work

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in secret_fields(self.settings_cls):
            path = os.environ.get(f"{env_name(name)}_FILE")
            if not path:
                continue
            if os.environ.get(env_name(name)):
                raise ConfigError(
                    f"{env_name(name)} and {env_name(name)}_FILE are both set; use one"
                )
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"{env_name(name)}_FILE: cannot read {path}: {exc.strerror}"
                ) from None
            out[name] = text[:-1] if text.endswith("\n") else text
        return out


def secret_fields(settings_cls: type[BaseSettings]) -> list[str]:
    """Names of the fields holding secrets (``SecretStr``, optional or not)."""
    return [
        name
        for name, field in settings_cls.model_fields.items()
        if "SecretStr" in str(field.annotation)
    ]


class Topics(BaseSettings):
    """Kafka topic names. Override one with e.g. ``LOOM_TOPIC_RAW=shop.touchpoints``."""

    model_config = SettingsConfigDict(
        env_prefix="LOOM_TOPIC_", frozen=True, extra="ignore", env_ignore_empty=True
    )

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
    stock_movements: str = Field(
        "inventory.movements",
        description="stock movements keyed by SKU, for the inventory lane with "
        "`LOOM_INVENTORY_ROUTING=by-sku` (ADR 0014)",
    )
    privacy_requests: str = Field(
        "privacy.requests", description="every privacy request received (Shopify's webhooks)"
    )
    privacy_exports: str = Field(
        "privacy.exports", description="data exports for the retailer to send (personal data)"
    )
    privacy_audit: str = Field(
        "privacy.audit", description="what Loom did about each privacy request"
    )
    audience_changes: str = Field(
        "audiences.changes", description="enter/exit of a profile in an audience, keyed by id"
    )


class LoomSettings(BaseSettings):
    """All runtime settings of Loom. Frozen: build a new one to change anything."""

    #: an empty variable counts as unset (docker-compose passes every setting through)
    model_config = SettingsConfigDict(
        env_prefix="LOOM_", frozen=True, extra="ignore", env_ignore_empty=True
    )

    # --- Kafka ----------------------------------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:19092", description="Kafka bootstrap servers")
    kafka_security_protocol: KafkaSecurityProtocol = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
    )
    kafka_sasl_mechanism: KafkaSaslMechanism | None = Field(
        None, description="PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER (SASL_* only)"
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user (PLAIN, SCRAM)")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password")
    kafka_oauth_token_url: str | None = Field(
        None, description="OAUTHBEARER: the OIDC token endpoint (client-credentials grant)"
    )
    kafka_oauth_client_id: str | None = Field(None, description="OAUTHBEARER client id")
    kafka_oauth_client_secret: SecretStr | None = Field(
        None, description="OAUTHBEARER client secret"
    )
    kafka_oauth_scope: str | None = Field(None, description="OAUTHBEARER scope, if required")
    kafka_oauth_extensions: str | None = Field(
        None,
        description="OAUTHBEARER SASL extensions `k=v,k=v` (Confluent Cloud: "
        "logicalCluster=lkc-...,identityPoolId=pool-...)",
    )
    kafka_ssl_ca_file: Path | None = Field(
        None, description="PEM CA bundle to verify the brokers (default: the system's)"
    )
    kafka_ssl_cert_file: Path | None = Field(None, description="PEM client certificate (mTLS)")
    kafka_ssl_key_file: Path | None = Field(None, description="PEM client private key (mTLS)")
    kafka_ssl_key_password: SecretStr | None = Field(
        None, description="password of an encrypted client key"
    )
    kafka_config: dict[str, str] = Field(
        default_factory=dict,
        repr=False,
        description="extra librdkafka settings for every client, JSON object (CLI: -X k=v)",
    )

    # --- Redis ----------------------------------------------------------------------------
    redis_url: UrlWithSecret = Field(
        "redis://127.0.0.1:16379/0",
        description="Redis URL; rediss:// for TLS (with Sentinel: scheme and database only)",
    )
    inventory_redis_url: UrlWithSecret | None = Field(
        None,
        description="the inventory lane's own Redis primary (its stock, change stream, outbox "
        "and generation; ADR 0008); unset: LOOM_REDIS_URL. Same credentials and TLS files",
    )
    redis_prefix: str = Field("loom", description="prefix of every Redis key Loom writes")
    redis_username: str | None = Field(None, description="Redis ACL user")
    redis_password: SecretStr | None = Field(None, description="Redis password (of the ACL user)")
    redis_ssl_ca_file: Path | None = Field(None, description="PEM CA bundle to verify Redis")
    redis_ssl_cert_file: Path | None = Field(None, description="PEM client certificate (mTLS)")
    redis_ssl_key_file: Path | None = Field(None, description="PEM client private key (mTLS)")
    redis_sentinels: str | None = Field(
        None, description="Sentinel addresses `host:port,host:port`; enables Sentinel"
    )
    redis_sentinel_master: str | None = Field(
        None, description="the master (service) name the sentinels monitor"
    )
    redis_sentinel_password: SecretStr | None = Field(
        None, description="password of the sentinels themselves, if they require one"
    )
    redis_wait_replicas: int = Field(
        0,
        ge=0,
        description="replicas that must acknowledge a batch's commit before its offsets are "
        "committed (Redis WAIT); 1 with one replica makes a failover lose nothing",
    )
    redis_commit: RedisCommit = Field(
        "watch",
        description="how a batch commits to Redis: `watch` (ADR 0021: one `WATCH`ed sequence "
        "key per lane, the checks in the worker, `MULTI`/`EXEC`; no Lua, about half of a "
        "commit's Redis work; the default, ADR 0023) or `script` (`commit.lua`, one round "
        "trip). Both write the same keys and may run side by side",
    )
    redis_load: RedisLoad = Field(
        "waves",
        description="how a batch loads from Redis: `waves` (ADR 0022: `load.lua`'s walk in "
        "the worker, one pipelined round trip per step, read again when a commit of the lane "
        "lands in between; no Lua, about a third of a load's Redis work; the default, ADR "
        "0023) or `script` (`load.lua`, one atomic round trip)",
    )

    # --- topics ---------------------------------------------------------------------------
    partitions: int = Field(6, ge=1, description="partitions of topics Loom creates")
    replication_factor: int | None = Field(
        None, ge=1, description="replication factor of topics Loom creates (3; 1 in development)"
    )
    min_insync_replicas: int | None = Field(
        None, ge=1, description="min.insync.replicas of topics Loom creates (2; 1 in development)"
    )
    raw_retention_ms: int | None = Field(
        None,
        ge=-1,
        description="retention.ms of the raw topic (broker default; -1 = forever): how far "
        "back `loom rebuild` can replay",
    )
    erasure_compaction_lag_ms: int = Field(
        24 * 3600 * 1000,
        ge=1,
        description="max.compaction.lag.ms of profiles.changes Loom creates: how long at most "
        "an erased (or superseded) profile's snapshots stay on it before the log cleaner "
        "removes them",
    )
    development: bool = Field(
        False,
        description="development mode: allows the development suppression salt and makes "
        "new topics single-replica",
    )

    # --- worker -------------------------------------------------------------------------
    app_id: str = Field(
        "loom", description="consumer groups are `<app_id>-profiles` and `<app_id>-inventory`"
    )
    batch_size: int = Field(500, ge=1, le=10_000, description="max events per atomic batch")
    commit_parts: int = Field(
        16,
        ge=1,
        le=256,
        description="while a worker conflicts with others, a batch commits as at most this "
        "many independent parts; a conflict recomputes its part only (1 = the whole batch)",
    )
    commit_claims: CommitClaims = Field(
        "auto",
        description="a worker tells the lane's other workers which parts it is computing, and "
        "defers parts they hold instead of computing them against a state about to change "
        "(ADR 0040): `auto` while its group holds partitions of the lane's topic it does "
        "not, `on` always, `off` never (conflicts are then retried). Needs "
        "`LOOM_REDIS_COMMIT=watch`",
    )
    inventory_commit_parts: int = Field(
        256,
        ge=1,
        le=1024,
        description="the same for the inventory lane: a part is cheap there (a few SKUs' "
        "ledgers), so its parts are as fine as a batch's SKUs allow",
    )
    inventory_routing: InventoryRouting = Field(
        "direct",
        description="`direct`: inventory workers read the raw topic (several meet on the "
        "busy SKUs and wait for each other's claims, ADR 0040); `by-sku`: each also routes "
        "stock movements by SKU through `LOOM_TOPIC_STOCK_MOVEMENTS` (group "
        "`<app_id>-inventory-router`), so several inventory workers never write the same SKU "
        "(ADR 0014)",
    )
    batch_timeout_s: float = Field(
        0.05, gt=0, description="profiles lane: max wait to fill a batch"
    )
    inventory_batch_timeout_s: float = Field(
        0.01, gt=0, description="inventory lane: max wait to fill a batch (latency-bound)"
    )
    work_ahead: bool = Field(
        True,
        description="a lane consumes and prepares (decodes, validates, normalizes) its next "
        "batch while Redis answers the load and commit of the batch in flight (ADR 0038); "
        "false: one batch at a time",
    )
    commit_interval_s: float = Field(
        0.5,
        ge=0,
        description="a lane commits its consumed offsets at most this often (0: after every "
        "batch); each commit is a write to the broker's __consumer_offsets",
    )
    fetch_min_bytes: int = Field(
        1,
        ge=1,
        le=100_000_000,
        description="over 1: the broker answers a lane's fetch once it holds this many bytes "
        "or the lane's batch timeout passed (fewer requests, more latency); 1: at once",
    )
    relay_interval_s: float = Field(
        0.5,
        gt=0,
        le=60,
        description="the outbox relay sends to Kafka at most this often (one produce request "
        "per topic-partition per pass)",
    )
    relay_lease_s: float = Field(
        10.0,
        ge=1,
        le=300,
        description="one relay at a time delivers an outbox, holding its lease (ADR 0043): "
        "renewed every third of it; a relay that died is replaced after at most this long",
    )
    worker_relay: bool = Field(
        True,
        description="a lane's worker runs the outbox relay beside its batches; false: "
        "`loom relay --role <lane>` processes deliver the lane's outbox (ADR 0039)",
    )
    max_event_bytes: int = Field(
        64 * 1024, ge=1024, description="records larger than this go to the DLQ"
    )
    max_clock_skew_s: float = Field(
        300.0,
        ge=0,
        description="events stamped further than this in the future go to the DLQ "
        "(future_timestamp); judged at the record's Kafka timestamp, or the worker's clock "
        "when that is earlier",
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
    gc_full_interval_s: float = Field(
        600.0,
        ge=0,
        description="a worker freezes what survives each batch (no young garbage collection "
        "walks it) and collects cyclic garbage in full this often, between batches; 0: "
        "Python's collector as its thresholds say (streams.gc_policy)",
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
        6066, ge=0, le=65535, description="profiles worker HTTP port: /metrics, /livez, /readyz"
    )
    inventory_web_port: int = Field(
        6067, ge=0, le=65535, description="inventory worker HTTP port: /metrics, /livez, /readyz"
    )
    relay_web_port: int = Field(
        6070,
        ge=0,
        le=65535,
        description="`loom relay --role profiles` HTTP port: /metrics, /livez, /readyz",
    )
    inventory_relay_web_port: int = Field(
        6071,
        ge=0,
        le=65535,
        description="`loom relay --role inventory` HTTP port: /metrics, /livez, /readyz",
    )

    # --- identity, consent, privacy ------------------------------------------------------
    identity_rules_file: Path | None = Field(
        None, description="TOML file overriding the identity rules (see docs/identity-rules.toml)"
    )
    consent_config_file: Path | None = Field(
        None, description="TOML file overriding consent jurisdiction defaults"
    )
    suppression_salt: SecretStr = Field(
        SecretStr(DEV_SALT),
        description="salt of identifier hashes in the erasure suppression set; a worker "
        "refuses the default unless LOOM_DEVELOPMENT is set",
    )
    default_region: str | None = Field(
        None, description="region assumed for phone numbers when an event has none"
    )

    # --- audiences ----------------------------------------------------------------------
    audiences_file: Path | None = Field(
        None, description="TOML file of audience definitions (docs/audiences.toml); none: none"
    )
    audiences_refresh_s: float = Field(
        3600.0,
        ge=0,
        description="the profiles worker re-evaluates audiences against the clock this often "
        "(0: only `loom audiences refresh`)",
    )

    # --- ops ----------------------------------------------------------------------------
    exporter_port: int = Field(9308, ge=0, le=65535, description="`loom exporter` Prometheus port")
    lag_window_s: float = Field(
        300.0, gt=0, description="sliding window of the lag status evaluator"
    )

    # --- gateway (HTTP collection API, `loom gateway`) -----------------------------------
    gateway_host: str = Field(
        "127.0.0.1", description="`loom gateway` bind address (0.0.0.0 to serve other hosts)"
    )
    gateway_port: int = Field(
        8088,
        ge=0,
        le=65535,
        description="`loom gateway` port (Segment API /v1/*, /shopify/webhooks)",
    )
    gateway_ops_port: int = Field(
        6068,
        ge=0,
        le=65535,
        description="`loom gateway` /metrics, /livez, /readyz port (same host)",
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
    gateway_max_requests: int = Field(
        256,
        ge=1,
        description="requests with a body received at once (from their headers to their "
        "answer) before more get 429; bodies held are at most this x gateway_max_batch_bytes",
    )
    gateway_ack_timeout_s: float = Field(
        5.0, gt=0, description="longest wait for Kafka's ack of a request's events, then 503"
    )
    gateway_body_timeout_s: float = Field(
        30.0,
        gt=0,
        description="longest a request's body may take to arrive, from its headers, then 503 "
        "and the connection closed (a slow sender cannot hold a LOOM_GATEWAY_MAX_REQUESTS slot)",
    )
    gateway_cors_origins: str = Field(
        "*", description="origins browsers may send from: `*` or a comma-separated list"
    )
    gateway_profiles_token: SecretStr | None = Field(
        None,
        description="bearer token of the profile lookup API (/v1/profiles, /v1/audiences); "
        "unset: that API is off (404)",
    )
    gateway_shopify_order_ttl_s: int = Field(
        120 * 24 * 3600,
        ge=3600,
        description="how long the gateway remembers a Shopify order (its customer, its stock)",
    )

    # --- privacy worker (`loom privacy-worker`) ------------------------------------------
    privacy_web_port: int = Field(
        6069, ge=0, le=65535, description="`loom privacy-worker` /metrics, /livez, /readyz port"
    )

    topics: Topics = Field(default_factory=Topics)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then ``LOOM_*`` variables, then ``LOOM_*_FILE`` secret files."""
        return init_settings, env_settings, SecretFilesSource(settings_cls), dotenv_settings

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems = [*self._kafka_problems(), *self._redis_problems()]
        rf, isr = self.topic_replication
        if isr > rf:
            problems.append(
                f"LOOM_MIN_INSYNC_REPLICAS ({isr}) exceeds LOOM_REPLICATION_FACTOR ({rf})"
            )
        if self.relay_lease_s < 3 * self.relay_interval_s:
            problems.append(
                f"LOOM_RELAY_LEASE_S ({self.relay_lease_s:g}) must be at least 3 x "
                f"LOOM_RELAY_INTERVAL_S ({self.relay_interval_s:g}): the relay renews it between "
                "passes"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _kafka_problems(self) -> list[str]:
        out: list[str] = []
        protocol, mechanism = self.kafka_security_protocol, self.kafka_sasl_mechanism
        sasl = protocol.startswith("SASL_")
        if sasl and mechanism is None:
            out.append(f"LOOM_KAFKA_SASL_MECHANISM is required with {protocol}")
        if not sasl and mechanism is not None:
            out.append(f"LOOM_KAFKA_SASL_MECHANISM needs a SASL_* protocol, not {protocol}")
        needed: tuple[str, ...] = ()
        if sasl and mechanism == "OAUTHBEARER":
            needed = ("kafka_oauth_token_url", "kafka_oauth_client_id", "kafka_oauth_client_secret")
        elif sasl and mechanism is not None:
            needed = ("kafka_sasl_username", "kafka_sasl_password")
        out += [f"{env_name(n)} is required with {mechanism}" for n in needed if not _set(self, n)]
        tls_files = ("kafka_ssl_ca_file", "kafka_ssl_cert_file", "kafka_ssl_key_file")
        if not protocol.endswith("SSL"):
            out += [f"{env_name(n)} needs SSL or SASL_SSL" for n in tls_files if _set(self, n)]
        if (self.kafka_ssl_cert_file is None) != (self.kafka_ssl_key_file is None):
            out.append("LOOM_KAFKA_SSL_CERT_FILE and LOOM_KAFKA_SSL_KEY_FILE go together")
        return out

    def _redis_problems(self) -> list[str]:
        out: list[str] = []
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            out.append("LOOM_REDIS_URL must start with redis://, rediss:// or unix://")
        out += [
            f"{env_name(name)} cannot be parsed (its port is not a number from 0 to 65535; "
            "percent-encode a password's special characters: # %23, / %2F, ? %3F)"
            for name in ("redis_url", "inventory_redis_url")
            if not _parses(getattr(self, name))
        ]
        tls_files = ("redis_ssl_ca_file", "redis_ssl_cert_file", "redis_ssl_key_file")
        if not self.redis_tls:
            out += [
                f"{env_name(n)} needs a rediss:// LOOM_REDIS_URL"
                for n in tls_files
                if getattr(self, n)
            ]
        if (self.redis_ssl_cert_file is None) != (self.redis_ssl_key_file is None):
            out.append("LOOM_REDIS_SSL_CERT_FILE and LOOM_REDIS_SSL_KEY_FILE go together")
        if self.redis_password is not None and _has_password(self.redis_url):
            out.append("LOOM_REDIS_URL holds a password and LOOM_REDIS_PASSWORD is set; use one")
        if self.inventory_redis_url is not None:
            if not self.inventory_redis_url.startswith(("redis://", "rediss://", "unix://")):
                out.append(
                    "LOOM_INVENTORY_REDIS_URL must start with redis://, rediss:// or unix://"
                )
            elif self.inventory_redis_url.startswith("rediss://") != self.redis_tls:
                out.append(
                    "LOOM_INVENTORY_REDIS_URL and LOOM_REDIS_URL must both use TLS or neither"
                )
            if self.redis_sentinels:
                out.append("LOOM_INVENTORY_REDIS_URL does not work with Sentinel (one master name)")
            if self.redis_password is not None and _has_password(self.inventory_redis_url):
                out.append(
                    "LOOM_INVENTORY_REDIS_URL holds a password and LOOM_REDIS_PASSWORD is set; "
                    "use one"
                )
        if bool(self.redis_sentinels) != bool(self.redis_sentinel_master):
            out.append("LOOM_REDIS_SENTINELS and LOOM_REDIS_SENTINEL_MASTER go together")
        try:
            self.sentinel_addresses  # noqa: B018 - parses
        except ValueError as exc:
            out.append(str(exc))
        return out

    # --- derived values -------------------------------------------------------------------
    @property
    def redis_tls(self) -> bool:
        return self.redis_url.startswith("rediss://")

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """``LOOM_REDIS_SENTINELS`` parsed; empty without Sentinel."""
        out = []
        for item in (self.redis_sentinels or "").split(","):
            if not item.strip():
                continue
            host, sep, port = item.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"LOOM_REDIS_SENTINELS: {item.strip()!r} is not host:port")
            out.append((host.strip("[]"), int(port)))
        return out

    @property
    def topic_replication(self) -> tuple[int, int]:
        """(replication factor, min.insync.replicas) of the topics Loom creates."""
        rf, isr = DEVELOPMENT_REPLICATION if self.development else PRODUCTION_REPLICATION
        return (self.replication_factor or rf, self.min_insync_replicas or isr)

    @property
    def uses_dev_salt(self) -> bool:
        return self.suppression_salt.get_secret_value() == DEV_SALT

    def secrets(self) -> list[str]:
        """Every secret value this configuration holds (to mask them in free text)."""
        values = [
            v.get_secret_value()
            for name in secret_fields(type(self))
            if isinstance(v := getattr(self, name), SecretStr)
        ]
        values += [v for k, v in self.kafka_config.items() if is_secret_key(k)]
        return [v for v in values if v]

    def for_lane(self, lane: str) -> LoomSettings:
        """These settings as ``lane``'s workers and readers use them: the inventory lane's
        Redis is ``LOOM_INVENTORY_REDIS_URL`` when set (ADR 0008), every other one
        ``LOOM_REDIS_URL``."""
        if lane != "inventory" or self.inventory_redis_url is None:
            return self
        return self.model_copy(update={"redis_url": self.inventory_redis_url})

    def group_id(self, lane: str) -> str:
        """The Kafka consumer group of a lane's workers."""
        return f"{self.app_id}-{lane}"

    def router_group_id(self) -> str:
        """The consumer group of the inventory workers' routers on the raw topic (ADR 0014)."""
        return f"{self.group_id('inventory')}-router"

    def commit_parts_for(self, lane: str) -> int:
        """At most how many parts a lane's contended batch commits as (ADR 0013)."""
        return self.inventory_commit_parts if lane == "inventory" else self.commit_parts

    def batch_timeout_for(self, lane: str) -> float:
        """How long a lane's worker waits to fill a batch."""
        return self.inventory_batch_timeout_s if lane == "inventory" else self.batch_timeout_s

    def web_port_for(self, lane: str) -> int:
        """The HTTP port (``/metrics``, ``/livez``, ``/readyz``) of a lane's worker."""
        return self.inventory_web_port if lane == "inventory" else self.web_port

    def relay_web_port_for(self, lane: str) -> int:
        """The HTTP port of a ``loom relay`` process of a lane (ADR 0039)."""
        return self.inventory_relay_web_port if lane == "inventory" else self.relay_web_port


def _parses(url: str | None) -> bool:
    """Whether redis-py can read ``url`` (its port a number in range); never quotes it."""
    if url is None:
        return True
    try:
        urlsplit(url).port  # noqa: B018 - raises ValueError for "host:Se" (a password's head)
    except ValueError:
        return False
    return True


def _has_password(url: str) -> bool:
    """Whether ``url`` gives a password: in its user info or as ``?password=`` (redis-py reads
    both, and either wins over ``LOOM_REDIS_PASSWORD``)."""
    if not _parses(url):
        return False
    parts = urlsplit(url)
    return parts.password is not None or "password" in parse_qs(parts.query)


def _set(settings: LoomSettings, name: str) -> bool:
    value = getattr(settings, name)
    return bool(value.get_secret_value() if isinstance(value, SecretStr) else value)


def load_settings(**overrides: Any) -> LoomSettings:
    """Read settings from the environment (the only place that does); ``overrides`` (e.g. from
    command-line options) win. Raises :class:`ConfigError` with one line naming the problems."""
    try:
        return LoomSettings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem joined with ``; ``: variable and message, never the input value."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = [str(p) for p in error["loc"]]
        message = str(error["msg"]).removeprefix("Value error, ")
        if loc and loc[0] == "topics" and len(loc) > 1:
            parts.append(f"LOOM_TOPIC_{loc[1].upper()}: {message}")
        elif loc:
            parts.append(f"{env_name(loc[0])}: {message}")
        else:
            parts.append(message)
    return "invalid configuration: " + "; ".join(parts)
