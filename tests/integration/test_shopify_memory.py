"""The gateway's Shopify memory (streams.shopify_memory): the Redis implementation and the
in-memory one the unit tests use answer alike, step by step, for any sequence of what webhooks
teach it (hypothesis), on a real Redis."""

from __future__ import annotations

import itertools
import secrets
from typing import Any

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolvers.context import suppression_hash
from schemas.identifiers import CUSTOMER_ID, Identifier
from schemas.inbound.shopify_model import (
    ForgetCustomer,
    MemoryOp,
    OrderMemo,
    RememberCustomer,
    RememberGuest,
    RememberOrder,
)
from streams.redis_clients import acl_rules
from streams.redis_keys import Keys
from streams.shopify_memory import InMemoryShopifyMemory, RedisShopifyMemory

CUSTOMERS = st.sampled_from(["c1", "c2", "c3"])
ORDERS = st.sampled_from(["o1", "o2", "o3", "o4"])
OPS: st.SearchStrategy[MemoryOp] = st.one_of(
    st.builds(RememberCustomer, CUSTOMERS),
    st.builds(RememberGuest, st.sampled_from(["email", "phone"]), st.sampled_from(["g1", "g2"])),
    st.builds(
        RememberOrder,
        ORDERS,
        st.builds(OrderMemo, st.none() | CUSTOMERS, st.none() | st.just("warehouse")),
    ),
    st.builds(ForgetCustomer, CUSTOMERS, st.lists(ORDERS, max_size=2).map(tuple)),
)
STEPS = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.lists(OPS, max_size=3),
        st.none() | st.text("wxyz", min_size=1, max_size=3),
        st.lists(CUSTOMERS, max_size=2),  # erased (privacy.erasures), after the ops
        st.lists(CUSTOMERS, max_size=1),  # erased by the lane and announced, before the ops
    ),
    max_size=12,
)
_run = itertools.count()


def observe(memory: Any, shop: str) -> tuple[Any, ...]:
    orders = {o: memory.order(shop, o) for o in ("o1", "o2", "o3", "o4")}
    marks = {m: memory.answered(shop, m) for m in ("w", "x", "y", "z", "wx", "wxy")}
    shops = sorted(memory.shops())
    return (sorted(memory.customers(shop)), orders, marks, sorted(memory.guests(shop)), shops)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(STEPS)
def test_redis_and_in_memory_remember_alike(
    redis_client: redis.Redis,
    redis_prefix: str,
    steps: list[tuple[str, list[MemoryOp], str | None, list[str], list[str]]],
) -> None:
    prefix = f"{redis_prefix}{next(_run)}"
    real = RedisShopifyMemory(redis_client, prefix, order_ttl_s=3600, salt=b"s")
    fake = InMemoryShopifyMemory(salt=b"s")
    suppressed: set[str] = set()
    for i, (shop, ops, answered, erased, by_the_lane) in enumerate(steps):
        # the lane erases: its suppressed hash, and its announcement read before the ops (a
        # webhook of theirs acknowledged after the privacy worker forgot them)
        lane = {suppression_hash(Identifier(CUSTOMER_ID, c), b"s") for c in by_the_lane}
        for digest in lane:
            redis_client.hset(Keys(prefix).suppressed, digest, b'{"r": true}')
            fake.suppressed.add(digest)
        suppressed.update(by_the_lane)
        for each in list(real.shops()):
            assert real.forget_customers(each, lane) == fake.forget_customers(each, lane)
        real.apply(shop, ops, answered=answered)
        fake.apply(shop, ops, answered=answered)
        digests = {suppression_hash(Identifier(CUSTOMER_ID, c), b"s") for c in erased}
        assert sorted(real.shops()) == sorted(fake.shops())
        for each in list(real.shops()):
            assert real.forget_customers(each, digests) == fake.forget_customers(each, digests)
        for each in ("a", "b"):
            customers, orders = observe(real, each)[:2]
            named = {*customers, *(m.customer_id for m in orders.values() if m is not None)}
            assert not named & set(erased), f"shop {each} remembers an erased customer"
            assert not named & suppressed, f"shop {each} learnt a customer the lane erased"
        for each in ("a", "b"):
            assert observe(real, each) == observe(fake, each), f"shop {each} after step {i}"
    for shop in ("a", "b"):
        real.forget_shop(shop)
        fake.forget_shop(shop)
        assert (
            observe(real, shop)
            == observe(fake, shop)
            == (
                [],
                dict.fromkeys(("o1", "o2", "o3", "o4")),
                dict.fromkeys(("w", "x", "y", "z", "wx", "wxy"), False),
                [],
                observe(real, shop)[4],
            )
        )
    assert list(real.shops()) == list(fake.shops()) == []
    redis_client.delete(Keys(prefix).suppressed)
    assert list(redis_client.scan_iter(f"{prefix}:*")) == []


def test_a_customer_the_lane_erased_is_not_remembered_again(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """Erased by the lane (any channel's request: her customer id's suppression hash is in
    ``P:v1:suppressed``) while the gateway did not remember her yet, or before a webhook of
    hers came late: the privacy worker had nothing to forget, and the webhook made the memory
    learn her customer id again (and name her in her order's memo)."""
    digest = suppression_hash(Identifier(CUSTOMER_ID, "c1"), b"s")
    redis_client.hset(Keys(redis_prefix).suppressed, digest, b'{"r": true}')
    real = RedisShopifyMemory(redis_client, redis_prefix, order_ttl_s=3600, salt=b"s")
    fake = InMemoryShopifyMemory(salt=b"s")
    fake.suppressed.add(digest)
    for memory in (real, fake):
        memory.apply("a", [RememberCustomer("c1"), RememberCustomer("c2")])
        memory.apply("a", [RememberOrder("o1", OrderMemo("c1", "w"))])
        assert sorted(memory.customers("a")) == ["c2"], memory
        assert memory.order("a", "o1") == OrderMemo(None, "w"), memory


def test_memos_and_markers_expire(redis_client: redis.Redis, redis_prefix: str) -> None:
    memory = RedisShopifyMemory(redis_client, redis_prefix, order_ttl_s=3600, salt=b"s")
    memory.apply("a", [RememberOrder("o1", OrderMemo("c1", "w"))], answered="hook-1")
    root = memory.root("a")
    assert 3500 < int(redis_client.ttl(f"{root}:order:o1")) <= 3600  # type: ignore[arg-type]
    assert 72 * 3600 - 100 < int(redis_client.ttl(f"{root}:webhook:hook-1")) <= 72 * 3600  # type: ignore[arg-type]
    assert redis_client.ttl(f"{root}:customer_ids") == -1  # the order's customer: kept
    assert memory.order("a", "o1") == OrderMemo("c1", "w")


def test_every_memory_operation_runs_as_looms_redis_user(
    redis_client: redis.Redis, redis_url: str, redis_prefix: str
) -> None:
    """A secured Redis gives the gateway and the privacy worker a user with exactly
    ``acl_rules`` (README's ``ACL SETUSER`` line): every operation of the memory must run as it
    (the customer ids' hash is read with HSCAN, which the user was not granted)."""
    user, password = f"{redis_prefix}-memory", secrets.token_hex(16)
    rules = acl_rules(redis_prefix).split()
    redis_client.execute_command("ACL", "SETUSER", user, "reset", "on", f">{password}", *rules)
    loom = redis.Redis.from_url(redis_url, username=user, password=password)
    try:
        memory = RedisShopifyMemory(loom, redis_prefix, order_ttl_s=3600, salt=b"s")
        memory.apply(
            "a",
            [
                RememberCustomer("c1"),
                RememberGuest("email", "g@example.com"),
                RememberOrder("o1", OrderMemo("c1", "w")),
            ],
            answered="hook-1",
        )
        assert memory.answered("a", "hook-1")
        assert memory.order("a", "o1") == OrderMemo("c1", "w")
        assert list(memory.customers("a")) == ["c1"]
        assert len(list(memory.guests("a"))) == 1
        assert list(memory.shops()) == ["a"]
        assert (
            memory.forget_customers("a", {suppression_hash(Identifier(CUSTOMER_ID, "c1"), b"s")})
            == 1
        )
        assert memory.order("a", "o1") == OrderMemo(None, "w")
        assert memory.forget_shop("a") > 0
        assert memory.ping()
    finally:
        loom.close()
        redis_client.execute_command("ACL", "DELUSER", user)
