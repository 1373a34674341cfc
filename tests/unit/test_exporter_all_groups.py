"""``loom exporter --all`` watches every group of the cluster, and groups come and go (each
``kafka-console-consumer`` run makes one, ``loom dlq replay --group G``, a tool's own): what it
publishes and keeps of a group lasts as long as the group does, and a group's name, which
Kafka does not restrict, is a label value as it is."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.exporter import ExporterConfig, LagExporter
from streams.lag import GroupLag, GroupListing, LagSnapshot, PartitionLag
from streams.metrics import ExporterMetrics

#: a group id Kafka accepts: quotes, a backslash, a newline, braces, non-ASCII
ODD = 'tool "x"\\y\nz{a="b"}-é'


class _Reader:
    """The two calls a poll makes of ``LagReader``, answering from ``groups`` (name -> its
    partitions' committed offset, all with end offset 10)."""

    def __init__(self) -> None:
        self.groups: dict[str, int] = {}

    def list_groups(self, prefix: str | None = None) -> GroupListing:
        return GroupListing(
            tuple(sorted(g for g in self.groups if prefix is None or g.startswith(prefix)))
        )

    def read(self, groups: Sequence[str], **_: Any) -> LagSnapshot:
        return LagSnapshot(
            taken_at=0.0,
            groups=tuple(
                GroupLag(
                    group=g,
                    state="EMPTY",
                    is_simple=False,
                    members=(),
                    partitions=(
                        PartitionLag("t", 0, self.groups[g], 10, 10 - self.groups[g], 1.0),
                    ),
                )
                for g in groups
            ),
        )


def _exporter(*, commit_log: bool) -> tuple[LagExporter, _Reader]:
    exporter = LagExporter(
        ExporterConfig("127.0.0.1:1", None, use_commit_log=commit_log),  # --all
        ExporterMetrics.create(CollectorRegistry()),
        clock=lambda: 0.0,
    )
    reader = _Reader()
    exporter.reader = reader  # type: ignore[assignment]
    return exporter, reader


def _group_labels(exporter: LagExporter) -> set[str]:
    """Every ``group`` label value of a scrape, parsed back from the exposition text."""
    text = generate_latest(exporter.metrics.registry).decode()
    return {
        sample.labels["group"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "group" in sample.labels
    }


def test_any_group_name_is_one_label_value_and_a_vanished_group_leaves_the_metrics() -> None:
    """Ruled out: label values are escaped by the exposition (prometheus_client), and the
    series are rendered from the latest reading, so a group gone is gone from /metrics."""
    exporter, reader = _exporter(commit_log=False)
    reader.groups = {"loom-profiles": 4, ODD: 2}
    exporter.poll_once()
    assert _group_labels(exporter) == {"loom-profiles", ODD}
    del reader.groups[ODD]
    exporter.poll_once()
    assert _group_labels(exporter) == {"loom-profiles"}
    assert exporter.evaluator.groups() == ["loom-profiles"]


def test_without_the_commit_log_a_vanished_group_s_offsets_are_forgotten_too() -> None:
    """``--no-commit-log`` remembers each partition's last committed offset to see changes;
    it kept those of every group ever seen, so an exporter watching ``--all`` grew with every
    throwaway group of the cluster's lifetime (the evaluator forgets a vanished group)."""
    exporter, reader = _exporter(commit_log=False)
    for n in range(50):
        reader.groups = {"loom-profiles": 4, f"console-consumer-{n}": 2}
        exporter.poll_once()
    assert {group for group, _topic, _partition in exporter._known} == {
        "loom-profiles",
        "console-consumer-49",
    }
