"""An erased profile's snapshots leave ``profiles.changes`` within a bound, on a real broker.

The topic is compacted: an erasure ends a profile's records with a tombstone, and the log
cleaner removes the records before it, which hold the person (identifiers, traits, unsalted
``ad_identifiers``). Without ``max.compaction.lag.ms`` the cleaner never touches the active
segment (rolled after ``segment.ms``, 7 days) and skips a log whose dirty ratio is under
``min.cleanable.dirty.ratio`` (0.5): a busy topic kept an erased person's snapshots for good.
Loom creates the topic with ``LOOM_ERASURE_COMPACTION_LAG_MS`` as that lag (here a second): the
next record after it rolls the segment, and the cleaner removes them (polled for, within the
broker's cleaner back-off of 15 s plus slack)."""

from __future__ import annotations

import time
import uuid

import orjson
from confluent_kafka import Producer
from topic_reader import end_offsets, read_topic

from streams.settings import LoomSettings, Topics
from streams.topics import ensure_topics

EMAIL = "erased.person@example.com"


def test_an_erased_profiles_snapshots_are_compacted_away_after_the_lag(
    kafka_bootstrap: str,
) -> None:
    tag = uuid.uuid4().hex[:10]
    settings = LoomSettings(
        kafka_bootstrap=kafka_bootstrap,
        topics=Topics(**{name: f"ec{tag}.{name}" for name in Topics.model_fields}),
        development=True,
        erasure_compaction_lag_ms=1000,
    )
    ensure_topics(settings)
    topic = settings.topics.profile_changes
    end_offsets(kafka_bootstrap, topic)  # every partition has its leader before reading
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    snapshot = {"profile_id": "p_1", "identifiers": {"email": [EMAIL]}}
    # a live profile's snapshot beside her (the dirty ratio stays under one half)
    for n in range(4):
        producer.produce(
            topic, orjson.dumps({"profile_id": f"p_other{n}"}), f"p_other{n}", partition=0
        )
    producer.produce(topic, orjson.dumps(snapshot), b"p_1", partition=0)
    producer.produce(topic, None, b"p_1", partition=0)  # her erasure's tombstone
    assert producer.flush(30) == 0

    def held() -> list[bytes]:
        return [
            m.value()
            for m in read_topic(kafka_bootstrap, topic)
            if EMAIL.encode() in (m.value() or b"")
        ]

    assert held()
    deadline = time.monotonic() + 90
    n = 0
    while held() and time.monotonic() < deadline:
        # the shop's traffic goes on: a later profile's record rolls the segment past the lag
        producer.produce(topic, orjson.dumps({"profile_id": "p_next"}), f"p_next{n}", partition=0)
        producer.flush(30)
        n += 1
        time.sleep(2)
    assert held() == [], f"still on {topic} after 90 s"
