"""The demo's audiences: who marketing reaches now, and who the clock brings in.

The demo's workers load ``deploy/demo/audiences.toml`` (unless ``LOOM_AUDIENCES_FILE`` names
another file), so every profile write already placed people in the audiences that do not
depend on time. The simulated events happened on one morning; the story then runs the
scheduled pass (the one ``loom audiences refresh`` and the workers run) with its clock moved
170 days on, and shows who entered the shoe reminder without any new event, and how many
matched but stay out because they did not grant marketing.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final, TextIO

import redis

from resolvers.audiences import Audiences, Env
from streams.audience_refresh import AudienceRefresh, read_medians
from streams.cli.audiences import fenced_store
from streams.reader import ProfileReader
from streams.redis_keys import Keys
from streams.runtime import base_context, configured_audiences, configured_rules
from streams.settings import LoomSettings

#: The audiences of the demo (``LOOM_AUDIENCES_FILE`` of its workers unless set).
DEMO_AUDIENCES: Final = Path(__file__).resolve().parents[2] / "deploy" / "demo" / "audiences.toml"
#: How far the story moves the pass's clock past the simulated morning.
LATER: Final = timedelta(days=170)


def tell(settings: LoomSettings, reader: ProfileReader, events_at: datetime, out: TextIO) -> None:
    audiences = configured_audiences(settings)
    if not audiences.by_name:
        print("(no audiences defined: set LOOM_AUDIENCES_FILE)", file=out)
        return
    client, keys = reader.client, Keys(settings.redis_prefix)
    print("Members now, placed by the workers as each profile was written:", file=out)
    _sizes(audiences, client, keys, out)

    later = events_at + LATER
    context = base_context(settings, *configured_rules(settings), audiences)
    medians = read_medians(client, keys)
    store = fenced_store(client, settings)  # as ``loom audiences refresh``
    report = AudienceRefresh(
        store, client, lambda: replace(context, now=later, medians=medians)
    ).run()
    print(
        f"\n{LATER.days} days later ({later:%Y-%m-%d}), no new event: the scheduled pass re-read "
        f"{report.profiles} profiles in {report.seconds:.1f} s, "
        f"{sum(report.entered.values())} entered, {sum(report.exited.values())} left:",
        file=out,
    )
    _sizes(audiences, client, keys, out)
    _marketing_gate(audiences, reader, later, keys, out)


def _sizes(audiences: Audiences, client: redis.Redis, keys: Keys, out: TextIO) -> None:
    for a in audiences:
        size = client.scard(keys.audience(a.name))
        tag = " [needs marketing consent]" if a.marketing else ""
        print(f"  {a.name:<16} {size:>6}  {a.description}{tag}", file=out)


def _marketing_gate(
    audiences: Audiences,
    reader: ProfileReader,
    at: datetime,
    keys: Keys,
    out: TextIO,
) -> None:
    """For the first marketing audience: how many match its expression but are not members
    (no marketing consent)."""
    audience = next((a for a in audiences if a.marketing), None)
    if audience is None:
        return
    client = reader.client
    medians = read_medians(client, keys)
    matching = sum(
        1 for doc in reader.iter_profiles() if audience.expression.matches(Env(doc, at, medians))
    )
    members = client.scard(keys.audience(audience.name))
    print(
        f"{matching} profiles match {audience.name}'s expression; {members} are members: "
        f"the other {matching - members} did not grant marketing, so no reminder reaches them.",
        file=out,
    )
