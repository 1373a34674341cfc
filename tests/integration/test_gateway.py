"""``loom gateway`` as a process on real Kafka: a 200 means Kafka has every event (raw topic or
DLQ); no Kafka, an outage or too much in flight is 503/429 with Retry-After, and what a client
got a 200 for survives a broker killed mid-stream.
"""

from __future__ import annotations

import base64
import gzip
import os
import select
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from gateway_process import WEB_KEY, GatewayProcess, environment, free_port
from local_infra import LocalInfra
from topic_reader import end_offsets, read_topic

from schemas.touchpoint import parse_touchpoint
from streams.settings import Topics

AUTH = {"Authorization": "Basic " + base64.b64encode(f"{WEB_KEY}:".encode()).decode()}


def topics() -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {name: f"gw{tag}.{name}" for name in Topics.model_fields}


def message(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Product Viewed",
        "userId": f"C-{i % 7}",
        "messageId": f"m-{i}",
        "timestamp": "2026-11-22T10:00:00Z",
        "properties": {"sku": f"SKU-{i}"},
        **extra,
    }


@pytest.fixture
def gateway(kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[GatewayProcess, Topics]]:
    names = topics()
    gw = GatewayProcess(environment(kafka_bootstrap, names), tmp_path)
    try:
        yield gw, Topics(**names)
    finally:
        assert gw.stop() == 0, gw.logs()


def test_a_200_means_kafka_has_every_event_valid_ones_raw_invalid_ones_in_the_dlq(
    gateway: tuple[GatewayProcess, Topics], kafka_bootstrap: str
) -> None:
    gw, t = gateway
    batch = [message(i) for i in range(100)]
    batch[17] = message(17, event=None)  # a track without a name
    batch[42] = message(42, properties={"order_id": "O-1"}, event="Order Completed")
    body = gzip.compress(orjson.dumps({"batch": batch, "sentAt": "2026-11-22T10:00:01Z"}))
    resp = requests.post(
        f"{gw.url}/v1/batch", data=body, headers={**AUTH, "Content-Encoding": "gzip"}, timeout=30
    )
    assert resp.status_code == 200, resp.text
    assert [e["index"] for e in resp.json()["errors"]] == [17, 42]
    # acknowledged before the answer: the records are on the topics now, without waiting
    assert end_offsets(kafka_bootstrap, t.raw) == 98
    assert end_offsets(kafka_bootstrap, t.dlq) == 2
    raw = read_topic(kafka_bootstrap, t.raw)
    ids = {parse_touchpoint(m.value()).event_id for m in raw}
    assert ids == {f"m-{i}" for i in range(100)} - {"m-17", "m-42"}
    keys = {m.key() for m in raw}
    assert keys == {f"customer_id:C-{i}".encode() for i in range(7)}
    # one customer's events share a partition, in the order they were sent
    by_key: dict[bytes, set[int]] = {}
    for m in raw:
        by_key.setdefault(m.key(), set()).add(m.partition())
    assert all(len(parts) == 1 for parts in by_key.values())
    dead = read_topic(kafka_bootstrap, t.dlq)
    assert sorted(orjson.loads(m.value())["messageId"] for m in dead) == ["m-17", "m-42"]
    headers = {k: v for k, v in dead[0].headers()}
    assert headers["loom.stage"] == b"gateway"
    assert headers["loom.reason"] == b"schema_violation"
    assert gw.metric("loom_gateway_events_total", front_door="segment", source="web-shop",
                     outcome="accepted") == 98  # fmt: skip


def test_an_unknown_write_key_is_401_and_nothing_is_produced(
    gateway: tuple[GatewayProcess, Topics], kafka_bootstrap: str
) -> None:
    gw, t = gateway
    resp = requests.post(
        f"{gw.url}/v1/track", json={**message(1), "writeKey": "wk_unknown_999"}, timeout=30
    )
    assert resp.status_code == 401
    assert resp.json()["code"] == "unauthorized"
    assert end_offsets(kafka_bootstrap, t.raw) == 0
    assert gw.metric("loom_gateway_unauthorized_total", front_door="segment") == 1


@pytest.fixture
def gateway_without_kafka(tmp_path: Path) -> Iterator[GatewayProcess]:
    """A gateway whose Kafka does not answer (nothing listens on its port)."""
    env = environment(f"127.0.0.1:{free_port()}", topics())
    gw = GatewayProcess(env, tmp_path, ack_timeout_s="2", max_in_flight="50")
    try:
        yield gw
    finally:
        gw.stop()


def test_no_kafka_is_503_with_retry_after_never_200(
    gateway_without_kafka: GatewayProcess,
) -> None:
    gw = gateway_without_kafka
    started = time.monotonic()
    resp = requests.post(f"{gw.url}/v1/track", json=message(1), headers=AUTH, timeout=30)
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "5"
    assert resp.json()["code"] == "unavailable"
    assert time.monotonic() - started < 10  # bounded by the ack timeout, not the client's
    assert requests.get(f"{gw.ops_url}/readyz", timeout=10).status_code == 503


def test_too_many_events_awaiting_kafka_is_429_before_anything_is_produced(
    gateway_without_kafka: GatewayProcess,
) -> None:
    gw = gateway_without_kafka
    first: list[requests.Response] = []
    hanging = threading.Thread(
        target=lambda: first.append(
            requests.post(f"{gw.url}/v1/batch", json={"batch": [message(i) for i in range(40)]},
                          headers=AUTH, timeout=30)
        )
    )  # fmt: skip
    hanging.start()
    deadline = time.monotonic() + 10
    while gw.metric("loom_gateway_in_flight_events") < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gw.metric("loom_gateway_in_flight_events") == 40
    resp = requests.post(
        f"{gw.url}/v1/batch", json={"batch": [message(i) for i in range(20)]}, headers=AUTH,
        timeout=30,
    )  # fmt: skip
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "1"
    assert resp.json()["code"] == "overloaded"
    hanging.join(30)
    assert first[0].status_code == 503
    assert gw.metric("loom_gateway_in_flight_events") == 0  # the failed ones are released


def test_a_broker_killed_mid_stream_loses_nothing_that_got_a_200(tmp_path: Path) -> None:
    """Fault injection on a broker of its own: a client sends batches and retries on 503/429
    (as the SDKs do, with the same message ids) while the broker is SIGKILLed and restarted.
    Every batch answered 200 is on the raw topic afterwards; copies from retries are allowed
    (the workers drop them by event id), losses are not."""
    infra = LocalInfra()
    infra.up()
    kafka = infra.endpoints.kafka_bootstrap
    names = topics()
    gw = GatewayProcess(environment(kafka, names), tmp_path, ack_timeout_s="2")
    acked: list[list[str]] = []
    statuses: list[int] = []
    batches = [[message(b * 10 + i) for i in range(10)] for b in range(60)]

    def client() -> None:
        deadline = time.monotonic() + 180
        for batch in batches:
            while time.monotonic() < deadline:
                try:
                    resp = requests.post(
                        f"{gw.url}/v1/batch", json={"batch": batch}, headers=AUTH, timeout=15
                    )
                except requests.RequestException:
                    statuses.append(0)
                    time.sleep(0.2)
                    continue
                statuses.append(resp.status_code)
                if resp.status_code == 200:
                    acked.append([m["messageId"] for m in batch])
                    break
                assert resp.status_code in (429, 503), resp.text
                time.sleep(min(float(resp.headers["Retry-After"]), 0.5))
            time.sleep(0.05)

    sender = threading.Thread(target=client)
    try:
        sender.start()
        wait_for(lambda: len(acked) >= 10, 60, "first batches acknowledged")
        pid = int((infra.data_dir / "kafka" / "kafka.pid").read_text().strip())
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: 503 in statuses, 60, "a 503 during the outage")
        infra.up()  # the same broker and data again
        sender.join(240)
        assert not sender.is_alive()
        assert len(acked) == len(batches), f"statuses {sorted(set(statuses))}"
        records = read_topic(kafka, names["raw"], timeout=60)
        stored = [parse_touchpoint(m.value()).event_id for m in records]
        missing = {i for batch in acked for i in batch} - set(stored)
        assert missing == set()
        assert statuses.count(503) >= 1
    finally:
        sender.join(1)
        gw.stop()
        infra.down()


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_bodies_past_max_requests_are_refused_before_they_are_read(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Admission happens when a request's headers arrive, not after its body was read: with
    ``LOOM_GATEWAY_MAX_REQUESTS=4``, twelve clients each sending a 300 KB batch slowly (half of
    it, then waiting) get four bodies received and eight answers 429 + Retry-After at once,
    before their bodies are sent; so does any other post while the four are open. Before, the
    gateway read all twelve bodies at once (nothing counted a request until its events went to
    Kafka), so many slow posts held up to ``LOOM_GATEWAY_MAX_BATCH_BYTES`` each, unrefused
    (a review of 2026-12-04)."""
    names = topics()
    gw = GatewayProcess(environment(kafka_bootstrap, names), tmp_path, max_requests="4")
    payload = orjson.dumps({"batch": [message(i) for i in range(2000)]})
    assert 250_000 < len(payload) < 500 * 1024
    head = (
        f"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {AUTH['Authorization']}"
        f"\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode()
    half = len(payload) // 2
    clients = [socket.create_connection(("127.0.0.1", gw.port), timeout=30) for _ in range(12)]
    try:
        for c in clients:
            c.sendall(head + payload[:half])
        answered: dict[socket.socket, bytes] = {}
        deadline = time.monotonic() + 20
        while len(answered) < 8 and time.monotonic() < deadline:
            readable, _, _ = select.select([c for c in clients if c not in answered], [], [], 0.5)
            for c in readable:
                answered[c] = read_head(c)
        assert len(answered) == 8, (
            f"{len(answered)} of 12 slow posts answered before their bodies were sent: the "
            f"gateway was reading {12 - len(answered)} bodies at once (limit 4)"
        )
        for answer in answered.values():
            assert answer.startswith(b"HTTP/1.1 429 "), answer
            assert b"\r\nRetry-After: 1\r\n" in answer
        other = requests.post(f"{gw.url}/v1/track", json=message(1), headers=AUTH, timeout=30)
        assert other.status_code == 429, other.text
        assert other.json()["code"] == "overloaded"
        admitted = [c for c in clients if c not in answered]
        for c in admitted:
            c.sendall(payload[half:])
        for c in admitted:
            assert read_head(c).startswith(b"HTTP/1.1 200 ")
        assert end_offsets(kafka_bootstrap, names["raw"]) == 4 * 2000
        # once they are answered, new requests are taken again
        resp = requests.post(f"{gw.url}/v1/track", json=message(1), headers=AUTH, timeout=30)
        assert resp.status_code == 200, resp.text
        assert gw.metric("loom_gateway_requests_total", front_door="segment",
                         code="overloaded") == 9  # fmt: skip
    finally:
        for c in clients:
            c.close()
        assert gw.stop() == 0, gw.logs()


def read_head(conn: socket.socket) -> bytes:
    """An HTTP answer's status line and headers."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.partition(b"\r\n\r\n")[0] + b"\r\n"
