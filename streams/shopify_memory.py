"""What the gateway remembers of each Shopify shop, in Redis: webhooks answered, orders, customers.

* **webhooks answered** (``X-Shopify-Webhook-Id``, for :data:`WEBHOOK_TTL_S`, longer than
  Shopify's 48 hours of retries): a retry of a webhook Kafka already acknowledged is answered
  200 without producing anything again;
* **orders** (for ``LOOM_GATEWAY_SHOPIFY_ORDER_TTL_S``): the customer of each order and where an
  online order committed its units, which fulfilments, refunds and cancellations need (their
  payloads name neither; :class:`~schemas.inbound.shopify_model.OrderMemo`). A memo names its
  customer by digest only, found in the shop's customers: forgetting a customer there
  forgets them in every memo of their orders at once;
* **customers**: every customer id the shop sent (with a customer or an order), under its
  digest: the pipeline's suppression hash of ``customer_id:<id>`` (the same salt), so that an
  erasure the lane announces on ``privacy.erasures`` (the digests of the erased profile's
  customer ids, never the ids) is found in each shop's memory without a scan
  (:meth:`RedisShopifyMemory.forget_customers`, called by ``loom privacy-worker``), and
  ``shop/redact`` erases them all;
* **shops**: the names of the shops the gateway remembers anything of (where the privacy
  worker looks for an erased customer);
* **guests**: the salted hashes (the pipeline's suppression hashes, with the same salt) of
  the e-mails and phones of the shop's guest checkouts (orders without a customer), which
  ``shop/redact`` erases too: the privacy worker finds the identifiers Loom holds under them
  (:meth:`streams.reader.ProfileReader.held_under`). Never the values;
* **redacted customers**: salted hashes of the customers ``customers/redact`` erased, so a late
  retry of an older webhook does not make the gateway remember them again. Nor does it learn a
  customer the profiles lane erased (however it was requested): their digest is a field of the
  lane's ``P:v1:suppressed`` (read, never written, by the apply script).

Key layout (``P`` = ``LOOM_REDIS_PREFIX``, ``S`` = the shop's configured name)::

    P:shopify:v1:S:webhook:<webhook id>   string, expires           webhook answered
    P:shopify:v1:S:order:<order id>       string (JSON d, w), expires   order memo
    P:shopify:v1:S:customer_ids           hash: digest -> customer id
    P:shopify:v1:shops                    set of shop names
    P:shopify:v1:S:guests                 set of suppression hashes of guest e-mails/phones
    P:shopify:v1:S:redacted               set of salted SHA-256 of redacted customer ids

What a webhook makes the gateway remember is applied with its answered marker in one Lua call,
after Kafka acknowledged the webhook's records. (A memory written before the ``customer_ids``
hash keeps its ``customers`` set of ids and memos naming ``c`` in the clear: they are read and
forgotten by ``customers/redact`` and ``shop/redact`` as before, the memos expire.)
:class:`InMemoryShopifyMemory` is the same contract in a dict, for tests of the front door
(one contract test runs both).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import Final, Protocol

import orjson
import redis

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

# the ``redacted`` set's hash of a customer id is the privacy trail's digest
from schemas.inbound.shopify_privacy import digest as _hash
from streams.redis_keys import Keys

#: How long a webhook's "answered" marker is kept: Shopify retries for 48 hours.
WEBHOOK_TTL_S: Final = 72 * 3600

#: ARGV: root, order ttl, marker (webhook id, '' = none), marker ttl, shops key, shop, then
#: ops: ``customer <id> <hash> <digest>`` | ``guest <suppression hash>``
#: | ``order <id> <customer id or ''> <its hash> <its digest> <committed_at or ''>``
#: | ``forget <customer id> <hash> <digest> <n> <order ids...>`` (hash: the ``redacted`` set's;
#: digest: the ``customer_ids`` hash's).
APPLY_SCRIPT: Final = """
local root, ttl, marker, marker_ttl = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local ids, redacted = root .. ':customer_ids', root .. ':redacted'
local suppressed = ARGV[7]  -- the lane's erased identifiers, by the digest a customer has here
local function may_learn(hashed, digest)
  return redis.call('SISMEMBER', redacted, hashed) == 0
    and redis.call('HEXISTS', suppressed, digest) == 0
end
redis.call('SADD', ARGV[5], ARGV[6])
local i = 8
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'customer' then
    if may_learn(ARGV[i + 2], ARGV[i + 3]) then
      redis.call('HSET', ids, ARGV[i + 3], ARGV[i + 1])
    end
    i = i + 4
  elseif op == 'guest' then
    redis.call('SADD', root .. ':guests', ARGV[i + 1])
    i = i + 2
  elseif op == 'order' then
    local d = ''
    if ARGV[i + 2] ~= '' and may_learn(ARGV[i + 3], ARGV[i + 4]) then
      d = ARGV[i + 4]
      redis.call('HSET', ids, d, ARGV[i + 2])
    end
    redis.call('SET', root .. ':order:' .. ARGV[i + 1], cjson.encode({d = d, w = ARGV[i + 5]}),
               'EX', ttl)
    i = i + 6
  elseif op == 'forget' then
    redis.call('HDEL', ids, ARGV[i + 3])
    redis.call('SREM', root .. ':customers', ARGV[i + 1])  -- a memory written before the hash
    redis.call('SADD', redacted, ARGV[i + 2])
    local n = tonumber(ARGV[i + 4])
    for j = 1, n do redis.call('DEL', root .. ':order:' .. ARGV[i + 4 + j]) end
    i = i + 5 + n
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

    def shops(self) -> Iterator[str]:
        """The shops the gateway remembers anything of."""
        ...

    def forget_customers(self, shop: str, digests: Collection[str]) -> int:
        """Forget the shop's customers of these digests (module doc) as ``customers/redact``
        does, in every memo of their orders too; returns how many the shop knew."""
        ...

    def guests(self, shop: str) -> Iterator[str]:
        """The suppression hashes of the shop's guest identifiers (module doc)."""
        ...

    def forget_shop(self, shop: str) -> int:
        """Forget everything of the shop; returns the number of keys deleted."""
        ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


def _digest(salt: bytes, customer_id: str) -> str:
    """What the ``customer_ids`` hash and the memos know a customer by: the pipeline's
    suppression hash of ``customer_id:<id>`` (what ``privacy.erasures`` names them by)."""
    return suppression_hash(Identifier(CUSTOMER_ID, customer_id), salt)


def _guest_hash(salt: bytes, op: RememberGuest) -> str:
    """The pipeline's suppression hash of the guest's identifier."""
    return suppression_hash(Identifier(op.identifier_type, op.value), salt)


class RedisShopifyMemory:
    def __init__(self, client: redis.Redis, prefix: str, *, order_ttl_s: int, salt: bytes) -> None:
        self.client = client
        self.prefix = prefix
        self.order_ttl_s = order_ttl_s
        self.salt = salt
        #: the profiles lane's ``P:v1:suppressed`` (the deployment's Redis and prefix): a
        #: customer whose id the lane erased is not learnt again
        self.suppressed_key = Keys(prefix).suppressed
        self._apply = client.register_script(APPLY_SCRIPT)

    def root(self, shop: str) -> str:
        return f"{self.prefix}:shopify:v1:{shop}"

    def shops_key(self) -> str:
        return f"{self.prefix}:shopify:v1:shops"

    def answered(self, shop: str, webhook_id: str) -> bool:
        return bool(self.client.exists(f"{self.root(shop)}:webhook:{webhook_id}"))

    def order(self, shop: str, order_id: str) -> OrderMemo | None:
        raw = self.client.get(f"{self.root(shop)}:order:{order_id}")
        if raw is None:
            return None
        data = orjson.loads(raw)
        customer = data.get("c") or None  # a memo written before the ``customer_ids`` hash
        if data.get("d"):
            found = self.client.hget(f"{self.root(shop)}:customer_ids", data["d"])
            customer = _text(found) if found is not None else None
        return OrderMemo(customer_id=customer, committed_at=data.get("w") or None)

    def apply(self, shop: str, ops: Sequence[MemoryOp], *, answered: str | None = None) -> None:
        args: list[str | int] = [self.root(shop), self.order_ttl_s, answered or "", WEBHOOK_TTL_S]
        args += [self.shops_key(), shop, self.suppressed_key]
        salt = self.salt
        for op in ops:
            if isinstance(op, RememberCustomer):
                cid = op.customer_id
                args += ["customer", cid, _hash(salt, cid), _digest(salt, cid)]
            elif isinstance(op, RememberGuest):
                args += ["guest", _guest_hash(salt, op)]
            elif isinstance(op, RememberOrder):
                cid = op.memo.customer_id or ""
                hashed, digest = (_hash(salt, cid), _digest(salt, cid)) if cid else ("", "")
                args += ["order", op.order_id, cid, hashed, digest, op.memo.committed_at or ""]
            elif isinstance(op, ForgetCustomer):
                cid = op.customer_id
                args += ["forget", cid, _hash(salt, cid), _digest(salt, cid)]
                args += [len(op.order_ids), *op.order_ids]
        self._apply(keys=[], args=args)

    def customers(self, shop: str) -> Iterator[str]:
        root = self.root(shop)
        for _, member in self.client.hscan_iter(f"{root}:customer_ids", count=1000):
            yield _text(member)
        for member in self.client.sscan_iter(f"{root}:customers", count=1000):  # (module doc)
            yield _text(member)

    def shops(self) -> Iterator[str]:
        for member in self.client.sscan_iter(self.shops_key(), count=1000):
            yield _text(member)

    def forget_customers(self, shop: str, digests: Collection[str]) -> int:
        if not digests:
            return 0
        found = self.client.hmget(f"{self.root(shop)}:customer_ids", list(digests))
        known = [ForgetCustomer(_text(cid), ()) for cid in found if cid is not None]
        if known:
            self.apply(shop, known)
        return len(known)

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
        self.client.srem(self.shops_key(), shop)
        return deleted

    def ping(self) -> bool:
        return bool(self.client.ping())

    def close(self) -> None:
        self.client.close()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class InMemoryShopifyMemory:
    """The same contract in dicts (tests of the front door and the privacy worker)."""

    def __init__(self, salt: bytes = b"test-salt") -> None:
        self.salt = salt
        self.markers: dict[tuple[str, str], bool] = {}
        #: (shop, order id) -> (the customer's digest or None, committed at)
        self.orders: dict[tuple[str, str], tuple[str | None, str | None]] = {}
        self.known: dict[str, dict[str, str]] = {}  # shop -> digest -> customer id
        self.redacted: dict[str, set[str]] = {}
        self.guest_hashes: dict[str, set[str]] = {}
        self.remembered: set[str] = set()
        #: the lane's suppressed identifiers (``P:v1:suppressed``: a test adds them)
        self.suppressed: set[str] = set()
        self.up = True

    def _check(self) -> None:
        if not self.up:
            raise redis.ConnectionError("memory down (test)")

    def answered(self, shop: str, webhook_id: str) -> bool:
        self._check()
        return (shop, webhook_id) in self.markers

    def order(self, shop: str, order_id: str) -> OrderMemo | None:
        self._check()
        memo = self.orders.get((shop, order_id))
        if memo is None:
            return None
        digest, committed_at = memo
        customer = self.known.get(shop, {}).get(digest) if digest is not None else None
        return OrderMemo(customer, committed_at)

    def apply(self, shop: str, ops: Sequence[MemoryOp], *, answered: str | None = None) -> None:
        self._check()
        self.remembered.add(shop)
        redacted = self.redacted.setdefault(shop, set())
        known = self.known.setdefault(shop, {})
        for op in ops:
            if isinstance(op, RememberCustomer):
                if self._may_learn(redacted, op.customer_id):
                    known[_digest(self.salt, op.customer_id)] = op.customer_id
            elif isinstance(op, RememberGuest):
                self.guest_hashes.setdefault(shop, set()).add(_guest_hash(self.salt, op))
            elif isinstance(op, RememberOrder):
                cid, digest = op.memo.customer_id, None
                if cid is not None and self._may_learn(redacted, cid):
                    digest = _digest(self.salt, cid)
                    known[digest] = cid
                self.orders[(shop, op.order_id)] = (digest, op.memo.committed_at)
            elif isinstance(op, ForgetCustomer):
                known.pop(_digest(self.salt, op.customer_id), None)
                redacted.add(_hash(self.salt, op.customer_id))
                for order_id in op.order_ids:
                    self.orders.pop((shop, order_id), None)
        if answered is not None:
            self.markers[(shop, answered)] = True

    def _may_learn(self, redacted: set[str], customer_id: str) -> bool:
        """Neither redacted in the shop nor erased by the lane."""
        return (
            _hash(self.salt, customer_id) not in redacted
            and _digest(self.salt, customer_id) not in self.suppressed
        )

    def customers(self, shop: str) -> Iterator[str]:
        self._check()
        yield from sorted(self.known.get(shop, {}).values())

    def shops(self) -> Iterator[str]:
        self._check()
        yield from sorted(self.remembered)

    def forget_customers(self, shop: str, digests: Collection[str]) -> int:
        self._check()
        found = [cid for d in digests if (cid := self.known.get(shop, {}).get(d)) is not None]
        if found:
            self.apply(shop, [ForgetCustomer(cid, ()) for cid in found])
        return len(found)

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
        self.remembered.discard(shop)
        return n

    def ping(self) -> bool:
        return self.up

    def close(self) -> None:
        self.up = False
