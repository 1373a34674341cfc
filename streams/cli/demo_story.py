"""The story ``loom demo`` tells once the workers caught up: what Loom built, read back as a
downstream service, an operator and a retailer would read it.

Every section reads real state: the stats hash and the snapshots in Redis, the change topics
on Kafka, the consumer groups' offsets. Nothing here writes, except the audience pass the
audiences section runs with its clock moved on (streams/cli/demo_audiences.py). The sections
that look for an example share one read of the first profiles and of the first SKUs
(:class:`Story`'s ``sample``, ``examples`` and ``busiest_sku``).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final, TextIO

import orjson
import redis
from confluent_kafka import TopicPartition

from resolvers.pipeline import LANES
from streams import kafka_clients
from streams.cli import demo_audiences
from streams.cli import inventory as inventory_cli
from streams.cli.lag import reader_for, seconds_behind
from streams.inventory_reader import InventoryReader
from streams.reader import ProfileReader
from streams.settings import LoomSettings
from streams.simulate import START as SIMULATED_START

#: How many live profiles (SKUs) the story looks through for its examples.
PROFILE_SAMPLE: Final = 3000
SKU_SAMPLE: Final = 400


@dataclass(frozen=True)
class Story:
    """What the story needs: where to read, and what the demo did; the examples it shows,
    read once and shared by the sections."""

    settings: LoomSettings
    profiles: ProfileReader
    stock: InventoryReader
    sent: int
    kept: bool  # Kafka and Redis stay up after the demo (``--keep``)

    @cached_property
    def sample(self) -> list[dict[str, Any]]:
        """The snapshots of the first :data:`PROFILE_SAMPLE` live profiles."""
        return list(itertools.islice(self.profiles.iter_profiles(), PROFILE_SAMPLE))

    @cached_property
    def examples(self) -> list[tuple[str, dict[str, Any]]]:
        return _example_profiles(self.sample)

    @cached_property
    def busiest_sku(self) -> dict[str, Any] | None:
        return _busiest_sku(self.stock)


def tell(story: Story, out: TextIO) -> None:
    sections = (
        _numbers,
        _store_sale,
        _over_merging,
        _consent,
        _examples,
        _audiences,
        _lag,
        _next_steps,
    )
    print("\nLoom demo: what the pipeline built", file=out)
    print("=" * 40, file=out)
    for section in sections:
        section(story, out)


def _title(text: str, out: TextIO) -> None:
    print(f"\n{text}\n{'-' * len(text)}", file=out)


# --- sections ---------------------------------------------------------------------------------


def _numbers(story: Story, out: TextIO) -> None:
    """Each lane's counters and index from its own Redis (the inventory lane's is
    ``LOOM_INVENTORY_REDIS_URL`` when set, ADR 0008; else both share one stats hash)."""
    r, keys = story.profiles.client, story.profiles.keys
    stats = _stats(r, keys.stats)
    stock_stats = _stats(story.stock.client, story.stock.keys.stats)
    rows = [
        ("events sent", story.sent),
        ("profiles created", stats.get("profiles_created", 0)),
        ("live profiles", r.scard(keys.profile_index)),
        ("merges", stats.get("merges", 0)),
        ("blocked merges", stats.get("merges_blocked", 0)),
        ("quarantined identifiers", stats.get("quarantined", 0)),
        ("erasures", stats.get("erasures", 0)),
        ("oversell alerts", stock_stats.get("oversold", 0)),
        ("dead letters (DLQ)", stats.get("dlq", 0)),
        ("SKUs with stock", story.stock.client.scard(story.stock.keys.stock_index)),
    ]
    for name, value in rows:
        print(f"{name:<26}{value}", file=out)


def _stats(client: redis.Redis, key: str) -> dict[str, int]:
    raw: dict[bytes, bytes] = client.hgetall(key)  # type: ignore[assignment]
    return {k.decode(): int(v) for k, v in raw.items()}


def _store_sale(story: Story, out: TextIO) -> None:
    """One SKU across every location: what the web shop shows the moment a store sells."""
    _title("Stock of one SKU, every location (what the storefront reads)", out)
    doc = story.busiest_sku
    if doc is None:
        print("(no stock snapshots yet)", file=out)
        return
    print(inventory_cli.render(doc), end="", file=out)
    print(
        "on hand - committed (ordered online, not yet shipped) = available; to sell is what the\n"
        "storefront offers (available, never below 0 nor above on hand). A POS sale lowers on\n"
        "hand at its store, and the totals the web shop sells from, in the same commit.",
        file=out,
    )
    _one_store_sale(story, out)


def _one_store_sale(story: Story, out: TextIO) -> None:
    """One identified customer's store purchase, read back from both lanes: the store's stock
    of a SKU it sold (inventory lane) and the customer's profile (profiles lane)."""
    found = _store_sale_example(story.sample)
    if found is None:
        return
    doc, sale = found
    order, sku = doc["last_order"], str(sale["sku"])
    where = str(order.get("location_id"))
    stock = story.stock.get(sku) or {}
    here = (stock.get("locations") or {}).get(where)
    print(
        f"\nA store sale, as both lanes wrote it: pos_sale {sale['event_id']} at {where} "
        f"({order.get('at')}), order {order.get('order_id')}, {order.get('total')} "
        f"{order.get('currency')}, {sku} among its lines:",
        file=out,
    )
    if here is not None:
        totals = stock.get("totals") or {}
        print(
            f"  stock    {sku} at {where}: on hand {here['on_hand']}, to sell "
            f"{here['available_to_sell']} (now; across every location the web shop can sell "
            f"{totals.get('available_to_sell')})",
            file=out,
        )
    print(
        f"  profile  {doc['profile_id']} ({_lookup_key(doc)}): {doc.get('orders_in_store', 0)} "
        f"in store, {doc.get('orders_online', 0)} online, preferred store "
        f"{doc.get('preferred_store')}",
        file=out,
    )


def _store_sale_example(
    sample: Sequence[dict[str, Any]],
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A profile with an identifier to look it up by whose last order was a store sale, and
    that sale's entry in its recent activity (shown when personalization may use it)."""
    for doc in sample:
        order = doc.get("last_order") or {}
        if not order or _lookup_key(doc) is None:
            continue
        for entry in doc.get("recent_activity") or ():
            if (
                entry.get("type") == "pos_sale"
                and entry.get("at") == order.get("at")
                and entry.get("sku")
            ):
                return doc, entry
    return None


def _busiest_sku(stock: InventoryReader) -> dict[str, Any] | None:
    """Among the first :data:`SKU_SAMPLE` SKUs: one with online orders committed and the most
    locations."""
    best: dict[str, Any] | None = None
    best_key: tuple[int, int] = (-1, -1)
    skus = list(itertools.islice(stock.iter_skus(), SKU_SAMPLE))
    for doc in stock.get_many(sorted(skus)):
        if doc is None:
            continue
        totals = doc.get("totals") or {}
        key = (int(totals.get("committed", 0) > 0), len(doc.get("locations", {})))
        if key > best_key:
            best, best_key = doc, key
    return best


def _over_merging(story: Story, out: TextIO) -> None:
    """One blocked merge and one quarantine from ``identity.merges``, in words."""
    _title("Without over-merging", out)
    shown = 0
    for kind, record in _first_of_each(story.settings, ("merge_blocked", "quarantined")):
        print(_explain_identity(kind, record), file=out)
        shown += 1
    if not shown:
        print("(no blocked merge or quarantine in this run)", file=out)


def _explain_identity(kind: str, rec: Mapping[str, Any]) -> str:
    if kind == "merge_blocked":
        ids = rec.get("profile_ids", [])
        dropped = ", ".join(rec.get("dropped_types", [])) or "identifiers"
        return (
            f"blocked merge: event {rec.get('event_id')} linked profiles "
            f"{' and '.join(ids)}, which hold different values of a unique identifier "
            f"(rule {rec.get('rule')}). Loom kept them apart and dropped the event's "
            f"{dropped} instead of merging two people."
        )
    return (
        f"quarantined: an identifier of type {rec.get('identifier_type')} "
        f"(hash {rec.get('identifier')}) was seen "
        f"with {rec.get('evidence_count')} different people's ids (rule {rec.get('reason')}): "
        f"a shared device or card. It links nobody from now on."
    )


def _first_of_each(
    settings: LoomSettings, kinds: Sequence[str], limit: int = 200_000
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The first record of each ``kind`` on the merges topic (read from the start)."""
    wanted = set(kinds)
    for value in _topic_values(settings, settings.topics.merges, limit):
        kind = value.get("kind")
        if kind in wanted:
            wanted.discard(kind)
            yield kind, value
            if not wanted:
                return


def _topic_values(settings: LoomSettings, topic: str, limit: int) -> Iterator[dict[str, Any]]:
    consumer = kafka_clients.consumer(
        settings,
        f"loom-demo-reader-{uuid.uuid4().hex}",  # assigned, never joined or committed
        **{"enable.auto.commit": False},
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in meta.partitions
        }
        pending = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in pending])
        seen = 0
        while pending and seen < limit:
            batch = consumer.consume(500, timeout=2.0)
            if not batch:
                return
            for msg in batch:
                if msg.error() is not None or msg.value() is None:
                    continue
                seen += 1
                p = msg.partition() or 0
                if (msg.offset() or 0) + 1 >= ends[p]:
                    pending.discard(p)
                yield orjson.loads(msg.value() or b"null")
    finally:
        consumer.close()


#: How each consent source reads in a sentence (``source`` of a purpose in the snapshot).
_SOURCE_WORDS = {
    "default": "the jurisdiction default of the person's region denies it (no grant recorded)",
    "consent_updated": "the person withdrew it (a consent_updated event)",
    "event": "the consent banner said no on one of the person's events",
    "gpc": "the browser sent Global Privacy Control",
    "merge": "a merged profile had it denied (the more restrictive choice wins)",
    "segment": "the Segment consent preferences said no",
    "gcm": "Google Consent Mode said no",
    "tcf": "the IAB TCF string said no",
}


def _consent(story: Story, out: TextIO) -> None:
    """A profile whose analytics fields are empty, and the consent rule that emptied them."""
    _title("Consent: what a purpose hides, and why", out)
    for doc in story.sample:
        entry = (doc.get("consent") or {}).get("analytics") or {}
        if entry.get("granted") is True or doc.get("first_seen") is not None:
            continue
        source = str(entry.get("source", "default"))
        why = _SOURCE_WORDS.get(source, f"source {source}")
        region = doc.get("region") or "unknown"
        at = f" at {entry['at']}" if entry.get("at") else ""
        print(
            f"profile {doc['profile_id']} (region {region}): first_seen, channels, orders and "
            f"revenue are empty because analytics is denied: {why}{at}.",
            file=out,
        )
        print(
            "Its identifiers and traits are kept (needed to serve the person); the "
            "purpose-gated fields come back only with a grant.",
            file=out,
        )
        return
    print("(every profile in this run may serve analytics)", file=out)


def _examples(story: Story, out: TextIO) -> None:
    for title, doc in story.examples:
        _title(title, out)
        print(orjson.dumps(_short(doc), option=orjson.OPT_INDENT_2).decode(), file=out)


def _lag(story: Story, out: TextIO) -> None:
    _title("Consumer lag (what ops watch: `loom lag`)", out)
    settings = story.settings
    groups = [settings.group_id(lane) for lane in LANES]
    snapshot = reader_for(settings).read(groups)
    for g in snapshot.groups:
        print(
            f"{g.group:<28}{g.total_lag:>6} messages  {seconds_behind(g):>9} behind  "
            f"({len(g.members)} member(s), {g.state})",
            file=out,
        )


def _audiences(story: Story, out: TextIO) -> None:
    _title("Audiences: who marketing reaches, and when", out)
    demo_audiences.tell(story.settings, story.profiles, SIMULATED_START, out)


def _next_steps(story: Story, out: TextIO) -> None:
    _title("Try next", out)
    commands = ["loom lag"]
    example = next(iter(story.examples), None)
    if example is not None:
        lookup = _lookup_key(example[1])
        if lookup is not None:
            commands.insert(0, f"loom profile get {lookup}")
    sku = story.busiest_sku
    if sku is not None:
        commands.insert(1, f"loom inventory get {sku['sku']}")
    if story.settings.audiences_file is not None:
        commands.insert(
            -1, f"LOOM_AUDIENCES_FILE={story.settings.audiences_file} loom audiences list"
        )
    if story.kept:
        print("Kafka and Redis are still running with this data (stop: make infra-down):", file=out)
    else:
        print("Kafka and Redis were stopped. Keep them and the data with", file=out)
        print("`make demo DEMO_ARGS=--keep` (or `loom demo --keep`), then:", file=out)
    for command in commands:
        print(f"  {command}", file=out)


# --- helpers ----------------------------------------------------------------------------------


def _lookup_key(doc: Mapping[str, Any]) -> str | None:
    for id_type in ("email", "customer_id", "loyalty_id", "phone"):
        values = doc.get("identifiers", {}).get(id_type) or []
        if values:
            return f"{id_type}:{values[0]}"
    return None


def _example_profiles(sample: Sequence[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """An omnichannel customer (else the best buyer) and the most stitched profile, among
    ``sample``."""
    omni: dict[str, Any] | None = None
    richest: dict[str, Any] | None = None
    best_buyer: dict[str, Any] | None = None
    for doc in sample:
        if omni is None and doc.get("shopping_mode") == "omnichannel":
            omni = doc
        orders = _orders(doc)
        if orders and (best_buyer is None or orders > _orders(best_buyer)):
            best_buyer = doc
        if richest is None or _id_count(doc) > _id_count(richest):
            richest = doc
    out = []
    chosen = omni or best_buyer
    if chosen is not None:
        title = (
            "An omnichannel customer (online and in store, one profile)"
            if chosen.get("shopping_mode") == "omnichannel"
            else "The customer with the most orders"
        )
        out.append((title, chosen))
    if richest is not None and richest is not chosen:
        out.append(("The most stitched profile", richest))
    return out


def _id_count(doc: Mapping[str, Any]) -> int:
    return sum(len(v) for v in doc.get("identifiers", {}).values())


def _short(doc: Mapping[str, Any]) -> dict[str, Any]:
    keep = (
        "profile_id",
        "identifiers",
        "shopping_mode",
        "channels",
        "orders_online",
        "orders_in_store",
        "revenue",
        "preferred_store",
        "preferred_payment_method",
        "merged_from",
    )
    return {k: doc[k] for k in keep if k in doc}


def _orders(doc: Mapping[str, Any]) -> int:
    return int(doc.get("orders_online", 0)) + int(doc.get("orders_in_store", 0))
