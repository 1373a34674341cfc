"""``loom erase --wait`` on the real broker and Redis: what it reports must be what the pipeline
did (a review of 2026-12-04; each test failed before its fix).

``--wait`` polled until "the identifier no longer resolves". An identifier that never resolved
(a typo, a person Loom never saw, an event not yet processed) met that condition at once: the
command said "erased", exit 0, before any worker had read the request."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import pytest
import redis
from builders import make_context
from confluent_kafka import Producer
from test_lookup import ev
from topic_reader import read_topic

from resolvers.pipeline import run_batch
from resolvers.steps import RawRecord
from schemas.normalize import DEFAULT
from streams.cli.main import main
from streams.reader import ProfileReader
from streams.redis_store import RedisStore

pytestmark = pytest.mark.integration

#: make_context's salt (tests/builders.py): the CLI must hash as the workers do
SALT = "test-salt"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("LOOM_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LOOM_SUPPRESSION_SALT", SALT)


class Lane:
    """The profiles lane's part, in process: records run through the pipeline on the store,
    at increasing offsets of one partition (as a worker reads them)."""

    def __init__(self, store: RedisStore) -> None:
        self.store, self.offset = store, 0

    def run(self, values: list[bytes]) -> None:
        records = []
        for value in values:
            records.append(RawRecord(value=value, topic="raw", partition=0, offset=self.offset))
            self.offset += 1
        now = datetime.now(UTC)  # the request is stamped with the real clock
        run_batch(records, self.store, lambda: make_context(now), max_bytes=65536, config=DEFAULT)


def erase_argv(identifier: str, wait: str, kafka: str, redis_url: str, prefix: str) -> list[str]:
    return [
        "erase",
        identifier,
        "--wait",
        wait,
        "--bootstrap-server",
        kafka,
        "--redis-url",
        redis_url,
        "--prefix",
        prefix,
    ]


@dataclass
class Setup:
    """One test's deployment: a raw topic of its own (``LOOM_TOPIC_RAW``), the profiles lane's
    part on the test's Redis prefix, a reader of it, and the ``loom erase`` command line."""

    kafka: str
    redis_url: str
    prefix: str
    raw: str
    lane: Lane
    reader: ProfileReader

    def argv(self, identifier: str, wait: str) -> list[str]:
        return erase_argv(identifier, wait, self.kafka, self.redis_url, self.prefix)

    def erase(self, identifier: str, wait: str = "30", pending: int = 0) -> int:
        """``loom erase IDENTIFIER --wait WAIT`` while the lane processes what it sent."""
        return erase_while_a_worker_processes(
            self.argv(identifier, wait), self.kafka, self.raw, self.lane, pending
        )


@pytest.fixture
def setup(
    kafka_bootstrap: str,
    redis_url: str,
    redis_client: redis.Redis,
    redis_prefix: str,
    unique_topic: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> Setup:
    raw = unique_topic()
    monkeypatch.setenv("LOOM_TOPIC_RAW", raw)
    return Setup(
        kafka_bootstrap,
        redis_url,
        redis_prefix,
        raw,
        Lane(RedisStore(redis_client, prefix=redis_prefix)),
        ProfileReader(redis_client, redis_prefix),
    )


def erase_while_a_worker_processes(
    argv: list[str], kafka: str, raw: str, lane: Lane, pending: int = 0
) -> int:
    """``loom erase ... --wait`` in a thread; here, the profiles lane's part: the request is
    read from the raw topic and run through the pipeline by ``lane``, with the ``pending``
    records the topic held before it (events the lane had not processed yet)."""
    result: list[int] = []
    cli = threading.Thread(target=lambda: result.append(main(argv)))
    cli.start()
    try:
        sent: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(sent) <= pending and time.monotonic() < deadline:  # until the command sent it
            sent = [m.value() for m in read_topic(kafka, raw, timeout=30)]
        assert len(sent) == pending + 1, "the erasure request was not produced"
        assert orjson.loads(sent[-1])["type"] == "erasure_requested"
        lane.run(sent)
    finally:
        cli.join(60)
    assert not cli.is_alive(), "loom erase --wait did not end after the erasure was processed"
    return result[0]


def test_erase_wait_does_not_report_an_unprocessed_erasure_as_done(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    """No worker runs: nothing was erased, nothing suppressed. The command said "erased: the
    identifier no longer resolves to a profile", exit 0, at once."""
    rc = main(setup.argv("email:nobody@example.com", "2"))
    out, err = capsys.readouterr()
    assert "erasure requested" in out
    assert "erased" not in out.replace("erasure", "")
    assert rc == 1
    assert "not processed" in err
    assert "nobody" not in out + err  # the value is personal data: never echoed


def test_erase_wait_for_an_identifier_loom_never_held_says_so(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    """Processed, for an identifier no profile held: done (exit 0; the identifier is
    suppressed, later events carrying it are dropped), but said as such, never "erased"."""
    rc = setup.erase("email:JaneX@Example.com")
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "no profile held" in out
    assert "erased:" not in out
    assert "janex" not in (out + err).lower()
    # what the pipeline did: the identifier is suppressed, a later event under it is dropped
    setup.lane.run([orjson.dumps(ev("late-1", {"email": "janex@example.com"}))])
    assert setup.reader.lookup("email", "janex@example.com") is None


def test_erase_wait_reports_erased_once_the_profile_is_gone(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    """A guard: the profile Loom held is erased by the request, and the command says so."""
    reader = setup.reader
    setup.lane.run(
        [orjson.dumps(ev("known-1", {"email": "known@example.com", "customer_id": "c-1"}))]
    )
    assert reader.lookup("customer_id", "c-1") is not None
    rc = setup.erase("email:Known@Example.com")
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "erased:" in out
    assert reader.lookup("customer_id", "c-1") is None
    assert reader.lookup("email", "known@example.com") is None


def test_erase_wait_does_not_say_nothing_was_erased_when_the_request_erased_a_profile(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    """The person's event was in the topic ahead of the request, not processed yet when it was
    sent: no profile held the identifier then, but the lane built one and the request erased
    it. The command said "so nothing was erased"."""
    producer = Producer({"bootstrap.servers": setup.kafka})
    person = ev("pending-1", {"email": "pending@example.com", "customer_id": "c-9"})
    producer.produce(setup.raw, orjson.dumps(person))
    assert producer.flush(30) == 0
    assert setup.reader.lookup("email", "pending@example.com") is None  # not processed yet
    rc = setup.erase("email:pending@example.com", pending=1)
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert setup.reader.lookup("customer_id", "c-9") is None  # the request erased the profile
    assert "nothing was erased" not in out
    assert "not processed yet" in out  # named as a possibility, with what became of them
    assert "pending" not in (out + err).replace("pending-1", "")


def test_erase_wait_with_another_salt_does_not_say_the_erasure_was_not_processed(
    setup: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command's LOOM_SUPPRESSION_SALT is not the workers': the lane erased the profile,
    but no tombstone is under the command's hash. It said "the erasure was not processed"."""
    monkeypatch.setenv("LOOM_SUPPRESSION_SALT", "not-the-workers-salt")
    setup.lane.run(
        [orjson.dumps(ev("salted-1", {"email": "salted@example.com", "customer_id": "c-5"}))]
    )
    rc = setup.erase("email:salted@example.com", "5")
    out, err = capsys.readouterr()
    assert setup.reader.lookup("customer_id", "c-5") is None  # the lane erased it
    assert rc == 1  # not confirmed: the command cannot find the tombstone
    assert "erased" not in out.replace("erasure", "")
    assert "not processed" not in err
    assert "LOOM_SUPPRESSION_SALT" in err
    assert "salted" not in (out + err).replace("salted-1", "")
