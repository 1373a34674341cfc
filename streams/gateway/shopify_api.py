"""The Shopify front door: ``POST /shopify/webhooks``, every topic of every configured shop.

For each delivery, in this order:

1. **who**: the shop of ``X-Shopify-Shop-Domain`` must be configured and
   ``X-Shopify-Hmac-Sha256`` must be the HMAC-SHA256 of the raw body with one of its secrets
   (:mod:`streams.gateway.shopify_shops`); otherwise 401 and nothing else happens (counted);
2. **once**: a webhook (``X-Shopify-Webhook-Id``) already acknowledged is answered 200 at once
   (Shopify retries for 48 hours; a retry changes nothing);
3. **map**: the payload becomes touchpoints (raw topic), a privacy request
   (``privacy.requests``), or, if it cannot be mapped, a dead letter (DLQ, with the body and
   every ``X-Shopify-*`` header, the signature included, so it can be sent here again once the
   configuration is fixed): :mod:`schemas.inbound.shopify`, with what the gateway remembers of
   the order (:mod:`streams.shopify_memory`);
4. **ack**: the records are produced with ``acks=all``; the answer waits for Kafka, within
   :data:`DEADLINE_S` of receiving the request, since Shopify gives up after 5 seconds;
5. **remember**: what the webhook taught the gateway (orders, customers, redactions) and that
   it was answered, in one Redis call (not for a dead letter); then 200.

A failure in 4 or 5 is a 429/503: Shopify retries, and the same webhook maps to the same event
ids, which the workers apply once. Invalid payloads are acknowledged (200) and dead-lettered,
and not remembered as answered: the dead letter posted again once the configuration is fixed
(same webhook id) is mapped, not taken for a retry (a retry of one still invalid is
dead-lettered again).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Final, ParamSpec, TypeVar

import orjson
import redis
from aiohttp import web

from schemas.errors import MALFORMED_JSON, InvalidEvent
from schemas.inbound.base import timestamp
from schemas.inbound.shopify import TOPICS, map_webhook, memo_order_id
from schemas.inbound.shopify_common import webhook_key
from schemas.inbound.shopify_model import Delivery, Mapped, OrderMemo, Shop
from schemas.inbound.shopify_privacy import recorded
from streams.gateway.body import read_body
from streams.gateway.errors import (
    BadRequestError,
    GatewayError,
    UnauthorizedError,
    UnavailableError,
)
from streams.gateway.metrics import GatewayMetrics
from streams.gateway.records import STAGE, OutRecord, accepted, dead_letter
from streams.gateway.shopify_shops import Shops
from streams.gateway.sink import Sink
from streams.settings import LoomSettings
from streams.shopify_memory import ShopifyMemory

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

NAME: Final = "shopify"
PATH: Final = "/shopify/webhooks"
#: Longest time from receiving a webhook to answering it (Shopify waits 5 s in all).
DEADLINE_S: Final = 4.0
#: Headers kept with a dead letter (enough to send it to the gateway again), first; then
#: every other ``X-Shopify-*`` header (the DLQ keeps up to 32, 1 KB each).
KEPT_HEADERS: Final = (
    "X-Shopify-Topic",
    "X-Shopify-Hmac-Sha256",
    "X-Shopify-Shop-Domain",
    "X-Shopify-Webhook-Id",
    "X-Shopify-Triggered-At",
    "X-Shopify-API-Version",
    "X-Shopify-Event-Id",
)
_KEPT: Final = frozenset(name.lower() for name in KEPT_HEADERS)
_OK: Final = b'{"success":true}'


class ShopifyWebhooks:
    """The Shopify front door (module doc). ``routes()`` is what the app mounts."""

    name: Final = NAME
    #: Shopify's servers call it, never browsers.
    browser_routes: Final = frozenset[str]()

    def __init__(
        self,
        shops: Shops,
        memory: ShopifyMemory,
        sink: Sink,
        metrics: GatewayMetrics,
        settings: LoomSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.shops, self.memory, self.sink, self.metrics = shops, memory, sink, metrics
        self.clock = clock
        self.topics = settings.topics
        # privacy requests name a redacted customer by salted digest only (shopify_privacy)
        self.salt = settings.suppression_salt.get_secret_value().encode()
        self.max_body_bytes = settings.gateway_max_batch_bytes
        self.body_timeout_s = settings.gateway_body_timeout_s

    def routes(self) -> list[web.RouteDef]:
        return [web.post(PATH, self.receive, name=f"{NAME}.webhook")]

    async def receive(self, request: web.Request) -> web.Response:
        start = time.monotonic()
        received_at = self.clock()
        raw = await read_body(request, self.max_body_bytes, self.body_timeout_s)
        headers = request.headers
        shop = self.shops.verified(
            headers.get("X-Shopify-Shop-Domain"), raw, headers.get("X-Shopify-Hmac-Sha256")
        )
        if shop is None:
            self.metrics.unauthorized.labels(NAME).inc()
            raise UnauthorizedError("unknown shop, or the webhook's signature does not match")
        topic = headers.get("X-Shopify-Topic", "").strip()
        label = topic if topic in TOPICS else "other"
        webhook_id = headers.get("X-Shopify-Webhook-Id", "").strip()
        if not webhook_id:
            raise BadRequestError("X-Shopify-Webhook-Id is required")
        answered = webhook_key(webhook_id)
        count = self.metrics.webhooks
        if await self._memory(self.memory.answered, shop.name, answered):
            count.labels(shop.name, label, "duplicate").inc()
            return _ok()
        delivery = Delivery(
            topic=topic,
            webhook_id=webhook_id,
            received_at=received_at,
            triggered_at=_triggered_at(headers.get("X-Shopify-Triggered-At")),
            api_version=headers.get("X-Shopify-API-Version"),
            event_id=headers.get("X-Shopify-Event-Id"),
        )
        mapped, records, invalid = await self._map(shop, delivery, raw, headers)
        outcome = "invalid" if mapped is None else "ignored" if mapped.ignored else "mapped"
        events = self.metrics.events
        try:
            remaining = max(0.1, DEADLINE_S - (time.monotonic() - start))
            await asyncio.wait_for(self.sink.deliver(records), remaining)
        except (GatewayError, TimeoutError) as exc:
            count.labels(shop.name, label, "refused").inc()
            if mapped is not None:
                events.labels(NAME, shop.name, "refused").inc(len(mapped.touchpoints))
            if isinstance(exc, TimeoutError):
                raise UnavailableError("Kafka did not acknowledge the webhook in time") from None
            raise
        if mapped is not None:  # a dead letter is not remembered: sent again, it maps again
            await self._memory(self.memory.apply, shop.name, mapped.memory, answered=answered)
        count.labels(shop.name, label, outcome).inc()
        if invalid is not None:
            events.labels(NAME, shop.name, "invalid").inc()
            self.metrics.dlq_records.labels(STAGE, invalid.reason).inc()
            log.warning("shopify %s %s: dead-lettered (%s)", shop.name, _safe(topic), invalid)
        elif mapped is not None:
            events.labels(NAME, shop.name, "accepted").inc(len(mapped.touchpoints))
        return _ok()

    async def _map(
        self, shop: Shop, delivery: Delivery, raw: bytes, headers: Mapping[str, str]
    ) -> tuple[Mapped | None, list[OutRecord], InvalidEvent | None]:
        """The webhook's records: its touchpoints and privacy request, or its dead letter
        (and why)."""
        try:
            try:
                payload = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise InvalidEvent(MALFORMED_JSON, "the body is not valid JSON") from None
            memo: OrderMemo | None = None
            if (order_id := memo_order_id(delivery.topic, payload)) is not None:
                memo = await self._memory(self.memory.order, shop.name, order_id)
            mapped = map_webhook(shop, delivery, payload, memo)
        except InvalidEvent as exc:
            kept = {name: headers[name].encode() for name in KEPT_HEADERS if name in headers}
            for name, sent in headers.items():
                if name.lower().startswith("x-shopify-") and name.lower() not in _KEPT:
                    kept[name] = sent.encode()
            letter = dead_letter(
                raw,
                exc,
                where=f"gateway:{NAME}:{shop.name}",
                topic=self.topics.dlq,
                now=delivery.received_at,
                headers=kept,
            )
            return None, [letter], exc
        records = [accepted(tp, self.topics.raw) for tp in mapped.touchpoints]
        if mapped.privacy is not None:
            value = orjson.dumps(recorded(mapped.privacy, self.salt).to_json())
            records.append(OutRecord(self.topics.privacy_requests, value, shop.name.encode()))
        return mapped, records, None

    async def _memory(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """A call of the gateway's memory on a thread; Redis down is a 503 (Shopify retries)."""
        try:
            return await asyncio.to_thread(call, *args, **kwargs)
        except redis.RedisError as exc:
            log.warning("shopify: the gateway's memory (Redis) failed: %s", type(exc).__name__)
            raise UnavailableError("the gateway's memory (Redis) is unavailable") from None


def _ok() -> web.Response:
    return web.Response(body=_OK, content_type="application/json")


def _triggered_at(value: str | None) -> datetime | None:
    try:
        return timestamp(value, "X-Shopify-Triggered-At")
    except InvalidEvent:
        return None


def _safe(topic: str) -> str:
    return topic if topic in TOPICS else "(unmapped topic)"
