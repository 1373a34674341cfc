"""Deterministic generator of realistic retail touchpoint traffic (``loom simulate``).

``Simulator(seed, customers, stores, skus).events()`` yields an endless, time-ordered stream of
valid :class:`Touchpoint` models; the same arguments always give the same stream (one seeded
``random.Random``, a simulated clock starting at ``start``; no wall clock, no global state).

Journeys, picked by weight, each emitting one or more events (later steps such as fulfilment or
returns are scheduled on the simulated clock):

* anonymous web browsing (``page_view``/``product_viewed``/``cart_updated`` and a few
  ``custom`` events such as "Size Guide Viewed", with an ``anonymous_id``) that sometimes ends
  in ``signup`` or ``login`` (anonymous id + email / customer id) and an online
  ``order_completed``, later ``order_fulfilled`` or ``order_cancelled``, sometimes
  ``order_returned``;
* app sessions (device anonymous id + customer id);
* a household's shared tablet: two customers log in on one device (one anonymous id, two
  customer ids), the case identity rules must not merge into one person;
* ``pos_sale`` in a store with a loyalty id, a card token, or nothing (cash);
* newsletter signups with consent, ``consent_updated`` (own map, vendor signals or GPC),
  ``support_contacted``, ``social_engaged``, ``loyalty_enrolled``, ``profile_updated``,
  ``survey_answered``, rare ``erasure_requested``;
* back office ``inventory_counted`` and ``inventory_adjusted`` (restock, damage, shrinkage).

Regions NO, SE, DE, GB, US with phone numbers valid for the region in mixed raw formats; a small
share of events carry junk identifiers (``1234567890``, ``noemail@store.com`` ...).
``bad_records()`` yields invalid raw records (for ``--raw``) and ``lines(bad_fraction)`` mixes
both as JSONL lines.
"""

from __future__ import annotations

import heapq
import itertools
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Final

import orjson
import phonenumbers

from schemas.touchpoint import Touchpoint, dump_touchpoint

START: Final = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
#: Names of the ``custom`` events web and app sessions send (tracked, but not a Loom type).
CUSTOM_EVENT_NAMES: Final = ("Product Added to Wishlist", "Size Guide Viewed", "Store Locator Used")

REGIONS: Final[dict[str, dict[str, Any]]] = {
    "NO": {
        "currency": "NOK",
        "offset": 2,
        "cities": ["oslo", "bergen", "trondheim"],
        "domain": "example.no",
        "phone": ("+47", "9", 7),
    },
    "SE": {
        "currency": "SEK",
        "offset": 2,
        "cities": ["stockholm", "goteborg", "malmo"],
        "domain": "example.se",
        "phone": ("+46", "70", 7),
    },
    "DE": {
        "currency": "EUR",
        "offset": 2,
        "cities": ["berlin", "hamburg", "munchen"],
        "domain": "example.de",
        "phone": ("+49", "151", 8),
    },
    "GB": {
        "currency": "GBP",
        "offset": 1,
        "cities": ["london", "leeds", "bristol"],
        "domain": "example.co.uk",
        "phone": ("+44", "7911", 6),
    },
    "US": {
        "currency": "USD",
        "offset": -4,
        "cities": ["nyc", "chicago", "austin"],
        "domain": "example.com",
        "phone": ("+1", "415", 7),
    },
}
REGION_WEIGHTS: Final = {"NO": 35, "SE": 20, "DE": 15, "GB": 15, "US": 15}

FIRST_NAMES: Final = tuple(
    [
        "kari",
        "ola",
        "nora",
        "jakob",
        "emma",
        "lucas",
        "sofia",
        "oscar",
        "ida",
        "william",
        "maja",
        "liam",
        "anna",
        "noah",
        "lena",
        "felix",
        "mia",
        "leon",
        "olivia",
        "james",
    ]
)
LAST_NAMES: Final = tuple(
    [
        "hansen",
        "johansen",
        "olsen",
        "larsen",
        "andersson",
        "nilsson",
        "schmidt",
        "muller",
        "smith",
        "jones",
        "brown",
        "taylor",
        "garcia",
        "miller",
        "berg",
        "lund",
    ]
)
CATEGORIES: Final = ("shoes", "outerwear", "knitwear", "accessories", "kids", "sport", "home")

JUNK_IDENTIFIERS: Final[tuple[tuple[str, str], ...]] = (
    ("loyalty_id", "1234567890"),
    ("phone", "0000000000"),
    ("email", "noemail@store.com"),
    ("customer_id", "guest"),
    ("email", "test@test.com"),
    ("card_token", "0"),
    ("anonymous_id", "undefined"),
)


@dataclass(frozen=True, slots=True)
class Sku:
    sku: str
    category: str
    price: Decimal


@dataclass(frozen=True, slots=True)
class Store:
    location_id: str
    region: str


@dataclass(slots=True)
class Customer:
    n: int
    region: str
    customer_id: str
    email: str
    phone: str
    first_name: str
    last_name: str
    city: str
    loyalty_id: str | None
    card_token: str
    social_handle: str | None
    devices: list[str] = field(default_factory=list)
    signed_up: bool = False


class Simulator:
    """Seeded traffic generator; see the module docstring."""

    def __init__(
        self,
        seed: int = 0,
        customers: int = 1000,
        stores: int = 5,
        skus: int = 200,
        *,
        start: datetime = START,
        events_per_second: float = 20.0,
        junk_fraction: float = 0.02,
        opening_counts: bool = False,
        households: bool = True,
    ) -> None:
        if customers < 1 or stores < 1 or skus < 1:
            raise ValueError("customers, stores and skus must be >= 1")
        self.seed = seed
        self._opening_counts = opening_counts
        self._households = households
        self._rng = random.Random(seed)  # noqa: S311 - simulation, not crypto
        self._mean_gap = 1.0 / events_per_second
        self._junk_fraction = junk_fraction
        self._clock = start
        self._seq = itertools.count(1)
        self._order_seq = itertools.count(1)
        self._pending: list[tuple[datetime, int, Touchpoint]] = []
        self._tablets: dict[int, str] = {}  # household (first member's index) -> device id
        regions = list(REGION_WEIGHTS)
        self.stores: tuple[Store, ...] = tuple(
            Store(
                f"{REGIONS[r]['cities'][(i // len(regions)) % 3]}-{i + 1}",
                r,
            )
            for i, r in ((i, regions[i % len(regions)]) for i in range(stores))
        )
        self.skus: tuple[Sku, ...] = tuple(
            Sku(
                f"SKU-{i:05d}",
                self._rng.choice(CATEGORIES),
                Decimal(self._rng.randrange(99, 299_99, 10)) / 100,
            )
            for i in range(1, skus + 1)
        )
        self.customers: tuple[Customer, ...] = tuple(
            self._customer(n) for n in range(1, customers + 1)
        )

    # --- population ------------------------------------------------------------------------

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _phone(self, region: str) -> str:
        country, prefix, digits = REGIONS[region]["phone"]
        for _ in range(50):
            rest = "".join(str(self._rng.randrange(10)) for _ in range(digits))
            if region == "US":
                rest = str(self._rng.randrange(2, 10)) + rest[1:]
            number = phonenumbers.parse(f"{country}{prefix}{rest}", None)
            if phonenumbers.is_valid_number(number):
                return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        raise RuntimeError(f"could not generate a valid {region} phone number")  # pragma: no cover

    def _customer(self, n: int) -> Customer:
        rng = self._rng
        region = rng.choices(list(REGION_WEIGHTS), weights=list(REGION_WEIGHTS.values()))[0]
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        return Customer(
            n=n,
            region=region,
            customer_id=f"C{n:07d}",
            email=f"{first}.{last}{n}@{REGIONS[region]['domain']}",
            phone=self._phone(region),
            first_name=first.capitalize(),
            last_name=last.capitalize(),
            city=rng.choice(REGIONS[region]["cities"]).capitalize(),
            loyalty_id=f"L{n:08d}" if rng.random() < 0.5 else None,
            card_token=f"tok_{rng.getrandbits(64):016x}",
            social_handle=f"@{first}{last}{n}" if rng.random() < 0.3 else None,
            devices=[self._uuid()],
        )

    # --- raw value variants (what producers really send) ------------------------------------

    def _raw_email(self, c: Customer) -> str:
        r = self._rng.random()
        if r < 0.15:
            return c.email.upper()
        if r < 0.25:
            return f" {c.email.capitalize()} "
        return c.email

    def _raw_phone(self, c: Customer) -> str:
        number = phonenumbers.parse(c.phone, None)
        r = self._rng.random()
        if r < 0.35:
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
        if r < 0.65:
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
        if r < 0.8 and c.region != "US":
            return "00" + c.phone[1:]
        return c.phone

    # --- event construction --------------------------------------------------------------------

    def _tick(self) -> None:
        self._clock += timedelta(seconds=self._rng.expovariate(1.0 / self._mean_gap))

    def _when(self, region: str | None, at: datetime | None = None) -> str:
        moment = at or self._clock
        offset = REGIONS[region]["offset"] if region else 0
        return moment.astimezone(timezone(timedelta(hours=offset))).isoformat()

    def _event(
        self,
        type_: str,
        channel: str,
        *,
        region: str | None,
        identifiers: dict[str, str] | None = None,
        at: datetime | None = None,
        **extra: Any,
    ) -> Touchpoint:
        ids = dict(identifiers or {})
        if ids and self._rng.random() < self._junk_fraction:
            kind, junk = self._rng.choice(JUNK_IDENTIFIERS)
            ids.setdefault(kind, junk)
        data: dict[str, Any] = {
            "event_id": f"sim-{self.seed}-{next(self._seq):010d}",
            "type": type_,
            "channel": channel,
            "occurred_at": self._when(region, at),
            "identifiers": ids,
            **extra,
        }
        if region:
            data["region"] = region
        return Touchpoint.model_validate(data)

    def _lines(self, max_lines: int = 3) -> list[dict[str, Any]]:
        picks = self._rng.sample(self.skus, k=min(len(self.skus), self._rng.randint(1, max_lines)))
        return [
            {
                "sku": s.sku,
                "quantity": self._rng.choices((1, 2, 3), weights=(80, 15, 5))[0],
                "unit_price": str(s.price),
                "category": s.category,
            }
            for s in picks
        ]

    def _order(self, region: str, location: str, lines: list[dict[str, Any]]) -> dict[str, Any]:
        total = sum((Decimal(ln["unit_price"]) * ln["quantity"] for ln in lines), Decimal(0))
        return {
            "order_id": f"O-{self.seed}-{next(self._order_seq):08d}",
            "total": str(total),
            "currency": REGIONS[region]["currency"],
            "payment_method": self._rng.choice(("card", "card", "card", "vipps", "klarna", "cash")),
            "location_id": location,
            "lines": lines,
        }

    def _consent(self, region: str) -> dict[str, bool]:
        opt_in = region != "US"
        rng = self._rng
        return {
            "analytics": rng.random() < (0.7 if opt_in else 0.95),
            "personalization": rng.random() < (0.5 if opt_in else 0.9),
            "marketing": rng.random() < 0.4,
            "ads": rng.random() < (0.2 if opt_in else 0.6),
        }

    def _later(self, gaps: float, tp_factory: Callable[[datetime], Touchpoint]) -> None:
        """Schedule an event ``gaps`` mean inter-event gaps from now (traffic is compressed)."""
        at = self._clock + timedelta(seconds=gaps * self._mean_gap)
        tp: Touchpoint = tp_factory(at)
        heapq.heappush(self._pending, (at, next(self._seq), tp))

    # --- journeys ------------------------------------------------------------------------------

    def _web_journey(self, app: bool = False) -> Iterator[Touchpoint]:
        rng = self._rng
        c = rng.choice(self.customers)
        channel = "app" if app else "web"
        anon = rng.choice(c.devices) if app else self._uuid()
        if not app and rng.random() < 0.2:
            c.devices.append(anon)
        ids: dict[str, str] = {"anonymous_id": anon}
        if app:
            ids["customer_id"] = c.customer_id
        for _ in range(rng.randint(1, 5)):
            sku = rng.choice(self.skus)
            pick = rng.random()
            if pick < 0.4:
                yield self._event(
                    "page_view", channel, region=c.region, identifiers=ids,
                    properties={"path": f"/c/{sku.category}"},
                )  # fmt: skip
            elif pick < 0.46:  # what the contract has no type for, kept by name
                yield self._event(
                    "custom", channel, region=c.region, identifiers=ids,
                    name=rng.choice(CUSTOM_EVENT_NAMES), properties={"sku": sku.sku},
                )  # fmt: skip
            else:
                yield self._event(
                    "product_viewed", channel, region=c.region, identifiers=ids,
                    properties={"sku": sku.sku, "category": sku.category},
                )  # fmt: skip
            self._tick()
        if not app and rng.random() < 0.35:
            if not c.signed_up:
                c.signed_up = True
                ids = {**ids, "email": self._raw_email(c), "customer_id": c.customer_id}
                yield self._event(
                    "signup", channel, region=c.region, identifiers=ids,
                    consent=self._consent(c.region),
                    traits={"first_name": c.first_name, "last_name": c.last_name},
                )  # fmt: skip
            else:
                ids = {**ids, "customer_id": c.customer_id, "email": self._raw_email(c)}
                yield self._event("login", channel, region=c.region, identifiers=ids)
            self._tick()
        if "customer_id" in ids and rng.random() < 0.45:
            lines = self._lines()
            yield self._event(
                "cart_updated", channel, region=c.region, identifiers=ids,
                properties={"items": len(lines)},
            )  # fmt: skip
            self._tick()
            order = self._order(c.region, "online", lines)
            yield self._event("order_completed", channel, region=c.region, identifiers=ids,
                              order=order)  # fmt: skip
            order_ids = {"customer_id": c.customer_id}
            if rng.random() < 0.9:
                self._later(
                    rng.uniform(50, 800),
                    lambda at: self._event("order_fulfilled", "backoffice", region=c.region,
                                           identifiers=order_ids, order=order, at=at),
                )  # fmt: skip
                if rng.random() < 0.12:
                    returned = {**order, "lines": [{**order["lines"][0], "restock": True}]}
                    returned.pop("total")
                    self._later(
                        rng.uniform(900, 3000),
                        lambda at: self._event("order_returned", "web", region=c.region,
                                               identifiers=order_ids, order=returned, at=at),
                    )  # fmt: skip
            else:
                self._later(
                    rng.uniform(10, 200),
                    lambda at: self._event("order_cancelled", channel, region=c.region,
                                           identifiers=order_ids, order=order, at=at),
                )  # fmt: skip

    def _household(self) -> Iterator[Touchpoint]:
        """Two customers of one household browse and log in on their shared tablet."""
        rng = self._rng
        if len(self.customers) < 2:
            return
        first = rng.randrange(0, len(self.customers) - 1, 2)
        members = self.customers[first : first + 2]
        tablet = self._tablets.setdefault(first, self._uuid())
        for c in rng.sample(members, k=len(members)):
            ids = {"anonymous_id": tablet, "customer_id": c.customer_id}
            yield self._event("login", "web", region=c.region, identifiers=ids)
            self._tick()
            sku = rng.choice(self.skus)
            yield self._event(
                "product_viewed", "web", region=c.region, identifiers=ids,
                properties={"sku": sku.sku, "category": sku.category},
            )  # fmt: skip
            self._tick()

    def _pos_sale(self) -> Iterator[Touchpoint]:
        rng = self._rng
        store = rng.choice(self.stores)
        local = rng.sample(self.customers, k=min(5, len(self.customers)))
        c = next((x for x in local if x.region == store.region), local[0])
        r = rng.random()
        ids: dict[str, str] = {}
        if r < 0.55 and c.loyalty_id:
            ids["loyalty_id"] = c.loyalty_id
            if rng.random() < 0.3:  # national formats only make sense in the home region
                ids["phone"] = self._raw_phone(c) if c.region == store.region else c.phone
        elif r < 0.9:
            ids["card_token"] = c.card_token
        yield self._event(
            "pos_sale", "pos", region=store.region, identifiers=ids,
            source=f"pos-{store.location_id}-{rng.randint(1, 4):02d}",
            order=self._order(store.region, store.location_id, self._lines(4)),
        )  # fmt: skip

    def _newsletter(self) -> Iterator[Touchpoint]:
        c = self._rng.choice(self.customers)
        consent = self._consent(c.region) | {"marketing": True}
        yield self._event(
            "signup", "email", region=c.region, identifiers={"email": self._raw_email(c)},
            consent=consent, properties={"list": "newsletter"},
        )  # fmt: skip

    def _consent_update(self) -> Iterator[Touchpoint]:
        rng = self._rng
        c = rng.choice(self.customers)
        ids = {"customer_id": c.customer_id, "email": self._raw_email(c)}
        r = rng.random()
        extra: dict[str, Any]
        if r < 0.6:
            extra = {"consent": self._consent(c.region)}
        elif r < 0.75:
            extra = {"consent_signals": {"gcm": {
                "analytics_storage": rng.choice(("granted", "denied")),
                "ad_storage": rng.choice(("granted", "denied")),
                "ad_user_data": "denied", "ad_personalization": "denied",
            }}}  # fmt: skip
        elif r < 0.9:
            extra = {"consent_signals": {"segment": {
                "categoryPreferences": {"Analytics": rng.random() < 0.5, "Advertising": False},
            }}}  # fmt: skip
        else:
            extra = {"gpc": True}
        yield self._event("consent_updated", "web", region=c.region, identifiers=ids, **extra)

    def _support(self) -> Iterator[Touchpoint]:
        rng = self._rng
        c = rng.choice(self.customers)
        ids = {"phone": self._raw_phone(c)} if rng.random() < 0.5 else {"email": self._raw_email(c)}
        yield self._event(
            "support_contacted", "support", region=c.region, identifiers=ids,
            properties={"topic": rng.choice(("delivery", "return", "size", "payment"))},
        )  # fmt: skip

    def _social(self) -> Iterator[Touchpoint]:
        rng = self._rng
        c = rng.choice(self.customers)
        handle = c.social_handle or f"@fan{rng.randrange(10**6)}"
        yield self._event(
            "social_engaged", "social", region=c.region, identifiers={"social_handle": handle},
            properties={"network": rng.choice(("instagram", "tiktok")),
                        "action": rng.choice(("like", "comment", "share"))},
        )  # fmt: skip

    def _loyalty(self) -> Iterator[Touchpoint]:
        rng = self._rng
        c = rng.choice(self.customers)
        if c.loyalty_id is None:
            c.loyalty_id = f"L{c.n:08d}"
        yield self._event(
            "loyalty_enrolled", "loyalty", region=c.region,
            identifiers={"loyalty_id": c.loyalty_id, "email": self._raw_email(c),
                         "phone": self._raw_phone(c)},
            traits={"first_name": c.first_name, "last_name": c.last_name, "city": c.city},
            consent=self._consent(c.region),
        )  # fmt: skip

    def _profile(self) -> Iterator[Touchpoint]:
        rng = self._rng
        c = rng.choice(self.customers)
        ids = {"customer_id": c.customer_id}
        if rng.random() < 0.5:
            yield self._event(
                "profile_updated", "app", region=c.region, identifiers=ids,
                traits={"city": c.city, "postal_code": f"{rng.randrange(1000, 9999)}"},
            )  # fmt: skip
        else:
            yield self._event(
                "survey_answered", "email", region=c.region, identifiers=ids,
                traits={"preferences": {"sizes": [rng.choice("SML")],
                                        "categories": rng.sample(CATEGORIES, 2)}},
            )  # fmt: skip

    def _erasure(self) -> Iterator[Touchpoint]:
        c = self._rng.choice(self.customers)
        yield self._event(
            "erasure_requested", "support", region=c.region,
            identifiers={"customer_id": c.customer_id, "email": c.email},
        )  # fmt: skip

    def _inventory(self) -> Iterator[Touchpoint]:
        rng = self._rng
        store = rng.choice(self.stores)
        sku = rng.choice(self.skus)
        inv: dict[str, Any] = {"sku": sku.sku, "location_id": store.location_id}
        if rng.random() < 0.4:
            inv |= {"on_hand": rng.randrange(0, 200), "reason": "count"}
            kind = "inventory_counted"
        else:
            reason = rng.choices(("restock", "damage", "shrinkage"), weights=(70, 15, 15))[0]
            delta = rng.randrange(10, 100) if reason == "restock" else -rng.randrange(1, 4)
            inv |= {"delta": delta, "reason": reason}
            kind = "inventory_adjusted"
        yield self._event(
            kind, "backoffice", region=store.region, inventory=inv,
            source=f"wms-{store.region.lower()}",
        )  # fmt: skip

    # --- public streams ------------------------------------------------------------------------

    def opening_counts(self) -> Iterator[Touchpoint]:
        """A morning physical count of every sku in every store and in the online warehouse
        (location ``online``, where web/app orders are reserved and fulfilled): 40-200 units."""
        sites = [(store.location_id, store.region) for store in self.stores]
        sites.append(("online", self.stores[0].region))
        for location_id, region in sites:
            for sku in self.skus:
                yield self._event(
                    "inventory_counted", "backoffice", region=region,
                    inventory={"sku": sku.sku, "location_id": location_id,
                               "on_hand": self._rng.randrange(40, 200), "reason": "count"},
                    source=f"wms-{region.lower()}",
                )  # fmt: skip

    def events(self) -> Iterator[Touchpoint]:
        """Endless stream of valid events, non-decreasing in simulated time.

        With ``opening_counts=True`` it starts with :meth:`opening_counts`, as a store's day does.
        """
        if self._opening_counts:
            yield from self.opening_counts()
        journeys = (
            (lambda: self._web_journey(app=False), 30),
            (lambda: self._web_journey(app=True), 12),
            (self._household, 1.5 if self._households else 0.0),
            (self._pos_sale, 20),
            (self._newsletter, 4),
            (self._consent_update, 4),
            (self._support, 4),
            (self._social, 5),
            (self._loyalty, 3),
            (self._profile, 4),
            (self._inventory, 8),
            (self._erasure, 0.2),
        )
        factories: list[Callable[[], Iterator[Touchpoint]]] = [j[0] for j in journeys]
        weights = [j[1] for j in journeys]
        while True:
            journey = self._rng.choices(factories, weights=weights)[0]
            for tp in journey():
                while self._pending and self._pending[0][0] <= self._clock:
                    yield heapq.heappop(self._pending)[2]
                yield tp
            self._tick()

    def bad_records(self) -> Iterator[bytes]:
        """Endless stream of invalid raw records, one of each kind in turn (seeded)."""
        rng = random.Random(self.seed ^ 0x5EED)  # noqa: S311
        n = 0
        while True:
            n += 1
            good = {
                "event_id": f"bad-{self.seed}-{n:08d}",
                "type": "page_view",
                "channel": "web",
                "occurred_at": "2024-05-01T08:00:00Z",
                "identifiers": {"anonymous_id": f"a{rng.randrange(10**9)}"},
            }
            kind = n % 8
            if kind == 0:
                yield b'{"event_id": "truncated'
            elif kind == 1:
                yield orjson.dumps(good)[:-1] + b', "note": "\xff\xfe"}'
            elif kind == 2:
                yield orjson.dumps({**good, "type": "page_viewed"})
            elif kind == 3:
                yield orjson.dumps({**good, "occurred_at": "2024-05-01 08:00:00"})
            elif kind == 4:
                yield orjson.dumps(
                    {**good, "type": "pos_sale", "channel": "pos",
                     "order": {"order_id": "o", "total": "1", "currency": "NOK",
                               "location_id": "x", "lines": [{"sku": "S", "quantity": 0}]}}
                )  # fmt: skip
            elif kind == 5:
                yield orjson.dumps({**good, "properties": {"blob": "x" * 2000, **{
                    f"k{i}": "y" * 2000 for i in range(40)}}})  # fmt: skip
            elif kind == 6:
                yield b"[1, 2, 3]"
            else:
                yield b'{"event_id": "\\ud800", "type": "login"}'

    def mixed(self, bad_fraction: float = 0.0) -> Iterator[Touchpoint | bytes]:
        """Valid events with roughly a ``bad_fraction`` share of invalid raw records (bytes)."""
        bad = self.bad_records()
        pick = random.Random(self.seed ^ 0xBAD)  # noqa: S311
        for tp in self.events():
            if bad_fraction > 0 and pick.random() < bad_fraction:
                yield next(bad)
            yield tp

    def lines(self, bad_fraction: float = 0.0) -> Iterator[bytes]:
        """JSONL lines (without newline) of :meth:`mixed`."""
        for item in self.mixed(bad_fraction):
            yield item if isinstance(item, bytes) else dump_touchpoint(item)
