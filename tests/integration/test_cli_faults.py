"""The producer SDK and the `loom` commands against the real broker and Redis (a review of
2026-12-04; each test failed before its fix): what the README and docs/operating.md promise
(nothing lost or miscounted, bad input refused with one line naming it, exit codes as
documented)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import redis
from confluent_kafka import Consumer, TopicPartition
from test_dlq_replay import with_dead_letters
from test_lookup import ev, run

from streams import topics
from streams.cli import demo
from streams.cli.main import EXIT_PIPE, main
from streams.producer import TouchpointProducer
from streams.redis_store import RedisStore

ROOT = Path(__file__).resolve().parents[2]

GOOD = {
    "event_id": "rev-1",
    "type": "page_view",
    "channel": "web",
    "occurred_at": "2024-05-01T12:00:00Z",
    "identifiers": {"anonymous_id": "a-1"},
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("LOOM_"):
            monkeypatch.delenv(name)


def good(n: int) -> bytes:
    return orjson.dumps({**GOOD, "event_id": f"rev-{n}", "identifiers": {"anonymous_id": f"a-{n}"}})


def end_offsets(bootstrap: str, topic: str) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "rev-ends"})
    try:
        meta = c.list_topics(topic, timeout=10).topics[topic]
        return sum(
            c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in meta.partitions
        )
    finally:
        c.close()


# --- loom produce -------------------------------------------------------------------------


def test_produce_summary_never_counts_a_record_both_delivered_and_undelivered(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The final flush times out (here at once), the close after it may deliver the rest: the
    summary must add up (delivered + failed + undelivered == sent; it said 300 delivered and
    300 undelivered), and the exit code follow what was confirmed. (Records the close did not
    confirm may still land after the summary: librdkafka keeps sending them.)"""
    topic = unique_topic()
    path = tmp_path / "many.jsonl"
    path.write_bytes(b"\n".join(good(n) for n in range(300)) + b"\n")
    rc = main(
        ["produce", str(path), "--topic", topic, "--bootstrap-server", kafka_bootstrap,
         "--flush-timeout", "0", "--json"]
    )  # fmt: skip
    summary = orjson.loads(capsys.readouterr().out)
    on_kafka = end_offsets(kafka_bootstrap, topic)
    assert summary["sent"] == 300
    assert summary["delivered"] + summary["failed"] + summary["undelivered"] == summary["sent"], (
        summary
    )
    assert summary["delivered"] <= on_kafka <= summary["delivered"] + summary["undelivered"]
    assert rc == (0 if summary["delivered"] == 300 else 3)


def test_produce_raw_a_line_over_the_broker_limit_is_refused_by_line_and_the_rest_sent(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--raw`` sends lines unvalidated; one larger than a Kafka record may be (1 MB by
    default) ended the whole run: one KafkaError line, no summary, no line number, the
    lines after it never sent."""
    topic = unique_topic()
    path = tmp_path / "big.jsonl"
    lines = [good(1), good(2), b"x" * 1_200_000, good(3), good(4)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    rc = main(
        ["produce", str(path), "--raw", "--topic", topic, "--bootstrap-server", kafka_bootstrap,
         "--json"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert captured.out, f"no summary; stderr: {captured.err!r}"
    summary = orjson.loads(captured.out)
    assert summary["sent"] == 4
    assert summary["delivered"] == 4
    assert summary["rejected"] == {"oversize": 1}
    assert summary["rejected_first_lines"] == {"oversize": [3]}
    assert rc == 1
    assert end_offsets(kafka_bootstrap, topic) == 4


# --- the producer SDK ---------------------------------------------------------------------


def test_the_sdk_with_block_raises_when_its_records_were_not_delivered() -> None:
    """README's quickstart: ``with TouchpointProducer() as producer: producer.send(...)``. On
    an outage the records are not on Kafka when the block ends: the block must raise (the SDK
    "blocks or raises clearly, never drops silently"), not end as if they were sent."""
    raised: BaseException | None = None
    try:
        with TouchpointProducer(
            bootstrap="127.0.0.1:1",  # nothing listens here: an outage
            topic="loomtest-nowhere",
            config={"message.timeout.ms": 1500, "socket.connection.setup.timeout.ms": 1000},
        ) as producer:
            producer.send({**GOOD})
    except Exception as exc:  # which one is the fix's choice
        raised = exc
    assert producer.stats.delivered == 0
    assert raised is not None, "the with block ended normally; the record was dropped"
    assert "not delivered" in str(raised)


# --- loom erase ---------------------------------------------------------------------------


def test_erase_with_an_invalid_region_is_one_line_not_a_traceback(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    raw = unique_topic()
    monkeypatch.setenv("LOOM_TOPIC_RAW", raw)
    rc = main(
        ["erase", "phone:+4791234567", "--region", "norway", "--bootstrap-server", kafka_bootstrap]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.splitlines()) == 1
    assert "region" in err
    assert end_offsets(kafka_bootstrap, raw) == 0


def test_erase_refuses_an_identifier_the_pipeline_never_stores_before_sending(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``loom erase email:jane.example.com`` (a typo: no @): the request was sent and the
    command said "erasure requested", exit 0, although no profile can ever hold that value;
    only ``--wait`` found out, after sending. The operator believes the person erased."""
    raw = unique_topic()
    monkeypatch.setenv("LOOM_TOPIC_RAW", raw)
    rc = main(["erase", "email:jane.example.com", "--bootstrap-server", kafka_bootstrap])
    captured = capsys.readouterr()
    assert "erasure requested" not in captured.out
    assert rc == 2
    assert len(captured.err.splitlines()) == 1
    assert "jane" not in captured.err  # the value is personal data: never echoed
    assert end_offsets(kafka_bootstrap, raw) == 0


def test_erase_whose_request_kafka_refused_does_not_say_requested(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The broker refuses the request for good (here: a raw topic whose records may be 100
    bytes at most); librdkafka reports the failure at once, so ``flush`` returns 0 and the
    command said "erasure requested", exit 0, with nothing on Kafka."""
    raw = unique_topic(config={"max.message.bytes": "100"})
    monkeypatch.setenv("LOOM_TOPIC_RAW", raw)
    rc = main(["erase", "email:jane@example.com", "--bootstrap-server", kafka_bootstrap])
    captured = capsys.readouterr()
    assert end_offsets(kafka_bootstrap, raw) == 0
    assert "erasure requested" not in captured.out
    assert rc == 3
    assert "jane" not in captured.err


# --- loom dlq replay ----------------------------------------------------------------------


def test_dlq_replay_of_more_records_than_the_producer_queue_holds(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The replay never serves its producer's delivery reports while it reads, so once the
    local queue is full (100,000 records by default; 5 here) ``produce`` raises BufferError:
    a traceback, nothing committed, and every rerun fails the same way: a DLQ of more than
    the queue's size can never be drained."""
    dlq, raw = unique_topic(partitions=1), unique_topic(partitions=1)
    letters = [(f"bad-{i}".encode(), b"parse", b"malformed_json") for i in range(20)]
    with_dead_letters(monkeypatch, kafka_bootstrap, dlq, raw, letters)
    rc = main(["dlq", "replay", "-X", "queue.buffering.max.messages=5"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "replayed 20 of 20" in out
    assert end_offsets(kafka_bootstrap, raw) == 20


def test_dlq_replay_commits_nothing_when_kafka_refused_the_re_sent_records(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """docs/operating.md: the replay "commits its DLQ offsets only after the producer
    acknowledged the re-sent records". It only checks that ``flush`` left nothing queued, and a
    record the broker refused (here: the raw topic takes 100 bytes at most) is not queued: it
    said "replayed 3 of 3", exit 0, and committed past them: a rerun finds nothing, and the
    dead letters were never re-sent."""
    dlq = unique_topic(partitions=1)
    raw = unique_topic(partitions=1, config={"max.message.bytes": "100"})
    letters = [(f"bad-{i}-".encode() + b"x" * 300, b"parse", b"malformed_json") for i in range(3)]
    with_dead_letters(monkeypatch, kafka_bootstrap, dlq, raw, letters)
    rc = main(["dlq", "replay"])
    capsys.readouterr()
    assert end_offsets(kafka_bootstrap, raw) == 0
    assert rc == 3
    # nothing was committed: the next run (once fixed) still sees the three
    assert main(["dlq", "replay", "--dry-run"]) == 0
    assert "would replay 3 of 3" in capsys.readouterr().out


# --- loom demo and loom rebuild on servers that do not answer ---------------------------------


def went_on(*args: object, **kwargs: object) -> None:
    raise AssertionError("the command went on past a server that does not answer")


@pytest.mark.parametrize("dead", ["kafka", "redis", "inventory-redis"])
def test_demo_on_a_server_that_does_not_answer_is_one_line_naming_it(
    dead: str,
    kafka_bootstrap: str,
    redis_url: str,
    free_ports: Callable[[int], list[int]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``loom demo --no-infra`` (the README: every command checks Kafka and Redis first, one
    line, exit 3). Kafka down: after 31 s, ``loom demo: KafkaError{code=_TRANSPORT,...,
    str="Failed to get metadata: ..."}`` (topic creation timing out). Redis down: no error at
    all; it started the workers (which wait for Redis), sent a minute of traffic and waited
    3 minutes for them, then said they did not catch up, exit 1."""
    (port,) = free_ports(1)
    nowhere = f"127.0.0.1:{port}"
    monkeypatch.setattr(topics, "ensure_topics", went_on)
    monkeypatch.setattr(demo, "_start_workers", went_on)
    if dead == "inventory-redis":
        monkeypatch.setenv("LOOM_INVENTORY_REDIS_URL", f"redis://{nowhere}/0")
    rc = main(
        ["demo", "--no-infra", "--seconds", "1",
         "--bootstrap-server", nowhere if dead == "kafka" else kafka_bootstrap,
         "--redis-url", f"redis://{nowhere}/0" if dead == "redis" else redis_url]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 3
    if dead == "kafka":
        expected = f"Kafka {nowhere}: Connect to ipv4#{nowhere} failed: Connection refused"
    else:
        expected = f"Redis {nowhere}: Error 111 connecting to 127.0.0.1:{port}. Connection refused."
    assert err.splitlines() == [f"loom demo: {expected}"]


def test_rebuild_on_a_kafka_that_does_not_answer_is_one_line_naming_it(
    redis_url: str,
    free_ports: Callable[[int], list[int]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``loom rebuild``: after 31 s, ``loom rebuild: KafkaError{code=_TRANSPORT,...}``."""
    (port,) = free_ports(1)
    monkeypatch.setenv("LOOM_KAFKA_BOOTSTRAP", f"127.0.0.1:{port}")
    monkeypatch.setenv("LOOM_REDIS_URL", redis_url)
    monkeypatch.setattr(topics, "ensure_topics", went_on)
    rc = main(["rebuild", "--lane", "profiles"])
    assert rc == 3
    assert capsys.readouterr().err.splitlines() == [
        f"loom rebuild: Kafka 127.0.0.1:{port}: Connect to ipv4#127.0.0.1:{port} failed: "
        "Connection refused"
    ]


# --- the readers' export ------------------------------------------------------------------


def test_profiles_export_to_an_unwritable_path_is_one_line(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "no-such-dir" / "profiles.jsonl"
    rc = main(["profiles", "export", "--out", str(out), "--redis-url", redis_url])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.splitlines()) == 1
    assert str(out) in err


# --- output into a pipe the reader closed ---------------------------------------------------


PIPE_BYTES = 4096  # the smallest pipe Linux makes (one page)


def first_line_then_close(*argv: str) -> tuple[bytes, int, str]:
    """``loom ARGV | head -n 1`` with a real pipe: the first line, the exit code, stderr.

    The pipe holds one page, so output past it plus the reader's one buffered read must wait
    for the reader: which it never gets, whatever the timing (a default 64 KiB pipe took a
    whole ~53 KB preview before the reader closed it, now and then)."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli.main", *argv],
        cwd=ROOT, stdout=write_end, stderr=subprocess.PIPE,
    )  # fmt: skip
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        first = reader.readline()
    # the reader has what it wanted and closed the pipe
    _, err = proc.communicate(timeout=60)
    return first, proc.returncode, err.decode()


@pytest.mark.parametrize(
    "command",
    [
        ("profiles", "export"),
        ("audiences", "preview", "orders == 0", "--sample", "100000"),
    ],
)
def test_output_into_a_closed_pipe_stops_quietly(
    command: tuple[str, ...], redis_url: str, redis_client: redis.Redis, redis_prefix: str
) -> None:
    """``loom profiles export | head -n 1``: once ``head`` has its line and closes the pipe,
    the next write fails with EPIPE (Python ignores SIGPIPE): a ``BrokenPipeError`` traceback,
    and at exit another one from flushing stdout. Like any Unix filter the command must stop
    quietly, exit 141 (128 + SIGPIPE, what a shell reports for ``yes | head -n 1``)."""
    store = RedisStore(redis_client, prefix=redis_prefix)
    run(store, [ev(f"e{n}", {"email": f"p{n}@example.com"}) for n in range(1500)])  # ~53 KB
    first, rc, err = first_line_then_close(
        *command, "--redis-url", redis_url, "--prefix", redis_prefix
    )
    assert first.strip(), err
    assert "BrokenPipeError" not in err
    assert err == ""
    assert rc == EXIT_PIPE == 141
