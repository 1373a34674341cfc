"""Every Kafka and Redis client Loom makes gets the deployment's connection settings.

Two halves: the sources construct clients only in the two factory modules (so nothing can
bypass them), and every entry point's clients, intercepted at the confluent_kafka
constructors inside the factory, carry the security settings and the operator's ``-X``
overrides. No client connects here: construction is local.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from resolvers.pipeline import INVENTORY, PROFILES
from streams import kafka_clients, redis_clients
from streams.exporter import ExporterConfig, LagExporter
from streams.lag import CommitLogTail, LagReader
from streams.lane_runner import LaneRunner
from streams.producer import TouchpointProducer
from streams.redis_store import RedisStore
from streams.resp import RespPacker
from streams.runtime import build_runtime
from streams.settings import LoomSettings
from streams.startup import InfraError, check_kafka
from streams.topics import ensure_topics

ROOT = Path(__file__).resolve().parents[2]

#: A self-signed CA certificate whose key was thrown away: librdkafka and ssl load CA files
#: when a client is built, so they must parse.
CA_PEM = """\
-----BEGIN CERTIFICATE-----
MIIBrDCCAVGgAwIBAgIUMtqT9GPLGU14oXsmauQkK3KHM/YwCgYIKoZIzj0EAwIw
KjEoMCYGA1UEAwwfTG9vbSB1bml0LXRlc3QgQ0EgKG5vIGtleSBrZXB0KTAgFw0y
NjExMjkyMjI3MTJaGA8yMTI2MTEwNTIyMjcxMlowKjEoMCYGA1UEAwwfTG9vbSB1
bml0LXRlc3QgQ0EgKG5vIGtleSBrZXB0KTBZMBMGByqGSM49AgEGCCqGSM49AwEH
A0IABKYRgbWGn9zMDBKBG3lsnw/oyWkofEObN5Lq841m4IJxFVjf0KAns71eQ7/D
wwdnSy7MINtm5W4xujz0BVF4xZCjUzBRMB0GA1UdDgQWBBT+EZKYcgP6X4sj6Qk1
wyA9zgRneTAfBgNVHSMEGDAWgBT+EZKYcgP6X4sj6Qk1wyA9zgRneTAPBgNVHRMB
Af8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQDQeM31srNxtxfE4nER/lSr5Nyx
gO5I4RRdaYe3yJ/SYAIhANJJqYAEEAy/Z3/1k5wF+raB1Z56xN0KxAno4YJ3C9D/
-----END CERTIFICATE-----
"""
KAFKA_CONSTRUCTORS = {"Producer", "Consumer", "AdminClient"}
REDIS_CONSTRUCTORS = {"Redis", "StrictRedis", "from_url", "Sentinel", "RedisCluster"}
FACTORIES = {
    "streams/kafka_clients.py": KAFKA_CONSTRUCTORS,
    "streams/redis_clients.py": REDIS_CONSTRUCTORS,
}


def constructor_calls(source: str, names: set[str]) -> list[str]:
    """Calls of ``names`` (``Producer(...)``, ``redis.Redis.from_url(...)``) in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in names:
                found.append(f"{name}() line {node.lineno}")
    return found


@pytest.mark.parametrize("package", ["streams", "bench"])
def test_only_the_factories_construct_kafka_and_redis_clients(package: str) -> None:
    offenders = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        names = (KAFKA_CONSTRUCTORS | REDIS_CONSTRUCTORS) - FACTORIES.get(rel, set())
        calls = constructor_calls(path.read_text(), names)
        if calls:
            offenders[rel] = calls
    assert offenders == {}


def test_the_scanner_finds_every_construction_form() -> None:
    source = (
        "Producer({})\nck.Consumer({})\nAdminClient({})\nredis.Redis.from_url('x')\n"
        "redis.Redis(host='h')\nSentinel([])\nkafka_clients.producer(s)\n"
    )
    names = KAFKA_CONSTRUCTORS | REDIS_CONSTRUCTORS
    assert len(constructor_calls(source, names)) == 6


# --- every entry point's clients ------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path) -> LoomSettings:
    (tmp_path / "ca.pem").write_text(CA_PEM)
    return LoomSettings(
        kafka_bootstrap="127.0.0.1:1",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="loom",
        kafka_sasl_password="pw-secret",
        kafka_ssl_ca_file=tmp_path / "ca.pem",
        kafka_config={"socket.keepalive.enable": "true"},
        redis_url="rediss://127.0.0.1:1/0",
        redis_username="loom",
        redis_password="redis-secret",
        redis_ssl_ca_file=tmp_path / "ca.pem",
        development=True,
    )


EXPECTED = {
    "security.protocol": "SASL_SSL",
    "sasl.mechanisms": "SCRAM-SHA-512",
    "sasl.username": "loom",
    "sasl.password": "pw-secret",
    "socket.keepalive.enable": "true",  # the operator's -X / LOOM_KAFKA_CONFIG
}


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Every confluent_kafka client constructed (kind, config); the real client is built."""
    made: list[tuple[str, dict[str, Any]]] = []

    def recording(kind: str, cls: Any) -> Any:
        def make(config: dict[str, Any]) -> Any:
            made.append((kind, dict(config)))
            return cls(config)

        return make

    monkeypatch.setattr(kafka_clients, "Producer", recording("producer", Producer))
    monkeypatch.setattr(kafka_clients, "Consumer", recording("consumer", Consumer))
    monkeypatch.setattr(kafka_clients, "AdminClient", recording("admin", AdminClient))
    return made


def assert_secured(made: list[tuple[str, dict[str, Any]]], settings: LoomSettings) -> None:
    assert made, "no client was made"
    for kind, config in made:
        assert {k: config.get(k) for k in EXPECTED} == EXPECTED, kind
        assert config["ssl.ca.location"] == str(settings.kafka_ssl_ca_file), kind
        assert config["bootstrap.servers"] == settings.kafka_bootstrap, kind
        assert isinstance(config["error_cb"], kafka_clients.ErrorReport), kind


@pytest.mark.parametrize("lane", [PROFILES, INVENTORY], ids=lambda lane: lane.name)
def test_the_worker_runtime_and_its_lane(
    lane: Any, settings: LoomSettings, built: list[tuple[str, dict[str, Any]]]
) -> None:
    runtime = build_runtime(settings, lane)  # the DLQ producer
    LaneRunner(runtime)  # its consumer, then the relay's producer
    assert [kind for kind, _ in built] == ["producer", "consumer", "producer"]
    assert_secured(built, settings)
    redis_options = runtime.redis.connection_pool.connection_kwargs
    assert (redis_options["username"], redis_options["password"]) == ("loom", "redis-secret")
    assert isinstance(redis_options["command_packer"], RespPacker)
    assert redis_options["ssl_ca_certs"] == str(settings.redis_ssl_ca_file)
    assert isinstance(runtime.store, RedisStore)
    assert runtime.store.watch is not None  # LOOM_REDIS_COMMIT=watch, the default
    assert runtime.store.waves is not None  # LOOM_REDIS_LOAD=waves, the default


@pytest.mark.parametrize(
    ("scripted", "part", "other", "hook", "metric"),
    [
        ("redis_load", "watch", "waves", "on_abort", "loom_commit_aborts_total"),
        ("redis_commit", "waves", "watch", "on_torn", "loom_loads_torn_total"),
    ],
)
def test_each_half_of_a_batch_without_lua_is_its_settings_choice_and_counted(
    settings: LoomSettings,
    built: list[tuple[str, dict[str, Any]]],
    scripted: str,
    part: str,
    other: str,
    hook: str,
    metric: str,
) -> None:
    """``LOOM_REDIS_COMMIT=watch`` / ``LOOM_REDIS_LOAD=waves`` (the defaults) give the worker's
    store that half on the worker's client, each on its own (the other one set to
    ``script``), its retries counted in the worker's metrics."""
    runtime = build_runtime(settings.model_copy(update={scripted: "script"}))
    chosen = getattr(runtime.store, part)
    assert chosen is not None
    assert chosen.client is runtime.redis
    assert getattr(runtime.store, other) is None  # `script`: that half runs its Lua
    registry = runtime.metrics.registry
    before = registry.get_sample_value(metric) or 0.0
    getattr(chosen, hook)()
    assert registry.get_sample_value(metric) == before + 1


def test_producer_sdk_lag_reader_commit_tail_exporter_topics_and_probe(
    settings: LoomSettings, built: list[tuple[str, dict[str, Any]]]
) -> None:
    extra = kafka_clients.connection_config(settings)
    TouchpointProducer(settings)
    LagReader(settings.kafka_bootstrap, extra_config=extra, probe_timeout_s=0.01).next_record_times(
        {("t", 0): 0}
    )
    with pytest.raises(KafkaException):
        CommitLogTail(settings.kafka_bootstrap, extra_config=extra, timeout_s=0.01)
    LagExporter(
        ExporterConfig(settings.kafka_bootstrap, None, use_commit_log=False, kafka_config=extra),
        metrics=None,  # type: ignore[arg-type]  # unused until a poll
    )
    with pytest.raises(KafkaException):
        ensure_topics(settings, timeout=0.01)
    with pytest.raises(InfraError):
        check_kafka(settings, timeout_s=0.01)
    kinds = [kind for kind, _ in built]
    assert kinds == ["producer", "admin", "consumer", "admin", "admin", "admin", "admin"]
    assert_secured(built, settings)


def test_caller_overrides_cannot_drop_the_security_but_x_overrides_win(
    settings: LoomSettings,
) -> None:
    config = kafka_clients.client_config(
        settings, **{"security.protocol": "PLAINTEXT", "socket.keepalive.enable": "false"}
    )
    assert config["security.protocol"] == "SASL_SSL"
    assert config["socket.keepalive.enable"] == "true"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, {}),
        (
            {
                "kafka_security_protocol": "SASL_PLAINTEXT",
                "kafka_sasl_mechanism": "PLAIN",
                "kafka_sasl_username": "u",
                "kafka_sasl_password": "p",
            },
            {
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanisms": "PLAIN",
                "sasl.username": "u",
                "sasl.password": "p",
            },
        ),
        (
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "OAUTHBEARER",
                "kafka_oauth_token_url": "https://idp/token",
                "kafka_oauth_client_id": "cid",
                "kafka_oauth_client_secret": "cs",
                "kafka_oauth_scope": "kafka",
                "kafka_oauth_extensions": "logicalCluster=lkc-1,identityPoolId=pool-2",
            },
            {
                "security.protocol": "SASL_SSL",
                "sasl.mechanisms": "OAUTHBEARER",
                "sasl.oauthbearer.method": "oidc",
                "sasl.oauthbearer.token.endpoint.url": "https://idp/token",
                "sasl.oauthbearer.client.id": "cid",
                "sasl.oauthbearer.client.secret": "cs",
                "sasl.oauthbearer.scope": "kafka",
                "sasl.oauthbearer.extensions": "logicalCluster=lkc-1,identityPoolId=pool-2",
            },
        ),
        (
            {
                "kafka_security_protocol": "SSL",
                "kafka_ssl_ca_file": "/ca.pem",
                "kafka_ssl_cert_file": "/c.pem",
                "kafka_ssl_key_file": "/c.key",
                "kafka_ssl_key_password": "kp",
            },
            {
                "security.protocol": "SSL",
                "ssl.ca.location": "/ca.pem",
                "ssl.certificate.location": "/c.pem",
                "ssl.key.location": "/c.key",
                "ssl.key.password": "kp",
            },
        ),
    ],
    ids=["plaintext", "sasl-plain", "oauthbearer-oidc", "mtls"],
)
def test_security_config_per_mechanism(fields: dict[str, Any], expected: dict[str, str]) -> None:
    assert kafka_clients.security_config(LoomSettings(**fields)) == expected


def test_redis_client_through_sentinel_carries_tls_and_credentials(tmp_path: Path) -> None:
    settings = LoomSettings(
        redis_url="rediss://ignored:6379/2",
        redis_username="loom",
        redis_password="rp",
        redis_ssl_ca_file=tmp_path / "ca.pem",
        redis_sentinels="127.0.0.1:26379, 127.0.0.1:26380",
        redis_sentinel_master="loom-primary",
        redis_sentinel_password="sp",
    )
    client = redis_clients.client(settings)
    pool = client.connection_pool
    assert pool.service_name == "loom-primary"  # type: ignore[attr-defined]
    kwargs = pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("loom", "rp", 2)
    assert kwargs["ssl_ca_certs"] == str(tmp_path / "ca.pem")
    assert isinstance(kwargs["command_packer"], RespPacker)
    assert "SSL" in pool.connection_class.__name__
    sentinels = pool.sentinel_manager.sentinels  # type: ignore[attr-defined]
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [26379, 26380]
    assert {s.connection_pool.connection_kwargs["password"] for s in sentinels} == {"sp"}
    assert redis_clients.describe(settings).startswith("Redis master 'loom-primary' via")


def test_the_gateways_shopify_memory_and_the_privacy_worker(
    settings: LoomSettings, built: list[tuple[str, dict[str, Any]]]
) -> None:
    from streams import privacy_worker
    from streams.gateway.server import shopify_memory
    from streams.reader import ProfileReader

    memory = shopify_memory(settings)
    redis_options = memory.client.connection_pool.connection_kwargs
    assert (redis_options["username"], redis_options["password"]) == ("loom", "redis-secret")
    assert redis_options["ssl_ca_certs"] == str(settings.redis_ssl_ca_file)
    reader = ProfileReader(memory.client, settings.redis_prefix)
    privacy_worker.build(settings, memory, reader)
    assert [kind for kind, _ in built] == ["consumer", "producer"]
    assert_secured(built, settings)
