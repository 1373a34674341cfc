"""Every bench module imports: ``make bench`` is not part of the test run, and a helper renamed
in ``resolvers`` or ``streams`` would otherwise break it unnoticed (one did, in review)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
MODULES = sorted(p.stem for p in BENCH.glob("*.py") if not p.stem.startswith("__"))


def test_the_bench_modules_are_found() -> None:
    assert {"e2e_bench", "profiles_cpu", "soak_bench"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_a_bench_module_imports(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))  # `python -m bench...` runs from the checkout
    module = importlib.import_module(f"bench.{name}")
    assert module.__name__ == f"bench.{name}"
