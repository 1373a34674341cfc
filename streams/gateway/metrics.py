"""Prometheus metrics of ``loom gateway`` (served on ``LOOM_GATEWAY_OPS_PORT``).

Labels are closed sets: the front door (``segment``, ``shopify``), the answer's code (``ok`` or
the error code of :mod:`streams.gateway.errors`), configured source and shop names, outcomes,
the contract's reason codes and the Shopify topics Loom maps. Nothing a client sends becomes a
label value except through those sets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Request latency buckets: 1 ms to 10 s (Kafka's ack with acks=all is inside).
REQUEST_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
#: What happened to an event of a request: ``accepted`` (acknowledged on the raw topic),
#: ``invalid`` (acknowledged on the DLQ, reported in the response), ``refused`` (the request
#: got a 429 or 503: the client sends it again).
EVENT_OUTCOMES: tuple[str, ...] = ("accepted", "invalid", "refused")
#: What happened to a Shopify webhook: ``mapped`` (its touchpoints acknowledged), ``ignored``
#: (acknowledged, nothing to do: e.g. a POS sale's fulfilment), ``invalid`` (dead-lettered),
#: ``duplicate`` (a retry of one already acknowledged), ``refused`` (429/503: Shopify retries).
WEBHOOK_OUTCOMES: tuple[str, ...] = ("mapped", "ignored", "invalid", "duplicate", "refused")


@dataclass(frozen=True, slots=True)
class GatewayMetrics:
    registry: CollectorRegistry
    requests: Counter  # loom_gateway_requests_total{front_door,code}
    request_seconds: Histogram  # loom_gateway_request_seconds{front_door}
    events: Counter  # loom_gateway_events_total{front_door,source,outcome}
    unauthorized: Counter  # loom_gateway_unauthorized_total{front_door}
    dlq_records: Counter  # loom_dlq_records_total{stage,reason}
    in_flight: Gauge  # loom_gateway_in_flight_events
    webhooks: Counter  # loom_gateway_shopify_webhooks_total{shop,topic,outcome}

    @classmethod
    def create(
        cls, registry: CollectorRegistry, in_flight: Callable[[], float] | None = None
    ) -> GatewayMetrics:
        gauge = Gauge(
            "loom_gateway_in_flight_events",
            "Events produced to Kafka and not yet acknowledged.",
            registry=registry,
        )
        if in_flight is not None:
            gauge.set_function(in_flight)
        return cls(
            registry=registry,
            requests=Counter(
                "loom_gateway_requests",
                "HTTP requests by front door and answer code (ok or the error code).",
                ["front_door", "code"],
                registry=registry,
            ),
            request_seconds=Histogram(
                "loom_gateway_request_seconds",
                "Request latency, body read to answer (Kafka's ack included).",
                ["front_door"],
                buckets=REQUEST_BUCKETS,
                registry=registry,
            ),
            events=Counter(
                "loom_gateway_events",
                "Events received, by front door, source and outcome (accepted, invalid, refused).",
                ["front_door", "source", "outcome"],
                registry=registry,
            ),
            unauthorized=Counter(
                "loom_gateway_unauthorized",
                "Requests with a missing or unknown write key.",
                ["front_door"],
                registry=registry,
            ),
            dlq_records=Counter(
                "loom_dlq_records",
                "Records dead-lettered, by stage and reason.",
                ["stage", "reason"],
                registry=registry,
            ),
            in_flight=gauge,
            webhooks=Counter(
                "loom_gateway_shopify_webhooks",
                "Shopify webhooks by shop, topic (`other` if not mapped) and outcome.",
                ["shop", "topic", "outcome"],
                registry=registry,
            ),
        )
