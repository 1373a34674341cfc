"""The evidence identity is computed from (``resolvers.identity.evidence``): atoms, identifier
records (co-occurrence with account ids, quarantine of shared identifiers), group keys and
profile ids."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from builders import permuted
from hypothesis import given, settings
from hypothesis import strategies as st
from identity_worlds import POOL, RULES, SMALL_RULES, atom, atom_worlds, i, stamp

from resolvers.identity.evidence import (
    EMPTY_RECORD,
    HOLDERS_KEPT,
    MAX_HOLDERS,
    RECORD_FORMAT,
    Atom,
    IdentifierRecord,
    atom_key,
    group_key,
    profile_id_for,
    ranked,
)
from resolvers.identity.evidence import keys as atom_keys
from resolvers.identity.rules import IdentityRules
from resolvers.store import MAX_LOAD_PROFILES
from schemas.identifiers import Identifier

PROPS = settings(max_examples=200, deadline=None)

TABLET = i("anonymous_id:tablet")


def learn(
    ident: Identifier, events: list[list[str]], rules: IdentityRules = RULES
) -> IdentifierRecord:
    """The record of ``ident`` after events that carried it with these account ids."""
    record = EMPTY_RECORD
    for uniques in events:
        record = record.with_cooccurrence(ident, [i(k) for k in uniques], rules)
    return record


# --------------------------------------------------------------------------- identifier records


def test_a_tablet_two_customers_logged_in_on_is_shared() -> None:
    one = learn(TABLET, [["customer_id:C3"], ["customer_id:C3"]])
    assert (one.seen_with, one.quarantined) == ({"customer_id": ("C3",)}, False)
    two = learn(TABLET, [["customer_id:C3"], ["customer_id:C4"]])
    assert (two.seen_with, two.quarantined) == ({"customer_id": ("C3", "C4")}, True)


def test_account_ids_of_different_types_are_counted_apart() -> None:
    record = learn(TABLET, [["customer_id:C1", "loyalty_id:L1"]])
    assert record.seen_with == {"customer_id": ("C1",), "loyalty_id": ("L1",)}
    assert not record.quarantined


def test_a_shared_store_card_token_is_quarantined_past_the_default_threshold() -> None:
    card = i("card_token:store-terminal")
    three = learn(card, [["loyalty_id:L0"], ["loyalty_id:L1"], ["loyalty_id:L2"]])
    assert not three.quarantined
    four = learn(card, [[f"loyalty_id:L{n}"] for n in range(6)])
    assert four.quarantined
    assert four.seen_with == {"loyalty_id": ("L0", "L1", "L2", "L3")}  # capped at threshold + 1


def test_a_kiosk_seen_with_four_customers_in_one_event_keeps_the_two_smallest() -> None:
    record = learn(
        TABLET, [["customer_id:c3", "customer_id:c1", "customer_id:c0", "customer_id:c2"]]
    )
    assert record.seen_with == {"customer_id": ("c0", "c1")}
    assert record.quarantined


def test_per_type_thresholds_are_configurable() -> None:
    rules = IdentityRules(quarantine_thresholds={"anonymous_id": 2, "email": 1})
    assert not learn(TABLET, [["customer_id:C1"], ["customer_id:C2"]], rules).quarantined
    assert learn(
        TABLET, [["customer_id:C1"], ["customer_id:C2"], ["customer_id:C3"]], rules
    ).quarantined
    assert learn(i("email:family@x"), [["customer_id:C1"], ["customer_id:C2"]], rules).quarantined


def test_a_record_that_learns_nothing_is_returned_as_is() -> None:
    full = learn(TABLET, [["customer_id:C1"], ["customer_id:C2"]])
    assert full.with_cooccurrence(TABLET, [i("customer_id:C9")], RULES) is full  # beyond the cap
    assert full.with_cooccurrence(TABLET, [i("customer_id:C1")], RULES) is full
    assert full.with_cooccurrence(TABLET, [], RULES) is full


_UNIQUE_KEYS = st.lists(
    st.lists(
        st.sampled_from(
            [f"customer_id:C{n}" for n in range(6)] + ["loyalty_id:L1", "loyalty_id:L2"]
        ),
        max_size=3,
    ),
    max_size=8,
)


@PROPS
@given(
    ident=st.sampled_from([TABLET, i("email:e@x"), i("card_token:t"), i("phone:+1")]),
    events=_UNIQUE_KEYS,
    keys=st.lists(st.integers(0, 100), max_size=8),
)
def test_cooccurrence_keeps_the_smallest_values_whatever_the_order(
    ident: Identifier, events: list[list[str]], keys: list[int]
) -> None:
    record = learn(ident, permuted(events, keys))
    assert record == learn(ident, events)
    assert record == learn(ident, [[k for e in events for k in e]])  # one event or many
    cap, threshold = RULES.cooccurrence_cap(ident.type), RULES.threshold(ident.type)
    seen: dict[str, set[str]] = {}
    for key in (k for e in events for k in e):
        seen.setdefault(i(key).type, set()).add(i(key).value)
    assert dict(record.seen_with) == {t: tuple(sorted(vs)[:cap]) for t, vs in seen.items()}
    assert record.quarantined is any(len(vs) > threshold for vs in seen.values())


def test_a_record_not_in_its_kept_form_is_rewritten_even_when_it_learns_no_value() -> None:
    unsorted = IdentifierRecord(seen_with={"customer_id": ("C2", "C1")})
    learned = unsorted.with_cooccurrence(TABLET, [i("customer_id:C1")], RULES)
    assert learned.seen_with == {"customer_id": ("C1", "C2")}
    assert learned.quarantined
    over_cap = IdentifierRecord(seen_with={"customer_id": ("C1", "C2", "C3")})  # cap 2
    assert over_cap.with_cooccurrence(TABLET, [i("customer_id:C1")], RULES).seen_with == {
        "customer_id": ("C1", "C2")
    }
    one = learn(TABLET, [["customer_id:C1", "loyalty_id:L1"]])
    assert one.with_cooccurrence(TABLET, [i("loyalty_id:L1"), i("customer_id:C1")], RULES) is one


def test_records_round_trip_through_json_with_their_pinned_form() -> None:
    record = (
        learn(TABLET, [["customer_id:C2"], ["customer_id:C1"]])
        .linked_to("p_1")
        .with_holders(["p_2", "p_1", "p_2"])
    )
    assert record.holders == ("p_1", "p_2")
    data = record.to_json()
    assert data == {"v": RECORD_FORMAT, "w": {"customer_id": ["C1", "C2"]}, "q": True}
    back = IdentifierRecord.from_json(json.loads(json.dumps(data)), "p_1", ["p_1", "p_2"])
    assert back == record
    assert IdentifierRecord.from_json({"v": RECORD_FORMAT}, None) == EMPTY_RECORD
    with pytest.raises(ValueError, match="format"):
        IdentifierRecord.from_json({"v": 1}, None)


def test_holders_are_sorted_distinct_and_every_one_kept() -> None:
    """Past the ``MAX_HOLDERS`` a load follows too: an erasure must reach them all (they were
    cut at ``MAX_HOLDERS`` before; ``test_identity_truncated_load``)."""
    many = [f"p_{n:03d}" for n in range(MAX_HOLDERS + 5)]
    record = EMPTY_RECORD.with_holders([*reversed(many), many[0]])
    assert record.holders == tuple(many)
    assert record.with_holders(many) is record


def test_a_record_keeps_as_many_holders_as_an_erasing_batch_can_load_again() -> None:
    """A kiosk thousands of customers used: its record (read and rewritten by every batch
    that touches it) stays bounded, at the holders an erasure's reload can reach."""
    many = [f"p_{n:05d}" for n in range(5_000)]
    record = EMPTY_RECORD.with_holders(reversed(many))
    assert record.holders == tuple(many[:HOLDERS_KEPT])
    assert MAX_HOLDERS < HOLDERS_KEPT <= MAX_LOAD_PROFILES
    assert EMPTY_RECORD.linked_to(None) is EMPTY_RECORD
    assert EMPTY_RECORD.is_empty
    assert not EMPTY_RECORD.linked_to("p").is_empty
    assert not record.is_empty


# --------------------------------------------------------------------------- atoms and groups


def test_ranked_is_distinct_by_priority_then_value_with_custom_types_last() -> None:
    ids = [i("anonymous_id:z"), i("email:b"), i("store_member:m"), i("email:a"), i("customer_id:C")]
    assert ranked([*ids, i("email:a")], RULES) == (
        i("customer_id:C"),
        i("email:a"),
        i("email:b"),
        i("anonymous_id:z"),
        i("store_member:m"),
    )


def test_ranked_keeps_the_first_of_equal_identifiers() -> None:
    first, again = Identifier("email", "a@x", raw="A@X"), Identifier("email", "a@x", raw="a@x ")
    (kept,) = ranked([first, again], RULES)
    assert kept is first
    assert ranked([], RULES) == ()


_KEY_POOL = st.lists(st.sampled_from(POOL), min_size=1, max_size=4)
NO_ACCOUNTS = IdentityRules(unique_types=frozenset(), limits={})
_ANY_RULES = st.sampled_from(
    [RULES, SMALL_RULES, IdentityRules(priority=("email", "anonymous_id", "customer_id"))]
)


@PROPS
@given(
    keys=st.lists(st.sampled_from([*POOL, "store_member:m", "email:a@x"]), max_size=2),
    rules=_ANY_RULES,
)
def test_ranked_one_or_two_in_a_tuple_is_the_general_answer(
    keys: list[str], rules: IdentityRules
) -> None:
    """The short path (a tuple of at most two: no dict, no sort) answers as the general one,
    down to which of two equal identifiers is kept (the first)."""
    ids = tuple(Identifier(*k.split(":", 1), raw=f"{n}") for n, k in enumerate(keys))
    short, general = ranked(ids, rules), ranked(list(ids), rules)
    assert short == general
    assert [x.raw for x in short] == [x.raw for x in general]
    assert type(short) is tuple


def test_a_record_that_has_seen_nothing_equals_one_decoded_without_w() -> None:
    decoded = IdentifierRecord.from_json({"v": RECORD_FORMAT}, None)
    assert IdentifierRecord() == decoded == EMPTY_RECORD
    assert IdentifierRecord("p_1") != IdentifierRecord("p_2")
    assert IdentifierRecord().to_json() == decoded.to_json() == {"v": RECORD_FORMAT}


@PROPS
@given(
    keys=_KEY_POOL,
    rules=st.sampled_from([RULES, SMALL_RULES, IdentityRules(unique_types=frozenset())]),
)
def test_an_atoms_keys_are_its_group_key_and_key_as_documented(
    keys: list[str], rules: IdentityRules
) -> None:
    ids = ranked((i(k) for k in keys), rules)
    key = "|".join(sorted({f"{x.type}:{x.value}" for x in ids}))
    if rules.is_unique(ids[0].type):
        group = f"u:{ids[0].type}:{ids[0].value}"
    else:
        group = "a:" + hashlib.blake2b(key.encode(), digest_size=10).hexdigest()
    assert atom_keys(ids, rules) == (group, key) == atom_keys(ids, rules)  # memoized alike
    assert (group_key(ids, rules), atom_key(ids)) == (group, key)


def test_an_atom_is_a_set_its_key_ignores_order() -> None:
    a = atom("e1", 0, "email:a", "customer_id:C")
    b = atom("e2", 5, "customer_id:C", "email:a", "email:a")
    assert a.ids == b.ids
    assert a.key == b.key == atom_key(reversed(a.ids)) == "customer_id:C|email:a"


def test_joined_keeps_the_earliest_event_and_every_ghost() -> None:
    late = atom("e9", 9, "email:a", ghosts=["h2"])
    early = atom("e1", 1, "email:a", ghosts=["h1"])
    same_time = atom("e0", 1, "email:a")
    assert late.joined(early) == early.joined(late) == Atom(early.ids, early.first, ("h1", "h2"))
    assert early.joined(same_time).first == stamp("e0", 1)  # ties: the smaller event id
    assert early.joined(early) is early


@PROPS
@given(worlds=atom_worlds(6), data=st.data())
def test_atoms_round_trip_through_json(worlds: list[Atom], data: st.DataObject) -> None:
    for a in worlds:
        ghosts = data.draw(st.lists(st.sampled_from(["h1", "h2", "h3"]), unique=True).map(sorted))
        with_ghosts = Atom(a.ids, a.first, tuple(ghosts))
        for x in (a, with_ghosts):
            assert Atom.from_json(json.loads(json.dumps(x.to_json())), RULES) == x
    assert atom("e1", 0, "email:a").to_json() == [["email:a"], "2025-03-01T12:00:00Z", "e1"]


@pytest.mark.parametrize(
    ("keys", "group"),
    [
        (["customer_id:C1", "email:a", "anonymous_id:d"], "u:customer_id:C1"),
        (["loyalty_id:L1", "card_token:t"], "u:loyalty_id:L1"),
    ],
)
def test_an_atom_with_an_account_id_belongs_to_that_account(keys: list[str], group: str) -> None:
    assert group_key(atom("e", 0, *keys).ids, RULES) == group


def test_any_other_atom_is_its_own_group() -> None:
    a = group_key(atom("e", 0, "email:a", "anonymous_id:d").ids, RULES)
    assert re.fullmatch(r"a:[0-9a-f]{20}", a)
    assert a == group_key(atom("f", 9, "anonymous_id:d", "email:a").ids, RULES)
    assert a != group_key(atom("e", 0, "email:a").ids, RULES)
    assert a != group_key(atom("e", 0, "email:a", "anonymous_id:e").ids, RULES)


def test_profile_ids_derive_from_the_earliest_event_id() -> None:
    pid = profile_id_for("e-1")
    assert re.fullmatch(r"p_[0-9a-f]{24}", pid)
    assert pid == profile_id_for("e-1")
    assert pid != profile_id_for("e-2")
