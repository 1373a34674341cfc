"""The inventory reader client: what storefronts and store apps use to read stock from Redis.

One round trip per SKU, every location included::

    client = redis_clients.client(settings.for_lane("inventory"))  # LOOM_INVENTORY_REDIS_URL
    reader = InventoryReader(client, prefix=settings.redis_prefix)
    reader.get("SKU-1")                  # -> snapshot dict (resolvers.inventory.snapshot) or None
    for doc in reader.iter_all(): ...    # export: every SKU (SSCAN + pipelined reads)

Layout v1 (``streams.redis_store``): one hash per SKU at ``{prefix}:v1:stock:{sku}`` with ``v``
(version), ``d`` (the public snapshot JSON) and ``s`` (internal ledger state, not for readers),
and the set ``{prefix}:v1:stock-index`` of every SKU. The snapshot shape is documented in
:mod:`resolvers.inventory`; the reader fills ``version`` from ``v`` when the document lacks it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Final

import orjson
import redis

from streams.redis_keys import Keys

DEFAULT_BATCH: Final = 500


def _decode(sku: str, raw_doc: Any, raw_version: Any) -> dict[str, Any] | None:
    if raw_doc is None:
        return None
    doc: dict[str, Any] = orjson.loads(raw_doc)
    doc.setdefault("sku", sku)
    if "version" not in doc and raw_version is not None:
        doc["version"] = int(raw_version)
    return doc


def _text(member: Any) -> str:
    return member.decode() if isinstance(member, bytes) else str(member)


class InventoryReader:
    """Reads stock snapshots written by the worker (works with ``decode_responses`` on or off)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.keys = Keys(prefix)

    def get(self, sku: str) -> dict[str, Any] | None:
        """The SKU's snapshot across all locations, or None when Loom never saw it."""
        raw_doc, raw_version = self.client.hmget(self.keys.stock(sku), ["d", "v"])
        return _decode(sku, raw_doc, raw_version)

    def iter_skus(self, count: int = DEFAULT_BATCH) -> Iterator[str]:
        for member in self.client.sscan_iter(self.keys.stock_index, count=count):
            yield _text(member)

    def get_many(self, skus: Sequence[str]) -> list[dict[str, Any] | None]:
        """Snapshots of ``skus`` in order (None where absent), one round trip read as one
        transaction (``MULTI``/``EXEC``): a batch commit of the lane is atomic, so the
        snapshots are all from before it or all from after it (a plain pipeline saw one SKU of
        a two-SKU sale sold and the other not)."""
        pipe = self.client.pipeline(transaction=True)
        for sku in skus:
            pipe.hmget(self.keys.stock(sku), ["d", "v"])
        replies = pipe.execute()
        return [_decode(sku, d, v) for sku, (d, v) in zip(skus, replies, strict=True)]

    def iter_all(self, batch: int = DEFAULT_BATCH) -> Iterator[dict[str, Any]]:
        """Every indexed SKU's snapshot (SSCAN of the index, snapshots read in pipelines).

        A SKU may appear twice if the index changes during the scan (SSCAN's guarantee); index
        members whose hash is gone are skipped. Each batch of ``batch`` SKUs is one consistent
        read (:meth:`get_many`); the export as a whole is not a snapshot of one instant.
        """
        pending: list[str] = []
        for sku in self.iter_skus(count=batch):
            pending.append(sku)
            if len(pending) >= batch:
                yield from (doc for doc in self.get_many(pending) if doc is not None)
                pending = []
        if pending:
            yield from (doc for doc in self.get_many(pending) if doc is not None)
