"""The hand-made Shopify fixtures (tests/fixtures/shopify), from which the other Shopify tests
build their payloads, keep the shape of Shopify's documented examples
(tests/fixtures/shopify/reference): a fixture may only use fields Shopify's example of its topic
has, with the same JSON types, and only the documented headers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from shopify_shop import CONSENT_TOPICS, FIXTURES, REFERENCE, example


def _json_type(value: object) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(
        type(value), "array" if isinstance(value, list) else "object"
    )


#: For fixture lists the example leaves empty: the example of one element.
EMPTY_IN_EXAMPLE = {"fulfillments": "fulfillments_create", "refunds": "refunds_create"}


def undocumented(fixture: object, documented: object, where: str = "") -> list[str]:
    """Fields of ``fixture`` that ``documented`` lacks, or has with another JSON type (a null
    on either side is any type)."""
    if fixture is None or documented is None:
        return []
    if _json_type(fixture) != _json_type(documented):
        return [f"{where}: {_json_type(fixture)}, documented {_json_type(documented)}"]
    if isinstance(fixture, Mapping) and isinstance(documented, Mapping):
        out = []
        for key, value in fixture.items():
            at = f"{where}.{key}" if where else key
            if key not in documented:
                out.append(f"{at}: not in Shopify's example")
                continue
            like = documented[key]
            if like == [] and key in EMPTY_IN_EXAMPLE:
                like = [example(EMPTY_IN_EXAMPLE[key])]
            out += undocumented(value, like, at)
        return out
    if isinstance(fixture, list) and isinstance(documented, list) and documented:
        first = documented[0]
        return [e for i, v in enumerate(fixture) for e in undocumented(v, first, f"{where}[{i}]")]
    return []


def documented_shape(stem: str) -> Any:
    """The example a fixture must follow (a POS order is an order; a customer may carry the
    Customer resource's consent objects; a consent topic has the resource's fields)."""
    if stem in CONSENT_TOPICS:
        resource = example("customer_resource")
        return {field: resource[like] for field, like in CONSENT_TOPICS[stem].items()}
    data = example("orders_create" if stem == "orders_create_pos" else stem, shop=None)
    if stem in ("customers_create", "customers_update"):
        resource = example("customer_resource")
        data |= {k: resource[k] for k in ("email_marketing_consent", "sms_marketing_consent")}
    return data


PAYLOAD_FIXTURES = sorted(p.stem for p in FIXTURES.glob("*.json") if p.stem != "headers")


@pytest.mark.parametrize("stem", PAYLOAD_FIXTURES)
def test_a_fixture_uses_only_shopifys_fields_with_their_types(stem: str) -> None:
    fixture = json.loads((FIXTURES / f"{stem}.json").read_text())
    assert undocumented(fixture, documented_shape(stem)) == []


def test_the_shape_check_catches_a_renamed_field_and_money_sent_as_a_number() -> None:
    order = example("orders/create")
    order["line_items"][0]["qty"] = order["line_items"][0].pop("quantity")
    order["total_price"] = 404.95  # Shopify sends money as strings
    assert undocumented(order, example("orders/create")) == [
        "total_price: number, documented string",
        "line_items[0].qty: not in Shopify's example",
    ]


def test_the_headers_fixture_has_only_documented_headers() -> None:
    # the "Headers" section of the reference (X-Shopify-Name is optional)
    lines = (REFERENCE / "headers.txt").read_text().splitlines()
    documented = {line.split(":", 1)[0] for line in lines if line.startswith("X-Shopify-")}
    fixture = json.loads((FIXTURES / "headers.json").read_text())
    assert set(fixture) == documented
    assert fixture["X-Shopify-API-Version"] == "2026-07"
