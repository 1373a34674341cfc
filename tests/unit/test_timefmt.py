"""resolvers.timefmt: one text per instant, remembered or not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolvers import timefmt
from resolvers.timefmt import TimeFormatError, format_time, parse_time


def test_the_same_instant_in_any_offset_is_written_in_utc_whichever_came_first() -> None:
    oslo = datetime(2026, 11, 22, 11, 15, tzinfo=timezone(timedelta(hours=1)))
    utc = datetime(2026, 11, 22, 10, 15, tzinfo=UTC)
    assert format_time(oslo) == "2026-11-22T10:15:00Z"
    assert format_time(utc) == "2026-11-22T10:15:00Z"
    assert format_time(utc + timedelta(microseconds=7)) == "2026-11-22T10:15:00.000007Z"


def test_a_naive_time_is_refused_even_when_its_aware_twin_was_written() -> None:
    aware = datetime(2026, 11, 22, 10, 15, tzinfo=UTC)
    format_time(aware)
    with pytest.raises(TimeFormatError):
        format_time(aware.replace(tzinfo=None))


def test_the_remembered_texts_stay_bounded_and_right(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timefmt, "_FORMATTED_MAX", 4)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    times = [start + timedelta(seconds=i) for i in range(10)]
    for _ in range(2):
        assert [parse_time(format_time(t)) for t in times] == times
    assert len(timefmt._FORMATTED) <= 4


@given(
    moment=st.datetimes(
        min_value=datetime(2, 1, 1),
        max_value=datetime(9998, 12, 31),
        timezones=st.timezones() | st.just(UTC),
    )
)
def test_a_time_is_written_as_its_utc_isoformat_with_z(moment: datetime) -> None:
    in_utc = moment.astimezone(UTC)
    expected = in_utc.isoformat()[:-6] + "Z"
    assert timefmt.utc_text(in_utc) == expected
    assert format_time(moment) == expected


class _Moment(datetime):
    """A datetime subclass (orjson writes exact datetimes only)."""


def test_a_datetime_subclass_is_written_too() -> None:
    moment = _Moment(2026, 11, 22, 10, 15, 0, 7, tzinfo=UTC)
    assert timefmt.utc_text(moment) == "2026-11-22T10:15:00.000007Z"
