"""Loom's Redis key layout (v1): :class:`Keys` (the table: ``streams.redis_store``), the
processed markers' buckets (ADR 0016) and the scopes' key segments. No IO: shared by the
Lua commit (``streams.redis_store``) and the commit without Lua (``streams.commit_commands``,
``streams.watch_commit``)."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from typing import Final

from resolvers.store import DEFAULT_SCOPE, Kind, Ref

#: Change streams are trimmed to about this many entries (``XADD MAXLEN ~``).
STREAM_MAXLEN: Final = 100_000


#: Processed-marker hashes per generation (ADR 0016): part of the layout (an event id's bucket
#: must not change), so never changed without a new marker layout.
MARKER_BUCKETS: Final = 4


_BUCKET_NAMES: Final = tuple(str(b) for b in range(MARKER_BUCKETS))


def marker_bucket(event_id: str) -> str:
    """The bucket of ``event_id``'s processed marker (ADR 0016): CRC-32 of its UTF-8 bytes
    modulo :data:`MARKER_BUCKETS`, in decimal."""
    return _BUCKET_NAMES[zlib.crc32(event_id.encode()) % MARKER_BUCKETS]


def marker_groups(event_ids: Iterable[str]) -> dict[str, list[str]]:
    """``event_ids`` by marker bucket (each bucket's ids in their given order); the bucket
    computed inline (:func:`marker_bucket`): twice per event, once per script."""
    groups: dict[str, list[str]] = {}
    names, crc32 = _BUCKET_NAMES, zlib.crc32
    for event_id in event_ids:
        bucket = names[crc32(event_id.encode()) % MARKER_BUCKETS]
        ids = groups.get(bucket)
        if ids is None:
            groups[bucket] = [event_id]
        else:
            ids.append(event_id)
    return groups


def seen_segment(scope: str) -> str:
    """Key segment of a scope's processed markers: ``seen`` (profiles), ``seen-{scope}``."""
    return "seen" if scope == DEFAULT_SCOPE else f"seen-{scope}"


class Keys:
    """Key names of layout v1 under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.root = f"{prefix}:v1"
        #: ``P:v1:{kind}:`` per kind (an entity's key is this and its name)
        self.kinds: Mapping[Kind, str] = {kind: f"{self.root}:{kind.value}:" for kind in Kind}
        #: :meth:`stream`'s key per stream name, remembered
        self.streams: Mapping[str, str] = _StreamKeys(self.root)

    def entity(self, ref: Ref) -> str:
        return self.kinds[ref.kind] + ref.name

    def profile(self, profile_id: str) -> str:
        return f"{self.root}:profile:{profile_id}"

    def stock(self, sku: str) -> str:
        return f"{self.root}:stock:{sku}"

    def seen(self, event_id: str, scope: str = DEFAULT_SCOPE) -> str:
        """Layout 1's processed marker of ``event_id`` (still honoured during the hand-over,
        ADR 0016)."""
        return f"{self.root}:{seen_segment(scope)}:{event_id}"

    def markers_layout(self, scope: str) -> str:
        return f"{self.root}:markers-layout:{seen_segment(scope)}"

    def commit_seq(self, scope: str) -> str:
        """The lane's commit sequence: ``INCR``'d by every commit that writes a part of
        ``scope`` (both commits), ``WATCH``ed by the commit without Lua (ADR 0021)."""
        return f"{self.root}:commit-seq:{seen_segment(scope)}"

    def claims(self, scope: str) -> str:
        """The lane's claims: one field per worker, what it is computing and last committed
        (``resolvers.claims``, ADR 0040)."""
        return f"{self.root}:claims:{seen_segment(scope)}"

    @property
    def suppressed(self) -> str:
        return f"{self.root}:suppressed"

    @property
    def profile_index(self) -> str:
        return f"{self.root}:profile-index"

    @property
    def stock_index(self) -> str:
        return f"{self.root}:stock-index"

    @property
    def outbox(self) -> str:
        return f"{self.root}:outbox"

    @property
    def relay_lease(self) -> str:
        """Who delivers the outbox: the consumer name of the one relay that holds it (ADR 0043)."""
        return f"{self.root}:relay-lease"

    def rebuild_lease(self, lane: str) -> str:
        """Held by a running ``loom rebuild --lane {lane}`` (its token; it renews the expiry):
        while it exists, a commit of that lane by anyone else is refused (``streams.rebuild``)."""
        return f"{self.root}:rebuild-lease:{lane}"

    @property
    def stats(self) -> str:
        return f"{self.root}:stats"

    def offsets(self, lane: str) -> str:
        """The offsets ``lane`` committed, kept beside its state (``streams.kept_offsets``)."""
        return f"{self.root}:offsets:{lane}"

    @property
    def generation(self) -> str:
        return f"{self.root}:generation"

    @property
    def replication_check(self) -> str:
        return f"{self.root}:replication-check"

    def audience(self, name: str) -> str:
        return f"{self.root}:audience:{name}"

    @property
    def audience_medians(self) -> str:
        return f"{self.root}:audience-medians"

    def stream(self, name: str) -> str:
        return f"{self.root}:changes:{name}"


class _StreamKeys(dict[str, str]):
    """:meth:`Keys.stream` per stream name, each built once (a lane writes one or two)."""

    def __init__(self, root: str) -> None:
        super().__init__()
        self.root = root

    def __missing__(self, name: str) -> str:
        key = self[name] = f"{self.root}:changes:{name}"
        return key
