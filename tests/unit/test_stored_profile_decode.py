"""A stored profile decodes (``lanes.stored_profile.decode``, issue 17's thirteenth pass) to
exactly what the decode before it gave (``stored_profile_reference``, kept verbatim): the
same types, the same field values, the same mapping orders; and a malformed state fails
the same way (the same exception class, or the same ``UNREADABLE_CONSENT``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import stored_profile_reference as reference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from identity_worlds import SMALL_RULES
from stored_profile_worlds import EXTRA, GROUPS
from stored_profile_worlds import stored_profile as stored_profile_of

from resolvers.lanes import stored_profile
from resolvers.lanes.stored_profile import StoredProfile
from resolvers.profile.facts import IMPLIED_IDS, Facts, Recent, fingerprint
from resolvers.timefmt import format_time, parse_stored


def assert_same(new: Any, old: Any, path: str = "") -> None:
    """``new`` and ``old`` are the same value: the same types all the way down, mappings in
    the same order, every dataclass field (those out of ``__init__`` too), datetimes with the
    same ``tzinfo`` object, decimals with the same digits."""
    assert type(new) is type(old), f"{path}: {type(new)} != {type(old)}"
    if isinstance(new, Recent):  # its fingerprint is implied (ADR 0032): the reference wrote it
        assert new.digest.ids == IMPLIED_IDS, f"{path}.digest.ids"
        ids = frozenset((fingerprint(new.event_id),))
        new = dataclasses.replace(new, digest=dataclasses.replace(new.digest, ids=ids))
    if dataclasses.is_dataclass(new):
        for f in dataclasses.fields(new):
            if isinstance(new, Facts) and f.name == "encoded":
                continue  # decode keeps the stored encoding (the reference did not): see below
            assert_same(getattr(new, f.name), getattr(old, f.name), f"{path}.{f.name}")
    elif isinstance(new, Mapping):
        assert list(new) == list(old), f"{path}: keys {list(new)} != {list(old)}"
        for (k1, v1), (k2, v2) in zip(new.items(), old.items(), strict=True):
            assert_same(k1, k2, f"{path}[{k1!r}]")
            assert_same(v1, v2, f"{path}[{k1!r}]")
    elif isinstance(new, (tuple, list)):
        assert len(new) == len(old), f"{path}: {new!r} != {old!r}"
        assert getattr(new, "__dict__", None) == getattr(old, "__dict__", None), path
        for n, (a, b) in enumerate(zip(new, old, strict=True)):
            assert_same(a, b, f"{path}[{n}]")
    elif isinstance(new, frozenset):
        assert new == old, path
        assert sorted(map(repr, new)) == sorted(map(repr, old)), path
    elif isinstance(new, datetime):
        assert new == old, f"{path}: {new!r} != {old!r}"
        assert new.tzinfo is old.tzinfo, f"{path}: {new!r} != {old!r}"
    elif isinstance(new, Decimal):
        assert new.as_tuple() == old.as_tuple(), f"{path}: {new!r} != {old!r}"
    else:
        assert new == old, f"{path}: {new!r} != {old!r}"


def _outcome(decode: Callable[[str, bytes, Any], StoredProfile], state: bytes) -> Any:
    try:
        return decode("p_1", state, SMALL_RULES)
    except Exception as exc:
        return type(exc)


def assert_decodes_the_same(state: bytes) -> None:
    new, old = _outcome(stored_profile.decode, state), _outcome(reference.decode, state)
    if isinstance(old, type):
        assert new is old, f"raised {new}, the reference {old}"
    else:
        assert_same(new, old)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(groups=GROUPS, extra=EXTRA)
def test_a_stored_profile_decodes_to_what_it_did(groups: list[Any], extra: list[str]) -> None:
    state = stored_profile.encode(stored_profile_of(groups, extra))
    assert_decodes_the_same(state)


#: What a malformed state has in the place of a value: the wrong type, a time in another
#: offset or none, an unknown purpose or source, a key without its separator...
_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1, 3),
    st.sampled_from(
        [
            "",
            "x",
            "e001",
            "u:x",
            "email:a@b.c",
            "event",
            "gpc",
            "analytics",
            "nope",
            "10.5",
            "AQIDBA==",
            "2024-05-01T09:00:00Z",
            "2024-05-01T09:00:00.5Z",
            "2024-05-01T11:00:00+02:00",
            "2024-05-01T09:00:00",
            "2024-05-01",
        ]
    ),
    st.just([]),
    st.just({}),
    st.lists(st.sampled_from(["a", "b:c", "2024-05-01T09:00:00Z"]), max_size=3),
    st.dictionaries(st.sampled_from(["a", "f", "l", "ads"]), st.integers(0, 2), max_size=2),
)


def _places(doc: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key or index) of ``doc``, depth first."""
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    )
    for key, value in items:
        out.append((doc, key))
        _places(value, out)
    return out


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    groups=GROUPS,
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.booleans(), _JUNK), min_size=1, max_size=3),
)
def test_a_malformed_state_fails_as_it_did(groups: list[Any], edits: list[Any]) -> None:
    doc = orjson.loads(stored_profile.encode(stored_profile_of(groups, ["p_2"])))
    for where, delete, junk in edits:
        places = _places(doc, [])
        container, key = places[where % len(places)]
        if delete:
            del container[key]
        else:
            container[key] = junk
    assert_decodes_the_same(orjson.dumps(doc))


_TIMES = st.one_of(
    st.datetimes(timezones=st.just(UTC)).map(format_time),
    st.datetimes(timezones=st.sampled_from([UTC, None])).map(lambda d: d.isoformat()),
    st.builds(
        lambda d, m: (
            d.replace(tzinfo=UTC)
            .astimezone(__import__("datetime").timezone(timedelta(minutes=m)))
            .isoformat()
        ),
        st.datetimes(),
        st.integers(-900, 900),
    ),
    st.text(max_size=30),
    st.sampled_from(["2024-05-01", "2024-05-01T09:00", "2024-05-01 09:00:00Z", "Z"]),
)


@given(text=_TIMES)
def test_a_remembered_time_parses_as_parse_time_did(text: str) -> None:
    def outcome(parse: Callable[[str], datetime]) -> Any:
        try:
            return parse(text)
        except Exception as exc:
            return type(exc)

    old = outcome(reference.parse_time)
    for new in (outcome(parse_stored), outcome(parse_stored)):  # new, then remembered
        if isinstance(old, type):
            assert new is old
        else:
            assert_same(new, old)


_AT = st.sampled_from([f"2024-05-01T09:0{m}:00Z" for m in range(4)])
_RECORD = st.tuples(
    st.sampled_from([True, True, True, False]), _AT, st.sampled_from(["event", "gpc"])
).map(list)
_GRANTS = st.lists(_RECORD, max_size=4, unique_by=lambda r: r[1])
#: A purpose's history in any roles: grants out of order, a denial among them, a grant as
#: the last denial, a statement later than the latest, a dropped grant below a denial...
#: (half of the grant lists in time order: the checks after the order check are reached)
_PURPOSE = st.fixed_dictionaries(
    {},
    optional={
        "l": _RECORD,
        "d": _RECORD,
        "g": st.one_of(_GRANTS, _GRANTS.map(lambda gs: sorted(gs, key=lambda r: r[1]))),
        "x": _AT,
    },
)


@settings(max_examples=500)
@given(raw=st.dictionaries(st.sampled_from(["ads", "analytics", "marketing"]), _PURPOSE))
def test_a_consent_history_in_any_roles_is_read_or_refused_as_it_was(raw: dict[str, Any]) -> None:
    from resolvers.consent import ConsentHistory, PurposeHistory

    for purpose in raw.values():
        try:
            new: Any = PurposeHistory.from_json(purpose)
        except Exception as exc:
            new = (type(exc), str(exc))
        try:
            old: Any = reference.purpose_from_json(purpose)
        except Exception as exc:
            old = (type(exc), str(exc))
        assert_same(new, old)  # the same history, or the same error (the same check failed)
    assert_same(
        ConsentHistory.from_json({"f": 2, **raw}) if _reads(raw) else None,
        reference.history_from_json({"f": 2, **raw}) if _reads(raw) else None,
    )


def _reads(raw: dict[str, Any]) -> bool:
    try:
        reference.history_from_json({"f": 2, **raw})
    except Exception:
        return False
    return True
