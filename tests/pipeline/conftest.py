"""Pipeline tier fixtures (helpers live in ``pipeline_helpers``)."""

from pipeline_helpers import run, store

__all__ = ["run", "store"]
