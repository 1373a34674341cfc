"""E-mail values that must, or must not, be one identifier (a review of 2026-12-04).

* A placeholder address typed at a till for customers who give none (``noemail@…``,
  ``noreply@…``) never links people (README, Identity resolution). Before, only the exact
  listed local parts were refused, so its ``+tag`` and dotted variants (``noemail+pos@…``,
  ``No.Reply@…``) linked every customer who "gave" one into one profile.
* The same address written in NFC and in NFD (a composed ``é`` or ``e`` and a combining
  accent, as some keyboards and macOS send it) is one address (RFC 6532 asks for NFC). Before,
  it was two identifiers, so one person had two profiles.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import orjson
import pytest
from pipeline_helpers import Runner

from resolvers.store import InMemoryStore, Kind


def ev(event_id: str, minute: int, **identifiers: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "page_view",
        "channel": "pos",
        "occurred_at": f"2026-03-02T09:{minute:02d}:00Z",
        "region": "NO",
        "identifiers": identifiers,
    }


def _profiles(store: InMemoryStore) -> list[dict[str, Any]]:
    return [
        orjson.loads(entity.fields["d"])["identifiers"]
        for ref, entity in store.entities.items()
        if ref.kind is Kind.PROFILE and "d" in entity.fields
    ]


@pytest.mark.parametrize(
    "placeholder",
    ["noemail+pos@shop.no", "NoEmail+Till-3@Shop.no", "No.Reply@Shop.no", "do.not.reply@shop.no"],
)
def test_a_tagged_or_dotted_placeholder_email_links_nobody(
    run: Runner, store: InMemoryStore, placeholder: str
) -> None:
    run(
        [
            ev("ann", 1, phone="+4791234567", email=placeholder),
            ev("bob", 2, phone="+4792345678", email=placeholder),
        ]
    )
    assert sorted(_profiles(store), key=str) == [
        {"phone": ["+4791234567"]},
        {"phone": ["+4792345678"]},
    ]


def test_one_address_in_nfc_and_nfd_is_one_identifier(run: Runner, store: InMemoryStore) -> None:
    composed = "josé@example.no"
    decomposed = unicodedata.normalize("NFD", "JOSÉ@example.no")
    assert composed != decomposed.lower()  # two strings, one address
    run([ev("signup", 1, customer_id="C1", email=composed), ev("open", 2, email=decomposed)])
    assert _profiles(store) == [{"customer_id": ["C1"], "email": [composed]}]
