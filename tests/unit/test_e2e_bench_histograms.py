"""The e2e bench's reading of the workers' latency histograms: quantiles interpolated inside
a bucket, and the share over a target bound, which is exact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
INF = float("inf")
#: cumulative counts of 1,000 observations: 700 <= 100 ms, 985 <= 250 ms, 995 <= 500 ms
BUCKETS = {0.05: 300.0, 0.1: 700.0, 0.25: 985.0, 0.5: 995.0, 1.0: 1000.0, INF: 1000.0}


@pytest.fixture
def e2e(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(ROOT))  # `python -m bench...` runs from the checkout
    import bench.e2e_bench as module

    return module


def test_the_share_over_a_bucket_bound_is_exact(e2e: Any) -> None:
    assert e2e.share_above(BUCKETS, 0.25) == 1.5
    assert e2e.share_above(BUCKETS, 1.0) == 0.0
    assert e2e.share_above(BUCKETS, 0.2) is None  # not a bound: unknown, not a guess
    assert e2e.share_above({0.25: 0.0, INF: 0.0}, 0.25) is None  # nothing observed


def test_a_quantile_is_interpolated_inside_its_bucket(e2e: Any) -> None:
    assert e2e.bucket_bounds(BUCKETS, 0.99) == "(0.25, 0.5] s"
    assert e2e.bucket_quantile(BUCKETS, 0.99) == pytest.approx(0.25 + 0.25 * 5 / 10)
    assert e2e.bucket_quantile(BUCKETS, 0.5) == pytest.approx(0.05 + 0.05 * 200 / 400)
