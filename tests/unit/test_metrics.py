"""Worker and exporter metrics: names, labels, buckets, isolation, and no PII in labels."""

from __future__ import annotations

import itertools
import logging
import re
from collections import Counter

import orjson
import pytest
from builders import make_context
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from resolvers import pipeline
from resolvers.effects import Count, Measure
from resolvers.pipeline import INVALID, BatchResult
from resolvers.steps import RawRecord
from resolvers.store import InMemoryStore
from schemas.normalize import DEFAULT
from streams.lag import GroupLag, LagSnapshot, Member, PartitionLag
from streams.lag_status import GroupStatus, PartitionStatus, Status
from streams.metrics import (
    EVENT_OUTCOMES,
    LATENCY_BUCKETS,
    ExporterMetrics,
    WorkerMetrics,
    checked,
    label_sets,
    observe_each,
)
from streams.observe import observe_batch


def scrape(registry: CollectorRegistry) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """Render the registry and parse it back with Prometheus' text parser."""
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    text = generate_latest(registry).decode()
    for fam in text_string_to_metric_families(text):
        out[fam.name] = [(s.name, dict(s.labels), s.value) for s in fam.samples]
    return out


def test_worker_metrics_have_the_documented_names_and_labels() -> None:
    m = WorkerMetrics.create(CollectorRegistry())
    m.count_event("pos_sale", "ok")
    m.count_event("page_view", "duplicate", 3)
    m.count_dlq("parse", "ParseError")
    m.merges.inc()
    m.merges_blocked.labels(rule="unique_customer_id").inc()
    m.quarantined.inc(2)
    m.count_consent("marketing", "denied", "gpc")
    m.event_to_snapshot.labels(lane=m.lane).observe(0.004)
    m.redis_call_seconds.labels(op="batch").observe(0.0007)
    m.batch_size.observe(120)
    m.commit_conflicts.inc()
    m.oversold.inc()
    got = scrape(m.registry)

    def value(sample: str, **labels: str) -> float:
        fam = sample.removesuffix("_total").removesuffix("_bucket").removesuffix("_count")
        return next(v for n, lbl, v in got[fam] if n == sample and lbl == labels)

    assert value("loom_events_total", lane="profiles", type="pos_sale", outcome="ok") == 1
    assert value("loom_events_total", lane="profiles", type="page_view", outcome="duplicate") == 3
    assert value("loom_dlq_records_total", stage="parse", reason="ParseError") == 1
    assert value("loom_identity_merges_total") == 1
    assert value("loom_identity_merges_blocked_total", rule="unique_customer_id") == 1
    assert value("loom_identifiers_quarantined_total") == 2
    assert (
        value("loom_consent_decisions_total", purpose="marketing", decision="denied", reason="gpc")
        == 1
    )
    assert value("loom_commit_conflicts_total") == 1
    assert value("loom_inventory_oversold_total") == 1
    assert value("loom_event_to_snapshot_seconds_count", lane="profiles") == 1
    assert value("loom_event_to_snapshot_seconds_bucket", lane="profiles", le="0.005") == 1
    assert value("loom_event_to_snapshot_seconds_bucket", lane="profiles", le="0.0025") == 0
    assert value("loom_redis_call_seconds_count", op="batch") == 1
    assert value("loom_batch_size_bucket", le="200.0") == 1
    assert value("loom_batch_size_bucket", le="100.0") == 0


def test_latency_buckets_cover_1ms_to_10s() -> None:
    assert LATENCY_BUCKETS[0] == 0.001
    assert LATENCY_BUCKETS[-1] == 10.0
    assert list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)


def test_latency_buckets_are_25ms_apart_where_a_steady_lanes_p50_and_p99_fall() -> None:
    """Issue 17.4: a p99 is read to 25 ms between 50 and 250 ms, and 0.1 / 0.25 s (the
    targets) stay bounds, so the share of events within them is exact."""
    fine = [b for b in LATENCY_BUCKETS if 0.05 <= b <= 0.25]
    assert [round(b2 - b1, 6) for b1, b2 in itertools.pairwise(fine)] == [0.025] * 8
    assert {0.1, 0.25, 0.5} <= set(LATENCY_BUCKETS)


#: latencies as observe_batch makes them: >= 0, some exactly on a bucket's bound, some past 10 s
_LATENCIES = st.lists(
    st.one_of(
        st.floats(min_value=0.0, max_value=50.0, allow_nan=False),
        st.sampled_from(LATENCY_BUCKETS),
    ),
    max_size=60,
)


@given(batches=st.lists(_LATENCIES, max_size=4))
def test_observing_a_batch_at_once_exports_what_observing_each_does(
    batches: list[list[float]],
) -> None:
    """``observe_each`` (one pass per batch) against ``observe`` per amount: the same text
    exported, bucket counts, count and the sum's float exactly (a prometheus_client whose
    fields changed fails here)."""

    def exported(observe: object) -> str:
        registry = CollectorRegistry()
        h = Histogram("h_seconds", "h", ["lane"], buckets=LATENCY_BUCKETS, registry=registry)
        child = h.labels(lane="profiles")
        for amounts in batches:
            if observe is observe_each:
                observe_each(child, amounts)
            else:
                for a in amounts:
                    child.observe(a)
        return "\n".join(
            line
            for line in generate_latest(registry).decode().splitlines()
            if "_created" not in line
        )

    assert exported(observe_each) == exported(Histogram.observe)


def test_registries_are_isolated_and_nothing_is_global() -> None:
    a = WorkerMetrics.create(CollectorRegistry())
    b = WorkerMetrics.create(CollectorRegistry())  # would raise on a shared registry
    a.commit_conflicts.inc(5)
    assert scrape(b.registry)["loom_commit_conflicts"][0][2] == 0
    assert REGISTRY.get_sample_value("loom_commit_conflicts_total") is None


def test_outcome_must_be_one_of_the_enum() -> None:
    m = WorkerMetrics.create(CollectorRegistry())
    with pytest.raises(ValueError, match="outcome"):
        m.count_event("page_view", "exploded")


def test_event_outcomes_cover_everything_the_pipeline_reports() -> None:
    """A batch with every kind of event (duplicates, a bad record, an erasure with and without
    a person behind it, an erased person's late event, a shared tablet's browsing) reports
    only outcomes the metric accepts."""

    def ev(event_id: str, type_: str, **ids: str) -> RawRecord:
        event = {"event_id": event_id, "type": type_, "channel": "web", "region": "NO",
                 "occurred_at": "2026-11-20T10:00:00Z", "identifiers": ids}  # fmt: skip
        return RawRecord(orjson.dumps(event), topic="t", partition=0, offset=0)

    batches = [
        [ev("a", "login", customer_id="C1", anonymous_id="tab"),
         ev("b", "login", customer_id="C2", anonymous_id="tab"),
         ev("b", "login", customer_id="C2", anonymous_id="tab"),
         ev("c", "page_view", anonymous_id="tab"),
         RawRecord(b"{not json", topic="t", partition=0, offset=1)],
        [ev("d", "erasure_requested", customer_id="C1"),
         ev("e", "erasure_requested", customer_id="C9")],
        [ev("f", "login", customer_id="C1")],
    ]  # fmt: skip
    store = InMemoryStore()
    seen: set[str] = set()
    for records in batches:
        for lane in (pipeline.PROFILES, pipeline.INVENTORY):
            result = pipeline.run_batch(
                records, store, make_context, max_bytes=65536, config=DEFAULT, lane=lane
            )
            seen |= {outcome for _type, outcome in result.outcomes}
    assert seen >= {"ok", "duplicate", "dlq", "erased", "erasure_nothing_to_erase",
                    "suppressed", "unattributed"}  # fmt: skip
    assert seen <= EVENT_OUTCOMES
    for outcome in EVENT_OUTCOMES:
        assert checked(outcome) == outcome


def test_the_worker_counts_through_the_validating_helpers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    m = WorkerMetrics.create(CollectorRegistry(), lane="inventory")
    result = BatchResult(
        outcomes=Counter(
            {("pos_sale", "ok"): 2, ("unknown", INVALID): 1, ("page_view", "exploded"): 4}
        ),
        counts=Counter({Count(Measure.CONSENT_DENIED, "ads", "gpc"): 3, Count(Measure.MERGES): 1}),
    )
    with caplog.at_level(logging.ERROR):
        observe_batch(m, [], result)  # the batch is committed: never raises
    assert "refused label values" in caplog.text  # the unknown outcome, logged
    got = scrape(m.registry)
    events = {(lbl["type"], lbl["outcome"]): v for _n, lbl, v in got["loom_events"]}
    assert events == {("pos_sale", "ok"): 2, ("unknown", "invalid"): 1}
    consent = [(lbl, v) for _n, lbl, v in got["loom_consent_decisions"]]
    assert consent == [({"purpose": "ads", "decision": "denied", "reason": "gpc"}, 3)]
    m.count_dlq("parse", "schema_violation", 2)
    assert scrape(m.registry)["loom_dlq_records"][0][2] == 2


@pytest.mark.parametrize(
    "value",
    ["ola.nordmann@example.com", "+4791234567", "91234567", "Ola Nordmann", "", "x" * 65],
)
def test_free_text_and_pii_shaped_label_values_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="enum-like"):
        checked(value)
    m = WorkerMetrics.create(CollectorRegistry())
    with pytest.raises(ValueError, match="enum-like"):
        m.count_dlq("parse", value)


def test_worker_label_values_stay_enum_like() -> None:
    m = WorkerMetrics.create(CollectorRegistry())
    m.count_event("order_completed", "ok")
    m.count_consent("ads", "denied", "jurisdiction_default")
    pattern = re.compile(r"^[A-Za-z0-9_.:+-]*$")
    for name, sets in label_sets(m.registry).items():
        for labels in sets:
            for k, v in labels.items():
                assert "@" not in v, (name, k)
                assert pattern.match(v), (name, k, v)


def snapshot() -> LagSnapshot:
    member = Member("c-1-uuid", "c-1", "/10.0.0.7", (("t", 0),))
    g = GroupLag(
        group="loom",
        state="STABLE",
        is_simple=False,
        members=(member,),
        partitions=(
            PartitionLag("t", 0, 90, 100, 10, 2.5, "c-1-uuid", "/10.0.0.7", "c-1"),
            PartitionLag("t", 1, 40, 70, 30, 7.0),
            PartitionLag("u", 0, None, 5, None, None),
        ),
    )
    return LagSnapshot(taken_at=0.0, groups=(g,))


def test_exporter_metrics_use_kafka_lag_exporter_names_and_labels() -> None:
    m = ExporterMetrics.create(CollectorRegistry(), cluster_name="dev")
    status = GroupStatus(
        "loom", Status.ERR, Status.STALL, (PartitionStatus("t", 1, Status.STALL, 30, 3),)
    )
    m.lag.update(snapshot(), [status])
    got = scrape(m.registry)
    lag = {lbl["partition"]: (lbl, v) for _n, lbl, v in got["kafka_consumergroup_group_lag"]}
    assert set(lag) == {"0", "1"}  # nothing committed on u/0: no lag series
    labels, v = lag["0"]
    assert v == 10
    assert labels == {
        "cluster_name": "dev", "group": "loom", "topic": "t", "partition": "0",
        "member_host": "/10.0.0.7", "consumer_id": "c-1-uuid", "client_id": "c-1",
    }  # fmt: skip
    assert lag["1"][0]["consumer_id"] == ""
    secs = {lbl["partition"]: v for _n, lbl, v in got["kafka_consumergroup_group_lag_seconds"]}
    assert secs == {"0": 2.5, "1": 7.0}
    (max_lag,) = got["kafka_consumergroup_group_max_lag"]
    assert max_lag[1] == {"cluster_name": "dev", "group": "loom", "is_simple_consumer": "false"}
    assert max_lag[2] == 30
    assert got["kafka_consumergroup_group_max_lag_seconds"][0][2] == 7.0
    assert got["kafka_consumergroup_group_sum_lag"][0][2] == 40
    assert {(s[1]["topic"], s[2]) for s in got["kafka_consumergroup_group_topic_sum_lag"]} == {
        ("t", 40)
    }
    latest = {
        (s[1]["topic"], s[1]["partition"]): s[2] for s in got["kafka_partition_latest_offset"]
    }
    assert latest == {("t", "0"): 100, ("t", "1"): 70, ("u", "0"): 5}
    offsets = {s[1]["partition"]: s[2] for s in got["kafka_consumergroup_group_offset"]}
    assert offsets == {"0": 90, "1": 40}
    statuses = {s[1]["status"]: s[2] for s in got["loom_consumergroup_status"]}
    assert statuses == {"OK": 0, "WARN": 0, "STOP": 0, "STALL": 1, "REWIND": 0}


def test_exporter_series_of_vanished_partitions_disappear() -> None:
    m = ExporterMetrics.create(CollectorRegistry())
    m.lag.update(snapshot(), [])
    assert len(scrape(m.registry)["kafka_consumergroup_group_lag"]) == 2
    m.lag.update(LagSnapshot(taken_at=1.0, groups=()), [])
    assert (
        "kafka_consumergroup_group_lag" not in scrape(m.registry)
        or not scrape(m.registry)["kafka_consumergroup_group_lag"]
    )


def test_a_batch_with_conflicted_parts_counts_once_as_a_conflicted_batch() -> None:
    """Issue 17.3 asks for CAS retries per batch: one batch whose 3 parts conflicted (over two
    attempts) is one conflicted batch; a batch without a conflict is none."""
    m = WorkerMetrics.create(CollectorRegistry())
    observe_batch(m, [], BatchResult(parts=20, conflicted_parts=3, recomputed_events=40))
    observe_batch(m, [], BatchResult(parts=16))
    got = scrape(m.registry)
    assert got["loom_conflicted_batches"][0][2] == 1
    assert got["loom_commit_conflicts"][0][2] == 3
    assert got["loom_commit_parts"][0][2] == 36
    assert got["loom_recomputed_events"][0][2] == 40
