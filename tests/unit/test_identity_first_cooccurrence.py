"""An identifier record that has seen no account id yet learns its first one without the
general merge (``IdentifierRecord.with_cooccurrence``, issue 17's sixteenth pass): the same
record as the version before it (kept verbatim below), for any record, values and rules."""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st
from identity_worlds import IDENTIFIERS, RULES, SMALL_RULES, i

from resolvers.identity.evidence import EMPTY_RECORD, IdentifierRecord
from resolvers.identity.rules import IdentityRules
from schemas.identifiers import Identifier


def old_knows(record: IdentifierRecord, uniques: Sequence[Identifier]) -> bool:
    """``IdentifierRecord._knows`` before this pass, verbatim."""
    seen_with = record.seen_with
    for u in uniques:
        values = seen_with.get(u.type)
        if values is None or u.value not in values:
            return False
    return all(len(values) == 1 for values in seen_with.values())


def old_with_cooccurrence(
    record: IdentifierRecord,
    ident: Identifier,
    uniques: Sequence[Identifier],
    rules: IdentityRules,
) -> IdentifierRecord:
    """``IdentifierRecord.with_cooccurrence`` before this pass, verbatim (``self`` renamed)."""
    if old_knows(record, uniques):
        return record
    cap = rules.cooccurrence_cap(ident.type)
    seen = {t: set(vs) for t, vs in record.seen_with.items()}
    for u in uniques:
        seen.setdefault(u.type, set()).add(u.value)
    kept = {t: tuple(sorted(vs)[:cap]) for t, vs in sorted(seen.items())}
    if kept == dict(record.seen_with):
        return record
    shared = max(map(len, kept.values()), default=0) > rules.threshold(ident.type)
    return IdentifierRecord(record.profile_id, kept, shared, record.holders)


UNIQUES = st.lists(
    st.sampled_from(["customer_id:C1", "customer_id:C2", "loyalty_id:L1", "loyalty_id:L2"]),
    max_size=3,
).map(lambda keys: [i(k) for k in keys])
SEEN = st.one_of(
    st.just(EMPTY_RECORD.seen_with),
    st.just(MappingProxyType({})),
    st.dictionaries(
        st.sampled_from(["customer_id", "loyalty_id"]),
        st.lists(st.sampled_from(["C1", "C2", "C3", "L1"]), min_size=1, max_size=4).map(tuple),
        max_size=2,
    ),
)
RECORDS = st.builds(
    IdentifierRecord,
    st.one_of(st.none(), st.sampled_from(["p_1", "p_2"])),
    SEEN,
    st.booleans(),
    st.lists(st.sampled_from(["p_1", "p_2", "p_3"]), max_size=2, unique=True).map(tuple),
)
STRICT = IdentityRules(quarantine_threshold=1, quarantine_thresholds={"anonymous_id": 1})


@settings(max_examples=400, deadline=None)
@given(
    record=RECORDS,
    ident=IDENTIFIERS,
    uniques=UNIQUES,
    rules=st.sampled_from([RULES, SMALL_RULES, STRICT]),
)
def test_a_record_learns_as_before_its_first_account_fast_path(
    record: IdentifierRecord,
    ident: Identifier,
    uniques: list[Identifier],
    rules: IdentityRules,
) -> None:
    old = old_with_cooccurrence(record, ident, uniques, rules)
    new = record.with_cooccurrence(ident, uniques, rules)
    assert new == old
    assert type(new) is type(old)
    assert (new is record) == (old is record)  # returned as it is exactly when it was
    assert list(new.seen_with.items()) == list(old.seen_with.items())  # the same order
    assert type(new.quarantined) is type(old.quarantined)
