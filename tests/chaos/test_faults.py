"""Faults of issue 13 reproduced against real Kafka, Redis and worker processes.

Each test sends the same good input as the clean reference run (``conftest.reference``), plus
the bad records it is about, injects its fault, and compares what is left with the reference:
the event ids each lane processed, every person's identifiers with their order counts and
revenue, every stock position, the final level of every position on ``inventory.changes``
(:meth:`Picture.diff` is empty), the DLQ holding exactly the bad records (deduplicated by
source offset: it is at least once), and the workers alive or stopped as designed.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import time
from typing import Any

import orjson
import pytest
import redis
from chaos_harness import Chaos, Picture, dlq_key
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource
from local_infra import LocalInfra, pid_alive
from test_stock_routing_e2e import routed_lag

from resolvers.claims import Entry
from streams.procinfo import listening_pid
from streams.redis_store import processed_ids

pytestmark = pytest.mark.chaos


def page_view(event_id: str, device: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "page_view",
        "channel": "web",
        "occurred_at": "2024-05-01T09:00:00+00:00",
        "region": "NO",
        "identifiers": {"anonymous_id": device},
    }


def cash_sale(event_id: str, sku: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "pos_sale",
        "channel": "pos",
        "occurred_at": "2024-05-01T09:00:00+00:00",
        "order": {
            "order_id": f"o-{event_id}",
            "total": "10.00",
            "currency": "NOK",
            "location_id": "chaos-store",
            "lines": [{"sku": sku, "quantity": 1, "unit_price": "10.00"}],
        },
    }


def assert_same(got: Picture, reference: Picture, **expected_extra_seen: set[str]) -> None:
    """``got`` equals the reference, except event ids a lane processed that the reference has
    no record of (bad or extra records it was sent on purpose)."""
    extra = {
        lane: got.seen.get(lane, frozenset()) - reference.seen.get(lane, frozenset())
        for lane in ("profiles", "inventory")
    }
    assert extra == {lane: expected_extra_seen.get(lane, set()) for lane in extra}
    trimmed = Picture(
        seen={lane: ids - extra[lane] for lane, ids in got.seen.items()},
        people=got.people,
        stock={sku: pos for sku, pos in got.stock.items() if not sku.startswith("CHAOS")},
        levels={k: v for k, v in got.levels.items() if not k.startswith("CHAOS")},
        dlq=got.dlq,
    )
    assert trimmed.diff(reference) == {}


def lane_state(c: Chaos, proc: Any) -> str:
    """The worker's lane state (``loom_lane_state``), "" while it does not answer."""
    states = c.metric(proc, "loom_lane_state")
    return next((state for (_lane, state), v in states.items() if v == 1), "")


# --- 1. errors in batch processing ------------------------------------------------------------


def test_a_bug_that_goes_away_loses_nothing(
    chaos: Any, good_input: list[Any], reference: Picture
) -> None:
    """Before: one ValueError in a batch made faust skip it (587 of 10,000 events lost)."""
    c = chaos()
    profiles = c.start_lane("profiles", fault={"stage": "observe", "first_calls": 3})
    c.start_lane("inventory", fault={"stage": "inventory", "first_calls": 2})
    c.produce(good_input)
    c.wait_idle()
    got = c.picture()
    assert_same(got, reference)
    assert got.dlq == {}  # bisecting found no record that fails on its own
    assert profiles.poll() is None


def test_poison_records_are_bisected_out_dead_lettered_and_the_rest_applied(
    chaos: Any, good_input: list[Any], reference: Picture
) -> None:
    bad_profiles = [page_view(f"poison-p{i}", f"chaos-dev-{i}") for i in range(2)]
    bad_inventory = cash_sale("poison-i0", "CHAOS-SKU")
    c = chaos()
    c.start_lane("profiles", fault={"stage": "observe", "poison": ["poison-p0", "poison-p1"]})
    inventory = c.start_lane("inventory", fault={"stage": "inventory", "poison": ["poison-i0"]})
    c.produce(
        [*good_input[:1000], bad_profiles[0], bad_inventory, *good_input[1000:], bad_profiles[1]]
    )
    c.wait_idle()
    got = c.picture()
    # the cash sale is fine for the profiles lane (no identifiers: no profile)
    assert_same(got, reference, profiles={"poison-i0"})
    expected = {f"id:{e['event_id']}": "processing_error" for e in [*bad_profiles, bad_inventory]}
    assert got.dlq == expected
    assert c.metric(inventory, "loom_poison_records_total") == {("inventory", "inventory"): 1.0}
    assert lane_state(c, inventory) == "running"


@pytest.mark.chaos_full
def test_a_systemic_bug_stops_the_lane_uncommitted_and_a_fixed_worker_catches_up(
    chaos: Any, good_input: list[Any], reference: Picture
) -> None:
    c = chaos()
    c.start_lane("profiles")
    broken = c.start_lane("inventory", fault={"stage": "inventory", "every": True},
                          LOOM_POISON_LIMIT="3")  # fmt: skip
    c.produce(good_input)
    c.wait_for(lambda: lane_state(c, broken) == "stopped", "inventory lane stopped")
    assert c.health(c.port[broken])[0] == 503
    assert c.metric(broken, "loom_lane_stops_total") == {("inventory", "circuit_open"): 1.0}
    assert c.lag("inventory") == len(good_input)  # nothing committed past the failing batch
    assert c.dlq() == {}  # nothing dead-lettered: the batch is not skipped
    broken.send_signal(signal.SIGTERM)
    c.expect_exit(broken, 3, within_s=10)
    c.start_lane("inventory")  # the fix is deployed
    c.wait_idle()
    assert_same(c.picture(), reference)


# --- 1b. Redis refusing writes: failover (READONLY), maxmemory (OOM) -------------------------


def test_redis_refusing_writes_is_waited_out_and_reported(
    chaos: Any, good_input: list[Any], reference: Picture
) -> None:
    c = chaos()
    profiles = c.start_lane("profiles")
    c.start_lane("inventory")
    c.wait_ready(profiles)
    admin = redis.Redis.from_url(c.server.url)
    (dead,) = c._ports(1)
    half = len(good_input) // 2
    c.produce(good_input[:half])
    admin.execute_command("REPLICAOF", "127.0.0.1", str(dead))  # a failover left it a replica
    c.wait_for(lambda: lane_state(c, profiles) == "retrying", "retrying on READONLY")
    status, body = c.health(c.port[profiles])
    assert status == 503
    assert "lane" in body["failing"]
    retries = c.metric(profiles, "loom_batch_retries_total")
    assert retries.get(("RedisUnavailableError", "profiles", "batch"), 0) >= 1, retries
    admin.execute_command("REPLICAOF", "NO", "ONE")
    c.wait_for(lambda: lane_state(c, profiles) == "running", "running again")
    old = admin.config_get("maxmemory")["maxmemory"]
    admin.config_set("maxmemory", "1")  # maxmemory reached: OOM on every write
    c.produce(good_input[half:])
    c.wait_for(lambda: lane_state(c, profiles) == "retrying", "retrying on OOM")
    admin.config_set("maxmemory", old)
    c.wait_idle()
    assert_same(c.picture(), reference)


# --- 2. Redis restarts -------------------------------------------------------------------------


@pytest.mark.chaos_full
def test_a_redis_crash_with_aof_loses_nothing(
    chaos: Any, good_input: list[Any], reference: Picture
) -> None:
    c = chaos(appendonly=True)
    profiles = c.start_lane("profiles")
    c.start_lane("inventory")
    c.produce(good_input)
    c.wait_for(lambda: c.stats().get("profiles_created", 0) > 0, "processing")
    c.server.restart(down_s=2)  # SIGKILL, two seconds down, start from the AOF
    c.wait_idle()
    assert_same(c.picture(), reference)
    assert profiles.poll() is None


def test_a_redis_restart_without_persistence_is_detected_and_rebuild_restores_everything(
    chaos: Any, good_input: list[Any], reference: Picture
) -> None:
    """Before: state silently gone (5,238 profiles became 1,209, stock positions wrong) while
    the workers carried on with lag 0 and /readyz 200."""
    c = chaos(appendonly=False)
    profiles = c.start_lane("profiles")
    inventory = c.start_lane("inventory")
    half = len(good_input) // 2
    c.produce(good_input[:half])
    c.wait_idle()
    c.server.restart(down_s=0.5)  # comes back empty
    c.produce(good_input[half:])
    for proc in (profiles, inventory):  # the next batch finds the generation gone
        c.wait_for(lambda p=proc: lane_state(c, p) == "stopped", "lane stopped")
        assert c.health(c.port[proc])[0] == 503
    assert "loom rebuild --lane profiles" in c.logs()
    kinds = {k.split(b":")[2] for k in c.redis.keys(f"{c.root}:*")}
    assert kinds <= {b"outbox"}  # nothing written into the empty Redis, not even a marker
    for proc in (profiles, inventory):
        proc.send_signal(signal.SIGTERM)
        c.expect_exit(proc, 3, within_s=10)
    for lane in ("profiles", "inventory"):
        rebuilt = c.cli("rebuild", "--lane", lane, timeout=120)
        assert rebuilt.returncode == 0, rebuilt.stderr
    c.start_lane("profiles")
    c.start_lane("inventory")
    c.wait_idle()
    assert_same(c.picture(), reference)


# --- 3. the outbox relay ------------------------------------------------------------------------


@pytest.mark.chaos_full
def test_the_relay_survives_nogroup_and_oom_and_delivers_every_change(
    chaos: Any, good_input: list[Any], reference: Picture
) -> None:
    """Before: NOGROUP crashed the profiles worker; OOM stopped the inventory relay silently."""
    c = chaos()
    profiles = c.start_lane("profiles")
    inventory = c.start_lane("inventory")
    admin = redis.Redis.from_url(c.server.url)
    c.produce(good_input[:800])
    c.wait_idle()
    admin.xgroup_destroy(f"{c.root}:outbox", "relay")  # what a restart without data leaves
    c.produce(good_input[800:1600])
    c.wait_idle()
    old = admin.config_get("maxmemory")["maxmemory"]
    admin.config_set("maxmemory", "1")  # the relays' acknowledgements are refused too
    c.produce(good_input[1600:])
    c.wait_for(lambda: lane_state(c, inventory) == "retrying", "retrying on OOM")
    admin.config_set("maxmemory", old)
    c.wait_idle()
    assert_same(c.picture(), reference)
    for proc in (profiles, inventory):
        assert proc.poll() is None
        assert c.metric(proc, "loom_relay_failing") == {(): 0.0}
        c.wait_for(lambda p=proc: c.metric(p, "loom_outbox_length") == {(): 0.0}, "gauge 0")


def pending(client: redis.Redis, outbox: str) -> int:
    """Outbox entries read by a relay and not acknowledged (0 before the group exists)."""
    try:
        return int(client.xpending(outbox, "relay")["pending"])
    except redis.ResponseError:  # NOGROUP: no relay has started yet
        return 0


@pytest.mark.chaos_full
def test_relay_processes_killed_while_holding_entries_lose_none_of_them(
    chaos: Any, good_input: list[Any], reference: Picture
) -> None:
    """ADR 0039: workers with ``LOOM_WORKER_RELAY=false`` and ``loom relay`` processes. Each
    relay is killed (SIGKILL) while it holds outbox entries it read and has not acknowledged;
    the relay started after it that takes the outbox's lease, once the dead one's expired
    (``LOOM_RELAY_LEASE_S``, ADR 0043), claims them first and every change arrives."""
    c = chaos()
    small = {"LOOM_WORKER_RELAY": "false", "LOOM_BATCH_SIZE": "20"}  # many outbox entries
    c.start_lane("profiles", **small)
    c.start_lane("inventory", **small)
    c.produce(good_input)
    c.wait_for(lambda: c.lag() == 0, "committed", timeout=180)
    outbox = f"{c.root}:outbox"
    assert c.outbox_length() > 0  # the workers relayed none of it
    relay = c.start_lane_relay("profiles")  # both lanes share one Redis here: one outbox
    deadline = time.monotonic() + 60
    while True:  # until it is frozen holding entries (a tight poll: a pass is short)
        assert time.monotonic() < deadline, c.logs()
        if not pending(c.redis, outbox):
            continue
        relay.send_signal(signal.SIGSTOP)  # it acknowledges nothing more
        if pending(c.redis, outbox):
            break
        relay.send_signal(signal.SIGCONT)  # it acknowledged them in between: again
    relay.kill()
    relay.wait(10)
    c.workers.remove(relay)
    held = {
        x["name"]: x["pending"] for x in c.redis.xinfo_consumers(outbox, "relay") if x["pending"]
    }
    assert held, "the killed relay held no entry"
    c.start_lane_relay("profiles")
    c.start_lane_relay("inventory")
    c.wait_idle(timeout=180)  # the outbox drained: the dead relay's entries claimed too
    assert_same(c.picture(), reference)
    left = {x["name"]: x["pending"] for x in c.redis.xinfo_consumers(outbox, "relay")}
    assert all(left[name] == 0 for name in held)


@pytest.mark.chaos_full
def test_a_worker_frozen_holding_a_claim_stalls_nobody_and_loses_nothing(
    chaos: Any, good_input: list[Any], reference: Picture
) -> None:
    """ADR 0040: two profiles workers share the lane and claim what they compute. One is
    frozen (SIGSTOP) while its claim is active, then killed: the other keeps committing (what
    meets the frozen claim waits at most 32 rounds, then is computed), takes the partitions
    over when the group drops the frozen member, and the picture equals the clean
    reference."""
    c = chaos()
    small = {"LOOM_BATCH_SIZE": "20"}  # many batches, many claims
    frozen = c.start_lane("profiles", **small)
    other = c.start_lane("profiles", **small)
    c.start_lane("inventory")
    c.wait_ready(frozen)
    c.wait_ready(other)
    key, owner = f"{c.root}:claims:seen", f"{socket.gethostname()}-{frozen.pid}:profiles"

    def active() -> bool:
        entry = Entry.decode(c.redis.hget(key, owner) or b"")
        return entry is not None and bool(entry.active)

    c.produce(good_input)
    deadline = time.monotonic() + 60
    while True:  # until it is frozen holding a claim (a tight poll: a batch is short)
        assert time.monotonic() < deadline, c.logs()
        if not active():
            continue
        frozen.send_signal(signal.SIGSTOP)
        if active():
            break
        frozen.send_signal(signal.SIGCONT)  # it committed in between: again

    def batches() -> float:
        return sum(c.metric(other, "loom_batch_size_count").values())

    before = batches()
    c.wait_for(lambda: batches() > before + 5, "the other worker commits on", timeout=60)
    frozen.kill()
    frozen.wait(10)
    c.workers.remove(frozen)
    c.wait_idle(timeout=180)
    assert_same(c.picture(), reference)


# --- 4 to 6. bad records --------------------------------------------------------------------------


def test_bad_records_go_to_the_dlq_exactly_once_with_their_reason_and_change_nothing(
    chaos: Any, good_input: list[Any], reference: Picture, kafka_bootstrap: str
) -> None:
    c = chaos()
    raw = c.settings.topics.raw
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    entry = ConfigEntry("max.message.bytes", "4194304", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource("topic", raw, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)
    count = {
        "type": "inventory_counted",
        "channel": "backoffice",
        "inventory": {"sku": "SKU-0001", "location_id": "store-1", "on_hand": 500},
    }
    bad = {
        b'{"event_id":"x","type":["pos_sale"],"channel":"pos"}': "unknown_type",
        orjson.dumps(
            {**count, "event_id": "b-2099", "occurred_at": "2099-01-01T00:00:00+00:00"}
        ): "future_timestamp",
        orjson.dumps(
            {
                "event_id": "b-consent-2099",
                "type": "consent_updated",
                "channel": "web",
                "occurred_at": "2099-01-01T00:00:00+00:00",
                "identifiers": {"email": "someone@example.no"},
                "consent": {"marketing": True},
            }
        ): "future_timestamp",
        orjson.dumps({**page_view("b-nul", "dev\x00x")}): "control_characters",
        orjson.dumps({**page_view("b-bidi", "dev\u202ex")}): "control_characters",
    }
    bad.update(
        {
            orjson.dumps(
                {
                    **count,
                    "event_id": f"b-adj-{i}",
                    "type": "inventory_adjusted",
                    "occurred_at": "2024-05-01T09:00:00+00:00",
                    "inventory": {"sku": "SKU-0001", "location_id": "store-1", "delta": -(10**9)},
                }
            ): "out_of_bounds"
            for i in range(10)
        }
    )
    huge = orjson.dumps({**page_view("b-huge", "dev-huge"), "properties": {"x": "y" * 2_000_000}})
    profiles = c.start_lane("profiles")
    inventory = c.start_lane("inventory")
    c.produce(good_input[:1200])
    c.produce(bad)
    big = Producer({"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 4_000_000})
    big.produce(raw, huge)
    assert big.flush(30) == 0
    c.produce(good_input[1200:])
    c.wait_idle()
    got = c.picture()
    (record,) = [m for m in c.topic_records(c.settings.topics.dlq) if huge.startswith(m.value())]
    headers = dict(record.headers())
    assert len(record.value()) == 512 * 1024  # cut to LOOM_DLQ_MAX_BYTES: fits the DLQ topic
    assert headers["loom.truncated"] == b"value"
    assert headers["loom.original_sha256"] == hashlib.sha256(huge).hexdigest().encode()
    assert headers["loom.reason"] == b"oversize"
    expected = {dlq_key(value): reason for value, reason in bad.items()}
    expected[dlq_key(record.value())] = "oversize"
    assert got.dlq == expected
    assert_same(got, reference)
    for proc in (profiles, inventory):
        assert proc.poll() is None


# --- SIGTERM in every state -------------------------------------------------------------------


def test_sigterm_stops_a_worker_that_is_retrying_while_redis_is_down(
    chaos: Any, good_input: list[Any], reference: Picture
) -> None:
    """Before: a worker retrying forever did not stop within 40 s of SIGTERM."""
    c = chaos()
    profiles = c.start_lane("profiles")
    inventory = c.start_lane("inventory")
    c.wait_ready(profiles)
    c.wait_ready(inventory)
    c.server.kill()  # Redis gone
    c.produce(good_input[:300])
    for proc in (profiles, inventory):
        c.wait_for(lambda p=proc: lane_state(c, p) == "retrying", "retrying")
    for proc in (profiles, inventory):
        proc.send_signal(signal.SIGTERM)
    for proc in (profiles, inventory):
        assert c.expect_exit(proc, 0, within_s=15) < 15
    c.server.start()
    c.start_lane("profiles")
    c.start_lane("inventory")
    c.produce(good_input[300:])
    c.wait_idle()
    assert_same(c.picture(), reference)


@pytest.mark.chaos_full
def test_sigterm_stops_a_worker_while_kafka_hangs(
    chaos: Any, good_input: list[Any], reference: Picture, kafka_bootstrap: str
) -> None:
    host, _, port = kafka_bootstrap.split(",", maxsplit=1)[0].rpartition(":")
    broker = listening_pid(int(port)) if host in ("127.0.0.1", "localhost") else None
    if broker is None:
        pytest.skip("the broker is not a local process this test can freeze")
    c = chaos()
    profiles = c.start_lane("profiles", LOOM_SHUTDOWN_TIMEOUT_S="10")
    c.wait_ready(profiles)
    c.produce(good_input[:500])
    os.kill(broker, signal.SIGSTOP)  # Kafka hangs: no answer, no error
    try:
        time.sleep(1)
        profiles.send_signal(signal.SIGTERM)
        # 0 if it could leave the group, 1 if the watchdog had to end it: both in time
        took = c.expect_exit(profiles, {0, 1}, within_s=15)
    finally:
        os.kill(broker, signal.SIGCONT)
    assert took < 15
    c.start_lane("profiles")
    c.start_lane("inventory")
    c.produce(good_input[500:])
    c.wait_idle()
    assert_same(c.picture(), reference)


@pytest.mark.chaos_full
def test_a_broker_that_stalls_past_the_session_timeout_loses_nothing_and_doubles_nothing(
    chaos: Any, good_input: list[Any], reference: Picture, kafka_bootstrap: str
) -> None:
    """Kafka stops answering for longer than the groups' session timeout (10 s) while two
    workers per lane are applying a backlog and relaying its changes: every member's session
    expires at once when it answers again, both groups rebalance, batches in flight commit
    nothing. The lanes must come back by themselves and end where the clean run ends."""
    host, _, port = kafka_bootstrap.split(",", maxsplit=1)[0].rpartition(":")
    broker = listening_pid(int(port)) if host in ("127.0.0.1", "localhost") else None
    if broker is None:
        pytest.skip("the broker is not a local process this test can freeze")
    c = chaos()
    _two_per_lane_part_way(c, good_input[:2000])
    os.kill(broker, signal.SIGSTOP)
    try:
        time.sleep(15)  # the fault itself: a stall past session.timeout.ms (10 s)
    finally:
        os.kill(broker, signal.SIGCONT)
    c.produce(good_input[2000:])
    c.wait_idle(timeout=180)
    assert_same(c.picture(), reference)


@pytest.mark.chaos_full
def test_a_broker_frozen_during_a_rebalance_callback_holds_the_lane_only_while_it_is_frozen(
    chaos: Any, good_input: list[Any], reference: Picture, kafka_bootstrap: str
) -> None:
    """A lane commits its revoked partitions' offsets synchronously in the rebalance callback
    (librdkafka's rule; made from another thread it did not return). The broker freezes as the
    callback starts and answers again 70 s later, past librdkafka's request timeout (60 s): the
    worker waits in the callback while the broker is frozen, not for good, and the lanes end
    where the clean run ends, with both workers of the lane alive."""
    host, _, port = kafka_bootstrap.split(",", maxsplit=1)[0].rpartition(":")
    broker = listening_pid(int(port)) if host in ("127.0.0.1", "localhost") else None
    if broker is None:
        pytest.skip("the broker is not a local process this test can freeze")
    c = chaos()
    first = c.start_lane("profiles", fault={"stage": "revoke", "freeze_broker": broker})
    inventory = c.start_lane("inventory")
    for proc in (first, inventory):
        c.wait_ready(proc)
    c.produce(good_input[:1000])
    c.wait_idle()
    second = c.start_lane("profiles")  # a rebalance: the first worker's partitions revoked
    try:
        c.wait_for(lambda: _frozen(broker), "the broker frozen in the revoke callback", 60)
        time.sleep(70)  # the fault itself: frozen past librdkafka's request timeout
    finally:
        os.kill(broker, signal.SIGCONT)
    c.produce(good_input[1000:])
    c.wait_idle(timeout=240)
    assert_same(c.picture(), reference)
    assert first.poll() is None
    assert second.poll() is None


def _frozen(pid: int) -> bool:
    """Whether process ``pid`` is stopped (``SIGSTOP``): state ``T`` in ``/proc/PID/stat``."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


@pytest.mark.chaos_full
@pytest.mark.parametrize("routing", ["direct", "by-sku"])
def test_a_broker_killed_and_started_again_mid_stream_loses_nothing_and_doubles_nothing(
    redis_server: Any,
    good_input: list[Any],
    reference: Picture,
    tmp_path: Any,
    free_ports: Any,
    routing: str,
) -> None:
    """Kafka itself crashes (``kill -9`` of a broker of the test's own, while the lanes apply a
    backlog and relay its changes) and is started again on the same data a few seconds later:
    the workers, their relays' producers and the groups come back by themselves, and the lanes
    end where the clean run ends. ``by-sku``: two inventory workers route stock movements
    through Kafka as well (ADR 0014), their producers caught by the crash too."""
    infra = LocalInfra()
    infra.up()
    c = None
    try:
        c = Chaos(infra.endpoints.kafka_bootstrap, redis_server(appendonly=True), tmp_path,
                  free_ports)  # fmt: skip
        env = {"LOOM_INVENTORY_ROUTING": routing}
        inventory = 2 if routing == "by-sku" else 1
        workers = [c.start_lane("profiles")]
        workers += [c.start_lane("inventory", **env) for _ in range(inventory)]
        for proc in workers:
            c.wait_ready(proc)
        c.produce(good_input[:2000])
        prefix = c.root.removesuffix(":v1")
        c.wait_for(lambda: processed_ids(c.redis, prefix, "profiles"), "a first batch", 60)
        broker = int((infra.data_dir / "kafka" / "kafka.pid").read_text())
        os.kill(broker, signal.SIGKILL)
        c.wait_for(lambda: not pid_alive(broker), "the broker gone", 30)
        infra.up()  # the same data directory: what the broker had acknowledged is there
        c.produce(good_input[2000:])
        if routing == "by-sku":
            c.wait_idle("profiles", timeout=180)
            c.wait_for(lambda: routed_lag(c) == 0, "everything routed and applied", 180)
            c.wait_drained()
        else:
            c.wait_idle(timeout=180)
        assert_same(c.picture(), reference)
        assert all(proc.poll() is None for proc in workers)
    finally:
        if c is not None:
            c.close()
        infra.down()


@pytest.mark.chaos_full
def test_redis_frozen_past_the_clients_timeout_mid_stream_loses_nothing_and_doubles_nothing(
    chaos: Any, good_input: list[Any], reference: Picture
) -> None:
    """Redis stops answering (``SIGSTOP``) for longer than the workers' socket timeout (10 s)
    while two workers per lane apply a backlog: a commit sent before the freeze may be applied
    and its answer lost (the worker cannot tell), loads and relays time out. Every lane must
    take it as a fault to wait out, apply each event once, and end where the clean run ends."""
    c = chaos()
    workers = _two_per_lane_part_way(c, good_input[:2000])
    assert c.server.proc is not None
    os.kill(c.server.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(15)  # the fault itself: frozen past the clients' socket timeout
    finally:
        os.kill(c.server.proc.pid, signal.SIGCONT)
    c.produce(good_input[2000:])
    c.wait_idle(timeout=180)
    assert_same(c.picture(), reference)
    assert all(proc.poll() is None for proc in workers)


def _two_per_lane_part_way(c: Chaos, backlog: list[Any]) -> list[Any]:
    """Two workers per lane, ready, sent ``backlog``; returns once the profiles lane has
    applied a first batch of it (most of it still to do): the moment to inject a fault."""
    workers = [c.start_lane(role) for role in ("profiles", "profiles", "inventory", "inventory")]
    for proc in workers:
        c.wait_ready(proc)
    c.produce(backlog)
    prefix = c.root.removesuffix(":v1")
    c.wait_for(lambda: processed_ids(c.redis, prefix, "profiles"), "a first batch applied", 60)
    return workers
