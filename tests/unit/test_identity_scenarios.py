"""Named retail scenarios for the identity engine (pure, no servers)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from resolvers.identity_rules import IdentityRules

from resolvers.identity import (
    DROP_BLOCKED,
    DROP_LIMIT_EXCEEDED,
    DROP_QUARANTINED,
    DROP_UNIQUE_CONFLICT,
    RULE_SHARED_EVENT,
    CooccurrenceRecorded,
    IdentifierLinked,
    IdentifierQuarantined,
    InMemoryIdentityState,
    LinkRejected,
    MergeBlocked,
    ProfileCreated,
    ProfilesMerged,
    Resolution,
    ResolveRequest,
    apply,
    resolve,
)
from schemas.identifiers import Identifier
from schemas.normalize import is_blocked, normalize_identifiers

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class World:
    """One working state plus helpers to feed raw events through normalize -> resolve -> apply."""

    def __init__(self, rules: IdentityRules | None = None) -> None:
        self.rules = rules or IdentityRules(is_blocked=is_blocked)
        self.state = InMemoryIdentityState()
        self._ids = itertools.count(1)
        self._events = itertools.count(1)
        self.clock = T0

    def new_id(self) -> str:
        return f"p{next(self._ids)}"

    def send(self, raw: Mapping[str, str], *, region: str | None = "NO") -> Resolution:
        normalized = normalize_identifiers(raw, region=region)
        self.clock += timedelta(minutes=1)
        req = ResolveRequest(f"e{next(self._events)}", self.clock, normalized.accepted)
        return self.send_req(req)

    def send_req(self, req: ResolveRequest) -> Resolution:
        result = resolve(req, self.state, self.rules, new_profile_id=self.new_id)
        apply(self.state, result.effects)
        return result

    def owner(self, id_type: str, value: str) -> str | None:
        return self.state.identifier(Identifier(id_type, value)).profile_id


T = TypeVar("T")


def of_type(effects: tuple[object, ...], cls: type[T]) -> list[T]:
    return [e for e in effects if isinstance(e, cls)]


def test_anonymous_browsing_then_login_merges_device_into_older_customer_profile() -> None:
    w = World()
    signup = w.send({"customer_id": "C-100", "email": "ann@example.com"})
    customer_pid = signup.profile_id
    assert customer_pid is not None
    browse = w.send({"anonymous_id": "dev-tablet-9"})
    device_pid = browse.profile_id
    assert device_pid is not None
    assert device_pid != customer_pid
    w.send({"anonymous_id": "dev-tablet-9"})  # more browsing, same device profile

    login = w.send({"anonymous_id": "dev-tablet-9", "customer_id": "C-100"})

    assert login.profile_id == customer_pid  # the older profile survives
    merges = of_type(login.effects, ProfilesMerged)
    assert len(merges) == 1
    assert merges[0].survivor == customer_pid
    assert merges[0].absorbed == device_pid
    assert merges[0].evidence.rule == RULE_SHARED_EVENT
    assert merges[0].evidence.event_id == "e4"
    assert set(merges[0].evidence.identifiers) == {"customer_id:C-100", "anonymous_id:dev-tablet-9"}
    assert w.owner("anonymous_id", "dev-tablet-9") == customer_pid
    profile = w.state.profile(customer_pid)
    assert profile.merged_from == (device_pid,)
    assert profile.identifiers["anonymous_id"] == ("dev-tablet-9",)
    with pytest.raises(KeyError):
        w.state.profile(device_pid)
    assert w.state.redirects == {device_pid: customer_pid}
    assert device_pid in w.state.removed_profiles


def test_anonymous_browsing_then_first_login_links_customer_id_to_device_profile() -> None:
    w = World()
    device_pid = w.send({"anonymous_id": "a-1"}).profile_id
    assert device_pid is not None
    login = w.send({"anonymous_id": "a-1", "customer_id": "C-1"})
    assert login.profile_id == device_pid
    assert of_type(login.effects, ProfilesMerged) == []
    assert IdentifierLinked(Identifier("customer_id", "C-1"), device_pid) in login.effects


def test_pos_card_token_later_seen_online_with_email_is_one_profile() -> None:
    w = World()
    pos = w.send({"card_token": "tok_4242", "loyalty_id": "L-77"})
    web = w.send({"email": "Bob@Example.com", "anonymous_id": "web-1"})
    assert pos.profile_id != web.profile_id
    checkout = w.send({"email": "bob@example.com", "card_token": "tok_4242"})

    survivor = pos.profile_id  # created first
    assert checkout.profile_id == survivor
    assert {
        w.owner(t, v)
        for t, v in [
            ("card_token", "tok_4242"),
            ("loyalty_id", "L-77"),
            ("email", "bob@example.com"),
            ("anonymous_id", "web-1"),
        ]
    } == {survivor}
    assert len(w.state.partition()) == 1


def test_siblings_sharing_a_tablet_never_merge_and_the_merge_is_blocked() -> None:
    w = World()
    anna = w.send({"anonymous_id": "family-tablet", "customer_id": "anna"})
    assert anna.profile_id is not None
    ben = w.send({"anonymous_id": "family-tablet", "customer_id": "ben"})

    assert ben.profile_id is not None
    assert ben.profile_id != anna.profile_id
    assert of_type(ben.effects, ProfilesMerged) == []
    blocked = of_type(ben.effects, MergeBlocked)
    assert len(blocked) == 1
    assert blocked[0].rule == "unique:customer_id"
    assert blocked[0].reason == DROP_UNIQUE_CONFLICT
    assert blocked[0].profile_ids == (ben.profile_id, anna.profile_id)
    assert blocked[0].dropped == (Identifier("anonymous_id", "family-tablet"),)
    assert (Identifier("anonymous_id", "family-tablet"), DROP_UNIQUE_CONFLICT) in ben.dropped
    assert w.owner("customer_id", "ben") == ben.profile_id
    assert w.owner("anonymous_id", "family-tablet") == anna.profile_id  # still below threshold
    # the evidence is kept although the identifier was dropped
    tablet = w.state.identifier(Identifier("anonymous_id", "family-tablet"))
    assert tablet.seen_with == {"customer_id": ("anna", "ben")}


def test_tablet_seen_with_too_many_customers_is_quarantined_and_detached() -> None:
    w = World(IdentityRules(is_blocked=is_blocked, quarantine_threshold=2))
    first = w.send({"anonymous_id": "tablet", "customer_id": "c1"})
    w.send({"anonymous_id": "tablet", "customer_id": "c2"})
    third = w.send({"anonymous_id": "tablet", "customer_id": "c3"})

    quarantined = of_type(third.effects, IdentifierQuarantined)
    assert quarantined == [
        IdentifierQuarantined(
            Identifier("anonymous_id", "tablet"), "quarantine:customer_id", 3, first.profile_id
        )
    ]
    assert (Identifier("anonymous_id", "tablet"), DROP_QUARANTINED) in third.dropped
    record = w.state.identifier(Identifier("anonymous_id", "tablet"))
    assert record.quarantined
    assert record.profile_id is None
    assert first.profile_id is not None
    assert "anonymous_id" not in w.state.profile(first.profile_id).identifiers

    # from now on it neither links nor creates profiles, and it records nothing more
    alone = w.send({"anonymous_id": "tablet"})
    assert alone.profile_id is None
    assert alone.effects == ()
    again = w.send({"anonymous_id": "tablet", "customer_id": "c9"})
    assert again.linked == (Identifier("customer_id", "c9"),)
    assert not of_type(again.effects, CooccurrenceRecorded)
    assert not of_type(again.effects, MergeBlocked)


def test_shared_store_card_token_quarantined_by_default_threshold() -> None:
    w = World()  # threshold 3: the 4th distinct loyalty id quarantines
    results = [w.send({"card_token": "store-terminal", "loyalty_id": f"L{i}"}) for i in range(4)]
    assert not of_type(results[2].effects, IdentifierQuarantined)
    assert of_type(results[3].effects, IdentifierQuarantined)[0].evidence_count == 4
    assert w.state.identifier(Identifier("card_token", "store-terminal")).seen_with == {
        "loyalty_id": ("L0", "L1", "L2", "L3")
    }
    # four customers, four separate profiles
    assert len({r.profile_id for r in results}) == 4


def test_cashier_placeholder_phone_never_links_across_hundreds_of_customers() -> None:
    w = World()
    for i in range(300):
        w.send({"customer_id": f"cust-{i}", "phone": "1234567890"})
    assert len(w.state.partition()) == 300
    assert w.owner("phone", "1234567890") is None
    # even if a producer skipped normalization, the engine refuses it defensively
    raw = ResolveRequest(
        "x1", T0, (Identifier("phone", "1234567890"), Identifier("customer_id", "a"))
    )
    result = w.send_req(raw)
    assert (Identifier("phone", "1234567890"), DROP_BLOCKED) in result.dropped
    assert w.owner("phone", "1234567890") is None
    for i in range(300):
        assert w.state.profile(w.owner("customer_id", f"cust-{i}") or "").identifiers.keys() == {
            "customer_id"
        }


def test_email_case_and_whitespace_variants_are_one_profile() -> None:
    w = World()
    results = [
        w.send({"email": variant})
        for variant in ("Jane.Doe@Example.com", "  jane.doe@example.COM ", "JANE.DOE@EXAMPLE.COM")
    ]
    assert len({r.profile_id for r in results}) == 1
    assert len(of_type(results[0].effects, ProfileCreated)) == 1
    assert of_type(results[1].effects, ProfileCreated) == []
    assert w.state.profile(results[0].profile_id or "").identifiers == {
        "email": ("jane.doe@example.com",)
    }


def test_customer_changes_email_both_on_one_profile_through_customer_id() -> None:
    w = World()
    old = w.send({"customer_id": "C-7", "email": "old@example.com"})
    new = w.send({"customer_id": "C-7", "email": "new@example.com"})
    assert new.profile_id == old.profile_id
    assert w.state.profile(old.profile_id or "").identifiers["email"] == (
        "new@example.com",
        "old@example.com",
    )
    # an email-only event for either address resolves to the same profile
    assert w.send({"email": "old@example.com"}).profile_id == old.profile_id
    assert w.send({"email": "new@example.com"}).profile_id == old.profile_id


def test_second_loyalty_id_is_not_added_to_a_profile_holding_one() -> None:
    w = World()
    first = w.send({"customer_id": "C-1", "loyalty_id": "L-1"})
    second = w.send({"customer_id": "C-1", "loyalty_id": "L-2"})
    assert second.profile_id == first.profile_id
    assert (Identifier("loyalty_id", "L-2"), DROP_UNIQUE_CONFLICT) in second.dropped
    rejected = of_type(second.effects, LinkRejected)
    assert [(r.identifier.value, r.rule) for r in rejected] == [("L-2", "unique:loyalty_id")]
    assert w.owner("loyalty_id", "L-2") is None


def test_per_type_limit_drops_the_extra_email_and_says_why() -> None:
    w = World(IdentityRules(limits={"email": 2}))
    pid = w.send({"customer_id": "C", "email": "a@x.no"}).profile_id
    w.send({"customer_id": "C", "email": "b@x.no"})
    third = w.send({"customer_id": "C", "email": "c@x.no"})
    assert third.profile_id == pid
    assert (Identifier("email", "c@x.no"), DROP_LIMIT_EXCEEDED) in third.dropped
    assert of_type(third.effects, LinkRejected)[0].rule == "limit:email"
    assert w.state.profile(pid or "").count("email") == 2


def test_merge_exceeding_a_limit_is_blocked_and_lowest_priority_identifier_dropped() -> None:
    w = World(IdentityRules(limits={"email": 2}))
    p1 = w.send({"customer_id": "C", "email": "a@x.no", "phone": "+4791234567"}).profile_id
    w.send({"customer_id": "C", "email": "b@x.no"})
    p2 = w.send({"email": "z@x.no", "anonymous_id": "dev"}).profile_id
    # customer_id (highest priority) matches p1; anonymous_id points at p2 whose email would
    # make three
    r = w.send({"customer_id": "C", "anonymous_id": "dev"})
    assert r.profile_id == p1
    blocked = of_type(r.effects, MergeBlocked)
    assert [(b.profile_ids, b.rule, b.reason) for b in blocked] == [
        ((p1, p2), "limit:email", DROP_LIMIT_EXCEEDED)
    ]
    assert w.owner("anonymous_id", "dev") == p2


def test_three_profiles_merge_into_the_oldest_with_transitive_redirects() -> None:
    w = World()
    p1 = w.send({"email": "a@x.no"}).profile_id
    p2 = w.send({"phone": "+4791234567"}).profile_id
    p3 = w.send({"anonymous_id": "d"}).profile_id
    w.send({"phone": "+4791234567", "anonymous_id": "d"})  # p3 into p2
    assert w.state.redirects == {p3: p2}
    w.state.clear_changes()
    r = w.send({"email": "a@x.no", "anonymous_id": "d"})  # p2 (holding p3) into p1
    assert r.profile_id == p1
    assert w.state.profile(p1 or "").merged_from == tuple(sorted([p2 or "", p3 or ""]))
    assert w.state.redirects == {p2: p1, p3: p1}
    assert w.state.partition() == frozenset(
        {
            frozenset(
                {
                    Identifier("email", "a@x.no"),
                    Identifier("phone", "+4791234567"),
                    Identifier("anonymous_id", "d"),
                }
            )
        }
    )


def test_survivor_is_older_by_created_at_not_by_id() -> None:
    w = World()
    late = ResolveRequest("e-late", T0 + timedelta(days=2), (Identifier("email", "x@y.no"),))
    early = ResolveRequest("e-early", T0, (Identifier("phone", "+4791234567"),))
    pid_late = w.send_req(late).profile_id  # gets "p1" although created later
    pid_early = w.send_req(early).profile_id
    bridge = ResolveRequest(
        "e-bridge",
        T0 + timedelta(days=3),
        (Identifier("email", "x@y.no"), Identifier("phone", "+4791234567")),
    )
    assert w.send_req(bridge).profile_id == pid_early
    assert pid_late == "p1"


def test_event_without_linkable_identifier_has_no_profile() -> None:
    w = World()
    r = w.send_req(ResolveRequest("e", T0, ()))
    assert r == Resolution(None, (), (), ())
    r = w.send_req(ResolveRequest("e", T0, (Identifier("email", "test@test.com"),)))
    assert r.profile_id is None
    assert r.effects == ()


def test_resolve_is_pure_and_does_not_touch_the_view() -> None:
    w = World()
    w.send({"customer_id": "C"})
    before = (w.state.identifier_records(), w.state.profiles())
    calls: list[str] = []

    def new_id() -> str:
        calls.append("x")
        return "new"

    req = ResolveRequest("e", T0, (Identifier("email", "q@x.no"), Identifier("customer_id", "D")))
    a = resolve(req, w.state, w.rules, new_profile_id=new_id)
    b = resolve(req, w.state, w.rules, new_profile_id=new_id)
    assert a == b
    assert (w.state.identifier_records(), w.state.profiles()) == before
    assert a.profile_id == "new"
    assert calls == ["x", "x"]


def test_cooccurrence_evidence_is_capped_at_threshold_plus_one() -> None:
    w = World(IdentityRules(quarantine_threshold=1))
    idents = (
        Identifier("anonymous_id", "kiosk"),
        *(Identifier("customer_id", f"c{i}") for i in range(4)),
    )
    r = w.send_req(ResolveRequest("e", T0, idents))
    recorded = of_type(r.effects, CooccurrenceRecorded)
    assert [e.value for e in recorded] == ["c0", "c1"]
    assert of_type(r.effects, IdentifierQuarantined)[0].evidence_count == 2
    assert w.state.identifier(idents[0]).seen_with == {"customer_id": ("c0", "c1")}
    # only one customer_id fits on the profile; the others are dropped as unique conflicts
    assert r.linked == (Identifier("customer_id", "c0"),)
