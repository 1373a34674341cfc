"""Issue 5's end-to-end scenarios, through real worker processes on real Kafka and Redis."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson
import pytest
from confluent_kafka import KafkaException
from e2e_harness import Loom, metric

from resolvers.claims import Entry
from resolvers.pipeline import LANES
from streams.redis_keys import Keys

pytestmark = pytest.mark.e2e

CONSENT = {"analytics": True, "personalization": True, "marketing": True, "ads": False}


def ev(event_id: str, type_: str, at: str, ids: dict[str, str], **fields: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": type_,
        "channel": fields.pop("channel", "web"),
        "occurred_at": at,
        "region": "NO",
        "identifiers": ids,
        "consent": CONSENT,
        **fields,
    }


def order(
    event_id: str,
    at: str,
    ids: dict[str, str],
    *,
    type_: str = "pos_sale",
    channel: str = "pos",
    location: str = "oslo-1",
    sku: str = "SKU-1",
    qty: int = 1,
    total: str = "100.00",
) -> dict[str, Any]:
    return ev(
        event_id,
        type_,
        at,
        ids,
        channel=channel,
        order={
            "order_id": f"o-{event_id}",
            "total": total,
            "currency": "NOK",
            "payment_method": "card",
            "location_id": location,
            "lines": [{"sku": sku, "quantity": qty, "unit_price": total, "category": "shoes"}],
        },
    )


def journey(n: str) -> list[dict[str, Any]]:
    """Anonymous browsing, signup, login, POS purchase with loyalty id, return."""
    anon, email, cid, loy = f"dev-{n}", f"Person.{n}@Example.com", f"C-{n}", f"L-{n}"
    return [
        ev(
            f"{n}-1",
            "page_view",
            "2026-11-01T09:00:00+01:00",
            {"anonymous_id": anon},
            properties={"category": "shoes"},
        ),
        ev(
            f"{n}-2",
            "signup",
            "2026-11-01T09:05:00+01:00",
            {"anonymous_id": anon, "email": f"  {email} "},
        ),
        ev(
            f"{n}-3",
            "login",
            "2026-11-02T19:00:00+01:00",
            {"email": email.lower(), "customer_id": cid},
            channel="app",
        ),
        order(
            f"{n}-4",
            "2026-11-03T12:00:00+01:00",
            {"loyalty_id": loy, "customer_id": cid},
            total="500.00",
        ),
        ev(
            f"{n}-5",
            "order_returned",
            "2026-11-05T12:00:00+01:00",
            {"loyalty_id": loy},
            channel="pos",
            order={
                "order_id": f"o-{n}-4",
                "total": "500.00",
                "currency": "NOK",
                "location_id": "oslo-1",
                "lines": [{"sku": "SKU-1", "quantity": 1, "restock": True}],
            },
        ),
    ]


@pytest.mark.parametrize(
    "loom", ["plain", pytest.param("secured", marks=pytest.mark.secured)], indirect=True
)
def test_journey_ends_in_exactly_one_profile(loom: Loom) -> None:
    """Also on the secured servers: workers over SASL_SSL and TLS, as an ACL user."""
    loom.start_worker()
    loom.produce(journey("a"))
    loom.wait_idle()
    [p] = loom.profiles().values()
    assert sorted(p["identifiers"]) == ["anonymous_id", "customer_id", "email", "loyalty_id"]
    assert p["identifiers"]["email"] == ["person.a@example.com"]
    assert p["orders_in_store"] == 1
    assert p["revenue"] == {"NOK": "500.00"}
    assert p["returns"]["count"] == 1
    assert set(p["channels"]) == {"web", "app", "pos"}
    # announced: profile changes on Kafka (compacted topic) and on the Redis stream
    changes = loom.topic_records(loom.settings.topics.profile_changes)
    assert {m.key().decode() for m in changes} >= {p["profile_id"]}
    assert loom.redis.xlen(f"{loom.root}:changes:profiles") > 0
    # a worker alone in its lane claims nothing (LOOM_COMMIT_CLAIMS=auto, ADR 0040)
    keys = Keys(loom.settings.redis_prefix)
    assert loom.redis.exists(keys.claims("profiles"), keys.claims("inventory")) == 0
    # no secret of the deployment (passwords, the salt) in what the workers logged
    logs = loom.logs()
    assert [secret for secret in loom.settings.secrets() if secret in logs] == []


def test_a_worker_collects_its_cyclic_garbage_between_batches(
    loom: Loom, free_ports: Callable[[int], list[int]]
) -> None:
    """``LOOM_GC_FULL_INTERVAL_S`` (streams.gc_policy) reaches the lane loop: with a tiny
    interval a full collection follows the worker's batches (``/metrics`` counts them), and
    the profile is what it always is."""
    [port] = free_ports(1)
    env = {"LOOM_GC_FULL_INTERVAL_S": "0.001", "LOOM_WEB_PORT": str(port)}
    loom.start_worker("profiles", env=env)
    loom.produce(journey("g"))
    loom.wait_idle("profiles")
    [p] = loom.profiles().values()
    assert p["orders_in_store"] == 1
    assert p["revenue"] == {"NOK": "500.00"}
    assert metric(port, "loom_gc_full_collection_seconds_count") >= 1
    # the lane's saturation: its batches' wall time, of which its own thread's CPU a part
    busy = metric(port, "loom_lane_busy_seconds_total", lane="profiles")
    cpu = metric(port, "loom_lane_cpu_seconds_total", lane="profiles")
    assert 0 < cpu <= busy


def test_duplicated_deliveries_change_nothing(loom: Loom) -> None:
    loom.start_worker()
    events = journey("b") + journey("c")
    loom.produce(events)
    loom.wait_idle()
    before = loom.profiles()
    stock_before = loom.stock("SKU-1")
    stats_before = loom.stats()
    assert len(before) == 2
    loom.produce(events)  # every event delivered again
    loom.wait_idle()
    assert loom.profiles() == before
    assert loom.stock("SKU-1") == stock_before
    assert loom.stats() == stats_before  # no event counted twice


def test_killed_and_restarted_worker_loses_nothing_and_counts_nothing_twice(loom: Loom) -> None:
    customers = 300
    events = [
        order(f"k{i}", "2026-11-03T12:00:00+01:00", {"loyalty_id": f"LK-{i}"}, sku="SKU-K")
        for i in range(customers)
    ]
    workers = loom.start_worker()
    profiles_worker = workers[list(LANES).index("profiles")]
    loom.produce(events[:100])
    sent = 100
    # Kill only once both lanes have processed records and the profiles group has processed
    # more than it committed (every event here creates exactly one profile, so
    # profiles_created counts processed records), so that the restart has to redeliver work
    # already in Redis. A lane commits its offsets right after each batch, so the worker is
    # frozen (SIGSTOP) the moment a new batch shows in Redis, until it is caught between its
    # Redis commit and its offset commit.
    deadline = time.monotonic() + 120
    created = loom.stats().get("profiles_created", 0)
    while True:
        if created >= sent - 5 and sent < len(events) - 50:
            loom.produce(events[sent : sent + 5])
            sent += 5
        before = created
        spin_until = time.monotonic() + 2
        while created == before and time.monotonic() < spin_until:
            created = loom.stats().get("profiles_created", 0)
        profiles_worker.send_signal(signal.SIGSTOP)
        created = loom.stats().get("profiles_created", 0)
        # read after `created`: a commit in between can hide uncommitted work, never invent it
        with contextlib.suppress(KafkaException):  # new topics may still be electing leaders
            committed = sent - loom.lag("profiles")
            if created > committed and loom.stock("SKU-K") is not None:
                break
        profiles_worker.send_signal(signal.SIGCONT)
        if time.monotonic() > deadline:
            pytest.fail(
                f"no uncommitted progress to kill after 120 s (sent {sent}, processed "
                f"{created}):\n{loom.logs()}"
            )
    loom.stop(workers, signal.SIGKILL)  # a crash of both lanes: no graceful commit
    loom.produce(events[sent:])
    loom.start_worker()
    loom.wait_idle()
    profiles = loom.profiles()
    assert len(profiles) == customers
    assert all(p["orders_in_store"] == 1 for p in profiles.values())
    stock = loom.stock("SKU-K")
    assert stock is not None
    assert stock["locations"]["oslo-1"]["on_hand"] == -customers


#: A batch through the scripts, ``commit.lua`` and ``load.lua`` (the default: without Lua,
#: ADRs 0021, 0022, 0023).
WITH_LUA: Final = {"LOOM_REDIS_COMMIT": "script", "LOOM_REDIS_LOAD": "script"}


@pytest.mark.parametrize(
    "loom", ["plain", pytest.param("secured", marks=pytest.mark.secured)], indirect=True
)
@pytest.mark.parametrize(
    ("env", "command"), [(None, "watch"), (WITH_LUA, "evalsha")], ids=["default", "with Lua"]
)
def test_two_workers_in_one_group_build_the_same_profiles_as_one(
    loom: Loom, env: Mapping[str, str] | None, command: str
) -> None:
    """Two real workers of one group, by default (a batch without Lua) and with the scripts
    (secured: Redis over TLS as the README's ACL user, so its command list covers both): the
    same people, and the commits went the chosen way (``WATCH``, or ``EVALSHA``)."""
    before = _command_calls(loom, command)
    _two_workers_build_the_same_profiles_as_one(loom, env=env)
    assert _command_calls(loom, command) > before


def _command_calls(loom: Loom, command: str) -> int:
    stats: dict[str, Any] = loom.redis.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def _two_workers_build_the_same_profiles_as_one(
    loom: Loom, env: Mapping[str, str] | None = None, *, started: bool = False
) -> None:
    # conflict-free identity graph: person i is seen through 3 identifiers over 4 events,
    # and each event carries a different pair, so records of one person hit many partitions
    events: list[dict[str, Any]] = []
    for i in range(150):
        a, e, c = {"anonymous_id": f"d{i}"}, {"email": f"p{i}@x.no"}, {"customer_id": f"C{i}"}
        events += [
            ev(f"t{i}-1", "page_view", "2026-11-01T09:00:00+01:00", a),
            ev(f"t{i}-2", "signup", "2026-11-01T09:01:00+01:00", a | e),
            ev(f"t{i}-3", "login", "2026-11-01T09:02:00+01:00", e | c),
            ev(f"t{i}-4", "login", "2026-11-01T09:03:00+01:00", c | a),
        ]
    if not started:
        loom.start_worker(env=env)
        loom.start_worker(env=env)
    loom.produce(events)
    loom.wait_idle()
    expected = {
        frozenset({f"anonymous_id:d{i}", f"email:p{i}@x.no", f"customer_id:C{i}"})
        for i in range(150)
    }
    assert loom.partition() == expected


def test_two_workers_sharing_the_lane_claim_what_they_compute(
    loom: Loom, free_ports: Callable[[int], list[int]]
) -> None:
    """``LOOM_COMMIT_CLAIMS=auto`` (ADR 0040): once the group split the partitions, each
    worker claims its parts in the lane's claims hash, releases them with its commits, and
    counts the parts it deferred; a worker that stops removes its entry."""
    ports = free_ports(2)
    workers = [loom.start_worker("profiles", env={"LOOM_WEB_PORT": str(p)})[0] for p in ports]
    loom.start_worker("inventory")
    # both hold partitions: the group has split the topic between them
    loom.wait_for(lambda: all(loom.health(p)[0] == 200 for p in ports), "both workers ready")
    _two_workers_build_the_same_profiles_as_one(loom, started=True)
    key = Keys(loom.settings.redis_prefix).claims("profiles")
    claims = loom.redis.hgetall(key)
    assert len(claims) == 2
    entries = [Entry.decode(v) for v in claims.values()]
    assert all(e is not None and not e.active and e.previous for e in entries)
    for port in ports:  # reported (whether these small batches met is the scheduler's)
        assert metric(port, "loom_deferred_parts_total") >= 0
    loom.stop(workers[:1])
    loom.wait_for(lambda: loom.redis.hlen(key) == 1, "the stopped worker's entry removed")


def test_bad_record_flood_goes_to_the_dlq_while_good_records_flow(loom: Loom) -> None:
    loom.start_worker()
    bad = [
        b"{not json",
        b"\xff\xfe\x00",
        orjson.dumps({"event_id": "x", "type": "nope"}),
        orjson.dumps(
            {"event_id": "y", "type": "page_view", "channel": "web", "occurred_at": "yesterday"}
        ),
    ] * 100
    good = journey("g")
    loom.produce([*bad[:200], *good, *bad[200:]])
    loom.wait_idle()
    assert len(loom.profiles()) == 1
    dlq = loom.topic_records(loom.settings.topics.dlq)
    assert len(dlq) == len(bad)
    headers = dict(dlq[0].headers())
    assert headers["loom.stage"] == b"parse"
    assert headers["loom.reason"] in {
        b"malformed_json",
        b"invalid_utf8",
        b"unknown_type",
        b"schema_violation",
    }
    assert headers["loom.source_topic"] == loom.settings.topics.raw.encode()
    assert {dlq_msg.value() for dlq_msg in dlq} == set(bad)  # original bytes, nothing lost
    assert loom.stats()["dlq"] == len(bad)


def test_operator_erasure_with_loom_erase(loom: Loom) -> None:
    loom.start_worker()
    loom.produce(journey("z"))
    loom.wait_idle()
    assert len(loom.profiles()) == 1
    done = loom.cli("erase", "email: Person.Z@example.com ", "--wait", "60")
    assert done.returncode == 0, done.stderr
    assert "erased:" in done.stdout
    assert "person.z" not in done.stdout.lower() + done.stderr.lower()  # no PII echoed
    loom.wait_idle()
    assert loom.profiles() == {}
    assert loom.stats()["erasures"] == 1


def test_loom_erase_wait_reads_a_local_phone_number_with_the_default_region(loom: Loom) -> None:
    """``loom erase phone:<local number> --wait`` with LOOM_DEFAULT_REGION set: the worker
    erases by the number in the default region, and the waiting reader must look it up in
    the same region (it used to reject the local number and crash)."""
    loom.env["LOOM_DEFAULT_REGION"] = "NO"
    loom.start_worker()
    loom.produce(
        [
            ev(
                "ph-1",
                "signup",
                "2026-11-01T09:05:00+01:00",
                {"phone": "+47 912 34 567", "email": "ph@example.no"},
            )
        ]
    )
    loom.wait_idle()
    assert len(loom.profiles()) == 1
    done = loom.cli("erase", "phone:912 34 567", "--wait", "60")
    assert done.returncode == 0, done.stderr
    assert "erased:" in done.stdout
    loom.wait_idle()
    assert loom.profiles() == {}
