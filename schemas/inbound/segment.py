"""Segment spec messages (HTTP Tracking API) to touchpoint v1.

One message (``track``, ``identify``, ``page``, ``screen``, ``alias``, ``group``) becomes one
touchpoint; the README's "Sending from Segment SDKs" section documents the table:

* ``userId`` -> ``customer_id``, ``anonymousId`` -> ``anonymous_id``; ``email`` and ``phone``
  of the person's traits (``traits`` of an identify, ``context.traits`` of any call) ->
  identifiers (normalized downstream as every identifier is); other traits -> ``traits``
  (``firstName``/``lastName``, ``address.city``/``postalCode``, scalar extras);
* ``identify`` -> ``profile_updated``; ``alias`` -> ``profile_updated`` linking ``userId``
  (customer id) with ``previousId`` as the anonymous id unless it is an e-mail address (a
  previous userId: then the message's ``anonymousId``, :func:`_identifiers`);
  ``page``/``screen`` -> ``page_view``;
  ``track`` -> the e-commerce table of :mod:`schemas.inbound.segment_commerce`, else
  ``custom``; ``group`` -> ``custom`` named ``group``;
* ``messageId`` -> ``event_id`` (SDK retries repeat it, so the workers drop the copy);
* time: ``originalTimestamp`` (else ``timestamp``) corrected for the client's clock the way
  Segment does, ``receivedAt - (sentAt - originalTimestamp)``, and never later than
  ``receivedAt``; without ``sentAt`` the client's time is kept, without any time
  ``receivedAt`` is used;
* consent: ``context.consent.categoryPreferences`` -> ``consent_signals.segment``; the
  request's ``Sec-GPC: 1`` -> ``gpc``;
* kept of the context: ``$library`` (SDK name/version) and ``$device_type`` (``mobile``,
  ``tablet``, ``desktop`` or ``bot``, derived from the user agent) in ``properties``.
  ``context.ip`` and the user agent itself are never stored.

Pure: the gateway passes the request's receipt time as :class:`Received`.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from schemas.errors import UNKNOWN_TYPE, InvalidEvent
from schemas.inbound import segment_commerce as commerce
from schemas.inbound.base import (
    Source,
    event_id,
    invalid,
    mapping,
    rfc3339,
    text,
    timestamp,
)
from schemas.touchpoint import (
    MAX_EXTRA_TRAITS,
    MAX_FREEFORM_KEYS,
    MAX_FREEFORM_STRING,
    EventType,
    Touchpoint,
    validate_touchpoint,
)

#: Message types of the Segment spec.
SEGMENT_TYPES: Final = ("track", "identify", "page", "screen", "alias", "group")
#: Fields of a message that describe its transport, not the event (left out of derived ids).
TRANSPORT_FIELDS: Final = frozenset({"sentAt", "writeKey", "_metadata", "receivedAt"})


@dataclass(frozen=True, slots=True)
class Received:
    """What the gateway knows of the request a message came in: when it arrived
    (``receivedAt``), the body's batch-level ``sentAt`` (raw) and whether it said
    ``Sec-GPC: 1``."""

    at: datetime
    sent_at: object = None
    gpc: bool = False


def map_message(message: object, source: Source, received: Received) -> Touchpoint:
    """One Segment message as a validated touchpoint; raises :class:`InvalidEvent` naming
    the message's own field."""
    if not isinstance(message, Mapping):
        raise invalid(None, "a message must be a JSON object")
    kind = message.get("type")
    if kind not in SEGMENT_TYPES:
        raise InvalidEvent(UNKNOWN_TYPE, f"must be one of {', '.join(SEGMENT_TYPES)}", field="type")
    context = mapping(message.get("context"), "context")
    person = dict(mapping(context.get("traits"), "context.traits"))
    if kind == "identify":
        person.update(mapping(message.get("traits"), "traits"))
    body: dict[str, Any] = {
        "event_id": event_id("seg", message.get("messageId"), lambda: _identity(message, source)),
        "channel": source.channel.value,
        "occurred_at": rfc3339(occurred_at(message, received)),
        "source": source.name,
        "identifiers": _identifiers(message, kind, person),
        **_BY_TYPE[kind](message, source),
    }
    body["properties"] = _with_kept_context(body.get("properties", {}), _kept_context(context))
    if source.region:
        body["region"] = source.region
    if traits := _traits(person):
        body["traits"] = traits
    preferences = mapping(context.get("consent"), "context.consent").get("categoryPreferences")
    if isinstance(preferences, Mapping) and preferences:
        body["consent_signals"] = {"segment": dict(preferences)}
    if received.gpc:
        body["gpc"] = True
    try:
        return validate_touchpoint(body)
    except InvalidEvent as exc:
        raise _in_segment_terms(exc) from None


def occurred_at(message: Mapping[str, Any], received: Received) -> datetime:
    """When the event happened, corrected for the client's clock skew (module doc)."""
    original = timestamp(message.get("originalTimestamp"), "originalTimestamp") or timestamp(
        message.get("timestamp"), "timestamp"
    )
    if original is None:
        return received.at
    sent = timestamp(message.get("sentAt"), "sentAt") or timestamp(received.sent_at, "sentAt")
    try:
        corrected = original if sent is None else received.at - (sent - original)
    except OverflowError:  # the skew correction leaves the years 1-9999
        raise invalid("sentAt", "is too far from the message's timestamp") from None
    return min(corrected, received.at)


# --- per message type ---------------------------------------------------------------------


def _track(message: Mapping[str, Any], source: Source) -> dict[str, Any]:
    name = text(message.get("event"), "event", max_length=256)
    if name is None:
        raise invalid("event", "required for track")
    kind = commerce.track_type(name)
    props = mapping(message.get("properties"), "properties")
    out: dict[str, Any] = {
        "type": kind.value,
        "name": name,
        "properties": commerce.properties(kind, props),
    }
    if (order := commerce.order(kind, name, props, source.currency)) is not None:
        out["order"] = order
    return out


#: The page properties the browser SDKs write themselves (Segment's, and RudderStack's
#: additions): a URL longer than a free-form string may hold is cut to fit, not refused (the
#: sender cannot shorten what its SDK writes, and the page view would be lost).
SDK_PAGE_FIELDS: Final = frozenset(
    {
        "path",
        "referrer",
        "search",
        "title",
        "url",
        "tab_url",
        "referring_domain",
        "initial_referrer",
        "initial_referring_domain",
    }
)


def _page(message: Mapping[str, Any], _source: Source) -> dict[str, Any]:
    props = dict(mapping(message.get("properties"), "properties"))
    for field in SDK_PAGE_FIELDS.intersection(props):
        value = props[field]
        if isinstance(value, str) and len(value) > MAX_FREEFORM_STRING:
            props[field] = value[:MAX_FREEFORM_STRING]
    category = text(message.get("category"), "category", max_length=256)
    if category is not None and "category" not in props and len(props) < MAX_FREEFORM_KEYS:
        props["category"] = category  # only where the contract's key count leaves room
    out: dict[str, Any] = {"type": EventType.PAGE_VIEW.value, "properties": props}
    name = text(message.get("name"), "name", max_length=256)
    if name is not None:
        out["name"] = name
    return out


def _identify(_message: Mapping[str, Any], _source: Source) -> dict[str, Any]:
    return {"type": EventType.PROFILE_UPDATED.value}


def _alias(_message: Mapping[str, Any], _source: Source) -> dict[str, Any]:
    return {"type": EventType.PROFILE_UPDATED.value, "name": "alias"}


def _group(message: Mapping[str, Any], _source: Source) -> dict[str, Any]:
    group_id = text(message.get("groupId"), "groupId", max_length=256)
    if group_id is None:
        raise invalid("groupId", "required for group")
    traits = mapping(message.get("traits"), "traits")
    return {
        "type": EventType.CUSTOM.value,
        "name": "group",
        "properties": {"group_id": group_id, "traits": dict(traits)},
    }


_BY_TYPE: Final[Mapping[str, Callable[[Mapping[str, Any], Source], dict[str, Any]]]] = {
    "track": _track,
    "page": _page,
    "screen": _page,
    "identify": _identify,
    "alias": _alias,
    "group": _group,
}


# --- identity, traits, context ------------------------------------------------------------


def _identity(message: Mapping[str, Any], source: Source) -> dict[str, Any]:
    """What a message without a usable ``messageId`` is identified by (for a derived id)."""
    return {
        **{k: v for k, v in message.items() if k not in TRANSPORT_FIELDS},
        "$source": source.name,
    }


def _identifiers(
    message: Mapping[str, Any], kind: str, person: Mapping[str, Any]
) -> dict[str, str]:
    """The message's identifiers. An ``alias``'s ``previousId`` is, in Segment's spec, "an
    Anonymous ID assigned to that user or a User ID you previously identified them with". The
    touchpoint carries one anonymous id: the alias's is ``previousId`` (what an alias is sent to
    link: an older device, or the anonymousId of the visitor who just signed up), unless it is
    an e-mail address (the spec's own example of a previous userId, ``"previousId":
    "jen@email.com"``): then the message's own ``anonymousId``, if any. A previous userId read
    as a device id cannot merge two accounts: customer ids never merge
    (docs/identity-rules.toml), and a device seen with two customer ids links neither (the
    identity rules' quarantine)."""
    user = text(message.get("userId"), "userId")
    anonymous = text(message.get("anonymousId"), "anonymousId")
    if kind == "alias":
        previous = text(message.get("previousId"), "previousId")
        if user is None or previous is None:
            raise invalid("userId" if user is None else "previousId", "required for alias")
        if previous != user and "@" not in previous:
            anonymous = previous  # an e-mail: a previous userId, not linked (docstring)
    elif user is None and anonymous is None:
        raise invalid("userId", "userId or anonymousId is required")
    ids = {"customer_id": user, "anonymous_id": anonymous}
    ids["email"] = text(person.get("email"), "traits.email")
    ids["phone"] = text(person.get("phone"), "traits.phone")
    return {k: v for k, v in ids.items() if v is not None}


_NAMED_TRAITS: Final = {
    "firstName": "first_name",
    "first_name": "first_name",
    "lastName": "last_name",
    "last_name": "last_name",
}
#: Traits that are identifiers, handled by name, or nested: never copied as extras.
_NOT_EXTRA: Final = frozenset(
    {"email", "phone", "address", "id", "userId", "anonymousId", "preferences", *_NAMED_TRAITS}
)


def _traits(person: Mapping[str, Any]) -> dict[str, Any]:
    """Touchpoint traits of the person's Segment traits: named ones, ``address`` city and
    postal code, ``preferences`` (an object), and up to 32 scalar extras (strings of at most
    256 characters); nested extras are not kept."""
    out: dict[str, Any] = {}
    for theirs, ours in _NAMED_TRAITS.items():
        value = person.get(theirs)
        if isinstance(value, str) and value.strip():
            out.setdefault(ours, value.strip()[:256])
    address = person.get("address")
    if isinstance(address, Mapping):
        city = address.get("city")
        postal = address.get("postalCode", address.get("postal_code"))
        if isinstance(city, str) and city.strip():
            out["city"] = city.strip()[:256]
        if isinstance(postal, str | int) and not isinstance(postal, bool) and str(postal).strip():
            out["postal_code"] = str(postal).strip()[:32]
    if isinstance(person.get("preferences"), Mapping):
        out["preferences"] = dict(person["preferences"])
    extras = 0
    for name, value in person.items():
        if extras >= MAX_EXTRA_TRAITS:
            break
        if name in _NOT_EXTRA or name in out or not isinstance(name, str) or len(name) > 64:
            continue
        if _scalar_trait(value):
            out[name] = value
            extras += 1
    return out


def _scalar_trait(value: object) -> bool:
    if isinstance(value, str):
        return len(value) <= 256
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, bool | int)


_BOT: Final = re.compile(r"bot|crawl|spider|slurp|headless|lighthouse", re.IGNORECASE)
_TABLET: Final = re.compile(r"ipad|tablet|kindle|silk/|android(?!.*mobile)", re.IGNORECASE)
_MOBILE: Final = re.compile(r"mobi|iphone|ipod|android|windows phone", re.IGNORECASE)


def device_type(context: Mapping[str, Any]) -> str | None:
    """``bot``, ``tablet``, ``mobile`` or ``desktop`` from the user agent (or the app SDK's
    ``device.type``); ``None`` when the context says nothing."""
    agent = context.get("userAgent")
    if isinstance(agent, str) and agent.strip():
        return _agent_type(agent[:512])
    device = context.get("device")
    if isinstance(device, Mapping) and device.get("type") in ("ios", "android"):
        return "mobile"
    return None


@functools.lru_cache(maxsize=4096)
def _agent_type(agent: str) -> str:
    """Device type of a user agent (cached: a site's traffic has few distinct agents)."""
    for kind, pattern in (("bot", _BOT), ("tablet", _TABLET), ("mobile", _MOBILE)):
        if pattern.search(agent):
            return kind
    return "desktop"


def _with_kept_context(properties: dict[str, Any], kept: dict[str, str]) -> dict[str, Any]:
    """The properties with what is kept of the context (``$library`` first), as far as the
    contract's key count allows: they are the gateway's additions, and never make an event
    whose own properties fit the contract an invalid one."""
    room = MAX_FREEFORM_KEYS - len(properties)
    if room >= len(kept):
        return {**properties, **kept}
    return {**properties, **dict(list(kept.items())[: max(room, 0)])}


def _kept_context(context: Mapping[str, Any]) -> dict[str, str]:
    """What is kept of the context (module doc): never the IP or the raw user agent."""
    out: dict[str, str] = {}
    library = context.get("library")
    if isinstance(library, Mapping) and isinstance(library.get("name"), str):
        version = library.get("version")
        name = library["name"] + (f"/{version}" if isinstance(version, str | int) else "")
        out["$library"] = name[:128]
    if (kind := device_type(context)) is not None:
        out["$device_type"] = kind
    return out


# --- errors in the sender's terms ---------------------------------------------------------

#: Touchpoint field -> the Segment field it was mapped from (longest prefix first).
_SEGMENT_FIELDS: Final = (
    ("order.lines", "properties.products"),
    ("order.total", "properties.total"),
    ("order.currency", "properties.currency"),
    ("order.order_id", "properties.order_id"),
    ("order", "properties"),
    ("identifiers.customer_id", "userId"),
    ("identifiers.anonymous_id", "anonymousId"),
    ("identifiers.email", "traits.email"),
    ("identifiers.phone", "traits.phone"),
    ("identifiers", "userId"),
    ("occurred_at", "timestamp"),
    ("event_id", "messageId"),
    ("name", "event"),
    ("consent_signals.segment", "context.consent.categoryPreferences"),
    ("consent", "context.consent.categoryPreferences"),
)


def sender_field(field: str | None) -> str | None:
    """The Segment field a touchpoint field came from (``order.lines[0].sku`` ->
    ``properties.products[0].sku``); other fields are named alike in both."""
    if field is None:
        return None
    for ours, theirs in _SEGMENT_FIELDS:
        if field == ours or field.startswith((f"{ours}.", f"{ours}[")):
            return theirs + field[len(ours) :]
    return field


def _in_segment_terms(exc: InvalidEvent) -> InvalidEvent:
    def line(detail: str) -> str:
        field, sep, rest = detail.partition(": ")
        return f"{sender_field(field)}{sep}{rest}" if sep else detail

    return InvalidEvent(
        exc.reason,
        exc.message,
        field=sender_field(exc.field),
        details=tuple(line(d) for d in exc.details),
    )
