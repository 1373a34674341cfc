"""What the gateway remembers of each Shopify shop, in Redis: webhooks answered, orders, customers.

* **webhooks answered** (``X-Shopify-Webhook-Id``, for :data:`WEBHOOK_TTL_S`, longer than
  Shopify's 48 hours of retries): a retry of a webhook Kafka already acknowledged is answered
  200 without producing anything again;
* **orders** (for ``LOOM_GATEWAY_SHOPIFY_ORDER_TTL_S``): the customer of each order and where an
  online order committed its units, which fulfilments, refunds and cancellations need (their
  payloads name neither; :class:`~schemas.inbound.shopify_model.OrderMemo`);
* **customers**: every customer id the shop sent, which ``shop/redact`` erases;
* **guests**: the salted hashes (the pipeline's suppression hashes, with the same salt) of
  the e-mails and phones of the shop's guest checkouts (orders without a customer), which
  ``shop/redact`` erases too: the privacy worker finds the identifiers Loom holds under them
  (:meth:`streams.reader.ProfileReader.held_under`). Never the values;
* **redacted customers**: salted hashes of the customers ``customers/redact`` erased, so a late
  retry of an older webhook does not make the gateway remember them again.

Key layout (``P`` = ``LOOM_REDIS_PREFIX``, ``S`` = the shop's configured name)::

    P:shopify:v1:S:webhook:<webhook id>   string, expires           webhook answered
    P:shopify:v1:S:order:<order id>       string (JSON c, w), expires   order memo
    P:shopify:v1:S:customers              set of customer ids
    P:shopify:v1:S:guests                 set of suppression hashes of guest e-mails/phones
    P:shopify:v1:S:redacted               set of salted SHA-256 of redacted customer ids

What a webhook makes the gateway remember is applied with its answered marker in one Lua call,
after Kafka acknowledged the webhook's records. :class:`InMemoryShopifyMemory` is the same
contract in a dict, for tests of the front door (one contract test runs both).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Final, Protocol

import orjson
import redis

from resolvers.context import suppression_hash
from schemas.identifiers import Identifier
from schemas.inbound.shopify_model import (
    ForgetCustomer,
    MemoryOp,
    OrderMemo,
    RememberCustomer,
    RememberGuest,
    RememberOrder,
)

#: How long a webhook's "answered" marker is kept: Shopify retries for 48 hours.
WEBHOOK_TTL_S: Final = 72 * 3600

#: ARGV: root, order ttl, marker (webhook id, '' = none), then ops:
#: ``customer <id> <hash>`` | ``guest <suppression hash>``
#: | ``order <id> <customer id or ''> <its hash> <committed_at or ''>``
#: | ``forget <customer id> <hash> <n> <order ids...>``.
APPLY_SCRIPT: Final = """
local root, ttl, marker, marker_ttl = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local customers, redacted = root .. ':customers', root .. ':redacted'
local i = 5
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'customer' then
    if redis.call('SISMEMBER', redacted, ARGV[i + 2]) == 0 then
      redis.call('SADD', customers, ARGV[i + 1])
    end
    i = i + 3
  elseif op == 'guest' then
    redis.call('SADD', root .. ':guests', ARGV[i + 1])
    i = i + 2
  elseif op == 'order' then
    local c = ARGV[i + 2]
    if c ~= '' and redis.call('SISMEMBER', redacted, ARGV[i + 3]) == 1 then c = '' end
    redis.call('SET', root .. ':order:' .. ARGV[i + 1], cjson.encode({c = c, w = ARGV[i + 4]}),
               'EX', ttl)
    i = i + 5
  elseif op == 'forget' then
    redis.call('SREM', customers, ARGV[i + 1])
    redis.call('SADD', redacted, ARGV[i + 2])
    local n = tonumber(ARGV[i + 3])
    for j = 1, n do redis.call('DEL', root .. ':order:' .. ARGV[i + 3 + j]) end
    i = i + 4 + n
  else
    return redis.error_reply('unknown op')
  end
end
if marker ~= '' then redis.call('SET', root .. ':webhook:' .. marker, '1', 'EX', marker_ttl) end
return 1
"""


class ShopifyMemory(Protocol):
    """What the Shopify front door and the privacy worker need to remember (module doc).
    Blocking calls: the gateway runs them on a thread."""

    def answered(self, shop: str, webhook_id: str) -> bool: ...

    def order(self, shop: str, order_id: str) -> OrderMemo | None: ...

    def apply(self, shop: str, ops: Sequence[MemoryOp], *, answered: str | None = None) -> None:
        """Apply what a webhook made the gateway remember, and mark it answered."""
        ...

    def customers(self, shop: str) -> Iterator[str]: ...

    def guests(self, shop: str) -> Iterator[str]:
        """The suppression hashes of the shop's guest identifiers (module doc)."""
        ...

    def forget_shop(self, shop: str) -> int:
        """Forget everything of the shop; returns the number of keys deleted."""
        ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


def _hash(salt: bytes, customer_id: str) -> str:
    return hashlib.sha256(salt + customer_id.encode()).hexdigest()


def _guest_hash(salt: bytes, op: RememberGuest) -> str:
    """The pipeline's suppression hash of the guest's identifier."""
    return suppression_hash(Identifier(op.identifier_type, op.value), salt)


class RedisShopifyMemory:
    def __init__(self, client: redis.Redis, prefix: str, *, order_ttl_s: int, salt: bytes) -> None:
        self.client = client
        self.prefix = prefix
        self.order_ttl_s = order_ttl_s
        self.salt = salt
        self._apply = client.register_script(APPLY_SCRIPT)

    def root(self, shop: str) -> str:
        return f"{self.prefix}:shopify:v1:{shop}"

    def answered(self, shop: str, webhook_id: str) -> bool:
        return bool(self.client.exists(f"{self.root(shop)}:webhook:{webhook_id}"))

    def order(self, shop: str, order_id: str) -> OrderMemo | None:
        raw = self.client.get(f"{self.root(shop)}:order:{order_id}")
        if raw is None:
            return None
        data = orjson.loads(raw)
        return OrderMemo(customer_id=data.get("c") or None, committed_at=data.get("w") or None)

    def apply(self, shop: str, ops: Sequence[MemoryOp], *, answered: str | None = None) -> None:
        args: list[str | int] = [self.root(shop), self.order_ttl_s, answered or "", WEBHOOK_TTL_S]
        for op in ops:
            if isinstance(op, RememberCustomer):
                args += ["customer", op.customer_id, _hash(self.salt, op.customer_id)]
            elif isinstance(op, RememberGuest):
                args += ["guest", _guest_hash(self.salt, op)]
            elif isinstance(op, RememberOrder):
                cid = op.memo.customer_id or ""
                hashed = _hash(self.salt, cid) if cid else ""
                args += ["order", op.order_id, cid, hashed, op.memo.committed_at or ""]
            elif isinstance(op, ForgetCustomer):
                args += ["forget", op.customer_id, _hash(self.salt, op.customer_id)]
                args += [len(op.order_ids), *op.order_ids]
        self._apply(keys=[], args=args)

    def customers(self, shop: str) -> Iterator[str]:
        for member in self.client.sscan_iter(f"{self.root(shop)}:customers", count=1000):
            yield member.decode() if isinstance(member, bytes) else str(member)

    def guests(self, shop: str) -> Iterator[str]:
        for member in self.client.sscan_iter(f"{self.root(shop)}:guests", count=1000):
            yield member.decode() if isinstance(member, bytes) else str(member)

    def forget_shop(self, shop: str) -> int:
        deleted = 0
        batch: list[bytes | str] = []
        for key in self.client.scan_iter(f"{self.root(shop)}:*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(self.client.delete(*batch))
                batch.clear()
        if batch:
            deleted += int(self.client.delete(*batch))
        return deleted

    def ping(self) -> bool:
        return bool(self.client.ping())

    def close(self) -> None:
        self.client.close()


class InMemoryShopifyMemory:
    """The same contract in dicts (tests of the front door and the privacy worker)."""

    def __init__(self, salt: bytes = b"test-salt") -> None:
        self.salt = salt
        self.markers: dict[tuple[str, str], bool] = {}
        self.orders: dict[tuple[str, str], OrderMemo] = {}
        self.known: dict[str, set[str]] = {}
        self.redacted: dict[str, set[str]] = {}
        self.guest_hashes: dict[str, set[str]] = {}
        self.up = True

    def _check(self) -> None:
        if not self.up:
            raise redis.ConnectionError("memory down (test)")

    def answered(self, shop: str, webhook_id: str) -> bool:
        self._check()
        return (shop, webhook_id) in self.markers

    def order(self, shop: str, order_id: str) -> OrderMemo | None:
        self._check()
        return self.orders.get((shop, order_id))

    def apply(self, shop: str, ops: Sequence[MemoryOp], *, answered: str | None = None) -> None:
        self._check()
        redacted = self.redacted.setdefault(shop, set())
        for op in ops:
            if isinstance(op, RememberCustomer):
                if _hash(self.salt, op.customer_id) not in redacted:
                    self.known.setdefault(shop, set()).add(op.customer_id)
            elif isinstance(op, RememberGuest):
                self.guest_hashes.setdefault(shop, set()).add(_guest_hash(self.salt, op))
            elif isinstance(op, RememberOrder):
                memo = op.memo
                cid = memo.customer_id
                if cid is not None and _hash(self.salt, cid) in redacted:
                    memo = OrderMemo(None, memo.committed_at)
                self.orders[(shop, op.order_id)] = memo
            elif isinstance(op, ForgetCustomer):
                self.known.setdefault(shop, set()).discard(op.customer_id)
                redacted.add(_hash(self.salt, op.customer_id))
                for order_id in op.order_ids:
                    self.orders.pop((shop, order_id), None)
        if answered is not None:
            self.markers[(shop, answered)] = True

    def customers(self, shop: str) -> Iterator[str]:
        self._check()
        yield from sorted(self.known.get(shop, set()))

    def guests(self, shop: str) -> Iterator[str]:
        self._check()
        yield from sorted(self.guest_hashes.get(shop, set()))

    def forget_shop(self, shop: str) -> int:
        self._check()
        n = len([k for k in self.markers if k[0] == shop])
        n += len([k for k in self.orders if k[0] == shop])
        self.markers = {k: v for k, v in self.markers.items() if k[0] != shop}
        self.orders = {k: v for k, v in self.orders.items() if k[0] != shop}
        n += int(bool(self.known.pop(shop, None))) + int(bool(self.redacted.pop(shop, None)))
        n += int(bool(self.guest_hashes.pop(shop, None)))
        return n

    def ping(self) -> bool:
        return self.up

    def close(self) -> None:
        self.up = False
