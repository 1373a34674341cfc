"""Fixtures shared by every test tier.

Servers: ``kafka_bootstrap`` and ``redis_url`` are session-scoped and lazy, so only a session
that runs an integration (or e2e) test starts anything; ``pytest tests/unit`` stays server-free.
Each comes from the first source that applies:

1. the environment: ``LOOM_KAFKA_BOOTSTRAP`` / ``LOOM_REDIS_URL`` (e.g. the shared dev servers);
2. a Docker engine (``docker info`` answers; set ``LOOM_TEST_DOCKER=0`` to skip): testcontainers
   with ``apache/kafka:3.9.1`` (KRaft) and ``redis:7``;
3. ``deploy/infra.sh`` on free loopback ports with a temporary data dir, stopped (and the dir
   removed) at session end, also when tests fail. ``LOOM_TEST_KEEP_DATA=1`` keeps the dir.

``servers`` wraps those two in :class:`loom_servers.Servers` (settings and subprocess
environment of a Loom client); ``secured_servers`` is a second, secured pair (``deploy/infra.sh``
with ``LOOM_INFRA_SECURED=yes``: Kafka SASL_SSL + mTLS listeners, Redis TLS + ACL users), started
only by a session that runs a ``secured`` test; ``any_servers`` runs a test on both (its
``secured`` case is marked ``secured``).

Per-test helpers: ``unique_topic`` (factory creating a topic, deleted after the test),
``unique_group``, ``redis_client`` and ``redis_prefix`` (keys under it are deleted after the test),
``free_ports`` (factory of free loopback ports, server-free).

Guard: a test in ``tests/unit`` or ``tests/pipeline`` that asks for a server fixture is a
collection error; tests under ``tests/integration`` (``tests/e2e``) are marked ``integration``
(``e2e``) automatically, so ``-m "not integration and not e2e"`` selects the server-free tiers;
tests under ``tests/secured`` are marked ``secured``. ``make test`` leaves out what is marked
``secured_full`` (the whole secured tier runs with ``make test-secured``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import loom_servers
import pytest
import redis
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from hypothesis import settings
from local_infra import Endpoints, LocalInfra, RedisServer
from local_infra import free_ports as _free_ports
from loom_servers import Servers

# Hypothesis's per-example deadline (200 ms by default) is a timing assertion: on the 2-core CI
# machine under load an example can take longer with nothing wrong. Speed lives in
# ``make bench``; properties assert behaviour only. ``HYPOTHESIS_PROFILE`` picks another profile.
settings.register_profile("loom", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "loom"))

KAFKA_IMAGE = "apache/kafka:3.9.1"
REDIS_IMAGE = "redis:7"

#: Fixtures that need a real server; unit and pipeline tests must not use them.
SERVER_FIXTURES = frozenset(
    {
        "kafka_bootstrap",
        "redis_url",
        "unique_topic",
        "redis_client",
        "redis_prefix",
        "servers",
        "secured_servers",
        "any_servers",
    }
)
SERVER_FREE_TIERS = ("unit", "pipeline")


# --- collection ---------------------------------------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests_dir = Path(__file__).resolve().parent
    for item in items:
        try:
            tier = item.path.resolve().relative_to(tests_dir).parts[0]
        except ValueError:
            continue
        if tier == "integration" and item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.integration)
        if tier == "e2e" and item.get_closest_marker("e2e") is None:
            item.add_marker(pytest.mark.e2e)
        if tier == "secured" and item.get_closest_marker("secured") is None:
            item.add_marker(pytest.mark.secured)
        if tier == "chaos" and item.get_closest_marker("chaos") is None:
            item.add_marker(pytest.mark.chaos)
        fixtures = set(getattr(item, "fixturenames", ()))
        if tier in SERVER_FREE_TIERS and fixtures & SERVER_FIXTURES:
            raise pytest.UsageError(
                f"{item.nodeid} is in tests/{tier} but uses server fixtures "
                f"{sorted(fixtures & SERVER_FIXTURES)}; move it to tests/integration"
            )


# --- server sources -----------------------------------------------------------------------


def _docker_available() -> bool:
    if os.environ.get("LOOM_TEST_DOCKER", "1") == "0" or shutil.which("docker") is None:
        return False
    try:
        subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=True)
    except (subprocess.SubprocessError, OSError):
        return False
    return True


@pytest.fixture(scope="session")
def _local_infra() -> Iterator[Endpoints]:
    infra = LocalInfra()
    infra.up()
    try:
        yield infra.endpoints
    finally:
        infra.down()


@pytest.fixture(scope="session")
def _docker() -> bool:
    """Whether a Docker engine answers (asked once, and only when no env var names a server)."""
    return _docker_available()


def _kafka_container() -> Iterator[str]:  # pragma: no cover - needs a Docker engine
    # Imported here so that server-free tiers never pay for testcontainers.
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    (host_port,) = _free_ports(1)
    container = DockerContainer(KAFKA_IMAGE).with_bind_ports(9092, host_port)
    try:
        host = container.get_container_host_ip()
    except Exception:  # connection modes that need a running container
        host = "localhost"
    env = {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{host}:{host_port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_NUM_PARTITIONS": "1",
    }
    for key, value in env.items():
        container.with_env(key, value)
    container.waiting_for(LogMessageWaitStrategy("Kafka Server started"))
    with container:
        yield f"{host}:{host_port}"


def _redis_container() -> Iterator[str]:  # pragma: no cover - needs a Docker engine
    from testcontainers.community.redis import RedisContainer

    with RedisContainer(REDIS_IMAGE) as container:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(6379)
        yield f"redis://{host}:{port}/0"


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> Iterator[str]:
    """Bootstrap servers of a real Kafka 3.9 broker (see the module docstring for the source)."""
    if env := os.environ.get("LOOM_KAFKA_BOOTSTRAP"):
        yield env
    elif request.getfixturevalue("_docker"):  # pragma: no cover - needs a Docker engine
        yield from _kafka_container()
    else:
        endpoints: Endpoints = request.getfixturevalue("_local_infra")
        yield endpoints.kafka_bootstrap


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a real Redis 7 server (see the module docstring for the source)."""
    if env := os.environ.get("LOOM_REDIS_URL"):
        yield env
    elif request.getfixturevalue("_docker"):  # pragma: no cover - needs a Docker engine
        yield from _redis_container()
    else:
        endpoints: Endpoints = request.getfixturevalue("_local_infra")
        yield endpoints.redis_url


@pytest.fixture(scope="session")
def servers(kafka_bootstrap: str, redis_url: str) -> Servers:
    """The session's (plain) servers as :class:`loom_servers.Servers`."""
    return loom_servers.plain(kafka_bootstrap, redis_url)


@pytest.fixture(scope="session")
def secured_infra() -> Iterator[LocalInfra]:
    """``deploy/infra.sh`` in secured mode on free ports, for the session."""
    infra = LocalInfra(secured=True)
    infra.up()
    try:
        yield infra
    finally:
        infra.down()


@pytest.fixture(scope="session")
def secured_servers(secured_infra: LocalInfra) -> Iterator[Servers]:
    """Kafka over SASL_SSL (SCRAM-SHA-512) and Redis over TLS with per-prefix ACL users."""
    found = loom_servers.secured(
        secured_infra.endpoints.kafka_bootstrap, secured_infra.redis_port, secured_infra.tls_dir
    )
    try:
        yield found
    finally:
        found.delete_users()


@pytest.fixture(params=["plain", pytest.param("secured", marks=pytest.mark.secured)])
def any_servers(request: pytest.FixtureRequest) -> Servers:
    """Runs the test twice: on the plain servers and on the secured ones."""
    name = "servers" if request.param == "plain" else "secured_servers"
    found: Servers = request.getfixturevalue(name)
    return found


# --- per-test helpers -----------------------------------------------------------------------


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def _wait_until_visible(admin: AdminClient, topic: str, partitions: int) -> None:
    """Wait until the broker's metadata lists the topic with a leader for every partition.

    CreateTopics returns once the controller committed the topic; the broker's metadata cache
    catches up a moment later, and a test that describes or consumes at once could miss it.
    """
    deadline = time.monotonic() + 30
    while True:
        metadata = admin.list_topics(topic, timeout=10).topics.get(topic)
        if (
            metadata is not None
            and metadata.error is None
            and len(metadata.partitions) == partitions
            and all(p.leader >= 0 for p in metadata.partitions.values())
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic} not visible with {partitions} partitions after 30s")
        time.sleep(0.1)


@pytest.fixture
def unique_topic(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """Factory: ``unique_topic(partitions=1, prefix="loomtest", config=None) -> name``.

    Creates the topic and waits until the broker's metadata shows it with a leader on every
    partition; every topic it created is deleted when the test ends.
    """
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    created: list[str] = []

    def create(
        partitions: int = 1, prefix: str = "loomtest", config: dict[str, str] | None = None
    ) -> str:
        name = _unique(prefix)
        topic = NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})
        for future in admin.create_topics([topic], operation_timeout=30).values():
            future.result(timeout=60)
        created.append(name)
        _wait_until_visible(admin, name, partitions)
        return name

    yield create
    if created:
        for future in admin.delete_topics(created, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result(timeout=30)


@pytest.fixture
def free_ports() -> Callable[[int], list[int]]:
    """``free_ports(n)``: ``n`` distinct ports the kernel reports free on 127.0.0.1."""
    return _free_ports


@pytest.fixture
def redis_server(
    tmp_path: Path, free_ports: Callable[[int], list[int]]
) -> Iterator[Callable[..., RedisServer]]:
    """Factory: ``redis_server(appendonly=True)`` -> a started :class:`RedisServer` of this
    test (a bare ``redis-server`` on a free port), stopped after the test."""
    servers: list[RedisServer] = []

    def start(*, appendonly: bool = True) -> RedisServer:
        (port,) = free_ports(1)
        server = RedisServer(port, tmp_path / f"redis-{port}", appendonly=appendonly)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def unique_group() -> str:
    """A consumer group id no other test (or engineer) uses."""
    return _unique("loomtest-group")


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """``redis.Redis`` on the test server, bytes in and out (``decode_responses=False``)."""
    client = redis.Redis.from_url(redis_url, decode_responses=False)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def redis_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix unique to this test, usable as ``LoomSettings.redis_prefix`` (no colon).

    Every key starting with it is deleted when the test ends.
    """
    prefix = _unique("loomtest")
    yield prefix
    batch: list[bytes] = []
    for key in redis_client.scan_iter(match=f"{prefix}*", count=500):
        batch.append(key)
        if len(batch) >= 500:
            redis_client.delete(*batch)
            batch.clear()
    if batch:
        redis_client.delete(*batch)
