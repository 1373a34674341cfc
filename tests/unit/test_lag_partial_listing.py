"""Kafka lists consumer groups broker by broker; confluent-kafka's ``list_consumer_groups``
returns the groups of the brokers that answered in ``valid`` and the failures of the others in
``errors``. A listing with errors is partial: a group it lacks is not gone. The fake here is the
admin client's answer only; ``LagReader.list_groups`` and the callers are Loom's code."""

from __future__ import annotations

import argparse
import contextlib
import io
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    ConsumerGroupListing,
    ListConsumerGroupsResult,
)
from prometheus_client import CollectorRegistry

from streams.cli import lag as lag_cli
from streams.exporter import ExporterConfig, LagExporter
from streams.lag import GroupLag, LagReader, LagSnapshot, PartitionLag
from streams.metrics import ExporterMetrics
from streams.settings import LoomSettings

#: what librdkafka reports for a broker whose group coordinator is still loading
LOADING = KafkaException(
    KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS, "Broker: Coordinator load in progress")
)


class _Admin:
    """``AdminClient.list_consumer_groups`` answering ``valid`` and ``errors``."""

    def __init__(self) -> None:
        self.valid: list[str] = []
        self.errors: list[KafkaException] = []

    def list_consumer_groups(self, **_: Any) -> Future[ListConsumerGroupsResult]:
        future: Future[ListConsumerGroupsResult] = Future()
        future.set_result(
            ListConsumerGroupsResult(
                valid=[ConsumerGroupListing(g, False) for g in self.valid],
                errors=list(self.errors),
            )
        )
        return future


class _Reader(LagReader):
    """A real ``LagReader`` on the fake admin answer, reading every group it is asked for
    with lag 6 on one partition (the reading is not what is tested)."""

    def __init__(self, admin: _Admin) -> None:
        super().__init__("127.0.0.1:1")
        self._admin = admin  # type: ignore[assignment]
        self.asked: list[list[str]] = []

    def read(self, groups: Sequence[str], **_: Any) -> LagSnapshot:
        self.asked.append(list(groups))
        return LagSnapshot(
            taken_at=0.0,
            groups=tuple(
                GroupLag(g, "STABLE", False, (), (PartitionLag("t", 0, 4, 10, 6, 1.0),))
                for g in groups
            ),
        )


def _sample_groups(exporter: LagExporter) -> set[str]:
    return {
        sample.labels["group"]
        for family in exporter.metrics.registry.collect()
        if family.name == "kafka_consumergroup_group_sum_lag"
        for sample in family.samples
    }


def test_a_group_a_partial_listing_lacks_keeps_its_series_and_history_in_the_exporter() -> None:
    """``loom exporter --all`` forgets a group the listing no longer has (its series leave
    /metrics, its status history is dropped). A listing one broker did not answer lacked that
    broker's groups, and the exporter forgot them as gone: a lagging group vanished from
    /metrics, so its lag alerts resolved. Now the groups of the last reading are read again,
    the partial listing is counted, and only a complete listing forgets a group."""
    admin = _Admin()
    exporter = LagExporter(
        ExporterConfig("127.0.0.1:1", None, use_commit_log=False),  # --all
        ExporterMetrics.create(CollectorRegistry()),
        clock=lambda: 0.0,
    )
    reader = _Reader(admin)
    exporter.reader = reader
    admin.valid = ["loom-profiles", "tool-a"]
    exporter.poll_once()
    assert _sample_groups(exporter) == {"loom-profiles", "tool-a"}

    admin.valid, admin.errors = ["loom-profiles"], [LOADING]  # tool-a's coordinator is away
    exporter.poll_once()
    assert _sample_groups(exporter) == {"loom-profiles", "tool-a"}
    assert exporter.evaluator.groups() == ["loom-profiles", "tool-a"]
    assert reader.asked[-1] == ["loom-profiles", "tool-a"]
    registry = exporter.metrics.registry
    assert registry.get_sample_value("loom_lag_exporter_incomplete_listings_total") == 1.0
    assert registry.get_sample_value("loom_lag_exporter_polls_total", {"result": "ok"}) == 2.0

    admin.errors = []  # a complete listing without tool-a: it is gone
    exporter.poll_once()
    assert _sample_groups(exporter) == {"loom-profiles"}
    assert exporter.evaluator.groups() == ["loom-profiles"]


def _run_lag(
    monkeypatch: pytest.MonkeyPatch, admin: _Admin, *argv: str
) -> tuple[int, str, list[list[str]]]:
    reader = _Reader(admin)
    monkeypatch.setattr(lag_cli, "connect", lambda *_a, **_k: LoomSettings())
    monkeypatch.setattr(lag_cli, "reader_for", lambda _settings: reader)
    parser = argparse.ArgumentParser()
    lag_cli.register(parser.add_subparsers())
    args = parser.parse_args(["lag", "--json", *argv])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = args.func(args)
    return code, err.getvalue(), reader.asked


def test_loom_lag_does_not_call_a_lane_group_a_partial_listing_lacks_never_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``loom lag`` said ``no consumer group loom-profiles: no worker of that lane has run``
    and exited 0 when the broker coordinating that group did not answer the listing."""
    admin = _Admin()
    admin.valid, admin.errors = ["loom-inventory"], [LOADING]
    code, err, asked = _run_lag(monkeypatch, admin)
    assert err.splitlines() == [
        "group listing incomplete (1 error, first: Broker: Coordinator load in progress): "
        "groups may be missing",
        "consumer group loom-profiles not listed",
    ]
    assert asked == [["loom-inventory"]]
    assert code == 3


def test_loom_lag_all_says_when_the_listing_is_partial(monkeypatch: pytest.MonkeyPatch) -> None:
    """``loom lag --all`` printed the groups of the brokers that answered as if they were all,
    with exit 0."""
    admin = _Admin()
    admin.valid, admin.errors = ["loom-inventory", "tool-a"], [LOADING, LOADING]
    code, err, asked = _run_lag(monkeypatch, admin, "--all")
    assert err.splitlines() == [
        "group listing incomplete (2 errors, first: Broker: Coordinator load in progress): "
        "groups may be missing",
    ]
    assert asked == [["loom-inventory", "tool-a"]]
    assert code == 3
    admin.errors = []
    assert _run_lag(monkeypatch, admin, "--all") == (0, "", [["loom-inventory", "tool-a"]])
