"""The Segment front door: the HTTP Tracking API as Segment's SDKs call it.

Routes (all ``POST`` with a JSON body, plain or gzip; browsers send ``text/plain`` to avoid a
CORS preflight, so the content type is not checked):

* ``/v1/track|identify|page|screen|alias|group`` and the browser SDK's short forms
  ``/v1/t|i|p|s|a|g``: one message (the path decides its type);
* ``/v1/batch``, ``/v1/b`` (browser batching) and ``/v1/import``: ``{"batch": [...]}`` with an
  optional batch-level ``sentAt`` and ``context`` (merged under each message's);
* ``/beacon/v1/batch?writeKey=...``: a batch as RudderStack's browser SDK sends it with
  ``useBeacon`` (``navigator.sendBeacon`` sets no headers: the write key is in the query, on
  this route only);
* ``GET /v1/projects/{writeKey}/settings``: the settings document the browser SDK loads from
  its CDN, pointing it back at this gateway (``cdnURL`` = the gateway's URL).

Auth: the write key as HTTP Basic user (``Authorization: Basic base64(key:)``), else the
body's ``writeKey``; missing or unknown -> 401, counted. Limits: ``LOOM_GATEWAY_MAX_EVENT_BYTES``
per message (and per single-message body), ``LOOM_GATEWAY_MAX_BATCH_BYTES`` per body,
decompressed; over them -> 400 ``too_large`` (a message over the limit inside a batch is one
invalid event instead).

Answer: 200 ``{"success": true}`` once Kafka acknowledged every event of the request, with
``errors`` listing the events that could not be mapped (index, messageId, reason, field,
message; each also dead-lettered, and acknowledged, on the DLQ). 429/503 with Retry-After when
the sink refuses (:mod:`streams.gateway.sink`); nothing else ever gets a 200.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from aiohttp import web

from schemas.errors import MALFORMED_JSON, OVERSIZE, InvalidEvent
from schemas.inbound.base import Source
from schemas.inbound.segment import Received, map_message
from streams.gateway.body import read_body
from streams.gateway.errors import (
    BadRequestError,
    GatewayError,
    TooLargeError,
    UnauthorizedError,
)
from streams.gateway.metrics import GatewayMetrics
from streams.gateway.records import STAGE, OutRecord, accepted, dead_letter
from streams.gateway.sink import Sink
from streams.gateway.sources import WriteKeys
from streams.settings import LoomSettings

log = logging.getLogger(__name__)

NAME: Final = "segment"
_SUCCESS: Final = b'{"success":true}'


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


#: Path of a single-message endpoint -> message type.
SINGLE: Final[Mapping[str, str]] = {
    **{t: t for t in ("track", "identify", "page", "screen", "alias", "group")},
    "t": "track",
    "i": "identify",
    "p": "page",
    "s": "screen",
    "a": "alias",
    "g": "group",
}
BATCH: Final = frozenset({"batch", "b", "import"})


class SegmentApi:
    """The Segment front door (module doc). ``routes()`` is what the app mounts."""

    name: Final = NAME
    #: The routes browsers call (the browser SDK sends and loads its settings): the app answers
    #: CORS for them, and for no other route of this door.
    browser_routes: Final = frozenset({f"{NAME}.receive", f"{NAME}.cdn", f"{NAME}.beacon"})

    def __init__(
        self,
        keys: WriteKeys,
        sink: Sink,
        metrics: GatewayMetrics,
        settings: LoomSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.keys, self.sink, self.metrics, self.clock = keys, sink, metrics, clock
        self.raw_topic, self.dlq_topic = settings.topics.raw, settings.topics.dlq
        self.max_event_bytes = settings.gateway_max_event_bytes
        self.max_batch_bytes = settings.gateway_max_batch_bytes
        self.body_timeout_s = settings.gateway_body_timeout_s
        #: more than could ever be in flight at once would only be refused (429) forever
        self.max_messages = settings.gateway_max_in_flight

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/{call}", self.receive, name=f"{NAME}.receive"),
            web.post("/beacon/v1/batch", self.receive_beacon, name=f"{NAME}.beacon"),
            web.get("/v1/projects/{write_key}/settings", self.cdn_settings, name=f"{NAME}.cdn"),
        ]

    # --- receiving ---------------------------------------------------------------------------

    async def receive(self, request: web.Request) -> web.Response:
        call = request.match_info["call"]
        if call not in SINGLE and call not in BATCH:
            raise web.HTTPNotFound()
        return await self._receive(
            request, call, basic_auth_user(request.headers.get("Authorization"))
        )

    async def receive_beacon(self, request: web.Request) -> web.Response:
        """RudderStack's browser SDK with ``useBeacon``: ``navigator.sendBeacon`` posts a batch
        (``text/plain``) and cannot set headers, so the SDK puts the write key in the query
        (``/beacon/v1/batch?writeKey=...``). Only this route reads it there."""
        key = request.query.get("writeKey")
        if key is None:
            key = basic_auth_user(request.headers.get("Authorization"))
        return await self._receive(request, "batch", key)

    async def _receive(
        self, request: web.Request, call: str, header_key: str | None
    ) -> web.Response:
        """``header_key``: the write key the request names outside its body (``""``: a
        malformed one, refused); ``None``: the body's ``writeKey``."""
        received_at = self.clock()
        source = self._authenticate(header_key) if header_key is not None else None
        limit = self.max_batch_bytes if call in BATCH else self.max_event_bytes
        body = parse_object(await read_body(request, limit, self.body_timeout_s))
        if source is None:
            key = body.get("writeKey")
            source = self._authenticate(key if isinstance(key, str) else None)
        messages, sent_at, shared = unpack(body, SINGLE.get(call))
        if len(messages) > self.max_messages:
            raise TooLargeError(
                f"{len(messages)} messages in one request, limit {self.max_messages}"
            )
        received = Received(received_at, sent_at, gpc=request.headers.get("Sec-GPC") == "1")
        records, errors = self._records(messages, shared, source, received)
        events = self.metrics.events
        try:
            await self.sink.deliver(records)
        except GatewayError:
            events.labels(NAME, source.name, "refused").inc(len(messages))
            raise
        invalid = len(errors)
        events.labels(NAME, source.name, "accepted").inc(len(messages) - invalid)
        if invalid:
            events.labels(NAME, source.name, "invalid").inc(invalid)
            for e in errors:
                self.metrics.dlq_records.labels(STAGE, e["reason"]).inc()
            return web.json_response({"success": True, "errors": errors}, dumps=_dumps)
        return web.Response(body=_SUCCESS, content_type="application/json")

    def _authenticate(self, write_key: str | None) -> Source:
        source = self.keys.source_for(write_key)
        if source is None:
            self.metrics.unauthorized.labels(NAME).inc()
            raise UnauthorizedError("missing or unknown write key")
        return source

    def _records(
        self,
        messages: Sequence[object],
        shared: Mapping[str, Any],
        source: Source,
        received: Received,
    ) -> tuple[list[OutRecord], list[dict[str, Any]]]:
        """Each message's record; ``shared`` (the batch's ``context``) is merged under each
        message's own after its size is checked: the limit is the SDK's, on what it sent."""
        records: list[OutRecord] = []
        errors: list[dict[str, Any]] = []
        where = f"gateway:{NAME}:{source.name}"
        for index, sent in enumerate(messages):
            original = orjson.dumps(sent)
            size = len(original)
            message = _with_context(sent, shared)
            if message is not sent:
                original = orjson.dumps(message)
            try:
                if size > self.max_event_bytes:
                    raise InvalidEvent(
                        OVERSIZE, f"message is {size} bytes, limit {self.max_event_bytes}"
                    )
                tp = map_message(message, source, received)
            except InvalidEvent as exc:
                records.append(
                    dead_letter(original, exc, where=where, topic=self.dlq_topic, now=received.at)
                )
                errors.append(_error_entry(index, message, exc))
                continue
            records.append(accepted(tp, self.raw_topic))
        return records, errors

    # --- the browser SDK's settings ------------------------------------------------------------

    async def cdn_settings(self, request: web.Request) -> web.Response:
        """What ``@segment/analytics-next`` loads from ``{cdnURL}/v1/projects/{key}/settings``:
        send every event here (``apiHost`` = this gateway), no remote plugins, no telemetry."""
        write_key = request.match_info["write_key"]
        self._authenticate(write_key)
        proto = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
        host = request.headers.get("X-Forwarded-Host", request.host).split(",")[0].strip()
        return web.json_response(
            {
                "integrations": {
                    "Segment.io": {
                        "apiKey": write_key,
                        "apiHost": f"{host}/v1",
                        "protocol": proto if proto in ("http", "https") else "https",
                        "addBundledMetadata": False,
                    }
                },
                "plan": {},
                "enabledMiddleware": {},
                "middlewareSettings": {},
                "remotePlugins": [],
                "legacyVideoPluginsEnabled": False,
                "metrics": {"sampleRate": 0},
            },
            # the answer depends on the forwarded headers: a shared cache (a CDN in front, the
            # SDK's cdnURL) must not serve one client's `X-Forwarded-Host` to every browser
            headers={"Cache-Control": "max-age=300", "Vary": "X-Forwarded-Host, X-Forwarded-Proto"},
        )


# --- request helpers (pure) -----------------------------------------------------------------


def basic_auth_user(header: str | None) -> str | None:
    """The write key of an ``Authorization: Basic`` header (its user, else its password);
    ``None`` when there is no such header, ``""`` (no key: a 401) when it is malformed."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, not UTF-8, or a token that is not ASCII
        return ""
    user, _, password = decoded.partition(":")
    return user or password


def parse_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object. A lone surrogate escape (``"\\ud83c"``: half of a UTF-16
    pair, what ``JSON.stringify`` writes for a JavaScript string cut inside an emoji) is valid
    JSON text that ``orjson`` refuses; it becomes U+FFFD, so that one cut string does not cost
    the whole batch (400, which the SDKs drop)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            body = orjson.loads(_LONE_SURROGATES.sub(_mend_surrogate, raw))
        except orjson.JSONDecodeError:
            raise BadRequestError(f"{MALFORMED_JSON}: the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequestError("the body must be a JSON object")
    return body


#: In JSON text, left to right: an escaped backslash (kept, so that the text ``\\ud83c`` is a
#: backslash and "ud83c"), a surrogate pair (kept), or a lone surrogate escape (replaced).
_LONE_SURROGATES: Final = re.compile(
    rb"\\\\"
    rb"|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    rb"|\\u[dD][89a-fA-F][0-9a-fA-F]{2}"
)


def _mend_surrogate(match: re.Match[bytes]) -> bytes:
    token = match.group()
    return token if len(token) != 6 else b"\\ufffd"


def unpack(
    body: Mapping[str, Any], single_type: str | None
) -> tuple[list[object], object, Mapping[str, Any]]:
    """The messages of a request body (without ``writeKey``), its batch-level ``sentAt``
    and its batch-level ``context`` (to merge under each message's own: :func:`_with_context`).

    A single-message body is the message (its type set by the path)."""
    if single_type is not None:
        return [{**_without_key(body), "type": single_type}], None, {}
    batch = body.get("batch")
    if not isinstance(batch, list):
        raise BadRequestError("a batch body needs a 'batch' list")
    shared = body.get("context")
    if not isinstance(shared, Mapping):
        shared = {}
    messages = [_without_key(m) if isinstance(m, Mapping) else m for m in batch]
    return messages, body.get("sentAt"), shared


def _without_key(message: Mapping[str, Any]) -> dict[str, Any]:
    """The message without ``writeKey`` (a credential: never stored, not even in the DLQ)."""
    return {k: v for k, v in message.items() if k != "writeKey"}


def _with_context(message: object, shared: Mapping[str, Any]) -> object:
    """``message`` with the batch's context under its own; itself when there is none."""
    if not shared or not isinstance(message, Mapping):
        return message
    own = message.get("context")
    return {**message, "context": {**shared, **own} if isinstance(own, Mapping) else dict(shared)}


def _error_entry(index: int, message: object, exc: InvalidEvent) -> dict[str, Any]:
    entry: dict[str, Any] = {"index": index, "reason": exc.reason, "message": str(exc)}
    if exc.field is not None:
        entry["field"] = exc.field
    message_id = message.get("messageId") if isinstance(message, Mapping) else None
    if isinstance(message_id, str) and len(message_id) <= 128:
        entry["messageId"] = message_id
    return entry
