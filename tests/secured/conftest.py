"""Secured tier fixtures: it reuses the e2e tier's harness (real worker processes)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from e2e_harness import loom

__all__ = ["loom"]
