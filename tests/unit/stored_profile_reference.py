"""The decode of a stored profile as it was before issue 17's thirteenth pass (main c513c0e),
kept verbatim as the reference the faster decode is compared with
(``test_stored_profile_decode``). Only the binding changed: each classmethod is a function
whose ``cls`` defaults to its class, each method a function of ``self``, and the calls
between them name these functions. Not used by Loom."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from resolvers.consent import (
    ConsentHistory,
    ConsentRecord,
    ConsentStateError,
    Purpose,
    PurposeHistory,
    Source,
)
from resolvers.identity.evidence import Atom, Stamp, ranked
from resolvers.identity.rules import IdentityRules
from resolvers.lanes.stored_profile import STATE_FORMAT, Group, StateFormatError, StoredProfile
from resolvers.profile.codec import UNREADABLE_CONSENT, _ids_in
from resolvers.profile.facts import (
    Activity,
    Digest,
    DigestKey,
    Facts,
    Recent,
    Stamped,
    Transaction,
    fingerprint,
)
from resolvers.timefmt import TimeFormatError, utc
from schemas.identifiers import Identifier

_FORMAT = 2

# --------------------------------------------------------------------------- resolvers.timefmt


def parse_time(text: str) -> datetime:
    """Inverse of :func:`format_time`; accepts any offset, returns UTC."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise TimeFormatError(f"not an RFC 3339 timestamp: {text!r}") from exc
    return utc(parsed)


def parse_optional(text: str | None) -> datetime | None:
    return None if text is None else parse_time(text)


# --------------------------------------------------------------------------- consent.history


def record_from_json(raw: Any, cls: Any = ConsentRecord) -> ConsentRecord:
    granted, at, source = raw
    if not isinstance(granted, bool):
        raise ConsentStateError("consent record: granted must be a boolean")
    return cls(granted, parse_time(at), Source(source))  # type: ignore[no-any-return]


def purpose_from_json(raw: Mapping[str, Any], cls: Any = PurposeHistory) -> PurposeHistory:
    latest, denial = raw.get("l"), raw.get("d")
    dropped = raw.get("x")
    out = cls(
        latest=record_from_json(latest) if latest is not None else None,
        last_denial=record_from_json(denial) if denial is not None else None,
        grants=tuple(record_from_json(g) for g in raw.get("g", ())),
        dropped=parse_time(dropped) if dropped is not None else None,
    )
    _check_roles(out)
    return out  # type: ignore[no-any-return]


def _check_roles(self: PurposeHistory) -> None:
    statements = [*self.grants, *([self.last_denial] if self.last_denial else [])]
    if (self.grants or self.dropped) and self.latest is None:
        raise ConsentStateError("consent history: grants without a latest statement")
    if self.last_denial is not None and self.last_denial.granted:
        raise ConsentStateError("consent history: the last denial is a grant")
    if any(not g.granted for g in self.grants):
        raise ConsentStateError("consent history: a denial among the explicit grants")
    keys = [g.key for g in self.grants]
    if keys != sorted(set(keys)):
        raise ConsentStateError("consent history: grants out of order")
    floor = self.last_denial.key if self.last_denial is not None else None
    if floor is not None and (keys and keys[0] <= floor):
        raise ConsentStateError("consent history: a grant kept below the last denial")
    if floor is not None and self.dropped is not None and self.dropped <= floor[0]:
        raise ConsentStateError("consent history: a dropped grant below the last denial")
    if self.latest is not None and any(r.key > self.latest.key for r in statements):
        raise ConsentStateError("consent history: a statement later than the latest")


def history_from_json(raw: Mapping[str, Any], cls: Any = ConsentHistory) -> ConsentHistory:
    try:
        if raw.get("f") != _FORMAT:
            raise ConsentStateError(f"unsupported consent history format {raw.get('f')!r}")
        return cls(  # type: ignore[no-any-return]
            {Purpose(name): purpose_from_json(h) for name, h in raw.items() if name != "f"}
        )
    except ConsentStateError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConsentStateError(f"cannot decode consent history: {exc}") from exc


# --------------------------------------------------------------------------- identity.evidence


def atom_from_json(raw: list[Any], rules: IdentityRules, cls: Any = Atom) -> Atom:
    keys, at, event_id = raw[:3]
    ghosts = tuple(raw[3]) if len(raw) > 3 else ()
    return cls(  # type: ignore[no-any-return]
        ranked((parse_key(k) for k in keys), rules), Stamp(parse_time(at), event_id), ghosts
    )


def parse_key(key: str) -> Identifier:
    id_type, _, value = key.partition(":")
    return Identifier(id_type, value)


# --------------------------------------------------------------------------- profile.codec


def _consent_in(raw: Mapping[str, Any] | None) -> ConsentHistory:
    if raw is None:
        return ConsentHistory()
    try:
        return history_from_json(raw)
    except ConsentStateError:
        return UNREADABLE_CONSENT


def _stamped_in(raw: list[Any]) -> Stamped:
    return Stamped(raw[0], parse_time(raw[1]), raw[2])


def _activity_in(raw: list[Any]) -> Activity:
    name = raw[6] if len(raw) > 6 else None
    return Activity(parse_time(raw[0]), raw[1], raw[2], raw[3], raw[4], raw[5], name)


def _transaction_in(key: str, raw: list[Any]) -> Transaction:
    return Transaction(
        key=key,
        at=parse_time(raw[0]),
        event_id=raw[1],
        type=raw[2],
        channel=raw[3],
        consent=raw[4],
        region=raw[5],
        is_return=bool(raw[6]),
        in_store=bool(raw[7]),
        currency=raw[8],
        amount=Decimal(raw[9]),
        payment_method=raw[10],
        location_id=raw[11],
        categories=tuple(raw[12]),
        sku=raw[13],
        # since returns name their order (``tests/pipeline/test_audience_returns.py``)
        order_id=raw[14] if len(raw) > 14 else None,
        units=tuple(raw[15]) if len(raw) > 15 else (),
        # a return of the whole order (``tests/pipeline/test_segment_full_refund.py``)
        whole=raw[16] if len(raw) > 16 else 0,
        # since cancellations and lines given back by SKU (``test_audience_returns.py``)
        skus=tuple(tuple(x) for x in raw[17]) if len(raw) > 17 else (),
        loose=tuple((x[0], x[1]) for x in raw[18]) if len(raw) > 18 else (),
    )


def _digest_in(raw: list[Any]) -> tuple[DigestKey, Digest]:
    key: DigestKey = (int(raw[0]), str(raw[1]), str(raw[2]))
    return key, Digest(
        first_at=parse_time(raw[3]),
        last_at=parse_time(raw[4]),
        seen=bool(raw[5]),
        events=int(raw[6]),
        channels=frozenset(raw[7]),
        interest=bool(raw[8]),
        categories={k: int(v) for k, v in raw[9].items()},
        activities=tuple(_activity_in(a) for a in raw[10]),
        preferences={k: _stamped_in(v) for k, v in raw[11].items()},
        ids=_ids_in(raw[12]),
    )


def _recent_in(raw: list[Any]) -> Recent:
    at = parse_time(raw[3])
    seen = bool(raw[4])
    return Recent(
        event_id=raw[0],
        code=raw[1],
        region=raw[2],
        digest=Digest(
            first_at=at,
            last_at=at,
            seen=seen,
            events=1 if seen else 0,
            channels=frozenset(raw[5]),
            interest=bool(raw[6]),
            categories={k: int(v) for k, v in raw[7].items()},
            activities=tuple(_activity_in(a) for a in raw[8]),
            preferences={k: _stamped_in(v) for k, v in raw[9].items()},
            ids=frozenset((fingerprint(raw[0]),)),
        ),
    )


def facts_from_json(raw: Mapping[str, Any]) -> Facts:
    region = raw.get("r")
    consent = raw.get("c")
    return Facts(
        traits={k: _stamped_in(v) for k, v in raw.get("t", {}).items()},
        region=_stamped_in(region) if region is not None else None,
        consent=_consent_in(consent),
        transactions={k: _transaction_in(k, v) for k, v in raw.get("o", {}).items()},
        recent={item.event_id: item for item in (_recent_in(e) for e in raw.get("e", ()))},
        digests=dict(_digest_in(d) for d in raw.get("d", ())),
        latest=parse_optional(raw.get("l")),
    )


# --------------------------------------------------------------------------- lanes.stored_profile


def decode(profile_id: str, raw: bytes, rules: IdentityRules) -> StoredProfile:
    data: dict[str, Any] = orjson.loads(raw)
    if data.get("v") != STATE_FORMAT:
        raise StateFormatError(
            f"profile state format {data.get('v')!r}, expected {STATE_FORMAT}: "
            "rebuild the profiles lane from Kafka"
        )
    groups = {}
    for key, body in data["g"].items():
        atoms = (atom_from_json(a, rules) for a in body["a"])
        groups[key] = Group({a.key: a for a in atoms}, facts_from_json(body["x"]))
    at, event_id = data["f"]
    return StoredProfile(
        profile_id=profile_id,
        first=Stamp(parse_time(at), event_id),
        identifiers={t: tuple(vs) for t, vs in data["ids"].items()},
        groups=groups,
        merged_from=tuple(data.get("mf", ())),
        audiences=tuple(data.get("au", ())),
    )
