"""Prometheus metrics of the worker and of the lag exporter.

Nothing is registered at import: :meth:`WorkerMetrics.create` and :meth:`ExporterMetrics.create`
put their metrics in the ``CollectorRegistry`` they are given (a fresh one per process, or per
test). Label values are closed enums only (event type, outcome, stage, reason, purpose...), never
identifiers, ids or free text, so no PII can reach a time series. The worker counts events, dead
letters and consent decisions through :class:`WorkerMetrics`' helpers, which enforce it:
:func:`checked` for the enum-like labels, :data:`EVENT_OUTCOMES` for outcomes.

Exporter metric names and labels follow kafka-lag-exporter (seglo/kafka-lag-exporter README,
"Metrics"), so its dashboards and alerts work unchanged:

- ``kafka_consumergroup_group_offset|lag|lag_seconds``
  {cluster_name, group, topic, partition, member_host, consumer_id, client_id}
- ``kafka_consumergroup_group_max_lag|max_lag_seconds`` {cluster_name, group, is_simple_consumer}
- ``kafka_consumergroup_group_sum_lag`` {cluster_name, group}
- ``kafka_consumergroup_group_topic_sum_lag`` {cluster_name, group, topic}
- ``kafka_partition_latest_offset`` {cluster_name, topic, partition}
- ``loom_consumergroup_status`` {group, status}: 1 for the group's worst partition status
  (OK, WARN, STOP, STALL, REWIND), 0 for the others.
"""

from __future__ import annotations

import re
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from threading import Lock

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from resolvers.pipeline import OUTCOMES
from streams.lag import LagSnapshot
from streams.lag_status import GroupStatus, Status

__all__ = [
    "BATCH_SIZE_BUCKETS",
    "EVENT_OUTCOMES",
    "GC_BUCKETS",
    "LATENCY_BUCKETS",
    "REDIS_BUCKETS",
    "STATUS_VALUES",
    "ExporterMetrics",
    "LagCollector",
    "WorkerMetrics",
    "checked",
    "observe_each",
]

#: Outcomes of one event through the pipeline (``resolvers.pipeline``): ``ok`` (through every
#: stage), ``dlq`` (profiles lane) or ``invalid`` (inventory lane) for a bad record, or the
#: reason of the stage's ``Drop``: ``duplicate`` (dedupe), ``erased`` and
#: ``erasure_nothing_to_erase`` (erase). tests/unit/test_metrics.py checks it against the
#: ``Drop`` reasons in ``resolvers/``.
EVENT_OUTCOMES: frozenset[str] = OUTCOMES
#: Buckets for event-to-snapshot latency: 1 ms to 10 s, roughly x2.5 per step, and every
#: 25 ms from 50 to 250 ms and 50 ms from 250 to 500 ms, where a steady lane's median and p99
#: fall (issue 17.4: p99 <= 250 ms; with only the x2.5 steps a p99 "248 ms" was any value
#: interpolated inside (100, 250] ms, and 250 ms is still a bound, so "within 250 ms" is exact).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.175, 0.2, 0.225, 0.25,
    0.3, 0.35, 0.4, 0.45, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
#: Buckets for one Redis call: 100 µs to 1 s.
REDIS_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip
#: Buckets for a worker's full garbage collection (streams.gc_policy): 10 ms to 5 s.
GC_BUCKETS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: Buckets for batch sizes (events per atomic batch, max 10 000).
BATCH_SIZE_BUCKETS: tuple[float, ...] = (
    1,
    2,
    5,
    10,
    20,
    50,
    100,
    200,
    500,
    1000,
    2000,
    5000,
    10000,
)
STATUS_VALUES: tuple[Status, ...] = (
    Status.OK,
    Status.WARN,
    Status.STOP,
    Status.STALL,
    Status.REWIND,
)

#: kafka-lag-exporter's per-partition labels, in its order.
PARTITION_LABELS: tuple[str, ...] = (
    "cluster_name",
    "group",
    "topic",
    "partition",
    "member_host",
    "consumer_id",
    "client_id",
)

_ENUM_VALUE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,63}$")


def checked(value: str) -> str:
    """``value`` if it looks like an enum member (identifier-like, <= 64 chars), else raises.

    Guards label values against free text: an e-mail address or phone number fails (``@``,
    ``+`` and spaces are not allowed, nor a leading digit)."""
    if not _ENUM_VALUE.match(value):
        raise ValueError("metric label values must be enum-like names, not free text")
    return value


def observe_each(histogram: Histogram, amounts: Iterable[float]) -> None:
    """``histogram.observe(a)`` for each of ``amounts`` in order, in one pass: the same bucket
    counts and the same sum (added one amount at a time, in order, so the float is the same),
    without ``observe``'s Python calls and lock per amount (issue 17: ~0.9 µs per record for
    the event-to-snapshot latency). Only for a histogram (or labelled child) that one thread
    observes; reads prometheus_client's fields, pinned by tests/unit/test_metrics.py against
    ``observe``."""
    bounds: list[float] = histogram._upper_bounds
    counts = [0] * len(bounds)
    total: float = histogram._sum.get()
    for amount in amounts:
        total += amount
        counts[bisect_left(bounds, amount)] += 1  # the first bound >= amount, as observe's
    histogram._sum.set(total)
    buckets = histogram._buckets
    for i, n in enumerate(counts):
        if n:
            buckets[i].inc(n)


@dataclass(frozen=True, slots=True)
class RelayMetrics:
    """What the outbox relay counts (``streams.relay``), in a lane's worker or in a ``loom
    relay`` process of its own (ADR 0039)."""

    registry: CollectorRegistry
    records: Counter  # loom_relay_records_total
    superseded: Counter  # loom_relay_superseded_total
    errors: Counter  # loom_relay_errors_total{error}
    failing: Gauge  # loom_relay_failing: 1 while the relay's passes fail
    active: Gauge  # loom_relay_active: 1 while this relay holds the outbox's lease
    outbox_length: Gauge  # loom_outbox_length
    outbox_oldest_age: Gauge  # loom_outbox_oldest_age_seconds

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> RelayMetrics:
        reg = registry if registry is not None else CollectorRegistry(auto_describe=True)
        return cls(
            registry=reg,
            records=Counter(
                "loom_relay_records_total",
                "Outbox records the relay delivered to Kafka.",
                registry=reg,
            ),
            superseded=Counter(
                "loom_relay_superseded_total",
                "Profile snapshot records the relay did not send because the profile had moved "
                "on (a later version, a merge, an erasure) before their entry was sent: a later "
                "outbox entry carries what it became (ADR 0033).",
                registry=reg,
            ),
            errors=Counter(
                "loom_relay_errors_total",
                "Failed relay passes, by error class (each is retried with backoff).",
                ["error"],
                registry=reg,
            ),
            failing=Gauge(
                "loom_relay_failing",
                "1 while the outbox relay's passes fail (it retries with backoff).",
                registry=reg,
            ),
            active=Gauge(
                "loom_relay_active",
                "1 while this relay holds the outbox's lease and delivers it; 0 while it stands "
                "by (one relay per outbox delivers at a time, ADR 0043).",
                registry=reg,
            ),
            outbox_length=Gauge(
                "loom_outbox_length",
                "Outbox entries in Redis not yet delivered to Kafka (one per committed batch, "
                "holding its records; read by the relay).",
                registry=reg,
            ),
            outbox_oldest_age=Gauge(
                "loom_outbox_oldest_age_seconds",
                "Age of the oldest outbox entry not yet delivered to Kafka (0 when empty).",
                registry=reg,
            ),
        )


@dataclass(frozen=True, slots=True)
class WorkerMetrics:
    """Everything a worker counts. ``lane`` (``profiles`` or ``inventory``, the worker's role)
    labels the two per-event series, so a dashboard can sum each lane once. The worker counts
    through the validating helpers, e.g. ``m.count_event("pos_sale", "ok")``."""

    registry: CollectorRegistry
    lane: str
    events: Counter  # loom_events_total{lane,type,outcome}
    dlq_records: Counter  # loom_dlq_records_total{stage,reason}
    merges: Counter  # loom_identity_merges_total
    merges_blocked: Counter  # loom_identity_merges_blocked_total{rule}
    quarantined: Counter  # loom_identifiers_quarantined_total
    consent_decisions: Counter  # loom_consent_decisions_total{purpose,decision,reason}
    event_to_snapshot: Histogram  # loom_event_to_snapshot_seconds{lane} (Kafka append -> Redis)
    redis_call_seconds: Histogram  # {op}
    batch_size: Histogram
    commit_conflicts: Counter  # loom_commit_conflicts_total (parts retried after a conflict)
    commit_parts: Counter  # loom_commit_parts_total (parts committed or conflicted)
    conflicted_batches: Counter  # loom_conflicted_batches_total (batches with >= 1 conflict)
    commit_aborts: Counter  # loom_commit_aborts_total (LOOM_REDIS_COMMIT=watch: EXECs aborted)
    loads_torn: Counter  # loom_loads_torn_total (LOOM_REDIS_LOAD=waves: loads read again)
    recomputed_events: Counter  # loom_recomputed_events_total (events of conflicted parts)
    deferred_parts: Counter  # loom_deferred_parts_total (parts another worker's claim held)
    deferred_batches: Counter  # loom_deferred_batches_total (batches with >= 1 of them)
    deferred_events: Counter  # loom_deferred_events_total (events of deferred parts)
    oversold: Counter  # loom_inventory_oversold_total
    lane_state: Gauge  # loom_lane_state{lane,state}: 1 for the current state
    lane_stops: Counter  # loom_lane_stops_total{lane,reason}
    batch_retries: Counter  # loom_batch_retries_total{lane,step,error}
    lane_busy: Counter  # loom_lane_busy_seconds_total{lane}
    lane_cpu: Counter  # loom_lane_cpu_seconds_total{lane}
    lane_runnable: Counter  # loom_lane_runnable_seconds_total{lane}
    lane_ahead: Counter  # loom_lane_ahead_records_total{lane,step}
    poison_records: Counter  # loom_poison_records_total{lane,stage}
    relay: RelayMetrics  # the outbox relay's (a worker runs one unless LOOM_WORKER_RELAY=false)
    decode_cache_bytes: Gauge  # loom_decode_cache_bytes
    decode_cache_lookups: Counter  # loom_decode_cache_lookups_total{result}
    gc_full_collection: Histogram  # loom_gc_full_collection_seconds (streams.gc_policy)

    @classmethod
    def create(
        cls, registry: CollectorRegistry | None = None, *, lane: str = "profiles"
    ) -> WorkerMetrics:
        reg = registry if registry is not None else CollectorRegistry(auto_describe=True)
        return cls(
            registry=reg,
            lane=checked(lane),
            events=Counter(
                "loom_events_total",
                "Events processed, by lane, event type and outcome (ok, dlq, duplicate, ...).",
                ["lane", "type", "outcome"],
                registry=reg,
            ),
            dlq_records=Counter(
                "loom_dlq_records_total",
                "Records sent to the dead-letter topic, by pipeline stage and error class.",
                ["stage", "reason"],
                registry=reg,
            ),
            merges=Counter("loom_identity_merges_total", "Profile merges performed.", registry=reg),
            merges_blocked=Counter(
                "loom_identity_merges_blocked_total",
                "Merges refused by an identity rule, by rule.",
                ["rule"],
                registry=reg,
            ),
            quarantined=Counter(
                "loom_identifiers_quarantined_total",
                "Identifiers quarantined for linking too many profiles.",
                registry=reg,
            ),
            consent_decisions=Counter(
                "loom_consent_decisions_total",
                "Consent decisions, by purpose, decision (e.g. denied, redacted) and reason.",
                ["purpose", "decision", "reason"],
                registry=reg,
            ),
            event_to_snapshot=Histogram(
                "loom_event_to_snapshot_seconds",
                "Time from an event's arrival in Kafka to its effect in the Redis snapshot.",
                ["lane"],
                buckets=LATENCY_BUCKETS,
                registry=reg,
            ),
            redis_call_seconds=Histogram(
                "loom_redis_call_seconds",
                "Duration of one Redis call, by operation.",
                ["op"],
                buckets=REDIS_BUCKETS,
                registry=reg,
            ),
            batch_size=Histogram(
                "loom_batch_size",
                "Events per atomic batch.",
                buckets=BATCH_SIZE_BUCKETS,
                registry=reg,
            ),
            commit_conflicts=Counter(
                "loom_commit_conflicts_total",
                "Batch parts whose commit conflicted with another writer (each part is loaded "
                "and computed again).",
                registry=reg,
            ),
            commit_parts=Counter(
                "loom_commit_parts_total",
                "Batch parts sent to the store's atomic commit (committed or conflicted).",
                registry=reg,
            ),
            conflicted_batches=Counter(
                "loom_conflicted_batches_total",
                "Batches of which at least one part conflicted with another writer (issue "
                "17.3's CAS retries per batch; loom_batch_size_count counts the batches).",
                registry=reg,
            ),
            commit_aborts=Counter(
                "loom_commit_aborts_total",
                "Commit calls of LOOM_REDIS_COMMIT=watch whose EXEC was aborted because another "
                "commit of the lane came in between (the call reads and checks again; nothing "
                "is computed again).",
                registry=reg,
            ),
            loads_torn=Counter(
                "loom_loads_torn_total",
                "Batch loads of LOOM_REDIS_LOAD=waves during which a commit of the lane landed "
                "(the load is read again, at most 5 times, then the batch is retried).",
                registry=reg,
            ),
            recomputed_events=Counter(
                "loom_recomputed_events_total",
                "Events computed again because their part of a batch conflicted.",
                registry=reg,
            ),
            deferred_parts=Counter(
                "loom_deferred_parts_total",
                "Batch parts not computed when loaded because another worker's claim held "
                "one of their entities (LOOM_COMMIT_CLAIMS, ADR 0040): loaded again after a "
                "short wait, never computed twice.",
                registry=reg,
            ),
            deferred_batches=Counter(
                "loom_deferred_batches_total",
                "Batches of which at least one part waited for another worker's claim.",
                registry=reg,
            ),
            deferred_events=Counter(
                "loom_deferred_events_total",
                "Events loaded again because their part waited for another worker's claim.",
                registry=reg,
            ),
            oversold=Counter(
                "loom_inventory_oversold_total",
                "Stock levels that went below zero available (oversell alerts).",
                registry=reg,
            ),
            lane_state=Gauge(
                "loom_lane_state",
                "1 for the lane's current state (starting, running, retrying, stopped).",
                ["lane", "state"],
                registry=reg,
            ),
            lane_stops=Counter(
                "loom_lane_stops_total",
                "Times the lane stopped without committing, by reason (fatal, state_lost, "
                "circuit_open).",
                ["lane", "reason"],
                registry=reg,
            ),
            batch_retries=Counter(
                "loom_batch_retries_total",
                "Batch steps retried after an infrastructure error, by step (batch, dlq) and "
                "error class.",
                ["lane", "step", "error"],
                registry=reg,
            ),
            lane_busy=Counter(
                "loom_lane_busy_seconds_total",
                "Wall time the lane spent on its batches, from records in hand until they are "
                "committed and their dead letters delivered: its rate is the lane's "
                "saturation (near 1: records wait for the lane, not the lane for records).",
                ["lane"],
                registry=reg,
            ),
            lane_cpu=Counter(
                "loom_lane_cpu_seconds_total",
                "CPU time of the lane's own thread in its batches (parse to commit, retries "
                "included, and the next batch's work done while Redis answered). Busy time "
                "minus this is time the lane waited: on Redis, on the interpreter lock (the "
                "relay's thread), on the machine's CPUs.",
                ["lane"],
                registry=reg,
            ),
            lane_runnable=Counter(
                "loom_lane_runnable_seconds_total",
                "Time the lane's own thread was ready to run in its batches while no CPU was "
                "free (Linux schedstat: its run-queue wait; absent elsewhere): the part of the "
                "batches' waiting spent on the machine's CPUs, held by other processes or "
                "threads. Busy time minus CPU minus this is waiting on Redis, Kafka or the "
                "interpreter lock.",
                ["lane"],
                registry=reg,
            ),
            lane_ahead=Counter(
                "loom_lane_ahead_records_total",
                "Records of a lane's next batch consumed (step=consumed) and prepared "
                "(step=prepared: decoded, validated, normalized) while Redis answered the "
                "batch in flight (LOOM_WORK_AHEAD, ADR 0038); the rest of each batch is "
                "consumed and prepared in turn.",
                ["lane", "step"],
                registry=reg,
            ),
            poison_records=Counter(
                "loom_poison_records_total",
                "Records that failed processing deterministically, isolated by bisecting "
                "their batch and dead-lettered, by the stage that raised.",
                ["lane", "stage"],
                registry=reg,
            ),
            relay=RelayMetrics.create(reg),
            decode_cache_bytes=Gauge(
                "loom_decode_cache_bytes",
                "Memory charged to the worker's decoded-entity cache (at most "
                "LOOM_DECODE_CACHE_BYTES).",
                registry=reg,
            ),
            decode_cache_lookups=Counter(
                "loom_decode_cache_lookups_total",
                "Stored entities the worker decoded (result=miss) or found decoded in its "
                "cache (result=hit), counted after each batch; a miss ratio that climbs as "
                "the shop grows says "
                "LOOM_DECODE_CACHE_BYTES holds less than the working set.",
                ["result"],
                registry=reg,
            ),
            gc_full_collection=Histogram(
                "loom_gc_full_collection_seconds",
                "Full garbage collections of the worker, between batches, every "
                "LOOM_GC_FULL_INTERVAL_S (the process pauses meanwhile).",
                buckets=GC_BUCKETS,
                registry=reg,
            ),
        )

    # helpers that validate label values (enums only)
    def count_event(self, type_: str, outcome: str, n: int = 1) -> None:
        if outcome not in EVENT_OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(EVENT_OUTCOMES)}")
        self.events.labels(lane=self.lane, type=checked(type_), outcome=outcome).inc(n)

    def count_dlq(self, stage: str, reason: str, n: int = 1) -> None:
        self.dlq_records.labels(stage=checked(stage), reason=checked(reason)).inc(n)

    def count_consent(self, purpose: str, decision: str, reason: str, n: int = 1) -> None:
        self.consent_decisions.labels(
            purpose=checked(purpose), decision=checked(decision), reason=checked(reason)
        ).inc(n)


# --- exporter ----------------------------------------------------------------------------


def _s(value: str | None) -> str:
    return value or ""


class LagCollector(Collector):
    """Renders the latest lag snapshot and statuses at scrape time (so series of partitions or
    members that went away disappear instead of going stale)."""

    def __init__(self, cluster_name: str) -> None:
        self._cluster = cluster_name
        self._lock = Lock()
        self._snapshot: LagSnapshot | None = None
        self._statuses: dict[str, GroupStatus] = {}
        self._last_update: float | None = None

    def update(self, snapshot: LagSnapshot, statuses: Iterable[GroupStatus]) -> None:
        with self._lock:
            self._snapshot = snapshot
            self._statuses = {s.group: s for s in statuses}
            self._last_update = time.time()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            snapshot, statuses, last = self._snapshot, dict(self._statuses), self._last_update
        c = self._cluster
        part_labels = list(PARTITION_LABELS)
        offset = GaugeMetricFamily(
            "kafka_consumergroup_group_offset",
            "Last committed offset of the group in this partition.",
            labels=part_labels,
        )
        lag = GaugeMetricFamily(
            "kafka_consumergroup_group_lag",
            "Log end offset minus committed offset (messages).",
            labels=part_labels,
        )
        lag_s = GaugeMetricFamily(
            "kafka_consumergroup_group_lag_seconds",
            "Age of the next unconsumed record (seconds).",
            labels=part_labels,
        )
        max_lag = GaugeMetricFamily(
            "kafka_consumergroup_group_max_lag",
            "Highest partition lag of the group (messages).",
            labels=["cluster_name", "group", "is_simple_consumer"],
        )
        max_lag_s = GaugeMetricFamily(
            "kafka_consumergroup_group_max_lag_seconds",
            "Highest partition lag of the group (seconds).",
            labels=["cluster_name", "group", "is_simple_consumer"],
        )
        sum_lag = GaugeMetricFamily(
            "kafka_consumergroup_group_sum_lag",
            "Total lag of the group (messages).",
            labels=["cluster_name", "group"],
        )
        topic_sum = GaugeMetricFamily(
            "kafka_consumergroup_group_topic_sum_lag",
            "Total lag of the group in one topic (messages).",
            labels=["cluster_name", "group", "topic"],
        )
        latest = GaugeMetricFamily(
            "kafka_partition_latest_offset",
            "Log end offset of the partition.",
            labels=["cluster_name", "topic", "partition"],
        )
        status = GaugeMetricFamily(
            "loom_consumergroup_status",
            "1 for the group's current (worst partition) status, Burrow's rules.",
            labels=["group", "status"],
        )
        if snapshot is not None:
            seen_tp: set[tuple[str, int]] = set()
            for g in snapshot.groups:
                per_topic: dict[str, int] = {}
                for p in g.partitions:
                    labels = [
                        c, g.group, p.topic, str(p.partition),
                        _s(p.host), _s(p.consumer_id), _s(p.client_id),
                    ]  # fmt: skip
                    if p.committed is not None:
                        offset.add_metric(labels, p.committed)
                    if p.lag is not None:
                        lag.add_metric(labels, p.lag)
                        per_topic[p.topic] = per_topic.get(p.topic, 0) + p.lag
                    if p.lag_seconds is not None:
                        lag_s.add_metric(labels, p.lag_seconds)
                    if p.end is not None and (p.topic, p.partition) not in seen_tp:
                        seen_tp.add((p.topic, p.partition))
                        latest.add_metric([c, p.topic, str(p.partition)], p.end)
                simple = str(g.is_simple).lower()
                max_lag.add_metric([c, g.group, simple], g.max_lag)
                max_lag_s.add_metric([c, g.group, simple], g.max_lag_seconds)
                sum_lag.add_metric([c, g.group], g.total_lag)
                for topic, total in sorted(per_topic.items()):
                    topic_sum.add_metric([c, g.group, topic], total)
        for group, st in sorted(statuses.items()):
            for value in STATUS_VALUES:
                status.add_metric([group, value.value], 1.0 if st.worst is value else 0.0)
        yield from (offset, lag, lag_s, max_lag, max_lag_s, sum_lag, topic_sum, latest, status)
        if last is not None:
            yield GaugeMetricFamily(
                "loom_lag_exporter_last_update_timestamp_seconds",
                "Unix time of the last successful poll.",
                value=last,
            )


@dataclass(frozen=True, slots=True)
class ExporterMetrics:
    registry: CollectorRegistry
    lag: LagCollector
    polls: Counter  # loom_lag_exporter_polls_total{result}
    poll_seconds: Histogram
    incomplete_listings: Counter  # loom_lag_exporter_incomplete_listings_total

    @classmethod
    def create(
        cls, registry: CollectorRegistry | None = None, cluster_name: str = "loom"
    ) -> ExporterMetrics:
        reg = registry if registry is not None else CollectorRegistry(auto_describe=True)
        collector = LagCollector(cluster_name)
        reg.register(collector)
        polls = Counter(
            "loom_lag_exporter_polls_total",
            "Lag polls, by result (ok, error).",
            ["result"],
            registry=reg,
        )
        for result in ("ok", "error"):  # at 0 from the start: an exporter that never read
            polls.labels(result=result)  # lag alerts too (LoomLagExporterBlind)
        return cls(
            registry=reg,
            lag=collector,
            polls=polls,
            poll_seconds=Histogram(
                "loom_lag_exporter_poll_seconds",
                "Duration of one lag poll.",
                buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
                registry=reg,
            ),
            incomplete_listings=Counter(
                "loom_lag_exporter_incomplete_listings_total",
                "Polls whose group listing lacked a broker's answer (groups of the last "
                "reading kept).",
                registry=reg,
            ),
        )


def label_sets(registry: CollectorRegistry) -> Mapping[str, list[dict[str, str]]]:
    """All label sets per sample name (used by the PII test)."""
    out: dict[str, list[dict[str, str]]] = {}
    for family in registry.collect():
        for sample in family.samples:
            out.setdefault(sample.name, []).append(dict(sample.labels))
    return out
