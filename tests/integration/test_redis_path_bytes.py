"""The RedisStore client path written, read and decoded for less (issue 17.2, fifteenth pass)
sends the SAME bytes as main's (``redis_path_reference``: 2b8581a's ``wave_load``,
``watch_commit`` and ``replies`` verbatim) and gets the same results: both run a lane's
``run_batch`` over the same simulator batches on a real Redis, under prefixes of one length,
and every buffer each sends is recorded. One deliberate difference (sixteenth pass, ADR 0029):
a commit checked against the load's snapshot leaves out a rewritten entity's ``DEL`` and its
fields already holding their value, where the load proves it. So a ``MULTI`` buffer is
compared command by command (the same, or such a ``DEL`` or field pair left out) and what each
store holds after every batch is compared key by key."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, Literal

import hiredis
import pytest
import redis
from builders import make_context
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from redis_dump import stored
from redis_path_reference import watch_commit as old_watch
from redis_path_reference import wave_load as old_wave

from resolvers.decode_cache import DecodeCache
from resolvers.pipeline import INVENTORY, PROFILES, run_batch
from resolvers.steps import RawRecord
from schemas.normalize import DEFAULT
from schemas.touchpoint import dump_touchpoint
from streams.redis_store import RedisStore
from streams.resp import RespPacker
from streams.settings import DEV_SALT
from streams.simulate import Simulator

pytestmark = pytest.mark.integration


def _recorded(client: redis.Redis) -> list[bytes]:
    """Every buffer ``client``'s connections send from now on, in order."""
    sent: list[bytes] = []
    pool: Any = client.connection_pool
    get = pool.get_connection

    def get_connection(*args: Any, **kwargs: Any) -> Any:
        conn = get(*args, **kwargs)
        if not getattr(conn, "_wrcli_recorded", False):
            send = conn.send_packed_command

            def record(command: Any, check_health: bool = True) -> None:
                chunks = [command] if isinstance(command, (bytes, str)) else command
                data = b"".join(c.encode() if isinstance(c, str) else c for c in chunks)
                if not data.startswith(b"*6\r\n$4\r\nSCAN\r\n"):  # a cursor: the server's
                    sent.append(data)
                send(command, check_health=check_health)

            conn.send_packed_command = record
            conn._wrcli_recorded = True
        return conn

    pool.get_connection = get_connection
    return sent


@pytest.fixture
def clients(redis_url: str) -> Iterator[Callable[[], redis.Redis]]:
    """Clients of their own (each its own pool: one recording each), as the worker's."""
    made: list[redis.Redis] = []

    def make() -> redis.Redis:
        client = redis.Redis.from_url(redis_url, command_packer=RespPacker())
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def _store(
    client: redis.Redis, prefix: str, *, old: bool, load: Literal["script", "waves"]
) -> RedisStore:
    store = RedisStore(client, prefix=prefix, commit="watch", load=load)
    if old:  # main's classes in the store's seats, as its constructor puts them
        if load == "waves":
            store.waves = old_wave.WaveLoad(client, store.keys, store.seen_ttl_s)  # type: ignore[assignment]
        store.watch = OldWatchCommit(client, store.keys, store.seen_ttl_s)  # type: ignore[assignment]
    return store


class OldWatchCommit(old_watch.WatchCommit):
    """Main's ``WatchCommit`` as the store calls it now: with the rebuild lease's token (ADR
    0044), which only a store that checks a generation sends (none does here)."""

    def commit(self, *args: Any, rebuild_token: str = "", **kwargs: Any) -> Any:
        assert kwargs.get("generation") is None
        assert not rebuild_token
        return super().commit(*args, **kwargs)


def _early_in_a_second(client: redis.Redis) -> None:
    """Returns within the first 300 ms of one of Redis's seconds (``TIME``)."""
    while True:
        _seconds, micros = client.time()
        if micros < 300_000:
            return
        time.sleep((1_000_000 - micros) / 1e6)


_MULTI = b"*1\r\n$5\r\nMULTI\r\n"


def _commands(buffer: bytes) -> list[list[bytes]]:
    reader = hiredis.Reader()
    reader.feed(buffer)
    out = []
    while (command := reader.gets()) is not False:
        out.append(command)
    return out


def _assert_thinned(new: list[list[bytes]], old: list[list[bytes]]) -> None:
    """``new`` is ``old`` but for entities' ``DEL`` before their ``HSET`` and ``HSET`` field
    pairs (never ``v``) left out."""
    j = 0
    for at, command in enumerate(old):
        if j < len(new) and new[j] == command:
            j += 1
            continue
        if command[0] == b"DEL" and len(command) == 2:
            following = old[at + 1]
            assert following[:2] == [b"HSET", command[1]]
            continue
        thin = new[j]
        assert command[0] == thin[0] == b"HSET"
        assert command[2] == b"v"
        assert thin[1:4] == command[1:4]  # the key, v and its value
        pairs = list(zip(command[4::2], command[5::2], strict=True))
        kept = list(zip(thin[4::2], thin[5::2], strict=True))
        assert [p for p in pairs if p in kept] == kept
        j += 1
    assert j == len(new)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: ~1 s per example
)
@given(
    seed=st.integers(0, 2**16),
    customers=st.integers(3, 60),
    sizes=st.lists(st.integers(1, 160), min_size=1, max_size=4),
    replayed=st.integers(0, 40),
    lane=st.sampled_from(["profiles", "inventory"]),
    load=st.sampled_from(["waves", "script"]),
)
def test_the_client_path_sends_mains_bytes_and_gets_its_results(
    clients: Callable[[], redis.Redis],
    seed: int,
    customers: int,
    sizes: list[int],
    replayed: int,
    lane: str,
    load: Literal["script", "waves"],
) -> None:
    """Batches of few customers (merges, redirects, shared identifiers), the first
    ``replayed`` records again at the end (duplicates: processed markers found); with the
    wave load (the commit checks against its snapshot) or ``load.lua`` (the commit reads)."""
    sim = Simulator(seed=seed, customers=customers, stores=3, skus=12)
    values = [dump_touchpoint(tp) for tp in itertools.islice(sim.events(), sum(sizes))]
    records = [RawRecord(value=v, topic="raw", partition=0, offset=i) for i, v in enumerate(values)]
    batches, at = [], 0
    for n in sizes:
        batches.append(records[at : at + n])
        at += n
    batches.append(records[:replayed])
    tag = uuid.uuid4().hex[:12]
    prefixes = {True: f"loomtest-bytes-old-{tag}", False: f"loomtest-bytes-new-{tag}"}
    sent: dict[bool, list[bytes]] = {}
    results: dict[bool, list[Any]] = {True: [], False: []}
    cleanup = clients()
    try:
        stores = {}
        for old in (True, False):
            client = clients()
            sent[old] = _recorded(client)
            stores[old] = _store(client, prefixes[old], old=old, load=load)
        # the scripts in Redis's cache first (a fresh or flushed server): a store calling one
        # that is not would send EVALSHA, SCRIPT LOAD and EVALSHA again, the other store not
        for script in (stores[True]._load, stores[True]._commit):
            cleanup.script_load(script.script)
        contexts = {old: replace(make_context(), salt=DEV_SALT.encode(), cache=DecodeCache())
                    for old in (True, False)}  # fmt: skip
        # each store's first commit writes its markers layout's ``since`` (Redis TIME, in
        # seconds): both first batches run early in one second
        _early_in_a_second(cleanup)
        for batch in batches:
            for old in (True, False):  # alternating: the same Redis TIME for both
                context = contexts[old]
                results[old].append(
                    run_batch(
                        batch,
                        stores[old],
                        lambda c=context: c,  # type: ignore[misc]
                        max_bytes=64 * 1024,
                        config=DEFAULT,
                        lane=PROFILES if lane == "profiles" else INVENTORY,
                    )
                )
            assert stored(cleanup, prefixes[False]) == stored(cleanup, prefixes[True])
        assert repr(results[False]) == repr(results[True])
        old_bytes = [
            b.replace(prefixes[True].encode(), prefixes[False].encode()) for b in sent[True]
        ]
        assert len(sent[False]) == len(old_bytes)
        for new, was in zip(sent[False], old_bytes, strict=True):
            if new.startswith(_MULTI) and load == "waves":
                _assert_thinned(_commands(new), _commands(was))
            else:
                assert new == was
    finally:
        for prefix in prefixes.values():
            keys = list(cleanup.scan_iter(match=f"{prefix}:*", count=1000))
            for j in range(0, len(keys), 500):
                cleanup.unlink(*keys[j : j + 500])
