"""An identifier shared through another one (a review of 2026-12-04).

Quarantine counted only the account ids an identifier was seen with *in one event*. A shop's
card terminal whose sales carry the card token and the customer's e-mail (for the receipt),
never an account id, was therefore never shared, however many customers paid there: it linked
to the first customer, and every later sale known by the terminal alone, and every receipt
phone given at it, went to that customer's profile. Likewise a family tablet Ann logged in on
and Bob signed up to the newsletter on with his e-mail: Bob's e-mail went to Ann's profile
through the tablet (and Bob's own account lost it, a blocked merge), where a tablet both had
logged in on links neither.

An identifier seen in an event with a more trustworthy one that is not a device (an e-mail, a
phone) now also counts the account ids that one was seen with.
"""

from __future__ import annotations

from typing import Any

import orjson
from pipeline_helpers import Runner

from resolvers.store import InMemoryStore, Kind

TERMINAL = "tok-terminal"


def ev(event_id: str, day: int, type_: str = "page_view", **identifiers: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": type_,
        "channel": "web",
        "occurred_at": f"2026-03-{day:02d}T09:00:00Z",
        "region": "NO",
        "identifiers": identifiers,
    }


def _profiles(store: InMemoryStore) -> list[dict[str, list[str]]]:
    docs = [
        orjson.loads(entity.fields["d"])["identifiers"]
        for ref, entity in store.entities.items()
        if ref.kind is Kind.PROFILE and "d" in entity.fields
    ]
    return sorted(docs, key=str)


def _owned(store: InMemoryStore) -> set[str]:
    return {
        ref.name
        for ref, entity in store.entities.items()
        if ref.kind is Kind.IDENTIFIER and "p" in entity.fields
    }


def test_a_terminal_seen_with_four_customers_e_mails_links_nobody(
    run: Runner, store: InMemoryStore
) -> None:
    customers = range(1, 5)  # four: more than card_token's threshold, 3
    run(
        [
            *(ev(f"s{i}", i, "signup", customer_id=f"C{i}", email=f"c{i}@x.no") for i in customers),
            *(ev(f"t{i}", 10 + i, card_token=TERMINAL, email=f"c{i}@x.no") for i in customers),
            ev("walk-in", 20, card_token=TERMINAL, phone="+4791234567"),
        ]
    )
    assert f"card_token:{TERMINAL}" not in _owned(store)
    assert _profiles(store) == [
        *({"customer_id": [f"C{i}"], "email": [f"c{i}@x.no"]} for i in customers),
        {"phone": ["+4791234567"]},  # the walk-in's receipt phone: nobody else's
    ]


def test_a_tablet_two_people_used_links_neither_through_an_e_mail(
    run: Runner, store: InMemoryStore
) -> None:
    run(
        [
            ev("ann", 1, "login", customer_id="C1", anonymous_id="tablet"),
            ev("bob-news", 2, email="bob@x.no", anonymous_id="tablet"),
            ev("bob", 3, "signup", customer_id="C2", email="bob@x.no"),
        ]
    )
    assert "anonymous_id:tablet" not in _owned(store)
    assert _profiles(store) == [
        {"customer_id": ["C1"]},
        {"customer_id": ["C2"], "email": ["bob@x.no"]},
    ]
