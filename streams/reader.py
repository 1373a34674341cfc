"""The profile reader client: what downstream services use to read Loom's profiles from Redis.

One round trip per read, by profile id or by ANY identifier::

    reader = ProfileReader(redis_clients.client(settings), prefix=settings.redis_prefix)
    reader.lookup("email", " Jane@Example.com ")     # -> snapshot dict or None
    reader.get("p_3f2a...")                         # follows merge redirects
    for snapshot in reader.iter_profiles(): ...     # export: every live profile

Identifiers are normalized exactly as the pipeline does (``schemas.normalize``), so a reader
may pass the raw value a customer typed. Each read is one Lua call (``LOOKUP_SCRIPT``): HGET the
identifier's profile id, follow redirects (``r``, at most :data:`MAX_HOPS`), HGET the snapshot
``d``. Key layout: ``streams.redis_store`` (layout v1).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from typing import Any, Final

import orjson
import redis

from resolvers.context import suppression_hash
from resolvers.lanes.stored_profile import STATE_FORMAT
from resolvers.profile.codec import facts_from_stored
from resolvers.profile.render import held_behaviour, held_consent, held_transactions
from resolvers.store import MAX_REDIRECT_HOPS
from schemas.identifiers import Identifier
from schemas.normalize import DEFAULT, NormalizeConfig, Rejected, normalize_one
from streams.redis_keys import Keys

MAX_HOPS: Final = MAX_REDIRECT_HOPS

#: KEYS: none (names are built from ARGV, layout v1 on one standalone Redis).
#: ARGV: root ("prefix:v1"), mode ("id" | "profile"), name ("type:value" | profile id), hops,
#: and optionally "s": the stored state too.
#: Returns {profile_id, snapshot} ({profile_id, snapshot, state} with "s") or {} when absent.
LOOKUP_SCRIPT: Final = """
local root, mode, name, max_hops = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local pid = name
if mode == 'id' then
  pid = redis.call('HGET', root .. ':id:' .. name, 'p')
  if not pid then return {} end
end
for _ = 0, max_hops do
  local r = redis.call('HMGET', root .. ':profile:' .. pid, 'd', 'r', 's')
  if r[1] then
    if ARGV[5] == 's' and r[3] then return {pid, r[1], r[3]} end
    return {pid, r[1]}
  end
  if not r[2] then return {} end
  pid = r[2]
end
return {}
"""


class InvalidIdentifierError(ValueError):
    """The value is not an identifier Loom would ever store (blocked, malformed, unknown type).

    The message names the type and the reason only, never the value.
    """

    def __init__(self, rejected: Rejected) -> None:
        super().__init__(f"not a valid {rejected.type} identifier ({rejected.reason})")
        self.rejected = rejected


def split_key(key: str, config: NormalizeConfig = DEFAULT) -> tuple[str | None, str]:
    """``(type, value)`` for ``type:value`` with a known type, else ``(None, profile_id)``."""
    id_type, sep, value = key.partition(":")
    if sep and id_type in config.known_types:
        return id_type, value
    return None, key


class ProfileReader:
    """Read-only access to profile snapshots (layout v1) under one key prefix."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "loom",
        *,
        config: NormalizeConfig = DEFAULT,
        default_region: str | None = None,
    ) -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.config = config
        self.default_region = default_region
        self._lookup = client.register_script(LOOKUP_SCRIPT)

    def normalize(
        self, identifier_type: str, raw_value: str, region: str | None = None
    ) -> Identifier:
        """The canonical identifier, as the pipeline computes it. Raises InvalidIdentifierError."""
        result = normalize_one(
            identifier_type,
            raw_value,
            region=region or self.default_region,
            config=self.config,
        )
        if isinstance(result, Rejected):
            raise InvalidIdentifierError(result)
        return result

    def _read(self, mode: str, name: str) -> dict[str, Any] | None:
        reply = self._lookup(keys=[], args=[self.keys.root, mode, name, MAX_HOPS])
        if not reply:
            return None
        snapshot: dict[str, Any] = orjson.loads(reply[1])
        return snapshot

    def get(self, profile_id: str) -> dict[str, Any] | None:
        """The snapshot of ``profile_id``, or of the profile it was merged into; None if absent."""
        return self._read("profile", profile_id)

    def lookup(
        self, identifier_type: str, raw_value: str, region: str | None = None
    ) -> dict[str, Any] | None:
        """The snapshot of the profile holding this identifier (one round trip), or None.

        ``raw_value`` is normalized like the pipeline does (``region`` is the default region for
        phone numbers). Raises :class:`InvalidIdentifierError` for values that are never
        identifiers (``guest``, ``1234567890``, a malformed e-mail ...).
        """
        identifier = self.normalize(identifier_type, raw_value, region)
        return self._read("id", identifier.key)

    def lookup_held(
        self, identifier_type: str, raw_value: str, region: str | None = None
    ) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
        """:meth:`lookup`, with what the profile keeps whatever consent shows, read in the
        same round trip: ``transactions`` (every order and return), ``behaviour`` (every kept
        event and day digest) and ``consent_history`` (the statements per purpose)
        (``resolvers.profile.render.held_*``; None when its stored state is in a format this
        version cannot read): what a data export holds. None when no profile holds the
        identifier."""
        identifier = self.normalize(identifier_type, raw_value, region)
        reply = self._lookup(keys=[], args=[self.keys.root, "id", identifier.key, MAX_HOPS, "s"])
        if not reply:
            return None
        snapshot: dict[str, Any] = orjson.loads(reply[1])
        state: dict[str, Any] = orjson.loads(reply[2]) if len(reply) > 2 else {}
        if state.get("v") != STATE_FORMAT:
            return snapshot, None
        groups = [facts_from_stored(group["x"]) for group in state["g"].values()]
        return snapshot, {
            "transactions": held_transactions(groups),
            "behaviour": held_behaviour(groups),
            "consent_history": held_consent(groups),
        }

    def held_under(
        self, types: Iterable[str], digests: Collection[str], salt: bytes, count: int = 1000
    ) -> Iterator[Identifier]:
        """The identifiers of ``types`` that Loom holds (an identifier record) whose salted
        suppression hash (``resolvers.context.suppression_hash``) is in ``digests``: what a
        hash stands for, found without keeping the value elsewhere (``shop/redact``'s guest
        checkouts). A SCAN of the whole keyspace per type, hashing each of its records: for
        rare requests, never a lookup path."""
        if not digests:
            return
        for id_type in types:
            head = f"{self.keys.root}:id:{id_type}:"
            for key in self.client.scan_iter(match=_glob_escape(head) + "*", count=count):
                name = key.decode() if isinstance(key, bytes) else str(key)
                identifier = Identifier(id_type, name[len(head) :])
                if suppression_hash(identifier, salt) in digests:
                    yield identifier

    def iter_profile_ids(self, count: int = 500) -> Iterator[str]:
        for member in self.client.sscan_iter(self.keys.profile_index, count=count):
            yield member.decode() if isinstance(member, bytes) else str(member)

    def iter_profiles(self, batch: int = 500) -> Iterator[dict[str, Any]]:
        """Every live profile's snapshot (SSCAN of the index, snapshots fetched in pipelines).

        A profile merged or erased while the export runs is skipped; SSCAN may return an id
        twice, which is filtered out here.
        """
        seen: set[str] = set()
        pending: list[str] = []

        def flush() -> Iterator[dict[str, Any]]:
            pipe = self.client.pipeline(transaction=False)
            for pid in pending:
                pipe.hget(self.keys.profile(pid), "d")
            for raw in pipe.execute():
                if raw is not None:
                    snapshot: dict[str, Any] = orjson.loads(raw)
                    yield snapshot
            pending.clear()

        for pid in self.iter_profile_ids(count=batch):
            if pid in seen:
                continue
            seen.add(pid)
            pending.append(pid)
            if len(pending) >= batch:
                yield from flush()
        if pending:
            yield from flush()


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis glob pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
