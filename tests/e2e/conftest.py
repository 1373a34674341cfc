"""End-to-end tier fixtures (the harness lives in ``e2e_harness``)."""

from e2e_harness import loom

__all__ = ["loom"]
