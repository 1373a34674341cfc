"""The gateway's HTTP layer in-process on the in-memory sink (streams.gateway.sink.MemorySink):
routes, auth, bodies and limits, per-event errors and the DLQ records, CORS, error answers.

What Kafka does with the records (acks, outages, backpressure) is tested on a real broker in
tests/integration/test_gateway.py; the real SDKs are in tests/e2e.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import re
import socket
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient, TestServer
from shopify_shop import SECRET, SHOP

from schemas.inbound.base import Source
from schemas.touchpoint import Channel, parse_touchpoint
from streams.gateway.app import build_app
from streams.gateway.errors import OverloadedError, UnavailableError
from streams.gateway.records import OutRecord
from streams.gateway.segment_api import SegmentApi, parse_object
from streams.gateway.server import Gateway, GatewayStartError
from streams.gateway.shopify_shops import Shops
from streams.gateway.sink import MemorySink
from streams.gateway.sources import WriteKeys
from streams.settings import LoomSettings, Topics
from streams.shopify_memory import InMemoryShopifyMemory

KEY = "wk_web_test_0001"
KEYS = WriteKeys.of({KEY: Source("web-shop", Channel.WEB, "US", "USD")})
TOPICS = Topics(raw="t.raw", dlq="t.dlq")

T = TypeVar("T")


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def track(n: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Product Viewed",
        "userId": f"C-{n}",
        "messageId": f"m-{n}",
        "properties": {"sku": "SKU-1"},
        **extra,
    }


class Harness:
    """A gateway app on the in-memory sink; ``run(scenario)`` drives it with a client."""

    def __init__(self, **settings: Any) -> None:
        self.settings = LoomSettings(topics=TOPICS, gateway_ops_port=0, **settings)
        self.sink = MemorySink()
        self.gateway = Gateway(self.settings, KEYS, sink=self.sink)

    def run(self, scenario: Callable[[TestClient[Any, Any]], Awaitable[T]]) -> T:
        gateway = self.gateway  # an app serves one event loop: a fresh one per run
        app = build_app(gateway.front_doors, gateway.metrics, self.settings.gateway_cors_origins)

        async def main() -> T:
            async with TestClient(TestServer(app)) as client:
                return await scenario(client)

        return asyncio.run(main())

    def post(
        self, path: str, body: object | bytes, headers: Mapping[str, str] | None = None
    ) -> tuple[int, Any, Mapping[str, str]]:
        data = body if isinstance(body, bytes) else orjson.dumps(body)

        async def scenario(client: TestClient[Any, Any]) -> tuple[int, Any, Mapping[str, str]]:
            resp = await client.post(path, data=data, headers=dict(headers or {}))
            return resp.status, await resp.json(), dict(resp.headers)

        return self.run(scenario)

    def on(self, topic: str) -> list[OutRecord]:
        return [r for r in self.sink.records if r.topic == topic]

    def metric(self, name: str, **labels: str) -> float:
        return self.gateway.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def gw() -> Harness:
    return Harness()


def test_a_track_call_is_one_keyed_touchpoint_on_the_raw_topic(gw: Harness) -> None:
    status, body, _ = gw.post("/v1/track", track(), auth())
    assert (status, body) == (200, {"success": True})
    [record] = gw.on("t.raw")
    tp = parse_touchpoint(record.value)
    assert (tp.event_id, tp.type.value, tp.source) == ("m-1", "product_viewed", "web-shop")
    assert record.key == b"customer_id:C-1"
    assert ("loom-schema", b"touchpoint-v1") in record.headers
    assert gw.metric("loom_gateway_events_total", front_door="segment", source="web-shop",
                     outcome="accepted") == 1  # fmt: skip


def test_the_write_key_may_be_in_the_body_and_any_content_type_is_json(gw: Harness) -> None:
    # the browser SDK posts text/plain (no CORS preflight) with writeKey in the body
    status, _, _ = gw.post("/v1/t", {**track(), "writeKey": KEY}, {"Content-Type": "text/plain"})
    assert status == 200
    assert parse_touchpoint(gw.on("t.raw")[0].value).type.value == "product_viewed"


@pytest.mark.parametrize(
    ("path", "message_type"),
    [("/v1/identify", "profile_updated"), ("/v1/i", "profile_updated"),
     ("/v1/p", "page_view"), ("/v1/s", "page_view"), ("/v1/a", "profile_updated"),
     ("/v1/g", "custom"), ("/v1/t", "product_viewed")],
)  # fmt: skip
def test_the_path_decides_the_type(gw: Harness, path: str, message_type: str) -> None:
    message = {"userId": "u", "previousId": "anon", "groupId": "g", "event": "Product Viewed"}
    assert gw.post(path, {**message, "type": "ignored"}, auth())[0] == 200
    assert parse_touchpoint(gw.on("t.raw")[0].value).type.value == message_type


@pytest.mark.parametrize(
    "headers",
    [auth("wk_someone_else"), {}, {"Authorization": "Basic !!!"}],
    ids=["unknown", "missing", "malformed"],
)
def test_unknown_or_missing_write_key_is_401_and_counted(
    gw: Harness, headers: dict[str, str]
) -> None:
    status, body, _ = gw.post("/v1/batch", {"batch": [track()]}, headers)
    assert status == 401
    assert body["success"] is False
    assert body["code"] == "unauthorized"  # the shape Segment's SDKs read (code, message)
    assert isinstance(body["message"], str)
    assert gw.sink.records == []
    assert gw.metric("loom_gateway_unauthorized_total", front_door="segment") == 1
    assert gw.metric("loom_gateway_requests_total", front_door="segment",
                     code="unauthorized") == 1  # fmt: skip


def test_a_gzip_batch_with_shared_context_and_sent_at(gw: Harness) -> None:
    batch = {
        "batch": [track(1, timestamp="2026-11-22T10:00:00Z"), track(2, context={"locale": "nb"})],
        "sentAt": "2026-11-22T10:00:10Z",
        "context": {"consent": {"categoryPreferences": {"Analytics": True}}},
    }
    headers = {**auth(), "Content-Encoding": "gzip"}
    status, _, _ = gw.post("/v1/batch", gzip.compress(orjson.dumps(batch)), headers)
    assert status == 200
    first, second = (parse_touchpoint(r.value) for r in gw.on("t.raw"))
    for tp in (first, second):
        assert tp.consent_signals is not None
        assert tp.consent_signals.segment == {"Analytics": True}
    # the batch's sentAt corrects the first message's clock: it was sent 10 s after it happened
    assert first.occurred_at < datetime.now(UTC)
    assert (datetime.now(UTC) - first.occurred_at).total_seconds() >= 10


def test_invalid_events_are_reported_dead_lettered_and_the_rest_proceed(gw: Harness) -> None:
    bad = {"type": "track", "userId": "C-9", "messageId": "m-bad", "event": "Order Completed",
           "properties": {"order_id": "O-1", "products": []}}  # fmt: skip
    status, body, _ = gw.post("/v1/batch", {"batch": [track(1), bad, "not an object"]}, auth())
    assert status == 200
    assert body["success"] is True
    assert body["errors"] == [
        {"index": 1, "messageId": "m-bad", "reason": "schema_violation",
         "field": "properties.products",
         "message": "schema_violation: properties.products: Order Completed needs its products "
                    "(order lines)"},
        {"index": 2, "reason": "schema_violation",
         "message": "schema_violation: a message must be a JSON object"},
    ]  # fmt: skip
    assert [parse_touchpoint(r.value).event_id for r in gw.on("t.raw")] == ["m-1"]
    dead = gw.on("t.dlq")
    assert [orjson.loads(r.value) for r in dead] == [bad, "not an object"]
    headers = dict(dead[0].headers)
    assert headers["loom.stage"] == b"gateway"
    assert headers["loom.reason"] == b"schema_violation"
    assert headers["loom.source_topic"] == b"gateway:segment:web-shop"
    assert b"products" in headers["loom.error_message"]  # type: ignore[operator]
    assert gw.metric("loom_dlq_records_total", stage="gateway", reason="schema_violation") == 2
    assert gw.metric("loom_gateway_events_total", front_door="segment", source="web-shop",
                     outcome="invalid") == 2  # fmt: skip


def test_segment_size_limits() -> None:
    gw = Harness(gateway_max_event_bytes=2048, gateway_max_batch_bytes=8192)
    big = track(1, properties={"blob": "x" * 3000})
    status, body, _ = gw.post("/v1/track", big, auth())
    assert (status, body["code"]) == (400, "too_large")
    status, body, _ = gw.post("/v1/batch", {"batch": [big, track(2)]}, auth())
    assert status == 200  # one message over the limit inside a batch is one invalid event
    assert [e["reason"] for e in body["errors"]] == ["oversize"]
    assert len(gw.on("t.raw")) == 1
    assert orjson.loads(gw.on("t.dlq")[0].value) == big
    status, body, _ = gw.post("/v1/batch", {"batch": [track(i) for i in range(100)]}, auth())
    assert (status, body["code"]) == (400, "too_large")
    bomb = gzip.compress(b'{"batch": ["' + b"0" * 5_000_000 + b'"]}')
    assert len(bomb) < 8192
    status, body, _ = gw.post("/v1/batch", bomb, {**auth(), "Content-Encoding": "gzip"})
    assert (status, body["code"]) == (400, "too_large")


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"{not json", {}),
        (b"[1, 2]", {}),
        (b"{}", {}),  # a batch without a batch list
        (b"not gzip at all", {"Content-Encoding": "gzip"}),
        (gzip.compress(b'{"batch": []}')[:-6], {"Content-Encoding": "gzip"}),  # truncated
        (b"{}", {"Content-Encoding": "br"}),
    ],
    ids=["json", "array", "shape", "gzip", "truncated", "encoding"],
)
def test_malformed_requests_are_400(gw: Harness, body: bytes, headers: dict[str, str]) -> None:
    status, answer, _ = gw.post("/v1/batch", body, {**auth(), **headers})
    assert (status, answer["code"], answer["success"]) == (400, "invalid_request", False)
    assert gw.sink.records == []


def test_an_empty_batch_is_fine(gw: Harness) -> None:
    assert gw.post("/v1/batch", {"batch": []}, auth())[:2] == (200, {"success": True})


@pytest.mark.parametrize(
    ("failure", "status", "retry_after"),
    [(OverloadedError("busy"), 429, "1"), (UnavailableError("down"), 503, "5")],
)
def test_a_refusing_sink_is_429_or_503_with_retry_after_never_200(
    gw: Harness, failure: Exception, status: int, retry_after: str
) -> None:
    gw.sink.fail_with = failure  # type: ignore[assignment]
    got, body, headers = gw.post("/v1/batch", {"batch": [track(1), track(2)]}, auth())
    assert (got, body["success"], headers["Retry-After"]) == (status, False, retry_after)
    assert gw.metric("loom_gateway_events_total", front_door="segment", source="web-shop",
                     outcome="refused") == 2  # fmt: skip


def test_global_privacy_control_header(gw: Harness) -> None:
    gw.post("/v1/t", track(), {**auth(), "Sec-GPC": "1"})
    gw2 = Harness()
    gw2.post("/v1/t", track(), auth())
    assert parse_touchpoint(gw.on("t.raw")[0].value).gpc is True
    assert parse_touchpoint(gw2.on("t.raw")[0].value).gpc is None


def test_cors_for_browsers() -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        pre = await client.options(
            "/v1/t",
            headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"},
        )
        assert pre.status == 204
        assert pre.headers["Access-Control-Allow-Origin"] == "*"
        assert "POST" in pre.headers["Access-Control-Allow-Methods"]
        assert "Authorization" in pre.headers["Access-Control-Allow-Headers"]
        post = await client.post("/v1/t", data=orjson.dumps({**track(), "writeKey": KEY}),
                                 headers={"Origin": "https://shop.example"})  # fmt: skip
        assert post.headers["Access-Control-Allow-Origin"] == "*"
        denied = await client.post("/v1/t", data=b"{}", headers={"Origin": "https://x.example"})
        assert denied.status == 401
        assert denied.headers["Access-Control-Allow-Origin"] == "*"  # the browser may read it

    Harness().run(scenario)


def test_cors_with_an_origin_list() -> None:
    gw = Harness(gateway_cors_origins="https://shop.example, https://m.shop.example/")

    async def scenario(client: TestClient[Any, Any]) -> None:
        ok = await client.options("/v1/b", headers=preflight(origin="https://m.shop.example"))
        assert ok.status == 204
        assert ok.headers["Access-Control-Allow-Origin"] == "https://m.shop.example"
        assert ok.headers["Vary"] == "Origin"
        other = await client.options("/v1/b", headers=preflight())
        assert other.status == 403
        assert "Access-Control-Allow-Origin" not in other.headers
        # an OPTIONS naming no method is not a preflight (Fetch): routed as it is, no CORS
        bare = await client.options("/v1/b", headers={"Origin": "https://m.shop.example"})
        assert bare.status == 405
        assert "Access-Control-Allow-Origin" not in bare.headers

    gw.run(scenario)


def test_the_browser_sdk_settings_point_back_at_the_gateway(gw: Harness) -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        resp = await client.get(f"/v1/projects/{KEY}/settings")
        assert resp.status == 200
        settings = (await resp.json())["integrations"]["Segment.io"]
        assert settings["apiHost"] == f"{client.host}:{client.port}/v1"
        assert settings["protocol"] == "http"
        proxied = await client.get(
            f"/v1/projects/{KEY}/settings",
            headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "collect.shop.example"},
        )
        assert (await proxied.json())["integrations"]["Segment.io"]["apiHost"] == (
            "collect.shop.example/v1"
        )
        assert (await client.get("/v1/projects/nope/settings")).status == 401

    gw.run(scenario)


def test_unknown_paths_are_404(gw: Harness) -> None:
    async def scenario(client: TestClient[Any, Any]) -> int:
        return (await client.post("/v1/teleport", data=b"{}", headers=auth())).status

    assert gw.run(scenario) == 404


def test_the_write_key_is_never_stored_not_even_in_the_dlq(gw: Harness) -> None:
    # the browser SDK puts writeKey in every message; an invalid one is dead-lettered as sent,
    # less the credential
    bad = {"type": "track", "userId": "u", "writeKey": KEY, "messageId": "m-x"}
    assert gw.post("/v1/t", bad)[0] == 200
    batch = {"writeKey": KEY, "batch": [{**bad, "event": None}, {**track(), "writeKey": KEY}]}
    assert gw.post("/v1/batch", batch)[0] == 200
    stored = b"".join(r.value for r in gw.sink.records)
    assert len(gw.on("t.dlq")) == 2
    assert len(gw.on("t.raw")) == 1
    assert KEY.encode() not in stored


def test_more_messages_than_could_ever_be_in_flight_is_400_not_429() -> None:
    gw = Harness(gateway_max_in_flight=10)
    status, body, _ = gw.post("/v1/batch", {"batch": [track(i) for i in range(11)]}, auth())
    assert (status, body["code"]) == (400, "too_large")
    assert gw.post("/v1/batch", {"batch": [track(i) for i in range(10)]}, auth())[0] == 200


def test_a_port_in_use_is_a_one_line_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = LoomSettings(topics=TOPICS, gateway_port=port, gateway_ops_port=0)
        gateway = Gateway(settings, KEYS, sink=MemorySink())
        with pytest.raises(GatewayStartError, match=f"cannot listen on 127.0.0.1 \\(ports {port}"):
            asyncio.run(gateway.start())


def test_a_bug_is_a_500_whose_log_line_quotes_nothing_of_the_request(
    gw: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # a bug in a mapping whose exception quotes the input (as int("jane@...") or a KeyError
    # would): the sender gets a 500, the log line names the error and where it was raised,
    # never its text, which holds the person's e-mail
    email = "jane.doe@example.com"

    def buggy(message: Any, *_: object) -> Any:
        raise ValueError(f"cannot map {message['traits']['email']}")

    monkeypatch.setattr("streams.gateway.segment_api.map_message", buggy)
    message = {**track(), "type": "identify", "traits": {"email": email}}
    with caplog.at_level("DEBUG"):
        status, body, _ = gw.post("/v1/identify", message, auth())
    assert (status, body["code"]) == (500, "internal")
    assert email not in caplog.text
    [line] = [r for r in caplog.records if r.name == "streams.gateway.app"]
    assert "ValueError at streams/gateway/segment_api.py" in line.getMessage()
    assert line.exc_info is None  # a traceback would print the exception's text


def test_the_profile_lookup_api_answers_no_browser_of_another_origin() -> None:
    # /v1/profiles and /v1/audiences are server to server (no ProfilesApi.browser_routes):
    # the Segment door's CORS for /v1/ must not open them to every web page
    import redis

    from resolvers.audiences import Audiences
    from streams.gateway.profiles_api import ProfilesApi
    from streams.reader import ProfileReader

    gw = Harness()
    lookup = ProfilesApi(ProfileReader(redis.Redis(), "p"), Audiences({}), "s3cret-token")
    app = build_app([*gw.gateway.front_doors, lookup], gw.gateway.metrics, "*")
    origin = {"Origin": "https://evil.example"}

    async def main() -> None:
        async with TestClient(TestServer(app)) as client:
            pre = await client.options(
                "/v1/profiles/email:jane@example.com",
                headers=preflight("GET"),
            )
            assert "Access-Control-Allow-Origin" not in pre.headers
            assert "Access-Control-Allow-Headers" not in pre.headers
            got = await client.get("/v1/audiences/vip/members", headers=origin)
            assert got.status == 401
            assert "Access-Control-Allow-Origin" not in got.headers
            seg = await client.options("/v1/t", headers=preflight())
            assert seg.headers["Access-Control-Allow-Origin"] == "*"

    asyncio.run(main())


#: The routes browsers call (the browser SDK's collection endpoints and the settings it loads,
#: tests/e2e/test_gateway_browser_e2e.py); every other route of the gateway is server to server.
BROWSER_ROUTES = {"segment.receive", "segment.cdn", "segment.beacon"}


def preflight(method: str = "POST", origin: str = "https://evil.example") -> dict[str, str]:
    """A browser's preflight, from another origin, for ``method`` with an Authorization header."""
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization",
    }


def test_exactly_the_browser_routes_of_the_gateway_answer_a_preflight() -> None:
    # every route of a gateway with all its doors mounted: a server-to-server route that
    # answered a preflight (or any route that stopped answering one) fails here
    settings = LoomSettings(topics=TOPICS, gateway_ops_port=0, gateway_profiles_token="t0ken")
    gateway = Gateway(
        settings, KEYS, shops=Shops.of((SHOP, (SECRET,))), memory=InMemoryShopifyMemory(),
        sink=MemorySink(),
    )  # fmt: skip
    routes = [(r.name or "", r.method, r.resource) for r in gateway.app.router.routes()]
    assert {name for name, _, _ in routes} >= {
        "shopify.webhook",
        "profiles.get",
        "profiles.members",
    }

    async def main() -> set[tuple[str, str]]:
        answered = set()
        async with TestClient(TestServer(gateway.app)) as client:
            for name, method, resource in routes:
                assert resource is not None
                path = re.sub(r"\{[^}]*\}", "x", resource.canonical)
                pre = await client.options(path, headers=preflight(method))
                if "Access-Control-Allow-Origin" in pre.headers:
                    answered.add((name, method))
                else:
                    assert "Access-Control-Allow-Headers" not in pre.headers
        return answered

    answered = asyncio.run(main())
    assert answered == {(name, method) for name, method, _ in routes if name in BROWSER_ROUTES}


def test_a_new_route_of_the_segment_door_is_not_open_to_browsers_unless_declared() -> None:
    # a server-to-server route added to a browser door (under its /v1/) is closed by default
    class WithAnAdminRoute(SegmentApi):
        def routes(self) -> list[web.RouteDef]:
            return [*super().routes(), web.get("/v1/sources/{name}", self.sources,
                                               name="segment.sources")]  # fmt: skip

        async def sources(self, request: web.Request) -> web.Response:
            return web.json_response({"source": request.match_info["name"]})

    gw = Harness()
    door = WithAnAdminRoute(KEYS, gw.sink, gw.gateway.metrics, gw.settings)
    app = build_app([door], gw.gateway.metrics, "*")

    async def main() -> None:
        async with TestClient(TestServer(app)) as client:
            pre = await client.options("/v1/sources/web-shop", headers=preflight("GET"))
            assert "Access-Control-Allow-Origin" not in pre.headers
            assert "Access-Control-Allow-Headers" not in pre.headers
            got = await client.get("/v1/sources/web-shop", headers={"Origin": "https://e.example"})
            assert got.status == 200
            assert "Access-Control-Allow-Origin" not in got.headers
            seg = await client.options("/v1/t", headers=preflight("POST"))  # still open
            assert seg.headers["Access-Control-Allow-Origin"] == "*"

    asyncio.run(main())


@pytest.mark.parametrize(
    ("path", "method"),
    [("/v1/profiles/email:jane@example.com", "GET"),  # the lookup API, not mounted here
     ("/v1/teleport/now", "POST"), ("/v1/t", "DELETE")],
)  # fmt: skip
def test_a_preflight_no_browser_route_serves_is_not_allowed(path: str, method: str) -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        pre = await client.options(path, headers=preflight(method))
        assert "Access-Control-Allow-Origin" not in pre.headers
        assert "Access-Control-Allow-Headers" not in pre.headers

    Harness().run(scenario)


def test_a_string_cut_inside_an_emoji_does_not_cost_the_batch(gw: Harness) -> None:
    # JavaScript strings are UTF-16: "Summer sale 🌞".slice(0, 13) ends in half a surrogate
    # pair, and JSON.stringify (every JS SDK, browser and Node) writes it as the escape
    # "\ud83c", which is valid JSON text. Segment takes the batch (the half pair becomes
    # U+FFFD); refusing the body (400) made the SDK drop every event of the batch.
    cut = "Summer sale \U0001f31e".encode("utf-16-le")[:26].decode("utf-16-le", "surrogatepass")
    batch = {"batch": [track(1, properties={"sku": "SKU-1", "title": cut}), track(2)]}
    body = json.dumps(batch).encode()  # ensure_ascii: "\ud83c", as JSON.stringify writes it
    assert b"\\ud83c" in body
    status, answer, _ = gw.post("/v1/batch", body, auth())
    assert (status, answer) == (200, {"success": True})
    first, second = (parse_touchpoint(r.value) for r in gw.on("t.raw"))
    assert first.properties["title"] == "Summer sale \ufffd"
    assert second.event_id == "m-2"


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        (rb'{"a":"x\ud83c","b":"\ud83c\udf1e"}', {"a": "x\ufffd", "b": "\U0001f31e"}),
        (rb'{"a":"\udf1e\ud83c"}', {"a": "\ufffd\ufffd"}),  # a low half first, then a high
        (rb'{"a":"\\ud83c","b":"\ud83c"}', {"a": "\\ud83c", "b": "\ufffd"}),  # "\\" is a "\"
    ],
)
def test_only_lone_surrogate_escapes_are_mended(text: bytes, parsed: dict[str, str]) -> None:
    assert parse_object(text) == parsed


def test_a_body_that_never_finishes_arriving_is_answered_and_frees_its_slot() -> None:
    # slowloris: a client sends its headers and part of its body, then nothing. It holds one
    # of LOOM_GATEWAY_MAX_REQUESTS slots while it is read; with no deadline it held it for as
    # long as it kept the connection open, and that many such clients refused every SDK (429)
    settings = LoomSettings(
        topics=TOPICS, gateway_port=0, gateway_ops_port=0, gateway_max_requests=1,
        gateway_body_timeout_s=1.0,
    )  # fmt: skip
    gateway = Gateway(settings, KEYS, sink=MemorySink())
    payload = orjson.dumps(track())

    async def main() -> tuple[bytes, int]:
        await gateway.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
            writer.write(
                f"POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: {auth()['Authorization']}"
                f"\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
                + payload[:10]
            )
            await writer.drain()
            try:  # the gateway answers by its deadline (1 s); 20 s is the test's own limit
                answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
                answer += await reader.read(200)
            except TimeoutError:
                answer = b"(no answer in 20 s: the slow body still held its slot)"
            writer.close()
            async with ClientSession() as session:
                resp = await session.post(f"{gateway.url}/v1/track", data=payload, headers=auth())
                return answer, resp.status
        finally:
            await gateway.stop()

    answer, status_after = asyncio.run(main())
    # 503 + Retry-After, not 408: the SDKs drop a batch on a 4xx, and a slow link must retry
    assert answer.startswith(b"HTTP/1.1 503 "), answer
    assert b"\r\nRetry-After: 5\r\n" in answer
    assert b"\r\nConnection: close\r\n" in answer
    assert b'"code":"body_timeout"' in answer.replace(b" ", b"")
    assert status_after == 200  # the slot is free again


def test_rudderstacks_browser_sdk_passes_the_preflight_and_is_accepted() -> None:
    # @rudderstack/analytics-js (v3, its XhrQueue plugin) posts application/json with
    # `Authorization: Basic` and an `AnonymousId` header (base64 of the anonymous id): the
    # browser's preflight asks for all three. A header left out of Access-Control-Allow-Headers
    # makes the browser refuse the POST: every event of the page lost after the SDK's retries.
    async def scenario(client: TestClient[Any, Any]) -> None:
        asked = ["anonymousid", "authorization", "content-type"]
        pre = await client.options(
            "/v1/track",
            headers={
                "Origin": "https://shop.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": ",".join(asked),
            },
        )
        assert pre.status == 204
        allowed = {
            h.strip().lower() for h in pre.headers["Access-Control-Allow-Headers"].split(",")
        }
        assert set(asked) <= allowed, f"not allowed: {set(asked) - allowed}"
        message = {**track(), "anonymousId": "a-1", "channel": "web"}
        post = await client.post(
            "/v1/track",
            data=orjson.dumps(message),
            headers={
                **auth(),
                "Origin": "https://shop.example",
                "Content-Type": "application/json;charset=UTF-8",
                "AnonymousId": base64.b64encode(b"a-1").decode(),
            },
        )
        assert post.status == 200
        assert post.headers["Access-Control-Allow-Origin"] == "*"

    Harness().run(scenario)


@pytest.mark.parametrize("origins", ["*", "https://shop.example"])
def test_the_browser_sdk_settings_say_which_request_headers_they_depend_on(origins: str) -> None:
    # The settings name the host events go to, taken from X-Forwarded-Host/-Proto when a proxy
    # sets them, and may be cached 5 minutes by any cache (Cache-Control: max-age=300). A
    # shared cache in front (a CDN: the SDK's cdnURL) keys on the URL unless told otherwise:
    # one request with `X-Forwarded-Host: attacker.example` for a public write key would have
    # sent every shopper's events (ids, e-mails) there. `Vary` names those headers.
    gw = Harness(gateway_cors_origins=origins)

    async def scenario(client: TestClient[Any, Any]) -> None:
        resp = await client.get(
            f"/v1/projects/{KEY}/settings",
            headers={"X-Forwarded-Host": "attacker.example", "Origin": "https://shop.example"},
        )
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "max-age=300"
        vary = {v.strip().lower() for v in ",".join(resp.headers.getall("Vary", [])).split(",")}
        assert {"x-forwarded-host", "x-forwarded-proto"} <= vary, vary
        if origins != "*":
            assert "origin" in vary  # what the CORS answer depends on, kept

    gw.run(scenario)


def test_the_event_limit_applies_to_the_message_as_sent_not_with_the_batch_context() -> None:
    # analytics-java checks each message against 32 KB as it serializes it, and sends its
    # library once, as the batch's context. The gateway merges that context into every
    # message; measured after the merge, a message the SDK accepted could be over the limit
    # and dead-lettered, with a 200 that tells the SDK nothing was lost.
    gw = Harness(gateway_max_event_bytes=2048)
    message = track(1, properties={"sku": "SKU-1", "note": ""})
    message["properties"]["note"] = "x" * (2048 - len(orjson.dumps(message)))
    assert len(orjson.dumps(message)) == 2048  # at the limit, as sent
    batch = {
        "batch": [message],
        "context": {"library": {"name": "analytics-java", "version": "3.5.1"}},
        "sentAt": "2026-12-04T10:00:00Z",
    }
    status, body, _ = gw.post("/v1/batch", batch, auth())
    assert (status, body) == (200, {"success": True})
    [tp] = (parse_touchpoint(r.value) for r in gw.on("t.raw"))
    assert tp.properties["$library"] == "analytics-java/3.5.1"  # the batch's context is used
    over = {**message, "properties": {**message["properties"], "note": "x" * 2000 + "yy"}}
    assert len(orjson.dumps(over)) > 2048
    status, body, _ = gw.post("/v1/batch", {**batch, "batch": [over]}, auth())
    assert [e["reason"] for e in body["errors"]] == ["oversize"]  # the limit still holds


@pytest.mark.parametrize(
    ("request_line", "scheme"),
    [(b"POST /v1/track", b"Basic"), (b"GET /v1/profiles/customer_id:C-1", b"Bearer")],
    ids=["write-key", "profiles-token"],
)
def test_credentials_that_are_not_ascii_are_401_not_a_500(
    request_line: bytes, scheme: bytes
) -> None:
    # obs-text (bytes 0x80-0xFF) is allowed in a header value; it cannot be a write key (base64)
    # or the lookup API's token: that is a 401, not a bug of the gateway (500, logged as one)
    gw = Harness(gateway_profiles_token="t0ken-for-tests")

    async def scenario(client: TestClient[Any, Any]) -> bytes:
        reader, writer = await asyncio.open_connection(client.host, client.port)
        body = orjson.dumps(track())
        writer.write(
            request_line + b" HTTP/1.1\r\nHost: x\r\nAuthorization: " + scheme + b" \xc3\xa9t\xe9"
            b"\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n"
            + body
        )
        answer = await asyncio.wait_for(reader.read(), 20)
        writer.close()
        return answer

    answer = gw.run(scenario)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]


def test_rudderstacks_beacon_batch_with_the_write_key_in_the_query_is_accepted() -> None:
    # @rudderstack/analytics-js with `useBeacon: true` (its BeaconQueue plugin) calls
    # navigator.sendBeacon(`${dataPlaneUrl}/beacon/v1/batch?writeKey=${writeKey}`, blob) with
    # the blob `{"batch": [...], "sentAt": ...}` of type text/plain: a request without a
    # preflight, whose headers the SDK cannot set (no Authorization), sent with the page's
    # cookies (credentials mode "include"), and whose answer it never reads.
    sent_at = "2026-11-22T10:00:00.000Z"
    body = {"batch": [{**track(), "anonymousId": "a-1", "sentAt": sent_at}], "sentAt": sent_at}

    async def scenario(client: TestClient[Any, Any]) -> list[int]:
        statuses = []
        for key in (KEY, "wk_unknown"):
            resp = await client.post(
                f"/beacon/v1/batch?writeKey={key}",
                data=orjson.dumps(body),
                headers={
                    "Origin": "https://shop.example",
                    "Content-Type": "text/plain;charset=UTF-8",
                    "Cookie": "session=s3cr3t",
                },
            )
            statuses.append(resp.status)
            assert "Access-Control-Allow-Credentials" not in resp.headers  # cookies never count
        return statuses

    gw = Harness()
    assert gw.run(scenario) == [200, 401]
    [record] = gw.on("t.raw")
    tp = parse_touchpoint(record.value)
    assert (tp.event_id, tp.source, tp.identifiers.anonymous_id) == ("m-1", "web-shop", "a-1")
    assert b"wk_" not in record.value  # the key in the query is not stored either
    assert gw.metric("loom_gateway_unauthorized_total", front_door="segment") == 1


def test_a_write_key_in_the_query_counts_on_the_beacon_route_only(gw: Harness) -> None:
    # the other routes take the key the SDKs send (Basic auth, the body): a URL's query ends
    # up in proxies' and browsers' logs, and no Segment SDK puts it there
    status, _, _ = gw.post(f"/v1/batch?writeKey={KEY}", {"batch": [track()]})
    assert status == 401
