"""``bench.profiles_cpu`` names the build of the pipeline it measured (ADR 0015): a figure of a
compiled build must never pass for one of the Python source, nor the other way round."""

from __future__ import annotations

import importlib
import importlib.machinery
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def profiles_cpu(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT))  # `python -m bench...` runs from the checkout
    return importlib.import_module("bench.profiles_cpu")


def test_the_source_build_is_reported_pure(profiles_cpu: ModuleType) -> None:
    import resolvers.pipeline

    assert resolvers.pipeline.__file__ is not None
    if not resolvers.pipeline.__file__.endswith(".py"):
        pytest.skip("this interpreter imports a compiled resolvers.pipeline")
    assert profiles_cpu.pipeline_build() == "pure"


@pytest.mark.parametrize("suffix", importlib.machinery.EXTENSION_SUFFIXES)
def test_an_extension_module_is_reported_compiled(
    profiles_cpu: ModuleType, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    import resolvers.pipeline

    monkeypatch.setattr(resolvers.pipeline, "__file__", f"/site/resolvers/pipeline{suffix}")
    assert profiles_cpu.pipeline_build() == "compiled"
