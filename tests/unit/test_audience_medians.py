"""The audience pass's category medians, counted (``streams.audience_refresh._median``): the
median of the values a ``Counter`` counts is ``statistics.median`` of them all."""

from __future__ import annotations

import statistics
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.audience_refresh import _median


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.integers(0, 400).map(lambda d: d / 2), min_size=1, max_size=60))
def test_the_median_of_counted_intervals_is_the_median_of_them_all(values: list[float]) -> None:
    assert _median(Counter(values)) == statistics.median(values)
