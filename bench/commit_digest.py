"""Digests of everything ``run_batch`` decides over the simulator's events: the check that a
change to the pipeline's code changed nothing it computes (issue 17's passes, ADR 0018, 0019).

    python -m bench.commit_digest [--events 20000] [--lane profiles|inventory]
                                  [--commit memory|script|watch] [--redis-url URL]
                                  [--load script|waves]

runs the lane's ``run_batch`` on the in-memory store over the same events as
``bench.profiles_cpu`` (seed 1, 5,000 customers, 200 warm-up events first, batches of 500) and
prints three digests (the first 16 hex digits of SHA-256):

* ``strict``: every commit in order, every field (writes, blind writes, outbox records, change
  stream entries, counters, memberships, suppressions, expected versions, event ids);
* ``results``: every batch's result (outcomes, counts, dead letters);
* ``final``: the store's entities at the end.

``--commit script`` / ``watch`` run the same batches on ``RedisStore`` with that commit
(``commit.lua``, or the commit without Lua of ADR 0021), on ``--redis-url`` (default
``LOOM_REDIS_URL``) under a fresh prefix, or on a private ``redis-server`` started for the run;
``final`` is then the entities read back from Redis (equal to the in-memory store's when the
stores agree), and a fourth digest ``keys`` covers every key the run left (``state_digest``:
markers, streams, outbox, counters, commit sequences...), which the two commits must leave
alike. ``--load waves`` loads without Lua there (``streams.wave_load``, ADR 0022; default
``script``, ``load.lua``).

Two trees print the same digests when their pipelines made byte-identical commits. Values are
rendered canonically (dataclasses and named tuples field by field, leaving out a field the
dataclass does not compare, such as how an outbox record is carried, ADR 0033; mappings and
sets sorted),
so a change of a value's Python type alone (a dataclass that became a named tuple) does not
count as a difference; a change of any stored byte, order of writes or counted outcome does.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import enum
import hashlib
import os
import socket
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import redis

from bench import run_main
from bench.floor_commit import state_digest
from bench.private_redis import Server, running
from bench.soak_bench import serialized_from
from bench.store_bench import make_context
from resolvers.decode_cache import DecodeCache
from resolvers.pipeline import INVENTORY, PROFILES, run_batch
from resolvers.steps import RawRecord
from resolvers.store import Commit, CommitResult, Entity, InMemoryStore, Kind, Ref, StateStore
from schemas.normalize import DEFAULT
from streams import redis_clients
from streams.redis_store import RedisStore
from streams.settings import DEV_SALT, LoomSettings
from streams.simulate import Simulator

LANES = {"profiles": PROFILES, "inventory": INVENTORY}


def canonical(value: Any) -> Any:
    """``value`` as plain, ordered Python values (see the module docstring)."""
    if isinstance(value, Ref):
        return f"Ref:{value}"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            f.name: canonical(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.compare  # a field records compare without is not the value (ADR 0033)
        }
        return {"@": type(value).__name__, **fields}
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if isinstance(value, Mapping):
        return sorted(((canonical(k), canonical(v)) for k, v in value.items()), key=repr)
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((canonical(v) for v in value), key=repr)
    return value


class _RecordingStore(InMemoryStore):
    """The in-memory store, hashing every commit part it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.commits = hashlib.sha256()

    def commit_parts(self, parts: Sequence[Commit]) -> list[CommitResult]:
        for part in parts:
            self.commits.update(repr(canonical(part)).encode())
        return super().commit_parts(parts)


class _RecordingRedisStore(RedisStore):
    """``RedisStore``, hashing every commit part it is given as :class:`_RecordingStore`."""

    def __init__(self, client: redis.Redis, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.commits = hashlib.sha256()

    def commit_parts(self, parts: Sequence[Commit]) -> list[CommitResult]:
        for part in parts:
            self.commits.update(repr(canonical(part)).encode())
        return super().commit_parts(parts)


def redis_entities(client: redis.Redis, keys_root: str) -> dict[Ref, Entity]:
    """Every entity under ``keys_root`` (``P:v1``) as the in-memory store holds it."""
    out: dict[Ref, Entity] = {}
    for kind in Kind:
        head = f"{keys_root}:{kind.value}:"
        for key in client.scan_iter(match=f"{head}*", count=1000):
            found: dict[bytes, bytes] = client.hgetall(key)  # type: ignore[assignment]
            fields = {k.decode(): v for k, v in found.items()}
            version = int(fields.pop("v"))
            out[Ref(kind, key.decode()[len(head) :])] = Entity(version, fields)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def _redis(url: str | None) -> Iterator[redis.Redis]:
    """A client of ``url``, or of a private ``redis-server`` for the run."""
    if url:
        client = redis_clients.client(LoomSettings(redis_url=url))
        with contextlib.closing(client):
            yield client
        return
    with (
        tempfile.TemporaryDirectory() as tmp,
        running(Server(_free_port(), Path(tmp) / "redis")) as server,
        contextlib.closing(server.client()) as client,
    ):
        yield client


def digests(
    events: int,
    lane: str,
    commit: Literal["memory", "script", "watch"] = "memory",
    redis_url: str | None = None,
    load: Literal["script", "waves"] = "script",
) -> dict[str, str]:
    if commit == "memory":
        return _digests(events, lane, None, commit, load)
    with _redis(redis_url) as client:
        return _digests(events, lane, client, commit, load)


def _digests(
    events: int,
    lane: str,
    client: redis.Redis | None,
    commit: Literal["memory", "script", "watch"],
    load: Literal["script", "waves"],
) -> dict[str, str]:
    sim = Simulator(seed=1, customers=5000, stores=10, skus=500)
    stream = sim.events()
    values = [v for v, _ in serialized_from(stream, 200) + serialized_from(stream, events)]
    records = [RawRecord(value=v, topic="raw", partition=0, offset=i) for i, v in enumerate(values)]
    prefix = f"digest-{uuid.uuid4().hex[:12]}"
    store: _RecordingStore | _RecordingRedisStore
    if client is None or commit == "memory":
        store = _RecordingStore()
    else:
        store = _RecordingRedisStore(client, prefix=prefix, commit=commit, load=load)
    base = replace(make_context(DecodeCache()), salt=DEV_SALT.encode())
    results = hashlib.sha256()
    for i in range(0, len(records), 500):
        result = run_batch(
            records[i : i + 500],
            _as_store(store),
            lambda: base,
            max_bytes=64 * 1024,
            config=DEFAULT,
            lane=LANES[lane],
        )
        results.update(repr(canonical(result)).encode())
    if isinstance(store, _RecordingStore):
        entities = store.entities
    else:
        assert client is not None
        entities = redis_entities(client, store.keys.root)
    final = {str(ref): entity for ref, entity in entities.items()}
    out = {
        "strict": store.commits.hexdigest()[:16],
        "results": results.hexdigest()[:16],
        "final": hashlib.sha256(repr(canonical(final)).encode()).hexdigest()[:16],
    }
    if client is not None and isinstance(store, _RecordingRedisStore):
        out["keys"] = state_digest(client, prefix)[0]
        _delete(client, prefix)
    return out


def _as_store(store: _RecordingStore | _RecordingRedisStore) -> StateStore:
    return store


def _delete(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for j in range(0, len(keys), 500):
        client.delete(*keys[j : j + 500])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000, help="events after the warm-up")
    parser.add_argument("--lane", choices=sorted(LANES), default="profiles")
    parser.add_argument(
        "--commit",
        choices=["memory", "script", "watch"],
        default="memory",
        help="the in-memory store, or RedisStore with commit.lua / the WATCH commit",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("LOOM_REDIS_URL"),
        help="with --commit script|watch (default LOOM_REDIS_URL; none: a private server)",
    )
    parser.add_argument(
        "--load",
        choices=["script", "waves"],
        default="script",
        help="with --commit script|watch: load.lua or the load without Lua (ADR 0022)",
    )
    args = parser.parse_args(argv)
    found = digests(args.events, args.lane, args.commit, args.redis_url, args.load)
    print(" ".join(f"{name} {digest}" for name, digest in found.items()))
    return 0


if __name__ == "__main__":
    run_main(main)
