"""What Loom keeps of a customer after Shopify's ``customers/redact``, end to end: signed
webhooks -> a real ``loom gateway`` -> Kafka -> a real ``loom worker`` (both lanes) and
``loom privacy-worker`` -> Redis and the topics.

The customer signs up, subscribes to e-mail marketing, orders, browses the web with every
purpose granted (so her snapshot carried ``ad_identifiers``, unsalted SHA-256 of her e-mail and
phone), unsubscribes, asks for her data, and asks to be forgotten. Then every Redis key of the
deployment (the workers' and the gateway's, names and contents) and every record of every topic
is searched for her customer id, e-mail, phone, name and any hash of them one can compute
without the suppression salt: only her data request (its record names her id, for the privacy
worker to look her up) and its export are left, on the two topics kept 30 days. The privacy
trail kept forever names neither her nor her orders (her order ids are in the consent audit's
event ids, and the redact's erasure id on ``privacy.erasures`` beside her profile id: either
in the clear on the trail would join her to the erased profile's records).

Two places are outside this test's search, on purpose: ``touchpoints.raw`` (the source of truth
a rebuild replays, which holds her events as they came: README "Topics") and
``profiles.changes``, a compacted topic whose records before the tombstone the log cleaner
removes (its bound is tested by ``tests/integration/test_erasure_compaction.py``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from confluent_kafka.admin import ConfigResource
from e2e_harness import Loom
from gateway_process import GatewayProcess
from shopify_deployment import shopify_deployment
from shopify_shop import headers, order_payload, payload

from streams import kafka_clients

EST = timezone(timedelta(hours=-5))
DAY = datetime(2022, 1, 3, tzinfo=EST)
CUSTOMER = 7_300_451
EMAIL = "erin.leftover@example.com"
PHONE = "+12025550187"
FIRST, LAST = "Erinna", "Leftoverby"
ORDER = 5_400_777


def at(hour: int) -> datetime:
    return DAY + timedelta(hours=hour)


def derived(value: str) -> set[str]:
    """``value`` and what anyone can compute from it without the salt: its common digests, as
    hex (ad platforms' SHA-256 included)."""
    raw = value.encode()
    return {
        value,
        *(hashlib.new(name, raw).hexdigest() for name in ("sha256", "sha1", "md5", "sha512")),
        hashlib.blake2b(raw).hexdigest(),
        hashlib.blake2b(raw, digest_size=16).hexdigest(),
    }


NEEDLES = sorted(
    {
        *derived(str(CUSTOMER)),
        *derived(EMAIL),
        *derived(PHONE),
        *derived(PHONE.lstrip("+")),
        FIRST,
        LAST,
    }
)


@pytest.fixture
def deployment(loom: Loom, tmp_path: Path) -> Iterator[tuple[Loom, GatewayProcess]]:
    with shopify_deployment(loom, tmp_path) as deployed:
        yield deployed


def send(gateway: GatewayProcess, topic: str, data: dict[str, Any], when: datetime) -> None:
    raw = orjson.dumps(data)
    fired = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
    sent = headers(topic, raw, webhook_id=f"leftover-{topic}-{when.hour}", triggered_at=fired)
    resp = requests.post(f"{gateway.url}/shopify/webhooks", data=raw, headers=sent, timeout=30)
    assert resp.status_code == 200, resp.text


def redis_text(loom: Loom) -> dict[str, bytes]:
    """Every key under the deployment's prefix -> its name and contents as bytes."""
    r = loom.redis
    out: dict[str, bytes] = {}
    for raw_key in r.scan_iter(f"{loom.settings.redis_prefix}:*", count=1000):
        kind = r.type(raw_key).decode()  # type: ignore[union-attr]
        if kind == "string":
            parts: list[Any] = [r.get(raw_key)]
        elif kind == "hash":
            parts = [x for kv in r.hgetall(raw_key).items() for x in kv]  # type: ignore[union-attr]
        elif kind == "set":
            parts = list(r.smembers(raw_key))  # type: ignore[arg-type]
        elif kind == "stream":
            parts = [x for _, f in r.xrange(raw_key) for kv in f.items() for x in kv]  # type: ignore[union-attr]
        elif kind == "zset":
            parts = list(r.zrange(raw_key, 0, -1))  # type: ignore[arg-type]
        elif kind == "list":
            parts = list(r.lrange(raw_key, 0, -1))  # type: ignore[arg-type]
        else:
            parts = [kind.encode()]
        out[raw_key.decode()] = raw_key + b"\n" + b"\n".join(p or b"" for p in parts)
    return out


def found(blobs: dict[str, bytes]) -> dict[str, list[str]]:
    """Where each needle occurs (case-insensitively)."""
    hits: dict[str, list[str]] = {}
    for where, blob in blobs.items():
        low = blob.lower()
        for needle in NEEDLES:
            if needle.lower().encode() in low:
                hits.setdefault(where, []).append(needle)
    return hits


def wait_for(check: Any, what: str, loom: Loom, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := check():
            return got
        time.sleep(0.5)
    pytest.fail(f"{what} after {timeout}s:\n{loom.logs()}")


def test_after_a_customer_redact_nothing_holds_her_or_a_hash_of_her_without_the_salt(
    deployment: tuple[Loom, GatewayProcess],
) -> None:
    loom, gateway = deployment
    customer = {
        **payload("customers/create"),
        "id": CUSTOMER, "email": EMAIL, "phone": PHONE, "first_name": FIRST,
        "last_name": LAST, "state": "enabled",
        "created_at": at(9).isoformat(), "updated_at": at(9).isoformat(),
        "email_marketing_consent": None, "sms_marketing_consent": None,
        "default_address": {**payload("customers/create")["default_address"],
                            "customer_id": CUSTOMER, "country_code": "US",
                            "first_name": FIRST, "last_name": LAST, "name": f"{FIRST} {LAST}"},
    }  # fmt: skip
    send(gateway, "customers/create", customer, at(9))
    subscribed = {"customer_id": CUSTOMER, "email_address": EMAIL, "email_marketing_consent": {
        "state": "subscribed", "opt_in_level": "single_opt_in",
        "consent_updated_at": at(9).isoformat()}}  # fmt: skip
    send(gateway, "customers_email_marketing_consent/update", subscribed, at(9))
    send(gateway, "orders/create", order_payload(ORDER, 1, at(10), customer=customer,
                                                 email=EMAIL), at(10))  # fmt: skip
    every = {"analytics": True, "personalization": True, "marketing": True, "ads": True}
    loom.produce([{
        "event_id": "leftover-web-1", "type": "product_viewed", "channel": "web",
        "occurred_at": at(11).isoformat(), "region": "US",
        "identifiers": {"customer_id": str(CUSTOMER), "email": EMAIL, "phone": PHONE},
        "consent": every, "properties": {"category": "audio"},
    }])  # fmt: skip
    loom.wait_idle()
    [profile] = [p for p in loom.profiles().values()
                 if str(CUSTOMER) in p["identifiers"].get("customer_id", [])]  # fmt: skip
    assert profile["ad_identifiers"]  # her unsalted hashes were published with her snapshot
    unsubscribed = {**subscribed, "email_marketing_consent": {
        **subscribed["email_marketing_consent"], "state": "unsubscribed",
        "consent_updated_at": at(12).isoformat()}}  # fmt: skip
    send(gateway, "customers_email_marketing_consent/update", unsubscribed, at(12))
    loom.wait_idle()

    asked = {**payload("customers/data_request"), "customer": {"id": CUSTOMER, "email": EMAIL},
             "orders_requested": [ORDER]}  # fmt: skip
    send(gateway, "customers/data_request", asked, at(12))
    wait_for(lambda: loom.decoded(loom.settings.topics.privacy_exports), "no export", loom)

    redact = {**payload("customers/redact"),
              "customer": {"id": CUSTOMER, "email": EMAIL, "phone": PHONE},
              "orders_to_redact": [ORDER]}  # fmt: skip
    send(gateway, "customers/redact", redact, at(13))
    loom.wait_idle()
    wait_for(
        lambda: any(v["kind"] == "customer_redact"
                    for _, v in loom.decoded(loom.settings.topics.privacy_audit)),
        "the privacy worker audited no customer_redact", loom,
    )  # fmt: skip
    assert [v["profile_id"] for _, v in loom.decoded(loom.settings.topics.erasures)] == [
        profile["profile_id"]
    ]

    t = loom.settings.topics
    blobs = redis_text(loom)
    for topic in loom.topic_names:
        if topic in (t.raw, t.profile_changes):
            continue  # the module doc says why
        for m in loom.topic_records(topic):
            head = b"".join(k.encode() + (v or b"") for k, v in (m.headers() or []))
            blobs[f"{topic}@{m.offset()}"] = (m.key() or b"") + b"\n" + (m.value() or b"") + head
    t30 = [t.privacy_requests, t.privacy_exports]  # the data request and its export
    left = found(blobs)
    assert sorted(left) == [f"{t.privacy_exports}@0", f"{t.privacy_requests}@0"], left
    assert [orjson.loads(m.value())["kind"] for m in loom.topic_records(t.privacy_requests)] == [
        "data_request",
        "customer_redact",
    ]
    assert retention_ms(loom, t30) == dict.fromkeys(t30, 30 * 24 * 3600 * 1000)
    trail = [m.value() for name in (t.privacy_requests, t.privacy_audit)
             for m in loom.topic_records(name)][1:]  # fmt: skip
    assert [v for v in trail if str(ORDER).encode() in v] == []


def retention_ms(loom: Loom, topics: list[str]) -> dict[str, int]:
    admin = kafka_clients.admin(loom.settings)
    futures = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, n) for n in topics])
    return {
        resource.name: int(future.result()["retention.ms"].value)
        for resource, future in futures.items()
    }


def test_an_erasure_from_another_channel_leaves_no_customer_id_in_the_gateways_memory(
    deployment: tuple[Loom, GatewayProcess],
) -> None:
    """Erased by an ``erasure_requested`` from support naming only her e-mail (not Shopify's
    ``customers/redact``): the gateway's Shopify memory forgets her customer id too, in the
    shop's customers and in the memory of her order (docs/consent.md "After an erasure")."""
    loom, gateway = deployment
    customer = {**payload("customers/create"), "id": CUSTOMER, "email": EMAIL, "phone": PHONE,
                "state": "enabled", "created_at": at(9).isoformat(),
                "updated_at": at(9).isoformat()}  # fmt: skip
    send(gateway, "customers/create", customer, at(9))
    send(gateway, "orders/create", order_payload(ORDER, 1, at(10), customer=customer,
                                                 email=EMAIL), at(10))  # fmt: skip
    loom.wait_idle()
    shopify = f"{loom.settings.redis_prefix}:shopify:"

    def memory_naming_her() -> list[str]:
        return sorted(k for k, blob in redis_text(loom).items()
                      if k.startswith(shopify) and str(CUSTOMER).encode() in blob)  # fmt: skip

    assert memory_naming_her()  # the gateway remembers her and her order
    loom.produce([{
        "event_id": "leftover-support-erasure", "type": "erasure_requested",
        "channel": "support", "occurred_at": at(13).isoformat(), "region": "US",
        "identifiers": {"email": EMAIL},
    }])  # fmt: skip
    loom.wait_idle()
    wait_for(lambda: loom.decoded(loom.settings.topics.erasures), "no erasure announced", loom)
    wait_for(lambda: not memory_naming_her(), "the gateway's memory still names her", loom, 30)
    order = loom.redis.get(f"{shopify}v1:jsmith:order:{ORDER}")
    assert order is not None  # her order's memory stays (its stock), without her
