"""One person's journey as the gateway's SDK tests send it, and what it must end as in Redis
(tests/e2e/test_gateway_sdks_e2e.py, test_gateway_browser_e2e.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from e2e_harness import Loom

#: The npm SDKs and the scripts that run them (installed by `make js-deps`).
CLIENTS = Path(__file__).resolve().parents[1] / "clients"


@dataclass
class Person:
    sdk: str
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def user_id(self) -> str:
        return f"C-{self.sdk}-{self.tag}"

    @property
    def anonymous_id(self) -> str:
        return f"anon-{self.tag}"

    @property
    def previous_id(self) -> str:  # an older device of the same person, linked by alias
        return f"old-device-{self.tag}"

    @property
    def email(self) -> str:
        return f"Shopper.{self.tag}@Example.COM"

    @property
    def order(self) -> dict[str, Any]:
        return {
            "order_id": f"O-{self.tag}",
            "total": 59.9,
            "revenue": 50.0,
            "currency": "USD",
            "products": [
                {"product_id": "P-1", "sku": "SKU-RED-42", "name": "Red shoe", "price": 29.95,
                 "quantity": 2, "category": "shoes"},
            ],
        }  # fmt: skip


def assert_one_profile(loom: Loom, people: list[Person]) -> None:
    profiles = list(loom.profiles().values())
    assert len(profiles) == len(people), [p["identifiers"] for p in profiles]
    for person in people:
        mine = [p for p in profiles if person.user_id in p["identifiers"].get("customer_id", [])]
        assert len(mine) == 1, f"{person.sdk}: {len(mine)} profiles"
        [profile] = mine
        ids = profile["identifiers"]
        assert ids["customer_id"] == [person.user_id], person.sdk
        assert ids["email"] == [person.email.lower()], person.sdk
        assert set(ids["anonymous_id"]) == {person.anonymous_id, person.previous_id}, person.sdk
        assert set(ids) == {"customer_id", "email", "anonymous_id"}, person.sdk
        assert profile["orders_online"] == 1, person.sdk
        assert Decimal(profile["revenue"]["USD"]) == Decimal("59.9"), person.sdk
        assert profile["last_order"]["order_id"] == f"O-{person.tag}", person.sdk
