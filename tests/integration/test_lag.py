"""`loom lag` against the real broker: every column equals Kafka's own ConsumerGroupCommand, and
real consumers driven into each Burrow state are classified as such."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from streams.cli import lag as lag_cli
from streams.lag import CommitLogTail, LagReader, LagSnapshot, OffsetTimeTable, unknown_for_now
from streams.lag_status import LagStatusEvaluator, Status

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CGC = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"


def kafka_classpath() -> str:
    """LOOM_KAFKA_CLASSPATH, else `deploy/infra.sh classpath`, else the dev machine's jars."""
    env = os.environ.get("LOOM_KAFKA_CLASSPATH")
    if env:
        return env
    script = ROOT / "deploy" / "infra.sh"
    if script.exists():
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            out = subprocess.run(
                [str(script), "classpath"], capture_output=True, text=True, timeout=120, check=True
            ).stdout.strip()
            if out:
                return out
    return "/tmp/setup/kafka-libs/*"


def describe_with_kafka(bootstrap: str, group: str) -> list[dict[str, str]]:
    java = shutil.which("java")
    if java is None:
        pytest.skip("java is not installed: cannot run Kafka's ConsumerGroupCommand")
    proc = subprocess.run(
        [java, "-cp", kafka_classpath(), CGC, "--bootstrap-server", bootstrap, "--describe",
         "--group", group],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    lines = proc.stdout.splitlines()
    header_at = next(i for i, line in enumerate(lines) if line.startswith("GROUP "))
    header = lines[header_at].split()
    return [dict(zip(header, line.split(), strict=True)) for line in lines[header_at + 1 :] if line]


def new_topic(bootstrap: str, partitions: int) -> str:
    topic = f"lagtest-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=30)
    return topic


def produce(bootstrap: str, topic: str, per_partition: dict[int, int]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for partition, n in per_partition.items():
        for i in range(n):
            producer.produce(topic, value=b"v%d" % i, partition=partition)
    assert producer.flush(30) == 0


def commit(bootstrap: str, group: str, offsets: dict[tuple[str, int], int]) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False
        )
    finally:
        consumer.close()


def to_cells(snapshot: LagSnapshot, group: str) -> dict[tuple[str, str], dict[str, str]]:
    g = snapshot.group(group)
    assert g is not None
    cell = lag_cli._cell
    return {
        (p.topic, str(p.partition)): {
            "GROUP": g.group,
            "TOPIC": p.topic,
            "PARTITION": str(p.partition),
            "CURRENT-OFFSET": cell(p.committed),
            "LOG-END-OFFSET": cell(p.end),
            "LAG": cell(p.lag),
            "CONSUMER-ID": cell(p.consumer_id),
            "HOST": cell(p.host),
            "CLIENT-ID": cell(p.client_id),
        }
        for p in g.partitions
    }


def test_every_column_matches_consumer_group_command_for_an_empty_group(
    kafka_bootstrap: str,
) -> None:
    topic = new_topic(kafka_bootstrap, 4)
    group = f"loom-lagtest-{uuid.uuid4().hex[:8]}"
    produce(kafka_bootstrap, topic, {0: 10, 1: 7, 2: 5, 3: 3})
    commit(kafka_bootstrap, group, {(topic, 0): 4, (topic, 1): 7, (topic, 2): 0})

    reader = LagReader(kafka_bootstrap)
    snapshot = reader.read([group])
    theirs = {(r["TOPIC"], r["PARTITION"]): r for r in describe_with_kafka(kafka_bootstrap, group)}
    ours = to_cells(snapshot, group)

    assert ours == theirs
    g = snapshot.group(group)
    assert g is not None
    assert g.state == "EMPTY"
    assert (g.total_lag, g.max_lag) == (6 + 0 + 5, 6)
    by_partition = {p.partition: p for p in g.partitions}
    assert by_partition[1].lag_seconds == 0.0
    # the next unconsumed record was produced moments ago
    for p in (0, 2):
        secs = by_partition[p].lag_seconds
        assert secs is not None
        assert 0.0 <= secs < 60.0


def test_members_and_assignment_match_consumer_group_command(kafka_bootstrap: str) -> None:
    topic = new_topic(kafka_bootstrap, 3)
    group = f"loom-lagtest-{uuid.uuid4().hex[:8]}"
    produce(kafka_bootstrap, topic, {0: 6, 1: 6, 2: 6})
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": group,
            "client.id": "lagtest-client",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(0.2)
        assert len(consumer.assignment()) == 3
        consumer.commit(
            offsets=[TopicPartition(topic, 0, 2), TopicPartition(topic, 1, 6)], asynchronous=False
        )
        snapshot = LagReader(kafka_bootstrap).read([group])
        theirs = {
            (r["TOPIC"], r["PARTITION"]): r for r in describe_with_kafka(kafka_bootstrap, group)
        }
    finally:
        consumer.close()

    ours = to_cells(snapshot, group)
    assert ours == theirs
    g = snapshot.group(group)
    assert g is not None
    assert g.state == "STABLE"
    assert len(g.members) == 1
    assert {p.client_id for p in g.partitions} == {"lagtest-client"}
    # partition 2: assigned, nothing committed -> no lag figure (Kafka prints "-")
    assert ours[(topic, "2")]["LAG"] == "-"


def test_cli_json_lists_only_the_named_group_with_totals(kafka_bootstrap: str) -> None:
    topic = new_topic(kafka_bootstrap, 2)
    group = f"loom-lagtest-{uuid.uuid4().hex[:8]}"
    produce(kafka_bootstrap, topic, {0: 5, 1: 5})
    commit(kafka_bootstrap, group, {(topic, 0): 1, (topic, 1): 3})

    parser = argparse.ArgumentParser()
    lag_cli.register(parser.add_subparsers())
    args = parser.parse_args(["lag", "--group", group, "--json", "--bootstrap", kafka_bootstrap])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert args.func(args) == 0
    doc = orjson.loads(out.getvalue())
    assert [g["group"] for g in doc["groups"]] == [group]
    g = doc["groups"][0]
    assert (g["total_lag"], g["max_lag"]) == (4 + 2, 4)
    assert [(p["partition"], p["committed"], p["end"], p["lag"]) for p in g["partitions"]] == [
        (0, 1, 5, 4),
        (1, 3, 5, 2),
    ]


def test_cli_default_lists_the_lane_groups_not_the_dlq_replay_group(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --group/--all: the lane groups <app_id>-profiles and <app_id>-inventory that
    exist (a missing one is named on stderr), not the DLQ replay group, which shares the app id
    prefix."""
    app_id = f"loom-lagtest-{uuid.uuid4().hex[:8]}"
    topic = new_topic(kafka_bootstrap, 1)
    produce(kafka_bootstrap, topic, {0: 5})
    commit(kafka_bootstrap, f"{app_id}-profiles", {(topic, 0): 2})
    commit(kafka_bootstrap, f"{app_id}-dlq-replay", {(topic, 0): 1})
    monkeypatch.setenv("LOOM_APP_ID", app_id)

    parser = argparse.ArgumentParser()
    lag_cli.register(parser.add_subparsers())
    args = parser.parse_args(["lag", "--json", "--bootstrap", kafka_bootstrap])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert args.func(args) == 0
    groups = {g["group"]: g for g in orjson.loads(out.getvalue())["groups"]}
    assert set(groups) == {f"{app_id}-profiles"}
    assert groups[f"{app_id}-profiles"]["total_lag"] == 3
    assert f"no consumer group {app_id}-inventory" in err.getvalue()


def test_cli_named_group_that_does_not_exist_is_named_on_stderr_not_shown_as_lag_0(
    kafka_bootstrap: str,
) -> None:
    """`loom lag --group` with a group that does not exist (a typo, a lane never started):
    one line on stderr and exit 1, not a DEAD group with "lag 0 messages" and exit 0, which a
    script checking the lag reads as a group that keeps up."""
    group = f"loom-lagtest-{uuid.uuid4().hex[:8]}"  # never committed, never joined
    parser = argparse.ArgumentParser()
    lag_cli.register(parser.add_subparsers())
    args = parser.parse_args(["lag", "--group", group, "--json", "--bootstrap", kafka_bootstrap])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = args.func(args)
    assert orjson.loads(out.getvalue())["groups"] == []
    assert err.getvalue() == f"no consumer group {group}\n"
    assert code == 1


def test_an_unreachable_kafka_is_a_kafka_error_not_a_timeout(
    free_ports: Callable[[int], list[int]],
) -> None:
    """What `loom lag --watch` meets when Kafka goes away between two readings: a
    KafkaException, which every command turns into one line and exit 3 (a bare TimeoutError
    was a traceback)."""
    (dead,) = free_ports(1)
    reader = LagReader(f"127.0.0.1:{dead}", timeout_s=0.5)
    with pytest.raises(KafkaException) as caught:
        reader.list_groups()
    assert unknown_for_now(caught.value)  # classified as Kafka unavailable


def test_lag_seconds_interpolate_when_the_record_is_not_readable(kafka_bootstrap: str) -> None:
    """A probe that finds nothing (timeout 0) falls back to recorded (end offset, time) points."""
    topic = new_topic(kafka_bootstrap, 1)
    group = f"loom-lagtest-{uuid.uuid4().hex[:8]}"
    clock = FakeClock(1_000.0)
    reader = LagReader(kafka_bootstrap, probe_timeout_s=0.0, clock=clock)
    table = OffsetTimeTable()
    produce(kafka_bootstrap, topic, {0: 10})
    commit(kafka_bootstrap, group, {(topic, 0): 0})
    reader.read([group], table=table)  # end 10 seen at t=1000
    clock.now = 1_010.0
    produce(kafka_bootstrap, topic, {0: 10})
    snapshot = reader.read([group], table=table)  # end 20 at t=1010
    g = snapshot.group(group)
    assert g is not None
    (p,) = g.partitions
    assert (p.committed, p.end, p.lag) == (0, 20, 20)
    # offset 0 extrapolated from (10, 1000) and (20, 1010): produced at t=990
    assert p.lag_seconds == pytest.approx(20.0)


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- Burrow states driven by real consumers ------------------------------------------------


class Rig:
    """A topic, a group, a commit-log tail and the evaluator sampled on demand."""

    def __init__(self, bootstrap: str, window_s: float) -> None:
        self.bootstrap = bootstrap
        self.topic = new_topic(bootstrap, 1)
        self.group = f"loom-statustest-{uuid.uuid4().hex[:8]}"
        self.tail = CommitLogTail(bootstrap, group_filter=lambda g: g == self.group)
        self.reader = LagReader(bootstrap)
        self.evaluator = LagStatusEvaluator(window_s=window_s, clock=time.time)
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": self.group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        self.consumer.assign([TopicPartition(self.topic, 0)])

    def produce(self, n: int) -> None:
        produce(self.bootstrap, self.topic, {0: n})

    def consume(self, n: int) -> None:
        got = 0
        deadline = time.monotonic() + 30
        while got < n and time.monotonic() < deadline:
            got += len([m for m in self.consumer.consume(n - got, 0.5) if m.error() is None])
        assert got == n

    def commit_position(self) -> None:
        self.consumer.commit(asynchronous=False)

    def commit_offset(self, offset: int) -> None:
        self.consumer.commit(offsets=[TopicPartition(self.topic, 0, offset)], asynchronous=False)

    def sample(self) -> Status:
        """One exporter tick: read new commits and the current lag, evaluate."""
        snapshot = self.reader.read([self.group], lag_seconds=False)
        ends = self.reader.end_offsets([(self.topic, 0)])
        for c in self.tail.poll(timeout_s=1.0):
            self.evaluator.observe_commit(
                c.group,
                c.topic,
                c.partition,
                offset=c.offset,
                end_offset=ends[(c.topic, c.partition)],
                at=c.at,
            )
        g = snapshot.group(self.group)
        assert g is not None
        for p in g.partitions:
            self.evaluator.observe_lag(self.group, p.topic, p.partition, p.lag or 0)
        return self.evaluator.evaluate(self.group).worst

    def close(self) -> None:
        self.consumer.close()
        self.tail.close()


@pytest.fixture
def rig(kafka_bootstrap: str) -> Iterator[Callable[[float], Rig]]:
    made: list[Rig] = []

    def make(window_s: float) -> Rig:
        r = Rig(kafka_bootstrap, window_s)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def test_consumer_that_keeps_up_is_ok(rig: Callable[[float], Rig]) -> None:
    r = rig(30.0)
    for _ in range(3):
        r.produce(5)
        r.consume(5)
        r.commit_position()
        assert r.sample() is Status.OK


def test_producer_outpacing_a_committing_consumer_is_warn(rig: Callable[[float], Rig]) -> None:
    r = rig(30.0)
    r.produce(10)
    statuses = []
    for _ in range(3):
        r.produce(10)  # 10 more in, only 5 out: lag grows while offsets advance
        r.consume(5)
        r.commit_position()
        statuses.append(r.sample())
    assert statuses[-1] is Status.WARN


def test_committing_the_same_offset_with_lag_is_stall(rig: Callable[[float], Rig]) -> None:
    r = rig(30.0)
    r.produce(10)
    r.consume(3)
    for _ in range(3):
        r.commit_offset(3)  # the same offset again and again (a stuck consumer's heartbeat)
        status = r.sample()
    assert status is Status.STALL


def test_no_commits_for_longer_than_the_window_is_stop(rig: Callable[[float], Rig]) -> None:
    r = rig(2.0)
    r.produce(10)
    r.consume(4)
    r.commit_position()
    assert r.sample() is not Status.STOP
    time.sleep(2.5)
    assert r.sample() is Status.STOP


def test_committing_a_lower_offset_is_rewind(rig: Callable[[float], Rig]) -> None:
    r = rig(30.0)
    r.produce(20)
    r.consume(10)
    r.commit_position()  # 10
    r.sample()
    r.commit_offset(4)  # back to 4, lag never zero
    assert r.sample() is Status.REWIND
    assert r.evaluator.evaluate(r.group).status is Status.ERR
