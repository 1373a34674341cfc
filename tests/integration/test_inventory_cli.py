"""Inventory reader and ``loom inventory`` against a real Redis holding layout-v1 stock hashes."""

from __future__ import annotations

import select
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from resolvers.inventory import Movement, MovementKind, SkuStock, apply_all, snapshot
from streams.cli.main import main
from streams.inventory_reader import InventoryReader

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def stock_of(sku: str, *moves: tuple[str, str, MovementKind, int, int]) -> SkuStock:
    movements = [
        Movement(event_id, sku, location, kind, quantity, T0 + timedelta(minutes=minute))
        for event_id, location, kind, quantity, minute in moves
    ]
    stock, _ = apply_all(SkuStock.empty(sku), movements)
    return stock


def write(client: redis.Redis, prefix: str, stock: SkuStock, version: int) -> None:
    """What the worker's commit leaves behind (layout v1), written directly."""
    doc = snapshot(stock) | {"version": version}
    client.hset(
        f"{prefix}:v1:stock:{stock.sku}",
        mapping={"v": version, "d": orjson.dumps(doc), "s": orjson.dumps(stock.to_dict())},
    )
    client.sadd(f"{prefix}:v1:stock-index", stock.sku)


@pytest.fixture
def jacket() -> SkuStock:
    return stock_of(
        "JACKET-M",
        ("c1", "oslo-1", MovementKind.COUNT, 10, 0),
        ("s1", "oslo-1", MovementKind.POS_SALE, 3, 30),
        ("c2", "bergen-1", MovementKind.COUNT, 1, 0),
        ("o1", "bergen-1", MovementKind.ORDER_PLACED, 2, 40),
    )


def test_reader_get_returns_the_snapshot_with_its_version(
    redis_client: redis.Redis, redis_prefix: str, jacket: SkuStock
) -> None:
    write(redis_client, redis_prefix, jacket, version=7)
    reader = InventoryReader(redis_client, redis_prefix)
    doc = reader.get("JACKET-M")
    assert doc == snapshot(jacket) | {"version": 7}
    assert doc["locations"]["bergen-1"]["available"] == -1
    assert doc["locations"]["bergen-1"]["available_to_sell"] == 0
    assert doc["totals"]["on_hand"] == 8
    assert reader.get("NO-SUCH-SKU") is None
    # the internal state stored next to it reads back to the same ledger
    raw_state = redis_client.hget(f"{redis_prefix}:v1:stock:JACKET-M", "s")
    assert isinstance(raw_state, bytes)
    assert SkuStock.from_dict(orjson.loads(raw_state)) == jacket


def test_reader_fills_version_from_the_hash_when_the_document_lacks_it(
    redis_client: redis.Redis, redis_prefix: str, redis_url: str, jacket: SkuStock
) -> None:
    key = f"{redis_prefix}:v1:stock:JACKET-M"
    redis_client.hset(key, mapping={"v": 3, "d": orjson.dumps(snapshot(jacket))})
    text_client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        for client in (redis_client, text_client):
            doc = InventoryReader(client, redis_prefix).get("JACKET-M")
            assert doc is not None
            assert doc["version"] == 3
            assert doc["locations"] == snapshot(jacket)["locations"]
    finally:
        text_client.close()


def test_iter_all_reads_every_indexed_sku_across_batches(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    pipe = redis_client.pipeline(transaction=False)
    expected = {}
    for i in range(1203):
        sku = f"SKU-{i:05d}"
        stock = stock_of(sku, (f"c{i}", "oslo-1", MovementKind.COUNT, i, 0))
        doc = snapshot(stock) | {"version": 1}
        expected[sku] = doc
        pipe.hset(f"{redis_prefix}:v1:stock:{sku}", mapping={"v": 1, "d": orjson.dumps(doc)})
        pipe.sadd(f"{redis_prefix}:v1:stock-index", sku)
    pipe.sadd(f"{redis_prefix}:v1:stock-index", "GHOST")  # indexed, hash gone: skipped
    pipe.execute()
    got = {doc["sku"]: doc for doc in InventoryReader(redis_client, redis_prefix).iter_all()}
    assert got == expected


def args(redis_url: str, prefix: str, *rest: str) -> list[str]:
    return ["inventory", *rest, "--redis-url", redis_url, "--prefix", prefix]


class CommitBetweenReads(redis.Connection):
    """A reader's connection that sends a basket read in two parts and has ``between`` run
    (a commit, on another connection) once Redis answered the first part: a deterministic
    interleaving, where a race with a writer thread only made it likely."""

    between: Callable[[], None] | None = None
    marker = b"*4\r\n$5\r\nHMGET\r\n"  # each read of a SKU (``hmget key d v``)

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        data = command if isinstance(command, bytes | str) else b"".join(command)
        split = data.rfind(self.marker) if isinstance(data, bytes) else -1
        between, type(self).between = type(self).between, None
        send = super().send_packed_command
        if between is None or split <= 0:
            send(command, check_health)  # type: ignore[no-untyped-call]
            return
        send([data[:split]], check_health)  # type: ignore[no-untyped-call]
        sock: Any = self._sock  # connected by the first part
        readable, _, _ = select.select([sock], [], [], 10)  # its first reply arrived
        assert readable, "Redis did not answer the first part"
        between()
        send([data[split:]], check_health)  # type: ignore[no-untyped-call]


def test_get_many_sees_a_commit_between_its_reads_whole_or_not_at_all(
    redis_client: redis.Redis, redis_url: str, redis_prefix: str
) -> None:
    """A sale of two SKUs, committed atomically (as the lane's batch commit is) while a
    basket read is half sent: Redis had answered the first SKU's read when the commit ran.
    ``get_many`` read in a plain pipeline, whose commands Redis runs as they arrive, so it
    saw the first SKU before the sale and the second after it (before e3337c9: ``[(1, 5), (2,
    2)]``, version and on hand). In one MULTI/EXEC nothing runs until EXEC: both after it."""
    placed = ("p1", "oslo-1", MovementKind.ADJUSTMENT, 5, 0)
    first, second = stock_of("SKU-A", placed), stock_of("SKU-B", placed)
    write(redis_client, redis_prefix, first, 1)
    write(redis_client, redis_prefix, second, 1)
    sale = ("s1", "oslo-1", MovementKind.POS_SALE, 3, 5)

    def commit() -> None:  # the lane's batch: both SKUs in one MULTI/EXEC
        batch = redis_client.pipeline(transaction=True)
        write(batch, redis_prefix, stock_of("SKU-A", placed, sale), 2)
        write(batch, redis_prefix, stock_of("SKU-B", placed, sale), 2)
        batch.execute()
        committed.append(True)

    committed: list[bool] = []
    pool = redis.ConnectionPool.from_url(redis_url, connection_class=CommitBetweenReads)
    reader = InventoryReader(redis.Redis(connection_pool=pool), redis_prefix)
    try:
        reader.get("SKU-A")  # connected
        CommitBetweenReads.between = commit
        docs = reader.get_many(["SKU-A", "SKU-B"])
        assert committed == [True]  # the commit ran, between the two parts
    finally:
        CommitBetweenReads.between = None
        pool.disconnect()
    seen = [(d["version"], d["totals"]["on_hand"]) for d in docs if d is not None]
    assert seen == [(2, 2), (2, 2)], f"on hand {seen}: the commit seen half applied"


def test_cli_get_prints_a_table_json_and_one_location(
    redis_client: redis.Redis,
    redis_prefix: str,
    redis_url: str,
    jacket: SkuStock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write(redis_client, redis_prefix, jacket, version=7)

    assert main(args(redis_url, redis_prefix, "get", "JACKET-M")) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "SKU JACKET-M  (version 7)"
    header, bergen, oslo, total = table[2:]
    assert header.split()[:4] == ["location", "on", "hand", "committed"]
    assert bergen.split()[:6] == ["bergen-1", "1", "2", "-1", "0", "YES"]
    assert oslo.split()[:5] == ["oslo-1", "7", "0", "7", "7"]
    assert "2026-11-22T08:00:00Z" in oslo
    assert total.split()[:6] == ["TOTAL", "8", "2", "6", "6", "YES"]

    assert main(args(redis_url, redis_prefix, "get", "JACKET-M", "--json")) == 0
    assert orjson.loads(capsys.readouterr().out) == snapshot(jacket) | {"version": 7}

    assert (
        main(args(redis_url, redis_prefix, "get", "JACKET-M", "--location", "oslo-1", "--json"))
        == 0
    )
    one = orjson.loads(capsys.readouterr().out)
    assert one == {
        "sku": "JACKET-M",
        "version": 7,
        "locations": {"oslo-1": snapshot(jacket)["locations"]["oslo-1"]},
    }


def test_cli_get_exits_1_for_an_unknown_sku_or_location(
    redis_client: redis.Redis,
    redis_prefix: str,
    redis_url: str,
    jacket: SkuStock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write(redis_client, redis_prefix, jacket, version=1)
    assert main(args(redis_url, redis_prefix, "get", "NOPE")) == 1
    assert "no stock known" in capsys.readouterr().err
    assert main(args(redis_url, redis_prefix, "get", "JACKET-M", "--location", "tromso-1")) == 1
    captured = capsys.readouterr()
    assert "no stock at 'tromso-1'" in captured.err
    assert captured.out == ""


def test_cli_export_writes_jsonl_of_every_sku(
    redis_client: redis.Redis, redis_prefix: str, redis_url: str, tmp_path: Path, jacket: SkuStock
) -> None:
    shirt = stock_of("SHIRT-S", ("r1", "online", MovementKind.RETURN_RESTOCK, 2, 5))
    write(redis_client, redis_prefix, jacket, version=7)
    write(redis_client, redis_prefix, shirt, version=2)
    out = tmp_path / "stock.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams.cli.main",
            *args(redis_url, redis_prefix, "export", "--out", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "exported 2 skus to" in done.stderr
    lines = out.read_text(encoding="utf-8").splitlines()
    docs = sorted((orjson.loads(line) for line in lines), key=lambda d: d["sku"])
    assert docs == [snapshot(jacket) | {"version": 7}, snapshot(shirt) | {"version": 2}]
