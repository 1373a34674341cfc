"""Decisions per second of the pure identity core (resolve + apply), single process.

    python -m bench.identity_bench [--customers 50000] [--events 200000] [--seed 7]

A synthetic retail population: each customer has a customer_id, one or two emails, a phone
for most, a loyalty id for some, card tokens for POS shoppers and a few devices. Events carry
1-3 identifiers: mostly anonymous browsing, then logins, newsletter clicks (email), POS sales
(card token, sometimes loyalty), support contacts (phone). A few shared devices and terminal
tokens are mixed in so quarantine and merge-blocking happen. Identifiers are pre-normalized;
the normalizer is not part of the measurement. All events run against one growing
InMemoryIdentityState (the batch loader and Redis are not measured).
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from resolvers.identity import (
    IdentifierQuarantined,
    InMemoryIdentityState,
    MergeBlocked,
    ProfilesMerged,
    ResolveRequest,
    apply,
    resolve,
)
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


def make_event(k: int, people: list[Customer], rng: random.Random) -> ResolveRequest:
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
    return ResolveRequest(f"e{k}", T0 + timedelta(seconds=k), tuple(idents[:3]))


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
    state = InMemoryIdentityState()
    counter = iter(range(1, 1 << 62))

    def new_id() -> str:
        return f"p{next(counter)}"

    merges = blocked = quarantined = idents = 0
    start = time.perf_counter()
    for req in events:
        result = resolve(req, state, rules, new_profile_id=new_id)
        apply(state, result.effects)
        for effect in result.effects:
            if isinstance(effect, ProfilesMerged):
                merges += 1
            elif isinstance(effect, MergeBlocked):
                blocked += 1
            elif isinstance(effect, IdentifierQuarantined):
                quarantined += 1
        idents += len(req.identifiers)
    elapsed = time.perf_counter() - start

    print(
        f"identity core: {len(events)} events ({idents / len(events):.2f} identifiers/event) "
        f"over {args.customers} customers in {elapsed:.2f} s"
    )
    print(f"  {len(events) / elapsed:,.0f} decisions/s (resolve + apply, single process)")
    print(
        f"  profiles={len(state.profiles())} merges={merges} merge_blocked={blocked} "
        f"quarantined={quarantined}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
