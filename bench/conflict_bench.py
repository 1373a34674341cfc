"""Where two profiles workers' CAS conflicts come from, and what a record key would change.

    python -m bench.conflict_bench [--events 20000] [--batch 500] [--parts 16]
                                   [--keys record-key,session,session-router,person]
                                   [--fetch chunked|interleaved] [--claims] [--json FILE]

Issue 17.3, ADR 0017. No servers: the e2e bench's backlog (the same simulator, seed and
population) goes through the real pipeline (``run_batch``: parts, hot parts, the lane's stages)
and the in-memory store, whose compare-and-set is the Redis store's (the store contract tests
hold them equal). Two workers each own 3 of 6 partitions, a record's partition being the one
the producer's ``murmur2_random`` partitioner picks for its key. Each worker cuts its records
into batches of ``--batch`` (``chunked``: a batch from one partition at a time, as a consumer
fetching a backlog gets them; ``interleaved``: its records in stream order), and the two run
batch for batch in lockstep, as two busy workers do: one loads, the other runs its batch and
commits, then the first computes and commits. That is the most concurrency two workers can
have (only the batch that commits second can conflict, so at most half of all batches do),
so the absolute rates are upper bounds; what the bench is for is their causes, and the
comparison of keyings on the same schedule.

Every conflicted part names an entity (``CommitResult.detail``). The simulator knows which
customer each identifier belongs to (a household tablet's anonymous id: two; an anonymous web
id: the customer it was seen with), so each conflict is put down to one cause:

* ``same session``: one person's events of one visit (within 20 events of each other in the
  stream) under different record keys: their anonymous browsing keyed by the anonymous id,
  their signup, login, cart and order of the same visit keyed by their customer id;
* ``other journeys``: one person's events of different journeys (an order's fulfilment, an app
  session, a consent change) that were in flight at once on the two workers;
* ``shared identifier``: two customers of a household on one tablet (its anonymous id);
* ``several customers`` / ``no known customer``: the rest.

Keyings (the raw topic's record key):

* ``record-key``: today's (``schemas.touchpoint.record_key``: the strongest identifier);
* ``session``: the anonymous (session or device) id when the event carries one, else
  ``record_key``: stateless, a producer could do it;
* ``session-router``: a router per worker on the raw topic (as ADR 0014 routes stock) that
  keys an event by its anonymous id and remembers each of the event's other identifiers ->
  that id; an event without one goes where its identifiers were last seen, else by its raw
  key. Modelled here, not implemented (ADR 0017);
* ``person``: the customer the simulator knows the event belongs to (no deployment knows this
  before identity resolution: the lower bound of any keying).
"""

from __future__ import annotations

import argparse
import collections
import functools
import itertools
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from bench import run_main
from bench.partitioner import assign, partition_for, worker_of
from resolvers.claims import Board, BoardClaims
from resolvers.consent import ConsentPolicy
from resolvers.context import Context, TopicNames
from resolvers.identity.evidence import profile_id_for
from resolvers.identity.rules import IdentityRules
from resolvers.pipeline import PROFILES, BatchResult, run_batch
from resolvers.steps import RawRecord
from resolvers.store import InMemoryStore
from schemas.identifiers import Identifier
from schemas.normalize import DEFAULT, is_blocked, normalize_one
from schemas.touchpoint import Touchpoint, dump_touchpoint, record_key
from streams.simulate import Simulator
from streams.testing import Racing

#: Events of one visit are this close in the stream (a web journey is at most ~12 events).
SESSION_GAP: Final = 20
KEYINGS: Final = ("record-key", "session", "session-router", "person")
NOW: Final = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _key(id_type: str, raw: str, region: str | None) -> str | None:
    result = normalize_one(id_type, raw, region=region, config=DEFAULT)
    return result.key if isinstance(result, Identifier) else None


@dataclass
class Truth:
    """Which customers the simulator gave each identifier key, and each event's keys."""

    owners: dict[str, set[int]] = field(default_factory=lambda: collections.defaultdict(set))
    keys: dict[str, list[str]] = field(default_factory=dict)  # event id -> identifier keys
    shared: set[str] = field(default_factory=set)  # household tablets

    @classmethod
    def of(cls, sim: Simulator, tps: Sequence[Touchpoint]) -> Truth:
        truth = cls()
        for c in sim.customers:
            for id_type, value in (
                ("customer_id", c.customer_id), ("email", c.email), ("phone", c.phone),
                ("loyalty_id", c.loyalty_id), ("card_token", c.card_token),
                ("social_handle", c.social_handle),
            ):  # fmt: skip
                key = _key(id_type, value, c.region) if value else None
                if key:
                    truth.owners[key].add(c.n)
            for device in c.devices:
                truth.owners[f"anonymous_id:{device}"].add(c.n)
        for first, tablet in sim._tablets.items():  # the simulator's own record of them
            truth.owners[f"anonymous_id:{tablet}"] |= {first + 1, first + 2}
            truth.shared.add(f"anonymous_id:{tablet}")
        for tp in tps:
            ids = tp.identifiers.as_mapping().items()
            truth.keys[tp.event_id] = [k for t, v in ids if v and (k := _key(t, v, tp.region))]
        for keys in truth.keys.values():  # an anonymous web id: the customer it logged in as
            known = set().union(*(truth.owners.get(k, set()) for k in keys if not _anon(k)))
            for k in keys:
                if _anon(k) and known:
                    truth.owners[k] |= known
        return truth

    def customers(self, event_id: str) -> set[int]:
        return set().union(*(self.owners.get(k, set()) for k in self.keys[event_id]))


def _anon(key: str) -> bool:
    return key.startswith("anonymous_id:")


# --- keyings ---------------------------------------------------------------------------------


def keys_for(name: str, tps: Sequence[Touchpoint], truth: Truth) -> list[bytes | None]:
    """Each event's record key under keying ``name`` (module docstring)."""
    if name == "record-key":
        return [record_key(tp) for tp in tps]
    if name == "session":
        return [_session(tp, truth) or record_key(tp) for tp in tps]
    if name == "person":
        out: list[bytes | None] = []
        for tp in tps:
            customers = truth.customers(tp.event_id)
            out.append(f"person:{min(customers)}".encode() if customers else record_key(tp))
        return out
    if name == "session-router":
        return _routed(tps, truth)
    raise ValueError(f"unknown keying {name!r} (one of {', '.join(KEYINGS)})")


def _session(tp: Touchpoint, truth: Truth) -> bytes | None:
    anon = next((k for k in truth.keys[tp.event_id] if _anon(k)), None)
    return anon.encode() if anon else None


def _routed(tps: Sequence[Touchpoint], truth: Truth) -> list[bytes | None]:
    """The session router: one per worker, each reading the raw partitions (keyed by
    ``record_key``) its worker owns, with its own memory of identifier -> session id."""
    memory: list[dict[str, str]] = [{}, {}]
    out: list[bytes | None] = []
    for tp in tps:
        raw = record_key(tp)
        seen = memory[worker_of(partition_for(raw)) if raw is not None else 0]
        keys = truth.keys[tp.event_id]
        anon = next((k for k in keys if _anon(k)), None)
        if anon is not None:
            seen.update((k, anon) for k in keys if k != anon)
            out.append(anon.encode())
            continue
        hit = next((seen[k] for k in keys if k in seen), None)
        out.append(hit.encode() if hit is not None else raw)
    return out


# --- two workers in lockstep -----------------------------------------------------------------


def _context() -> Context:
    rules = IdentityRules(is_blocked=lambda t, v: is_blocked(t, v, DEFAULT))
    return Context(
        rules=rules, policy=ConsentPolicy(), topics=TopicNames(), salt=b"bench-salt", now=NOW
    )


def batches_of(
    tps: Sequence[Touchpoint], keys: Sequence[bytes | None], *, batch: int, fetch: str
) -> list[list[list[RawRecord]]]:
    """Each worker's batches of raw records (module docstring; ``bench.partitioner``)."""
    by = [k if k is not None else tp.event_id.encode() for tp, k in zip(tps, keys, strict=True)]
    records = [
        RawRecord(dump_touchpoint(tp), key=key, partition=partition_for(p), offset=offset)
        for offset, (tp, key, p) in enumerate(zip(tps, keys, by, strict=True))
    ]
    plan = assign(by, batch=batch, fetch="chunked" if fetch == "chunked" else "interleaved")
    return [[[records[i] for i in b] for b in batches] for batches in plan]


@dataclass
class Replay:
    """Counts of one keying's replay."""

    batches: int = 0
    parts: int = 0
    conflicted_parts: int = 0
    batches_conflicted: int = 0
    deferred_parts: int = 0  # held by the other worker's claims (``--claims``)
    batches_deferred: int = 0
    racing: int = 0  # batches that committed second (only they can conflict here)
    recomputed: int = 0
    causes: collections.Counter[str] = field(default_factory=collections.Counter)
    #: what the conflicts named: ``id:<type>``, ``profile``, ...
    entities: collections.Counter[str] = field(default_factory=collections.Counter)

    def add(self, result: BatchResult) -> None:
        self.batches += 1
        self.parts += result.parts
        self.conflicted_parts += result.conflicted_parts
        self.batches_conflicted += bool(result.conflicted_parts)
        self.deferred_parts += result.deferred_parts
        self.batches_deferred += bool(result.deferred_parts)
        self.recomputed += result.recomputed_events


def replay(
    tps: Sequence[Touchpoint], keys: Sequence[bytes | None], truth: Truth, *,
    batch: int, parts: int, fetch: str, claims: bool = False,
) -> Replay:  # fmt: skip
    """Two workers' batches in lockstep (module docstring); conflicts classified.
    ``claims``: each worker claims its parts (ADR 0040) on one board; a worker that defers
    parts lets the other finish its batch before it loads them again."""
    store = InMemoryStore()
    out = Replay()
    hot: list[set[str]] = [set(), set()]
    position = {tp.event_id: i for i, tp in enumerate(tps)}
    profile_event = {profile_id_for(tp.event_id): tp.event_id for tp in tps}
    board = Board()

    def claims_of(w: int, on: Any) -> BoardClaims | None:
        if not claims:
            return None
        loaded_at = (lambda: on.loaded_at) if isinstance(on, Racing) else (lambda: store.sequence)
        return BoardClaims(board, f"w{w}", lambda: store.sequence, loaded_at)

    def run(records: Sequence[RawRecord], w: int, on: Any) -> BatchResult:
        result = run_batch(
            records, on, _context, max_bytes=64 * 1024, config=DEFAULT, lane=PROFILES,
            max_parts=parts, hot=hot[w], claims=claims_of(w, on),
        )  # fmt: skip
        hot[w].update(result.contested)
        out.add(result)
        return result

    work = batches_of(tps, keys, batch=batch, fetch=fetch)
    for k in range(max(map(len, work))):
        second = k % 2  # who loads first and commits last, in turn
        mine = work[second][k] if k < len(work[second]) else []
        theirs = work[1 - second][k] if k < len(work[1 - second]) else []
        if not mine:
            if theirs:
                run(theirs, 1 - second, store)
            continue
        other = functools.partial(run, theirs, 1 - second, store) if theirs else _nothing
        result = run(mine, second, Racing(store, other))
        out.racing += 1
        mine_ids = [orjson.loads(r.value or b"{}")["event_id"] for r in mine]
        theirs_ids = [orjson.loads(r.value or b"{}")["event_id"] for r in theirs]
        for detail in result.contested:
            kind, _, name = detail.partition(":")
            out.entities[f"id:{name.split(':')[0]}" if kind == "id" else kind] += 1
            source = profile_event.get(name) if kind == "profile" else None
            if source is not None:
                customers = truth.customers(source)
                shared = any(k in truth.shared for k in truth.keys[source])
            else:
                customers = set(truth.owners.get(name, set())) if kind == "id" else set()
                shared = name in truth.shared
            cause = _cause(customers, shared=shared, sides=(mine_ids, theirs_ids), truth=truth,
                           position=position)  # fmt: skip
            out.causes[cause] += 1
    return out


def _nothing() -> None:
    return None


def _cause(
    customers: set[int], *, shared: bool, sides: tuple[Sequence[str], Sequence[str]],
    truth: Truth, position: dict[str, int],
) -> str:  # fmt: skip
    """One conflict's cause (module docstring): ``customers`` own the entity it named,
    ``sides`` are the event ids of the two workers' batches."""
    mine, theirs = sides
    if not customers:
        return "no known customer"
    if shared or len(customers) > 1:
        return "shared identifier (household tablet)" if shared else "several customers"
    a = [position[e] for e in mine if customers & truth.customers(e)]
    b = [position[e] for e in theirs if customers & truth.customers(e)]
    gap = min((abs(x - y) for x in a for y in b), default=None)
    if gap is not None and gap < SESSION_GAP:
        return "one person, same session, different record keys"
    return "one person, other journeys in flight at once"


def _pct(n: int, of: int) -> float:
    return round(100 * n / of, 2) if of else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.conflict_bench", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000, help="backlog size (20000)")
    parser.add_argument("--batch", type=int, default=500, help="records per batch (500)")
    parser.add_argument("--parts", type=int, default=16, help="LOOM_COMMIT_PARTS (16)")
    parser.add_argument("--keys", default=",".join(KEYINGS), help="keyings to compare")
    parser.add_argument("--fetch", choices=("chunked", "interleaved"), default="chunked")
    parser.add_argument(
        "--claims", action="store_true", help="the workers claim their parts (ADR 0040)"
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    # the e2e bench's throughput backlog: warm-up and backlog of one simulator
    sim = Simulator(seed=1, customers=5000, stores=10, skus=500)
    tps = list(itertools.islice(sim.events(), 200 + args.events))
    truth = Truth.of(sim, tps)
    results: dict[str, Any] = {}
    for name in args.keys.split(","):
        r = replay(
            tps, keys_for(name, tps, truth), truth,
            batch=args.batch, parts=args.parts, fetch=args.fetch, claims=args.claims,
        )  # fmt: skip
        results[name] = {
            "batches": r.batches,
            "batches_conflicted_pct": _pct(r.batches_conflicted, r.batches),
            # of the batches that committed second: 100 % = every one that could conflict did
            "racing_batches_conflicted_pct": _pct(r.batches_conflicted, r.racing),
            "parts": r.parts,
            "conflicted_parts": r.conflicted_parts,
            "conflicted_pct_of_parts": _pct(r.conflicted_parts, r.parts),
            "recomputed_pct_of_events": _pct(r.recomputed, len(tps)),
            "deferred_parts": r.deferred_parts,
            "batches_deferred_pct": _pct(r.batches_deferred, r.batches),
            "causes": dict(r.causes.most_common()),
            "entities": dict(r.entities.most_common()),
        }
        print(
            f"{name:15s} parts retried {r.conflicted_parts}/{r.parts} "
            f"({_pct(r.conflicted_parts, r.parts)} %), batches with a conflict "
            f"{_pct(r.batches_conflicted, r.batches)} % ({r.batches_conflicted} of the "
            f"{r.racing} that committed second), events computed twice "
            f"{_pct(r.recomputed, len(tps))} %, parts deferred {r.deferred_parts} (in "
            f"{_pct(r.batches_deferred, r.batches)} % of batches); "
            f"causes: {dict(r.causes.most_common())}",
            file=sys.stderr,
            flush=True,
        )
    out = {
        "events": len(tps), "batch": args.batch, "parts": args.parts, "fetch": args.fetch,
        "claims": args.claims, "keyings": results,
    }  # fmt: skip
    text = orjson.dumps(out, option=orjson.OPT_INDENT_2).decode()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    run_main(main)
