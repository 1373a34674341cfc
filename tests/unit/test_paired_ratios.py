"""``bench.redis_floor.add_paired_ratios``: the per-round ratios both Redis-floor benches report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
AddRatios = Callable[[dict[str, Any], str, list[float], str, list[float]], None]


@pytest.fixture(scope="module")
def add_paired_ratios() -> AddRatios:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT))  # `python -m bench...` runs from the checkout
        from bench.redis_floor import add_paired_ratios

        return add_paired_ratios


def test_ratios_round_by_round_and_their_median(add_paired_ratios: AddRatios) -> None:
    row: dict[str, Any] = {}
    add_paired_ratios(row, "cs", [10.0, 30.0, 8.0], "main", [20.0, 20.0, 10.0])
    assert row == {"cs/main": [0.5, 1.5, 0.8], "cs/main median": 0.8}


def test_a_zero_base_round_is_left_out_and_none_left_adds_nothing(
    add_paired_ratios: AddRatios,
) -> None:
    row: dict[str, Any] = {}
    add_paired_ratios(row, "cs", [3.0, 4.0], "main", [0.0, 2.0])
    assert row == {"cs/main": [2.0], "cs/main median": 2.0}
    empty: dict[str, Any] = {}
    add_paired_ratios(empty, "cs", [3.0], "main", [0.0])
    assert empty == {}


def test_rounds_must_pair(add_paired_ratios: AddRatios) -> None:
    with pytest.raises(ValueError, match="shorter"):
        add_paired_ratios({}, "cs", [1.0, 2.0], "main", [1.0])
