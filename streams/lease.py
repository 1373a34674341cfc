"""A lease in Redis: a key one owner at a time holds for a while, renewed while it works.

The outbox relay (``streams.relay``, ADR 0043) takes ``P:v1:relay-lease`` so that one relay
at a time delivers an outbox, and records reach each key's Kafka partition in the order the
commits wrote them; the audience pass (``streams.audience_schedule``) holds its lock with the
same script. Both run with the commands Loom's Redis user is granted
(``streams.redis_clients.COMMANDS``).
"""

from __future__ import annotations

import enum
import functools
import time
from collections.abc import Callable
from typing import Final

import redis
from redis.commands.core import Script

#: Take the lease for ``ARGV[2]`` ms if it is free, or renew it if ``ARGV[1]`` holds it: 2
#: (taken), 1 (renewed), 0 (another owner holds it; untouched).
TAKE_SCRIPT: Final = """
local holder = redis.call('get', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
if holder then return 1 end
return 2
"""

#: Set the lock's time to live (ms; <= 0: delete it) only if ``owner`` holds it. SET ... PX
#: rewrites the same value with the new expiry.
HOLD_SCRIPT: Final = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
local ttl = tonumber(ARGV[2])
if ttl > 0 then redis.call('set', KEYS[1], ARGV[1], 'PX', ttl) else redis.call('del', KEYS[1]) end
return 1
"""


class Held(enum.IntEnum):
    """What :meth:`Lease.hold` found."""

    NO = 0  #: another owner holds the lease
    KEPT = 1  #: this owner held it and still does
    TAKEN = 2  #: this owner has just taken it (it was free, or had expired)


class Lease:
    """``key`` held by ``owner`` for ``lease_s`` at a time.

    :meth:`hold` takes or renews it with one round trip, at most once per third of a lease
    while it is held (the calls in between answer from this process's clock: a holder keeps
    it as long as it calls :meth:`hold` more often than every two thirds of a lease). The
    clock starts before the round trip, so this process never believes it holds the lease
    longer than Redis keeps it."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        owner: str,
        lease_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client, self.key, self.owner, self.lease_s = client, key, owner, lease_s
        self.clock = clock
        self._until = float("-inf")  # time.monotonic() until which the lease is surely ours

    @functools.cached_property
    def _take(self) -> Script:
        return self.client.register_script(TAKE_SCRIPT)

    @functools.cached_property
    def _hold(self) -> Script:
        return self.client.register_script(HOLD_SCRIPT)

    def held(self) -> bool:
        """Held, as far as this process knows (no round trip)."""
        return self.clock() < self._until

    def hold(self) -> Held:
        """Take the lease or renew it (module docstring); raises what Redis raises."""
        now = self.clock()
        if now < self._until - self.lease_s * 2 / 3:
            return Held.KEPT
        found = Held(int(self._take(keys=[self.key], args=[self.owner, _ms(self.lease_s)])))
        self._until = now + self.lease_s if found else float("-inf")
        return found

    def release(self) -> None:
        """Give the lease up now, if this owner holds it (another may take it at once)."""
        self._until = float("-inf")
        self._hold(keys=[self.key], args=[self.owner, 0])


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
