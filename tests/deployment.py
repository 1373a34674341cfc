"""A Loom deployment of a test's own on the session's servers: its settings, read from the
environment as a worker reads them, and its topics made; and a quiet ``loom rebuild`` of its
profiles lane (the rebuild tests' common set-up)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from resolvers.pipeline import LANES
from streams.rebuild import Rebuild, Report
from streams.runtime import build_runtime
from streams.settings import LoomSettings, Topics, load_settings
from streams.topics import ensure_topics


def deployment_settings(
    monkeypatch: pytest.MonkeyPatch,
    *,
    kafka_bootstrap: str,
    redis_url: str,
    tag: str,
    raw: str | None = None,
    **env: str,
) -> LoomSettings:
    """Settings under ``tag`` (Redis prefix, app id, every topic ``{tag}.{name}``, but the raw
    topic ``raw`` when given) on one broker, with ``env``'s further ``LOOM_*`` variables; its
    topics are created."""
    variables = {
        "LOOM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "LOOM_REDIS_URL": redis_url,
        "LOOM_REDIS_PREFIX": tag,
        "LOOM_APP_ID": tag,
        "LOOM_REPLICATION_FACTOR": "1",  # the test cluster's one broker
        "LOOM_MIN_INSYNC_REPLICAS": "1",
        **{f"LOOM_TOPIC_{t.upper()}": f"{tag}.{t}" for t in Topics.model_fields},
        **env,
    }
    if raw is not None:
        variables["LOOM_TOPIC_RAW"] = raw
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    ensure_topics(settings)
    return settings


def rebuild(
    settings: LoomSettings,
    cls: type[Rebuild] = Rebuild,
    *,
    lane: str = "profiles",
    **options: Any,
) -> Report:
    """``loom rebuild --lane {lane}`` of ``settings``'s deployment (``options``: the
    command's, e.g. ``wipe=True``), its progress lines dropped."""
    rt = build_runtime(settings, LANES[lane])
    try:
        return asyncio.run(cls(rt, progress=lambda _: None, **options).run())
    finally:
        rt.redis.close()
