"""Redis connection options shared by the reader commands (``profile``, ``inventory``)."""

from __future__ import annotations

import argparse

import redis

from streams.settings import LoomSettings, load_settings


def add_redis_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis-url", help="Redis URL (default: LOOM_REDIS_URL)")
    p.add_argument("--prefix", help="Redis key prefix (default: LOOM_REDIS_PREFIX)")


def redis_target(args: argparse.Namespace) -> tuple[redis.Redis, str, LoomSettings]:
    """The client and key prefix the arguments (else the settings) name, and the settings."""
    settings = load_settings()
    client = redis.Redis.from_url(args.redis_url or settings.redis_url, decode_responses=False)
    return client, args.prefix or settings.redis_prefix, settings
