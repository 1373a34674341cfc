"""Every Redis client Loom makes is built here, from :class:`~streams.settings.LoomSettings`.

* ``redis://`` or ``rediss://`` (TLS, verified against ``LOOM_REDIS_SSL_CA_FILE`` or the
  system's CAs; a client certificate with ``LOOM_REDIS_SSL_CERT_FILE``/``_KEY_FILE``);
* an ACL user and password (``LOOM_REDIS_USERNAME``, ``LOOM_REDIS_PASSWORD``; or in the URL);
* Redis Sentinel (``LOOM_REDIS_SENTINELS``, ``LOOM_REDIS_SENTINEL_MASTER``): the client asks
  the sentinels for the current primary on every new connection, so after a failover the
  workers follow the new primary (a connection to a demoted one fails with ``READONLY``,
  which redis-py turns into a connection error: the batch is retried, never skipped). With
  Sentinel, ``LOOM_REDIS_URL`` gives only the scheme (TLS or not), credentials and database.

What Loom needs from an ACL user is :func:`acl_rules` (the README shows the line).
"""

from __future__ import annotations

from typing import Any, Final

import redis
from redis.connection import parse_url
from redis.sentinel import Sentinel

from streams.resp import RespPacker
from streams.settings import LoomSettings

#: Commands Loom runs (directly, in its Lua scripts, and when connecting), for the ACL user.
COMMANDS: Final = (
    # connecting, health
    "ping", "hello", "auth", "select",
    # Lua: the batch load/commit and the reader's lookup (loaded on first use)
    "evalsha", "eval", "script|load", "script|exists",
    # inside the scripts and in the readers
    "hget", "hmget", "hgetall", "hset", "hsetnx", "hexists", "hincrby", "hdel", "exists", "get",
    "set", "del", "expireat",
    "sadd", "srem", "sismember", "scard", "sscan", "xadd", "xlen",
    # the outbox relay (its Redis consumer group), transactions, replication acknowledgement
    "xgroup|create", "xreadgroup", "xautoclaim", "xack", "xdel", "multi", "exec", "discard",
    "wait",
    # a lane's commit sequence (both commits INCR it, LOOM_REDIS_COMMIT=watch WATCHes it: ADR 0021)
    "incr", "watch", "unwatch",
    # the outbox's length and oldest record (metrics); looking for a lane's state (the
    # generation check, `loom rebuild`) and deleting it (`loom rebuild --wipe`); SCAN also finds a
    # redacted Shopify shop's keys in the gateway's memory
    "xrange", "time", "scan", "unlink",
    # the watch commit trims each change stream once per part (ADR 0028)
    "xtrim",
    # the gateway's Shopify memory: a shop's customers (digest -> id) for ``shop/redact``
    "hscan",
)  # fmt: skip


def acl_rules(prefix: str) -> str:
    """The ACL rules of a user that can run Loom under ``prefix`` and nothing else: its keys
    only (``~<prefix>:*``), no pub/sub channels, the commands in :data:`COMMANDS`."""
    return f"resetkeys ~{prefix}:* resetchannels -@all " + " ".join(f"+{c}" for c in COMMANDS)


def client(
    settings: LoomSettings,
    *,
    decode_responses: bool = False,
    socket_timeout: float | None = 10.0,
) -> redis.Redis:
    """A client of the deployment's Redis primary (through Sentinel when configured).

    Its connections make no retry of their own (redis-py's for a client built from a URL or
    through Sentinel; ``redis.Redis(host=...)`` would retry 10 times): a command whose reply
    was lost may have run, and only its caller knows whether running it again is a repeat.
    The outbox relay's read of new entries is not (``tests/integration/
    test_relay_lost_reply.py``: with retries, a key ended on its older value on its topic)."""
    s = settings
    options: dict[str, Any] = {
        "decode_responses": decode_responses,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": 10.0,
        "command_packer": RespPacker(),  # joined, large arguments uncopied (streams.resp)
        **_auth(s),
        **_tls(s),
    }
    if not s.sentinel_addresses:
        return redis.Redis.from_url(s.redis_url, **options)
    url: dict[str, Any] = parse_url(s.redis_url)  # type: ignore[no-untyped-call]
    options["db"] = url.get("db", 0)
    options.setdefault("username", url.get("username"))
    options.setdefault("password", url.get("password"))
    sentinel_options: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}
    if s.redis_sentinel_password is not None:
        sentinel_options["password"] = s.redis_sentinel_password.get_secret_value()
    if s.redis_tls:
        options["ssl"] = True
        sentinel_options |= {"ssl": True, **_tls(s)}
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        s.sentinel_addresses, sentinel_kwargs=sentinel_options
    )
    master: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        s.redis_sentinel_master or "", redis_class=redis.Redis, **options
    )
    return master


def _auth(s: LoomSettings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if s.redis_username:
        out["username"] = s.redis_username
    if s.redis_password is not None:
        out["password"] = s.redis_password.get_secret_value()
    return out


def _tls(s: LoomSettings) -> dict[str, Any]:
    if not s.redis_tls:
        return {}
    files = {
        "ssl_ca_certs": s.redis_ssl_ca_file,
        "ssl_certfile": s.redis_ssl_cert_file,
        "ssl_keyfile": s.redis_ssl_key_file,
    }
    return {key: str(path) for key, path in files.items() if path is not None}


def describe(settings: LoomSettings) -> str:
    """Where the client connects, for messages (no credentials)."""
    s = settings
    if s.sentinel_addresses:
        hosts = ",".join(f"{h}:{p}" for h, p in s.sentinel_addresses)
        return f"Redis master {s.redis_sentinel_master!r} via sentinels {hosts}"
    url: dict[str, Any] = parse_url(s.redis_url)  # type: ignore[no-untyped-call]
    where = url.get("path") or f"{url.get('host', '?')}:{url.get('port', 6379)}"
    return f"Redis {where}" + (" (TLS)" if s.redis_tls else "")
