"""Digests of everything ``run_batch`` decides over the simulator's events: the check that a
change to the pipeline's code changed nothing it computes (issue 17's passes, ADR 0018, 0019).

    python -m bench.commit_digest [--events 20000] [--lane profiles|inventory]
                                  [--load script|waves [--port 26395]]

runs the lane's ``run_batch`` on the in-memory store (``--load``: on ``RedisStore`` with that
load, ``load.lua`` or ``streams.wave_load``, on a private ``redis-server`` on ``--port``,
``bench.private_redis``) over the same events as
``bench.profiles_cpu`` (seed 1, 5,000 customers, 200 warm-up events first, batches of 500) and
prints three digests (the first 16 hex digits of SHA-256):

* ``strict``: every commit in order, every field (writes, blind writes, outbox records, change
  stream entries, counters, memberships, suppressions, expected versions, event ids);
* ``results``: every batch's result (outcomes, counts, dead letters);
* ``final``: the store's entities at the end.

Two trees print the same digests when their pipelines made byte-identical commits. Values are
rendered canonically (dataclasses and named tuples field by field, mappings and sets sorted),
so a change of a value's Python type alone (a dataclass that became a named tuple) does not
count as a difference; a change of any stored byte, order of writes or counted outcome does.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import redis

from bench.private_redis import Server, running
from bench.soak_bench import serialized_from
from bench.store_bench import make_context
from resolvers.decode_cache import DecodeCache
from resolvers.pipeline import INVENTORY, PROFILES, run_batch
from resolvers.steps import RawRecord
from resolvers.store import Commit, CommitResult, Entity, InMemoryStore, Kind, Ref
from schemas.normalize import DEFAULT
from streams.redis_store import RedisStore
from streams.settings import DEV_SALT
from streams.simulate import Simulator

LANES = {"profiles": PROFILES, "inventory": INVENTORY}


def canonical(value: Any) -> Any:
    """``value`` as plain, ordered Python values (see the module docstring)."""
    if isinstance(value, Ref):
        return f"Ref:{value}"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
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
    """``RedisStore``, hashing every commit part it is given."""

    def __init__(
        self, client: redis.Redis, load: Literal["script", "waves"], prefix: str = "loom"
    ) -> None:
        super().__init__(client, prefix=prefix, load=load)
        self.commits = hashlib.sha256()

    def commit_parts(self, parts: Sequence[Commit]) -> list[CommitResult]:
        for part in parts:
            self.commits.update(repr(canonical(part)).encode())
        return super().commit_parts(parts)

    @property
    def entities(self) -> dict[Ref, Entity]:
        """Every entity Redis holds, as the in-memory store holds it."""
        out: dict[Ref, Entity] = {}
        client: Any = self.client
        for kind in Kind:
            root = self.keys.kinds[kind]
            for key in client.scan_iter(match=f"{root}*", count=1000):
                fields = {k.decode(): v for k, v in client.hgetall(key).items()}
                version = int(fields.pop("v"))
                out[Ref(kind, key.decode()[len(root) :])] = Entity(version, fields)
        return out


def digests(
    events: int, lane: str, load: Literal["script", "waves"] | None = None, port: int = 26395
) -> dict[str, str]:
    if load is None:
        return _digests(events, lane, _RecordingStore())
    with running(Server(port, Path(f"/tmp/commit-digest-{port}"))) as server:
        return redis_digests(server.client(), "loom", events, lane, load)


def redis_digests(
    client: redis.Redis, prefix: str, events: int, lane: str, load: Literal["script", "waves"]
) -> dict[str, str]:
    """:func:`digests` on ``RedisStore`` (``load``) over ``client``, keys under ``prefix``
    (empty before)."""
    return _digests(events, lane, _RecordingRedisStore(client, load, prefix))


def _digests(
    events: int, lane: str, store: _RecordingStore | _RecordingRedisStore
) -> dict[str, str]:
    sim = Simulator(seed=1, customers=5000, stores=10, skus=500)
    stream = sim.events()
    values = [v for v, _ in serialized_from(stream, 200) + serialized_from(stream, events)]
    records = [RawRecord(value=v, topic="raw", partition=0, offset=i) for i, v in enumerate(values)]
    base = replace(make_context(DecodeCache()), salt=DEV_SALT.encode())
    results = hashlib.sha256()
    for i in range(0, len(records), 500):
        result = run_batch(
            records[i : i + 500],
            store,
            lambda: base,
            max_bytes=64 * 1024,
            config=DEFAULT,
            lane=LANES[lane],
        )
        results.update(repr(canonical(result)).encode())
    final = {str(ref): entity for ref, entity in store.entities.items()}
    return {
        "strict": store.commits.hexdigest()[:16],
        "results": results.hexdigest()[:16],
        "final": hashlib.sha256(repr(canonical(final)).encode()).hexdigest()[:16],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000, help="events after the warm-up")
    parser.add_argument("--lane", choices=sorted(LANES), default="profiles")
    parser.add_argument(
        "--load",
        choices=["script", "waves"],
        default=None,
        help="run on RedisStore with this load (default: the in-memory store)",
    )
    parser.add_argument("--port", type=int, default=26395, help="--load's redis-server port")
    args = parser.parse_args(argv)
    found = digests(args.events, args.lane, args.load, args.port)
    print(" ".join(f"{name} {digest}" for name, digest in found.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
