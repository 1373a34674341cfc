"""End-to-end tier: real Kafka, real Redis, real ``loom worker`` processes.

Each test gets its own topics, consumer group and Redis prefix (a :class:`Loom` deployment),
starts workers as subprocesses, one per role unless a test names one (they can be SIGKILLed
and restarted), produces touchpoints
with the real producer SDK and reads results with the real readers.

A deployment runs on the session's plain servers, or on the secured ones when the test asks
for it (``@pytest.mark.parametrize("loom", ["secured"], indirect=True)``): then the workers
connect over SASL_SSL and TLS, as an ACL user limited to the deployment's key prefix, with
their secrets in files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, KafkaException
from loom_servers import Servers
from prometheus_client.parser import text_string_to_metric_families
from topic_reader import read_topic

from resolvers.pipeline import LANES
from streams import kafka_clients
from streams.lag import uncommitted_or_unknown
from streams.producer import TouchpointProducer
from streams.settings import LoomSettings, Topics
from streams.topics import ensure_topics

ROOT = Path(__file__).resolve().parents[2]


class Loom:
    """One isolated deployment of Loom on the session's Kafka and Redis."""

    def __init__(self, servers: Servers, tmp: Path, partitions: int = 6) -> None:
        tag = uuid.uuid4().hex[:10]
        topics = {name: f"e2e{tag}.{name}" for name in Topics.model_fields}
        self.topic_names = list(topics.values())
        self.servers = servers
        self.settings: LoomSettings = servers.settings(
            f"e2e{tag}",
            app_id=f"loom-e2e-{tag}",
            partitions=partitions,
            web_port=0,
            batch_timeout_s=0.02,
            topics=Topics(**topics),
        )
        self.env = {
            **os.environ,
            **servers.environ(self.settings.redis_prefix),
            "LOOM_APP_ID": self.settings.app_id,
            "LOOM_PARTITIONS": str(partitions),
            "LOOM_WEB_PORT": "0",
            "LOOM_INVENTORY_WEB_PORT": "0",
            "LOOM_BATCH_TIMEOUT_S": "0.02",
            **{f"LOOM_TOPIC_{name.upper()}": value for name, value in topics.items()},
        }
        self.tmp = tmp
        self.workers: list[subprocess.Popen[bytes]] = []
        self._lag_consumers: dict[str, Consumer] = {}
        self.redis = servers.admin_redis()  # every right: inspects and cleans up
        self.root = f"{self.settings.redis_prefix}:v1"
        ensure_topics(self.settings)

    # --- workers -------------------------------------------------------------------------
    def start_worker(
        self, *roles: str, env: Mapping[str, str] | None = None
    ) -> list[subprocess.Popen[bytes]]:
        """One ``loom worker`` per role (default: one of each lane); returns the processes.
        ``env`` overrides settings of these workers (e.g. a fixed ``LOOM_WEB_PORT``)."""
        return [self._spawn("worker", role, env) for role in roles or LANES]

    def start_relay(
        self, *roles: str, env: Mapping[str, str] | None = None
    ) -> list[subprocess.Popen[bytes]]:
        """One ``loom relay`` per role (default: one of each lane), as :meth:`start_worker`
        (ADR 0039: its workers run with ``LOOM_WORKER_RELAY=false``)."""
        return [self._spawn("relay", role, env) for role in roles or LANES]

    def _spawn(
        self, command: str, role: str, env: Mapping[str, str] | None
    ) -> subprocess.Popen[bytes]:
        log_path = self.tmp / f"{command}-{len(self.workers)}-{role}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(  # the child keeps its own copy of the log's fd
                [sys.executable, "-m", "streams.cli.main", command, "--role", role,
                 "--loglevel", "warning"],
                env={**self.env, **(env or {})}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.workers.append(proc)
        return proc

    def stop(self, procs: Iterable[subprocess.Popen[bytes]], sig: int = signal.SIGTERM) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(sig)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def close(self) -> None:
        """Stop its processes; delete its Redis keys and its topics (a day of test runs left
        1,406 topics on a developer's broker before they did)."""
        self.stop(self.workers, signal.SIGKILL)
        for consumer in self._lag_consumers.values():
            consumer.close()
        for key in self.redis.scan_iter(f"{self.root}:*", count=1000):
            self.redis.delete(key)
        admin = kafka_clients.admin(self.settings)
        for topic, fut in admin.delete_topics(self.topic_names, operation_timeout=30).items():
            try:
                fut.result(timeout=30)
            except KafkaException as exc:  # the test's outcome stands; the leftover is named
                warnings.warn(f"e2e deployment: topic {topic} not deleted: {exc}", stacklevel=1)

    def wait_for(self, check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
        """Poll ``check`` until it returns something truthy (returned); fail after ``timeout``
        with the workers' logs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = check()
            if got:
                return got
            time.sleep(0.1)
        pytest.fail(f"{what}: not within {timeout} s\n{self.logs()}")

    def health(self, port: int, path: str = "/readyz") -> tuple[int, dict[str, Any]]:
        """``(status, JSON body)`` of a worker's health endpoint; ``(0, {})`` if it does not
        answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, orjson.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, orjson.loads(exc.read())
        except OSError:
            return 0, {}

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.tmp.glob("*.log"))

    def cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run ``loom ARGS`` against this deployment (its environment); never raises on exit.
        Not done within ``timeout``: the test fails with what the command printed and where
        each of its threads was (faulthandler's dump on SIGABRT)."""
        argv = [sys.executable, "-m", "streams.cli.main", *args]
        env = {**self.env, "PYTHONFAULTHANDLER": "1"}
        with subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as proc:
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGABRT)
                out, err = proc.communicate(timeout=30)
                pytest.fail(
                    f"loom {' '.join(args)}: not done within {timeout:g} s\n{out[-3000:]}\n"
                    f"{err[-12000:]}"
                )
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    # --- producing -----------------------------------------------------------------------
    def produce(self, events: Iterable[Mapping[str, Any] | bytes]) -> int:
        n = 0
        with TouchpointProducer(self.settings) as producer:
            for event in events:
                if isinstance(event, bytes):
                    producer.send_raw(event)
                else:
                    producer.send(event)
                n += 1
            assert producer.flush(30) == 0
        return n

    # --- observing -----------------------------------------------------------------------
    def lag(self, *lanes: str) -> int:
        """Records of the raw topic not yet committed, summed over the lanes' groups (all)."""
        s = self.settings
        total = 0
        for lane in lanes or LANES:
            assert lane in LANES, lane
            consumer = self._lag_consumers.get(lane)
            if consumer is None:  # never subscribes: only reads the group's offsets
                consumer = self._lag_consumers[lane] = kafka_clients.consumer(s, s.group_id(lane))
            total += self._uncommitted(consumer)
        return total

    def _uncommitted(self, consumer: Any, timeout: float = 30.0) -> int:
        """:func:`uncommitted` of the raw topic, asked again while Kafka cannot say for a
        passing reason (a fresh broker's group coordinator still loading: NOT_COORDINATOR)."""
        s, deadline = self.settings, time.monotonic() + timeout
        while (got := uncommitted_or_unknown(consumer, s.topics.raw, s.partitions)) is None:
            if time.monotonic() > deadline:
                pytest.fail(f"Kafka could not say the lanes' lag for {timeout} s")
            time.sleep(0.2)
        return got

    def wait_idle(self, *lanes: str, timeout: float = 120.0) -> None:
        """Until every produced record is committed by the lanes' groups (default: both) and
        the outbox is drained, so the change topics hold everything those records caused."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.lag(*lanes) == 0:
                    break
            except KafkaException:  # new topics may still be electing partition leaders
                pass
            self._check_workers()
            time.sleep(0.5)
        else:
            pytest.fail(f"lag still {self.lag(*lanes)} after {timeout}s:\n{self.logs()}")
        self.wait_drained(timeout=max(1.0, deadline - time.monotonic()))

    def outbox_length(self) -> int:
        """Outbox records not yet delivered to Kafka (the relay deletes what it delivered)."""
        return int(self.redis.xlen(f"{self.root}:outbox"))  # type: ignore[arg-type]

    def wait_drained(self, timeout: float = 60.0) -> None:
        """Until the outbox relay delivered every committed record to Kafka."""
        deadline = time.monotonic() + timeout
        while (left := self.outbox_length()) and time.monotonic() < deadline:
            self._check_workers()
            time.sleep(0.1)
        if left:
            pytest.fail(f"outbox still holds {left} records after {timeout}s:\n{self.logs()}")

    def _check_workers(self) -> None:
        for proc in self.workers:
            if proc.poll() is not None and proc.returncode not in (0, -9, -15):
                pytest.fail(f"worker died ({proc.returncode}):\n{self.logs()}")

    def stats(self) -> dict[str, int]:
        raw: dict[bytes, bytes] = self.redis.hgetall(f"{self.root}:stats")  # type: ignore[assignment]
        return {k.decode(): int(v) for k, v in raw.items()}

    def profiles(self) -> dict[str, dict[str, Any]]:
        out = {}
        for pid in self.redis.smembers(f"{self.root}:profile-index"):  # type: ignore[union-attr]
            raw = self.redis.hget(f"{self.root}:profile:{pid.decode()}", "d")
            if raw is not None:
                out[pid.decode()] = orjson.loads(raw)  # type: ignore[arg-type]
        return out

    def partition(self) -> set[frozenset[str]]:
        return {
            frozenset(f"{t}:{v}" for t, vs in p["identifiers"].items() for v in vs)
            for p in self.profiles().values()
        }

    def people(self) -> dict[frozenset[str], tuple[Any, ...]]:
        """Per profile, keyed by its identifiers: its order counts and revenue. What must not
        depend on batching, redelivery or faults (ids and versions may: issue 14)."""
        return {
            frozenset(f"{t}:{v}" for t, vs in p["identifiers"].items() for v in vs): (
                p.get("orders_online"),
                p.get("orders_in_store"),
                orjson.dumps(p.get("revenue"), option=orjson.OPT_SORT_KEYS),
            )
            for p in self.profiles().values()
        }

    def stock(self, sku: str) -> dict[str, Any] | None:
        raw = self.redis.hget(f"{self.root}:stock:{sku}", "d")
        return None if raw is None else orjson.loads(raw)  # type: ignore[arg-type]

    def decoded(self, topic: str) -> list[tuple[str | None, Any]]:
        """Every record currently on ``topic`` as (key, JSON value); None for a missing part."""
        return [
            (
                None if (key := msg.key()) is None else key.decode(),
                None if (value := msg.value()) is None else orjson.loads(value),
            )
            for msg in self.topic_records(topic)
        ]

    def topic_records(self, topic: str, *, timeout: float = 60.0) -> list[Any]:
        """Every record on ``topic`` once the outbox is drained (read from the beginning, own
        group): records the relay has yet to deliver are waited for, not missed; a topic not
        read to its end within ``timeout`` fails the test (never a silent partial read)."""
        self.wait_drained()
        return read_topic(self.settings, topic, timeout=timeout)


def metric(port: int, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples with ``labels`` on a worker's ``/metrics``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


@pytest.fixture
def loom(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Loom]:
    """A deployment on the plain servers, or (indirect parameter ``"secured"``) the secured."""
    kind = getattr(request, "param", "plain")
    servers: Servers = request.getfixturevalue(
        "secured_servers" if kind == "secured" else "servers"
    )
    deployment = Loom(servers, tmp_path)
    try:
        yield deployment
    finally:
        deployment.close()
