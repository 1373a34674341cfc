"""Every Redis client the gateway and the privacy worker make is built here, from the settings.

One place builds Redis connections from :class:`~streams.settings.LoomSettings`, as
:mod:`streams.kafka_clients` does for Kafka, so a setting that concerns every connection (TLS,
an ACL user, Sentinel) is applied to all of them alike.
"""

from __future__ import annotations

import redis

from streams.settings import LoomSettings


def client(
    settings: LoomSettings,
    *,
    decode_responses: bool = False,
    socket_timeout: float | None = 10.0,
) -> redis.Redis:
    """A client of the deployment's Redis."""
    return redis.Redis.from_url(
        settings.redis_url,
        decode_responses=decode_responses,
        socket_timeout=socket_timeout,
        socket_connect_timeout=10.0,
    )
