"""resolvers.stages.observe: what the profile sees of an event, whoever read its time and
consent (the profiles lane reads them once per batch and hands them over)."""

from __future__ import annotations

import itertools

from resolvers.stages.observe import event_consent, observation
from resolvers.timefmt import utc
from schemas.touchpoint import dump_touchpoint, parse_touchpoint
from streams.simulate import Simulator


def test_an_observation_is_the_same_with_the_time_and_consent_read_by_the_lane() -> None:
    # parsed as the lane parses them: their times carry pydantic's UTC, not datetime.UTC
    events = [
        parse_touchpoint(dump_touchpoint(tp))
        for tp in itertools.islice(Simulator(3, 200, 3, 40).events(), 3000)
    ]
    assert any(tp.occurred_at.tzinfo is not utc(tp.occurred_at).tzinfo for tp in events)
    for tp in events:
        handed = observation(tp, utc(tp.occurred_at), event_consent(tp))
        assert handed == observation(tp), tp.event_id
        assert handed.at == tp.occurred_at
        assert handed.at.tzinfo is utc(handed.at).tzinfo  # normalized once, to UTC
