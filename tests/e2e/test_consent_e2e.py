"""Consent and erasure end to end, through real workers, Kafka and Redis.

Two views of a profile are checked: the public snapshot (``d``, through the consent gate) and
what the store holds (``s``), rendered with nothing masked by :func:`held`, so behavioural data
that was only hidden, not purged or never collected, is caught too. Transactions are the one
thing kept whatever the consent (the retailer's books, docs/consent.md): ``held`` leaves them
out unless asked.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from typing import Any

import orjson
import pytest
from e2e_harness import Loom

from resolvers.consent import CONSENT_PURPOSES, EMPTY_HISTORY, ConsentPolicy, Gate, Purpose
from resolvers.consent import PURPOSE_GATES as GATES
from resolvers.identity.rules import IdentityRules
from resolvers.lanes.stored_profile import decode
from resolvers.profile.render import EMPTY_GATED_FIELDS, Person, render
from resolvers.stages import audit as consent_audit
from schemas.identifiers import Identifier
from schemas.touchpoint import touchpoint_to_json
from streams.simulate import Simulator

pytestmark = pytest.mark.e2e

ALL = {"analytics": True, "personalization": True, "marketing": True, "ads": True}
PURPOSE_GATES = {p.value: names for p, names in GATES.items()}
ANALYTICS = PURPOSE_GATES["analytics"]


def ev(
    event_id: str,
    type_: str,
    at: str,
    ids: dict[str, str],
    *,
    region: str = "NO",
    consent: dict[str, bool] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    out = {
        "event_id": event_id,
        "type": type_,
        "channel": fields.pop("channel", "web"),
        "occurred_at": at,
        "region": region,
        "identifiers": ids,
        **fields,
    }
    if consent is not None:
        out["consent"] = consent
    return out


def order(
    event_id: str,
    at: str,
    ids: dict[str, str],
    *,
    type_: str = "pos_sale",
    channel: str = "pos",
    location: str = "oslo-1",
    sku: str = "SKU-C",
    total: str = "250.00",
    **kw: Any,
) -> dict[str, Any]:
    return ev(
        event_id,
        type_,
        at,
        ids,
        channel=channel,
        **kw,
        order={
            "order_id": f"o-{event_id}",
            "total": total,
            "currency": "EUR",
            "payment_method": "card",
            "location_id": location,
            "lines": [{"sku": sku, "quantity": 1, "unit_price": total, "category": "shoes"}],
        },
    )


def browsing(
    n: str, ids: dict[str, str], day: str = "2026-11-02", **kw: Any
) -> list[dict[str, Any]]:
    """Behavioural data of every purpose: views with categories, a signup with traits and
    preferences, an online order, an in-store purchase."""
    return [
        ev(
            f"{n}-1",
            "page_view",
            f"{day}T10:00:00+01:00",
            ids,
            properties={"category": "shoes", "sku": "SKU-C"},
            **kw,
        ),
        ev(
            f"{n}-2",
            "signup",
            f"{day}T10:05:00+01:00",
            ids,
            traits={
                "first_name": "Kari",
                "city": "Berlin",
                "preferences": {"size": "42", "newsletter": "weekly"},
            },
            **kw,
        ),
        order(
            f"{n}-3",
            f"{day}T10:10:00+01:00",
            ids,
            type_="order_completed",
            channel="web",
            location="online",
            **kw,
        ),
        order(f"{n}-4", f"{day}T15:00:00+01:00", ids, **kw),
    ]


# --- reading ----------------------------------------------------------------------------------


def stored(loom: Loom, pid: str) -> dict[str, Any]:
    raw = loom.redis.hget(f"{loom.root}:profile:{pid}", "s")
    assert raw is not None, f"no stored state for {pid}"
    return dict(orjson.loads(raw))


class _NothingMasked(Gate):
    """Lets every fact serve every purpose: renders what is held, not what may be shown."""

    def serves(self, **_kw: Any) -> frozenset[Purpose]:
        return frozenset(CONSENT_PURPOSES)

    def granted_now(self) -> frozenset[Purpose]:
        return frozenset(CONSENT_PURPOSES)


def held(loom: Loom, pid: str, *, transactions: bool = False) -> dict[str, Any]:
    """What the store holds for ``pid``, rendered with nothing masked: its behaviour, and its
    transactions only when asked (they are kept for the books whatever the consent).

    ``reachable`` is derived (identifiers and the marketing grant), not stored, so it is shown
    with its empty value here."""
    raw = loom.redis.hget(f"{loom.root}:profile:{pid}", "s")
    assert raw is not None, f"no stored state for {pid}"
    profile = decode(pid, raw, IdentityRules())  # type: ignore[arg-type]
    groups = [
        g.facts if transactions else replace(g.facts, transactions={})
        for g in profile.groups.values()
    ]
    gate = _NothingMasked(ConsentPolicy(), EMPTY_HISTORY, None)
    return render(Person(pid, 0, {}, groups, profile.first.at), gate)


def revoked_but_held(loom: Loom, pid: str) -> list[tuple[str, str]]:
    """Behaviour still held although a denial at or after it stands in its own group or in an
    account it is linked to for good (docs/consent.md): (purpose, event id or digest day)."""
    raw = loom.redis.hget(f"{loom.root}:profile:{pid}", "s")
    assert raw is not None
    rules = IdentityRules()
    profile = decode(pid, raw, rules)  # type: ignore[arg-type]

    def seen_with(key: str) -> set[str]:
        state = loom.redis.hget(f"{loom.root}:id:{key}", "s")
        found = orjson.loads(state).get("w", {}) if state else {}  # type: ignore[arg-type]
        return {f"{t}:{v}" for t, vs in found.items() for v in vs}

    def erased_with(ids: tuple[Identifier, ...]) -> set[str]:
        """The accounts whose erasure would erase an atom of a group other than an account
        group whole (docs/consent.md "Revocation purges"): it carries the account id, or an
        identifier of it that relays (any but a device) was seen with it, or every one was."""
        seen = [{i.key} if rules.is_unique(i.type) else seen_with(i.key) for i in ids]
        out = set.intersection(*seen)
        for ident, accounts in zip(ids, seen, strict=True):
            if not rules.is_device(ident.type):
                out |= accounts
        return out

    linked: dict[str, set[str]] = {}
    for gkey, group in profile.groups.items():
        if gkey.startswith("u:"):
            ids = {i for atom in group.atoms.values() for i in atom.ids}
            linked[gkey] = {i.key for i in ids if rules.is_unique(i.type)}
        else:
            linked[gkey] = set.intersection(*(erased_with(a.ids) for a in group.atoms.values()))
    out = []
    for gkey, group in profile.groups.items():
        histories = [group.facts.consent] + [
            other.facts.consent
            for okey, other in profile.groups.items()
            if okey.startswith("u:") and linked[okey] & linked[gkey]
        ]
        for purpose in (Purpose.ANALYTICS, Purpose.PERSONALIZATION):
            denials = [h.of(purpose).last_denial for h in histories]
            last = max((d.at for d in denials if d is not None), default=None)
            if last is None:
                continue
            parts = [(e, item.digest) for e, item in group.facts.recent.items()]
            parts += [(f"day:{k[0]}", d) for k, d in group.facts.digests.items()]
            for name, d in parts:
                kept = d.seen if purpose is Purpose.ANALYTICS else d.interest
                if kept and d.first_at <= last:
                    out.append((purpose.value, name))
    return out


def fields_of(snapshot: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
    return {name: snapshot[name] for name in sorted(names)}


def empty(names: frozenset[str]) -> dict[str, Any]:
    return {name: EMPTY_GATED_FIELDS[name] for name in sorted(names)}


def only_profile(loom: Loom) -> dict[str, Any]:
    profiles = loom.profiles()
    assert len(profiles) == 1, profiles
    return next(iter(profiles.values()))


def audit_rows(loom: Loom) -> list[dict[str, Any]]:
    """consent.audit flattened to one row per (event, purpose) decision (either kind of
    record: per event, or a batch's jurisdiction-default denials)."""
    return [
        row
        for _, record in loom.decoded(loom.settings.topics.consent_audit)
        for row in consent_audit.rows(record)
    ]


def granted(consent: dict[str, Any], purpose: str) -> bool:
    entry = consent.get(purpose)
    return isinstance(entry, dict) and entry.get("granted") is True


def explicitly_denied(consent: dict[str, Any], purpose: str) -> bool:
    """Denied by a statement of the person (not by their region's default)."""
    entry = consent.get(purpose)
    return isinstance(entry, dict) and entry.get("granted") is False and entry.get("at") is not None


def leaks(snapshot: dict[str, Any]) -> list[str]:
    """Gated fields holding data although the snapshot's own consent map does not grant them."""
    consent = snapshot["consent"]
    return [
        f"{purpose}:{name}"
        for purpose, names in PURPOSE_GATES.items()
        if not granted(consent, purpose)
        for name in sorted(names)
        if snapshot[name] != EMPTY_GATED_FIELDS[name]
    ]


# --- scenarios --------------------------------------------------------------------------------


@pytest.mark.parametrize("region", ["DE", "NO"])
def test_an_eea_visitor_without_consent_leaves_no_behavioural_data(loom: Loom, region: str) -> None:
    loom.start_worker()
    ids = {"anonymous_id": f"dev-eu-{region}", "email": f"eu.{region}@example.de"}
    events = browsing("eu", ids, region=region)  # no consent map anywhere: region default
    loom.produce(events)
    loom.wait_idle()
    p = only_profile(loom)
    # identity and the traits the customer typed in are kept (necessary)
    assert p["identifiers"]["email"] == [f"eu.{region.lower()}@example.de"]
    assert p["traits"]["first_name"] == "Kari"
    gated = frozenset().union(*PURPOSE_GATES.values())
    assert fields_of(p, gated) == empty(gated)
    # nothing was granted: every purpose shows the opt-in region's default denial
    assert p["consent"] == {
        purpose: {"granted": False, "at": None, "source": "default"}
        for purpose in ("analytics", "personalization", "marketing", "ads")
    }
    # not just hidden: nothing behavioural was ever stored ...
    assert fields_of(held(loom, p["profile_id"]), gated) == empty(gated)
    # ... while the sales stay in the books, where no reader sees them
    books = held(loom, p["profile_id"], transactions=True)
    assert (books["orders_online"], books["orders_in_store"]) == (1, 1)
    # the operational fact still flowed: the in-store sale moved stock
    stock = loom.stock("SKU-C")
    assert stock is not None
    assert stock["locations"]["oslo-1"]["on_hand"] == -1
    assert stock["locations"]["online"]["committed"] == 1
    # every denial is audited with its reason
    audit = audit_rows(loom)
    denied = {
        (r["event_id"], r["purpose"])
        for r in audit
        if r["decision"] == "deny" and r["reason"] == "region_default"
    }
    assert denied >= {(e["event_id"], purpose) for e in events for purpose in PURPOSE_GATES}
    assert not [r for r in audit if r["decision"] == "allow" and r["purpose"] != "necessary"]
    assert all(r["profile_id"] == p["profile_id"] for r in audit)
    assert loom.stats().get("consent_denied:analytics:region_default") == len(events)


def test_a_us_visitor_with_gpc_gets_no_ads_data_and_consent_shows_ads_denied(loom: Loom) -> None:
    loom.start_worker()
    ids = {"anonymous_id": "dev-us-gpc", "email": "us.gpc@example.com"}
    # the CMP grants everything, but the browser sends Global Privacy Control
    events = browsing("us", ids, region="US", consent=ALL, gpc=True)
    loom.produce(events)
    loom.wait_idle()
    p = only_profile(loom)
    ads = p["consent"]["ads"]
    assert (ads["granted"], ads["source"]) == (False, "gpc")
    assert p["ad_identifiers"] == []
    assert held(loom, p["profile_id"])["ad_identifiers"] == []
    # what the shopper did grant still works
    assert p["consent"]["analytics"]["granted"] is True
    assert p["orders_online"] == 1
    assert p["orders_in_store"] == 1
    audit = audit_rows(loom)
    ads_decisions = {
        r["event_id"]: (r["decision"], r["reason"]) for r in audit if r["purpose"] == "ads"
    }
    assert ads_decisions == {e["event_id"]: ("deny", "gpc") for e in events}
    assert loom.stats().get("consent_denied:ads:gpc") == len(events)


def test_withdrawing_analytics_purges_the_analytics_metrics_at_once(loom: Loom) -> None:
    loom.start_worker()
    ids = {"customer_id": "C-withdraw", "email": "withdraw@example.no"}
    loom.produce(browsing("w", ids, consent=ALL))
    loom.wait_idle()
    before = only_profile(loom)
    assert before["orders_online"] == 1
    assert before["orders_in_store"] == 1
    assert before["revenue"] == {"EUR": "500.00"}
    assert before["last_order"] is not None

    loom.produce(
        [
            ev(
                "w-revoke",
                "consent_updated",
                "2026-11-03T09:00:00+01:00",
                {"customer_id": "C-withdraw"},
                channel="email",
                consent={"analytics": False},
            )
        ]
    )
    loom.wait_idle()
    after = only_profile(loom)
    assert after["profile_id"] == before["profile_id"]
    assert after["consent"]["analytics"]["granted"] is False
    assert after["consent"]["analytics"]["source"] == "consent_updated"
    assert fields_of(after, ANALYTICS) == empty(ANALYTICS)
    assert (
        after["orders_online"],
        after["orders_in_store"],
        after["revenue"],
        after["last_order"],
    ) == (0, 0, {}, None)
    # purged from the store, not merely masked (the sales stay in the books)
    assert fields_of(held(loom, after["profile_id"]), ANALYTICS) == empty(ANALYTICS)
    # the other purposes are untouched
    personal = PURPOSE_GATES["personalization"]
    assert fields_of(after, personal) == fields_of(before, personal)
    assert after["category_affinities"]
    assert after["version"] > before["version"]
    # announced: the purged snapshot is the latest change record of the profile
    changes = [
        v for k, v in loom.decoded(loom.settings.topics.profile_changes) if k == after["profile_id"]
    ]
    assert changes[-1]["orders_in_store"] == 0
    audit = audit_rows(loom)
    purges = [r for r in audit if r["decision"] == "purge"]
    assert [(r["event_id"], r["purpose"]) for r in purges] == [("w-revoke", "analytics")]
    assert loom.stats().get("consent_purged:analytics") == 1

    # a purchase after the withdrawal (its CMP state silent on analytics) stays out of the
    # metrics, while stock still moves
    loom.produce(
        [
            order(
                "w-5",
                "2026-11-04T12:00:00+01:00",
                {"customer_id": "C-withdraw"},
                consent={"personalization": True},
            )
        ]
    )
    loom.wait_idle()
    later = only_profile(loom)
    assert later["orders_in_store"] == 0
    assert fields_of(held(loom, later["profile_id"]), ANALYTICS) == empty(ANALYTICS)
    stock = loom.stock("SKU-C")
    assert stock is not None
    assert stock["locations"]["oslo-1"]["on_hand"] == -2


def test_an_erased_customer_is_gone_and_a_later_purchase_rebuilds_nothing(loom: Loom) -> None:
    loom.start_worker()
    ids = {"email": "erase.me@example.no", "phone": "+47 912 34 567", "loyalty_id": "L-erase"}
    loom.produce(browsing("e", ids, consent=ALL))
    loom.wait_idle()
    [pid] = loom.profiles()
    assert loom.stock("SKU-C") is not None

    loom.produce(
        [
            ev(
                "e-erase",
                "erasure_requested",
                "2026-11-05T09:00:00+01:00",
                {"email": "Erase.Me@example.no"},
                channel="support",
            )
        ]
    )
    loom.wait_idle()
    assert loom.profiles() == {}
    assert not loom.redis.exists(f"{loom.root}:profile:{pid}")
    changes = loom.decoded(loom.settings.topics.profile_changes)
    assert [v for k, v in changes if k == pid][-1] is None  # the last word on pid: tombstone
    erasures = loom.decoded(loom.settings.topics.erasures)
    assert [(k, v["profile_id"], v["event_id"]) for k, v in erasures] == [(pid, pid, "e-erase")]
    assert erasures[0][1]["identifiers_suppressed"] >= 3
    assert loom.stats().get("erasures") == 1
    on_hand = loom.stock("SKU-C")["locations"]["oslo-1"]["on_hand"]  # type: ignore[index]

    # the shopper comes back to the till with the loyalty card (and a new card token)
    loom.produce(
        [
            order(
                "e-late",
                "2026-11-06T12:00:00+01:00",
                {"loyalty_id": "L-erase", "card_token": "tok-new-card"},
                consent=ALL,
            )
        ]
    )
    loom.wait_idle()
    stock = loom.stock("SKU-C")
    assert stock is not None
    assert stock["locations"]["oslo-1"]["on_hand"] == on_hand - 1
    assert loom.profiles() == {}
    # no identifier record was rebuilt either, not even for the new card token
    for key in (
        "email:erase.me@example.no",
        "phone:+4791234567",
        "loyalty_id:L-erase",
        "card_token:tok-new-card",
    ):
        assert loom.redis.hget(f"{loom.root}:id:{key}", "p") is None, key
    assert loom.stats().get("suppressed_events") == 1
    # and a replay of the whole history changes nothing
    loom.produce(browsing("e", ids, consent=ALL))
    loom.wait_idle()
    assert loom.profiles() == {}


@pytest.mark.parametrize("update_first", [False, True], ids=["update-last", "update-first"])
def test_a_later_consent_grant_does_not_legitimise_earlier_events(
    loom: Loom, update_first: bool
) -> None:
    """DE visitor, no consent at 10:00-15:00; grants everything at 18:00. Whether the grant is
    processed after the earlier events or before them (they arrive late), their data stays
    out; an event after the grant counts."""
    loom.start_worker()
    ids = {"customer_id": "C-late", "email": "late@example.de"}
    early = browsing("l", ids, region="DE")
    grant = ev(
        "l-grant",
        "consent_updated",
        "2026-11-02T18:00:00+01:00",
        {"customer_id": "C-late"},
        region="DE",
        consent=ALL,
    )
    first, second = ([grant], early) if update_first else (early, [grant])
    loom.produce(first)
    loom.wait_idle()
    loom.produce(second)
    loom.wait_idle()
    p = only_profile(loom)
    assert all(p["consent"][purpose]["granted"] is True for purpose in PURPOSE_GATES)
    for view in (p, held(loom, p["profile_id"])):
        assert (
            view["orders_online"],
            view["orders_in_store"],
            view["revenue"],
            view["last_order"],
            view["returns"]["count"],
        ) == (0, 0, {}, None, 0)
        assert view["category_affinities"] == {}
        assert view["preferences"] == {}
        assert [a for a in view["recent_activity"] if a["event_id"].startswith("l-")] == []
        assert view["first_seen"] is None or view["first_seen"] >= "2026-11-02T17:00:00"
    audit = audit_rows(loom)
    reasons = {
        r["reason"]
        for r in audit
        if r["event_id"] in {e["event_id"] for e in early} and r["purpose"] == "analytics"
    }
    assert reasons, "no analytics decision audited for the early events"
    assert reasons <= {"region_default", "late_grant"}
    l3_decisions = {
        r["decision"] for r in audit if r["event_id"] == "l-3" and r["purpose"] != "necessary"
    }
    assert l3_decisions, "no decision audited for l-3"
    assert "allow" not in l3_decisions

    # after the grant, the same shopper's next purchase is counted (the grant is real)
    loom.produce(
        [order("l-after", "2026-11-03T12:00:00+01:00", {"customer_id": "C-late"}, region="DE")]
    )
    loom.wait_idle()
    p = only_profile(loom)
    assert (p["orders_in_store"], p["revenue"]) == (1, {"EUR": "250.00"})


# --- a simulated day --------------------------------------------------------------------------


def simulated(n: int) -> list[dict[str, Any]]:
    sim = Simulator(seed=20261122, customers=250, stores=3)
    return [touchpoint_to_json(tp) for tp in itertools.islice(sim.events(), n)]


def phone_forms(raw: str) -> set[str]:
    digits = re.sub(r"\D", "", raw)
    return {raw, f"+{digits}", digits} if len(digits) >= 7 else {raw}


def test_no_snapshot_of_a_simulated_run_leaks_and_the_audit_holds_no_identifiers(
    loom: Loom,
) -> None:
    events = simulated(2500)
    types = {e["type"] for e in events}
    assert {"consent_updated", "pos_sale", "order_completed", "page_view"} <= types
    loom.start_worker()
    loom.start_worker()
    loom.produce(events)
    loom.wait_idle(timeout=240)

    # every version of every profile ever announced, and the final documents in Redis
    announced = [v for _, v in loom.decoded(loom.settings.topics.profile_changes)]
    snapshots = [v for v in announced if v is not None and "consent" in v]
    final = loom.profiles()
    assert len(final) > 50
    assert len(snapshots) >= len(final)
    found = {
        (s["profile_id"], s["version"], leak)
        for s in [*snapshots, *final.values()]
        for leak in leaks(s)
    }
    assert not found, sorted(found)[:20]

    # consent state drives the data, not just the mask: a revocation purges the behaviour
    # before it for good, in its own group and in every group linked to its account
    denied_seen = 0
    for pid, snap in final.items():
        if any(explicitly_denied(snap["consent"], p) for p in ("analytics", "personalization")):
            denied_seen += 1
        assert revoked_but_held(loom, pid) == [], pid
    assert denied_seen > 0  # the run exercised denials

    # the audit topic carries ids, purposes and reasons, never an email or a phone number
    emails: set[str] = set()
    phones: set[str] = set()
    for e in events:
        ids = e.get("identifiers", {})
        if ids.get("email"):
            emails |= {ids["email"], ids["email"].strip().lower()}
        if ids.get("phone"):
            phones |= phone_forms(ids["phone"])
    assert len(emails) > 20
    assert len(phones) > 20
    audit = loom.topic_records(loom.settings.topics.consent_audit)
    assert 0 < len(audit) <= len(events)  # at most one record per event (denials, purges)
    blob = b"\n".join((m.key() or b"") + b" " + (m.value() or b"") for m in audit).lower()
    leaked = [s for s in emails | phones if len(s) >= 7 and s.lower().encode() in blob]
    assert not leaked, leaked[:10]
    assert b"@" not in blob


def test_a_us_visitor_without_a_cmp_map_shows_the_analytics_the_region_default_allows(
    loom: Loom,
) -> None:
    """DESIGN: opt-out regions (US) allow analytics and personalization by default."""
    loom.start_worker()
    loom.produce(browsing("usd", {"anonymous_id": "dev-us-default"}, region="US"))
    loom.wait_idle()
    p = only_profile(loom)
    kept = held(loom, p["profile_id"], transactions=True)
    assert (kept["orders_online"], kept["orders_in_store"]) == (1, 1)  # collected (allowed)
    assert kept["ad_identifiers"] == []
    assert kept["audiences"] == []
    assert (p["orders_online"], p["orders_in_store"]) == (1, 1)  # and shown to readers
    assert p["category_affinities"] != {}
