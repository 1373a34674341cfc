"""The consent audit (``resolvers.stages.audit``, ADR 0011) through the whole profiles lane:
an event's jurisdiction-default denials go into one record per batch (committed as one part)
and decision list, anything else into a record of its own, and every event's decisions can be
read back. That a batch committed in parts audits the same rows: test_commit_parts."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest
from builders import make_context
from pipeline_helpers import record as raw_record

from resolvers.effects import Count, Measure
from resolvers.pipeline import PROFILES, BatchResult, run_batch
from resolvers.stages import audit
from resolvers.store import InMemoryStore, Kind
from schemas.normalize import DEFAULT

T0 = "2026-11-20T10:00:00+01:00"
T1 = "2026-11-20T11:00:00+01:00"
TOPIC = "consent.audit"


def ev(event_id: str, ids: dict[str, str], region: str | None, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": fields.pop("type", "product_viewed"),
        "channel": "web",
        "occurred_at": fields.pop("at", T0),
        "identifiers": ids,
        "region": region,
        "properties": {"category": "bags"},
        **fields,
    }


def run_one_part(events: list[dict[str, Any]], store: InMemoryStore) -> BatchResult:
    """One batch through the profiles lane, committed as one part."""
    batch = [raw_record(e, i) for i, e in enumerate(events)]
    return run_batch(
        batch, store, make_context, max_bytes=64 * 1024, config=DEFAULT, lane=PROFILES, max_parts=1
    )


def records(store: InMemoryStore) -> list[tuple[str | None, dict[str, Any]]]:
    return [
        (r.key.decode() if r.key is not None else None, orjson.loads(r.value))
        for r in store.outbox
        if r.topic == TOPIC and r.value is not None
    ]


def decisions_by_event(store: InMemoryStore) -> dict[str, set[tuple[str, str, str, str]]]:
    out: dict[str, set[tuple[str, str, str, str]]] = {}
    for _, record in records(store):
        for row in audit.rows(record):
            out.setdefault(row["event_id"], set()).add(
                (row["purpose"], row["decision"], row["reason"], row["source"])
            )
    return out


def profile_ids(store: InMemoryStore) -> dict[str, str]:
    """anonymous id -> profile id."""
    out = {}
    for ref, e in store.entities.items():
        if ref.kind is Kind.PROFILE and "d" in e.fields:
            snapshot = orjson.loads(e.fields["d"])
            for anon in snapshot["identifiers"].get("anonymous_id", []):
                out[anon] = ref.name
    return out


def default(*purposes: str) -> set[tuple[str, str, str, str]]:
    return {(p, "deny", "region_default", "default") for p in purposes}


US_DEFAULT = default("marketing", "ads")
OPT_IN_DEFAULT = default("analytics", "personalization", "marketing", "ads")


def test_default_denials_are_grouped_per_batch_and_the_rest_kept_per_event(
    store: InMemoryStore,
) -> None:
    result = run_one_part(
        [
            ev("us-1", {"anonymous_id": "a-us"}, "US"),
            ev("us-2", {"anonymous_id": "a-us"}, "US", at=T1),
            ev("us-3", {"anonymous_id": "b-us"}, "US"),
            ev("de-1", {"anonymous_id": "a-de"}, "DE"),
            ev("xx-1", {"anonymous_id": "a-xx"}, None),
            ev("gpc-1", {"anonymous_id": "c-us"}, "US", gpc=True),
            ev("ok-1", {"anonymous_id": "d-us"}, "US", consent={"marketing": True, "ads": True}),
        ],
        store,
    )
    found = decisions_by_event(store)
    assert found == {
        "us-1": US_DEFAULT,
        "us-2": US_DEFAULT,
        "us-3": US_DEFAULT,
        "de-1": OPT_IN_DEFAULT,
        "xx-1": OPT_IN_DEFAULT,  # no region: nothing but necessary
        "gpc-1": default("marketing") | {("ads", "deny", "gpc", "gpc")},
    }  # ok-1 was denied nothing: not audited
    pid = profile_ids(store)
    per_batch = [(key, r) for key, r in records(store) if r.get("kind") == "region_default"]
    # one record per distinct list of decisions, no key, listing its events with their owner
    assert sorted(sorted(e for e, _ in r["events"]) for _, r in per_batch) == [
        ["de-1", "xx-1"],
        ["us-1", "us-2", "us-3"],
    ]
    assert all(key is None for key, _ in per_batch)
    owners = {e: p for _, r in per_batch for e, p in r["events"]}
    assert owners == {
        "us-1": pid["a-us"],
        "us-2": pid["a-us"],
        "us-3": pid["b-us"],
        "de-1": pid["a-de"],
        "xx-1": pid["a-xx"],
    }
    # a non-default decision keeps the event's whole record, keyed by its profile
    [(key, own)] = [(key, r) for key, r in records(store) if "kind" not in r]
    assert (key, own["event_id"], own["profile_id"]) == (pid["c-us"], "gpc-1", pid["c-us"])
    assert {r["policy_version"] for _, r in records(store)} == {"loom-consent-2025.1"}
    # the counters still count every decision
    denied = Counter(
        {c: n for c, n in result.counts.items() if c.measure is Measure.CONSENT_DENIED}
    )
    assert denied == Counter(
        {
            Count(Measure.CONSENT_DENIED, "marketing", "region_default"): 6,
            Count(Measure.CONSENT_DENIED, "ads", "region_default"): 5,
            Count(Measure.CONSENT_DENIED, "ads", "gpc"): 1,
            Count(Measure.CONSENT_DENIED, "analytics", "region_default"): 2,
            Count(Measure.CONSENT_DENIED, "personalization", "region_default"): 2,
        }
    )


def test_a_revocation_is_audited_per_event_with_its_purge(store: InMemoryStore) -> None:
    ids = {"anonymous_id": "a-rv"}
    granted = ev("g-1", ids, "US", type="consent_updated", consent={"marketing": True})
    run_one_part([granted], store)
    denied = ev("r-1", ids, "US", at=T1, type="consent_updated", consent={"marketing": False})
    run_one_part([denied], store)
    assert decisions_by_event(store)["r-1"] == {
        ("marketing", "deny", "no_consent", "consent_updated"),
        ("marketing", "purge", "revoked", "consent_updated"),
        ("ads", "deny", "region_default", "default"),
    }
    [(key, record)] = [(k, r) for k, r in records(store) if r.get("event_id") == "r-1"]
    assert key == record["profile_id"] == profile_ids(store)["a-rv"]


def test_a_large_batch_splits_its_default_record(
    store: InMemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit, "EVENTS_PER_RECORD", 2)
    run_one_part([ev(f"us-{i}", {"anonymous_id": f"a-{i}"}, "US") for i in range(5)], store)
    sizes = sorted(len(r["events"]) for _, r in records(store))
    assert sizes == [1, 2, 2]
    assert decisions_by_event(store) == {f"us-{i}": US_DEFAULT for i in range(5)}
