"""The profile state a commit writes (``resolvers.commit_codec``, ``lanes.stored_profile``):
over a simulated run, every written state decodes to a profile that encodes to the same
bytes, its held-keys field is that profile's ``held_keys``, and what a worker remembers
decoded (``DecodeCache.put``) is exactly what it stored."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace

import orjson
from builders import make_context
from pipeline_helpers import record

from resolvers.decode_cache import DecodeCache
from resolvers.lanes import stored_profile
from resolvers.pipeline import PROFILES, run_batch
from resolvers.store import HELD_FIELD, Commit, CommitResult, InMemoryStore, Kind, Write
from schemas.normalize import DEFAULT
from schemas.touchpoint import dump_touchpoint
from streams.simulate import Simulator


class _Recording(InMemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.profile_writes: list[Write] = []

    def commit_parts(self, parts: Sequence[Commit]) -> list[CommitResult]:
        for part in parts:
            self.profile_writes.extend(
                w for w in part.writes if w.ref.kind is Kind.PROFILE and "s" in w.fields
            )
        return super().commit_parts(parts)


def test_written_states_round_trip_and_hold_their_identifier_keys() -> None:
    topic = [
        dump_touchpoint(tp)
        for tp in itertools.islice(Simulator(seed=5, customers=150).events(), 1500)
    ]
    store = _Recording()
    cache = DecodeCache()
    ctx = replace(make_context(), cache=cache)
    for start in range(0, len(topic), 250):
        batch = [record(raw, start + i) for i, raw in enumerate(topic[start : start + 250])]
        run_batch(batch, store, lambda: ctx, max_bytes=64 * 1024, config=DEFAULT, lane=PROFILES)

    assert len(store.profile_writes) > 300
    assert any(len(stored_profile.decode(w.ref.name, w.fields["s"], ctx.rules).groups) > 1
               for w in store.profile_writes)  # fmt: skip
    for write in store.profile_writes:
        state = write.fields["s"]
        profile = stored_profile.decode(write.ref.name, state, ctx.rules)
        assert stored_profile.encode(profile) == state
        assert write.fields[HELD_FIELD] == orjson.dumps(profile.held_keys())
    for ref, entity in store.entities.items():  # the last write of each profile, remembered
        if ref.kind is Kind.PROFILE and "s" in entity.fields:
            remembered = cache.get(ref, entity.fields["s"], lambda raw: None)
            assert remembered is not None, ref
            assert stored_profile.encode(remembered) == entity.fields["s"]
