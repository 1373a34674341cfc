"""Which interpreter `make venv` makes .venv from (ADR 0041): the distribution's python3.11 when it
can make a venv, else python3.11 on the PATH; PYTHON= overrides. Read from `make -n` (nothing
runs) on a copy of the Makefile."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def venv_recipe(tmp_path: Path, *overrides: str) -> str:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "requirements.lock").touch()
    (tmp_path / "pyproject.toml").touch()
    # a PYTHON or MAKEFLAGS of the caller's shell would override the Makefile's choice
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "MAKEFLAGS", "MFLAGS")}
    done = subprocess.run(
        ["make", "-n", "venv", *overrides],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout


def fake_python(tmp_path: Path, name: str, exit_code: int) -> Path:
    """An executable standing in for an interpreter: `-c 'import ensurepip, venv'` exits so."""
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\nexit {exit_code}\n")
    path.chmod(0o755)
    return path


def test_the_distribution_python_when_it_can_make_a_venv(tmp_path: Path) -> None:
    distro = fake_python(tmp_path, "distro-python", 0)
    recipe = venv_recipe(tmp_path, f"DISTRO_PYTHON={distro}")
    assert f"{distro} -m venv .venv" in recipe


def test_python_on_the_path_when_the_distribution_one_cannot(tmp_path: Path) -> None:
    broken = fake_python(tmp_path, "no-venv-python", 1)  # e.g. Debian without python3.11-venv
    recipe = venv_recipe(tmp_path, f"DISTRO_PYTHON={broken}")
    assert "python3.11 -m venv .venv" in recipe
    assert str(broken) not in recipe


def test_python_on_the_path_when_there_is_no_distribution_one(tmp_path: Path) -> None:
    recipe = venv_recipe(tmp_path, f"DISTRO_PYTHON={tmp_path / 'absent'}")
    assert "python3.11 -m venv .venv" in recipe


def test_an_explicit_python_wins(tmp_path: Path) -> None:
    distro = fake_python(tmp_path, "distro-python", 0)
    recipe = venv_recipe(tmp_path, f"DISTRO_PYTHON={distro}", "PYTHON=/opt/py311/bin/python3.11")
    assert "/opt/py311/bin/python3.11 -m venv .venv" in recipe
    assert str(distro) not in recipe
