"""Every Kafka security mode Loom supports, against the real secured broker, with both client
libraries Loom uses: librdkafka (producers, consumers, admin) and aiokafka (the faust worker).

The broker (``deploy/infra.sh`` secured mode) has a SASL_SSL listener with PLAIN,
SCRAM-SHA-256/512 and OAUTHBEARER (Kafka's unsecured-JWT validator), and an SSL listener that
requires a client certificate. OAUTHBEARER tokens come from a client-credentials token
endpoint served by this test (stdlib HTTP) that checks the client's id and secret.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import SecretStr

from streams import kafka_clients
from streams.oauth import ClientCredentialsProvider, TokenError
from streams.settings import LoomSettings
from streams.startup import InfraError, check_kafka

CLIENT_ID, CLIENT_SECRET = "loom-worker", "oauth-client-secret"


def _b64(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


class TokenEndpoint:
    """A client-credentials token endpoint issuing unsigned JWTs (what Kafka's unsecured
    validator accepts); counts the tokens it issued and refuses wrong client secrets."""

    def __init__(self) -> None:
        self.issued = 0
        self.requests: list[tuple[str | None, bytes]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                auth = self.headers.get("Authorization")
                endpoint.requests.append((auth, body))
                expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
                if auth != f"Basic {expected}" or b"grant_type=client_credentials" not in body:
                    self.send_response(401)
                    self.end_headers()
                    return
                endpoint.issued += 1
                now = int(time.time())
                claims = {"sub": CLIENT_ID, "iat": now, "exp": now + 3600, "scope": "kafka"}
                token = _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(claims) + "."
                out = json.dumps({"access_token": token, "expires_in": 3600}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/oauth2/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def token_endpoint() -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint()
    yield endpoint
    endpoint.close()


@pytest.fixture
def tls(secured_infra: Any) -> Path:
    tls_dir: Path = secured_infra.tls_dir
    return tls_dir


def mechanism_settings(
    mechanism: str, secured_infra: Any, tls_dir: Path, token_url: str = ""
) -> LoomSettings:
    ca = tls_dir / "ca.pem"
    if mechanism == "mTLS":
        return LoomSettings(
            kafka_bootstrap=secured_infra.ssl_bootstrap,
            kafka_security_protocol="SSL",
            kafka_ssl_ca_file=ca,
            kafka_ssl_cert_file=tls_dir / "client.pem",
            kafka_ssl_key_file=tls_dir / "client.key",
            development=True,
        )
    common: dict[str, Any] = {
        "kafka_bootstrap": secured_infra.endpoints.kafka_bootstrap,
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": mechanism,
        "kafka_ssl_ca_file": ca,
        "development": True,
    }
    if mechanism == "OAUTHBEARER":
        return LoomSettings(
            **common,
            kafka_oauth_token_url=token_url,
            kafka_oauth_client_id=CLIENT_ID,
            kafka_oauth_client_secret=CLIENT_SECRET,
            kafka_oauth_scope="kafka",
        )
    password = (tls_dir / "kafka-password").read_text().strip()
    return LoomSettings(**common, kafka_sasl_username="loom", kafka_sasl_password=password)


def round_trip(settings: LoomSettings) -> list[bytes]:
    """Create a topic, produce three records, consume them back (librdkafka)."""
    admin = kafka_clients.admin(settings)
    topic = f"loomtest-sec-{uuid.uuid4().hex[:10]}"
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(timeout=30)
    try:
        producer = kafka_clients.producer(settings)
        for i in range(3):
            producer.produce(topic, f"v{i}".encode())
        assert producer.flush(30) == 0
        consumer = kafka_clients.consumer(
            settings, f"loomtest-{uuid.uuid4().hex[:8]}", **{"auto.offset.reset": "earliest"}
        )
        consumer.subscribe([topic])
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(got) < 3 and time.monotonic() < deadline:
            for msg in consumer.consume(10, timeout=0.5):
                assert msg.error() is None, msg.error()
                got.append(msg.value() or b"")
        consumer.close()
        return got
    finally:
        for future in admin.delete_topics([topic]).values():
            future.result(timeout=30)


def aiokafka_connects(settings: LoomSettings) -> None:
    """The faust worker's client library, with the credentials faust would get."""
    faust_conf = kafka_clients.faust_settings(settings)
    auth = credentials_to_aiokafka_auth(faust_conf["broker_credentials"])

    async def connect() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, **auth)
        try:
            await asyncio.wait_for(producer.start(), 30)  # connects, authenticates, metadata
            assert producer.client.cluster.brokers()
        finally:
            await producer.stop()
            await asyncio.sleep(0.2)  # let the closed connections' transports finish closing

    asyncio.run(connect())


@pytest.mark.parametrize(
    "mechanism",
    [
        "SCRAM-SHA-512",
        pytest.param("SCRAM-SHA-256", marks=pytest.mark.secured_full),
        pytest.param("PLAIN", marks=pytest.mark.secured_full),
        pytest.param("OAUTHBEARER", marks=pytest.mark.secured_full),
        pytest.param("mTLS", marks=pytest.mark.secured_full),
    ],
)
def test_librdkafka_and_aiokafka_connect_with_each_mechanism(
    mechanism: str, secured_infra: Any, tls: Path, token_endpoint: TokenEndpoint
) -> None:
    settings = mechanism_settings(mechanism, secured_infra, tls, token_endpoint.url)
    check_kafka(settings)
    assert round_trip(settings) == [b"v0", b"v1", b"v2"]
    aiokafka_connects(settings)
    if mechanism == "OAUTHBEARER":  # librdkafka's clients and aiokafka each fetched tokens
        assert token_endpoint.issued >= 2
        assert all(b"scope=kafka" in body for _, body in token_endpoint.requests)


@pytest.mark.parametrize(
    ("case", "message", "fatal"),
    [
        ("wrong password", "authentication failed: SASL authentication error", True),
        ("no CA", "certificate verify failed", True),
        (
            "plaintext to the TLS listener",
            "(a TLS listener? see LOOM_KAFKA_SECURITY_PROTOCOL)",
            False,
        ),
        ("no client certificate on the mTLS listener", "alert bad certificate", True),
    ],
)
def test_what_the_broker_refuses_is_one_line(
    case: str, message: str, fatal: bool, secured_infra: Any, tls: Path
) -> None:
    good = mechanism_settings("SCRAM-SHA-512", secured_infra, tls)
    settings = {
        "wrong password": good.model_copy(
            update={"kafka_sasl_password": SecretStr("not-the-password")}
        ),
        "no CA": good.model_copy(update={"kafka_ssl_ca_file": None}),
        "plaintext to the TLS listener": LoomSettings(kafka_bootstrap=good.kafka_bootstrap),
        "no client certificate on the mTLS listener": mechanism_settings(
            "mTLS", secured_infra, tls
        ).model_copy(update={"kafka_ssl_cert_file": None, "kafka_ssl_key_file": None}),
    }[case]
    started = time.monotonic()
    with pytest.raises(InfraError) as caught:
        check_kafka(settings, timeout_s=10)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text
    assert caught.value.fatal is fatal
    assert "not-the-password" not in text
    if fatal:  # refused at once, not after the timeout
        assert time.monotonic() - started < 5


@pytest.mark.secured_full
def test_the_token_provider_reuses_its_token_and_says_why_it_fails(
    token_endpoint: TokenEndpoint,
) -> None:
    clock = [0.0]
    provider = ClientCredentialsProvider(
        token_endpoint.url,
        CLIENT_ID,
        SecretStr(CLIENT_SECRET),
        scope="kafka",
        clock=lambda: clock[0],
    )
    first = provider.token()
    assert provider.token() == first
    assert token_endpoint.issued == 1
    clock[0] = 0.81 * 3600  # past 80 % of the lifetime: renewed
    provider.token()
    assert token_endpoint.issued == 2
    wrong = ClientCredentialsProvider(token_endpoint.url, CLIENT_ID, SecretStr("wrong"))
    with pytest.raises(TokenError) as caught:
        wrong.token()
    assert str(caught.value) == f"token endpoint {token_endpoint.url} answered 401"
    assert "wrong" not in str(caught.value)
