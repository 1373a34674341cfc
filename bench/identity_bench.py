"""Atoms per second of the pure identity core: evidence in, people out, single process.

    python -m bench.identity_bench [--customers 50000] [--events 200000] [--seed 7]

A synthetic retail population: each customer has a customer_id, one or two emails, a phone
for most, a loyalty id for some, card tokens for POS shoppers and a few devices. Events carry
1-3 identifiers: mostly anonymous browsing, then logins, newsletter clicks (email), POS sales
(card token, sometimes loyalty), support contacts (phone). A few shared devices and terminal
tokens are mixed in so quarantine and merge-blocking happen. Identifiers are pre-normalized;
the normalizer is not part of the measurement. Two phases are timed: folding the events into
evidence (atoms with their earliest event, co-occurrence records, shared identifiers) and the
canonical replay of all atoms into people (``resolvers.identity.cluster``), which is what a
batch whose evidence changed recomputes for the components it touches (the batch loader and
Redis are not measured).
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bench import run_main
from resolvers.identity.cluster import cluster
from resolvers.identity.evidence import EMPTY_RECORD, Atom, IdentifierRecord, Stamp, ranked
from resolvers.identity.rules import IdentityRules
from schemas.identifiers import (
    ANONYMOUS_ID,
    CARD_TOKEN,
    CUSTOMER_ID,
    EMAIL,
    LOYALTY_ID,
    PHONE,
    Identifier,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Customer:
    customer_id: Identifier
    emails: tuple[Identifier, ...]
    phone: Identifier | None
    loyalty: Identifier | None
    cards: tuple[Identifier, ...]
    devices: tuple[Identifier, ...]


def population(n: int, rng: random.Random) -> list[Customer]:
    people = []
    for i in range(n):
        people.append(
            Customer(
                Identifier(CUSTOMER_ID, f"C{i:07d}"),
                tuple(
                    Identifier(EMAIL, f"user{i}.{k}@example.com") for k in range(rng.randint(1, 2))
                ),
                Identifier(PHONE, f"+479{i:07d}") if rng.random() < 0.7 else None,
                Identifier(LOYALTY_ID, f"L{i:07d}") if rng.random() < 0.4 else None,
                tuple(Identifier(CARD_TOKEN, f"tok_{i}_{k}") for k in range(rng.randint(0, 2))),
                tuple(Identifier(ANONYMOUS_ID, f"dev-{i}-{k}") for k in range(rng.randint(1, 3))),
            )
        )
    return people


SHARED_DEVICES = tuple(Identifier(ANONYMOUS_ID, f"kiosk-{k}") for k in range(20))
SHARED_TOKENS = tuple(Identifier(CARD_TOKEN, f"terminal-{k}") for k in range(10))


def make_event(
    k: int, people: list[Customer], rng: random.Random
) -> tuple[Stamp, tuple[Identifier, ...]]:
    n = len(people)  # 80 % spread over everyone, 20 % from the 1 % most active customers
    c = people[rng.randrange(n) if rng.random() < 0.8 else rng.randrange(max(1, n // 100))]
    roll = rng.random()
    device = rng.choice(SHARED_DEVICES) if rng.random() < 0.01 else rng.choice(c.devices)
    idents: list[Identifier]
    if roll < 0.55:  # anonymous browsing
        idents = [device]
    elif roll < 0.70:  # login
        idents = [device, c.customer_id]
    elif roll < 0.80:  # newsletter click / signup
        idents = [rng.choice(c.emails)] + ([device] if rng.random() < 0.5 else [])
    elif roll < 0.93:  # POS sale
        card = (
            rng.choice(SHARED_TOKENS) if rng.random() < 0.01 or not c.cards else rng.choice(c.cards)
        )
        idents = [card] + ([c.loyalty] if c.loyalty and rng.random() < 0.6 else [])
    elif roll < 0.97:  # support contact
        idents = [c.phone or c.emails[0], c.customer_id]
    else:  # online order
        idents = [c.customer_id, rng.choice(c.emails), *(c.cards[:1])]
    return Stamp(T0 + timedelta(seconds=k), f"e{k}"), tuple(idents[:3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    people = population(args.customers, rng)
    events = [make_event(k, people, rng) for k in range(args.events)]
    rules = IdentityRules()

    start = time.perf_counter()
    atoms: dict[str, Atom] = {}
    records: dict[Identifier, IdentifierRecord] = {}
    for stamp, raw in events:
        ids = ranked(raw, rules)
        atom = Atom(ids, stamp)
        old = atoms.get(atom.key)
        atoms[atom.key] = atom if old is None else old.joined(atom)
        uniques = [i for i in ids if rules.is_unique(i.type)]
        if uniques:
            for ident in ids:
                if not rules.is_unique(ident.type):
                    record = records.get(ident, EMPTY_RECORD)
                    records[ident] = record.with_cooccurrence(ident, uniques, rules)
    shared = frozenset(i for i, r in records.items() if r.quarantined)
    folded = time.perf_counter() - start

    start = time.perf_counter()
    clustering = cluster(atoms.values(), shared, rules)
    replayed = time.perf_counter() - start

    idents = sum(len(ids) for _, ids in events)
    print(
        f"identity core: {len(events)} events ({idents / len(events):.2f} identifiers/event) "
        f"over {args.customers} customers: {len(atoms)} atoms"
    )
    print(f"  evidence fold: {len(events) / folded:,.0f} events/s")
    print(
        f"  canonical replay: {len(atoms) / replayed:,.0f} atoms/s "
        f"({replayed:.2f} s for every atom at once)"
    )
    print(
        f"  people={len(clustering.people)} merge_blocked={len(clustering.blocked)} "
        f"shared identifiers={len(shared)}"
    )
    return 0


if __name__ == "__main__":
    run_main(main)
