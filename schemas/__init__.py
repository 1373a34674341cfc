"""Loom's event contract: touchpoint v1 models, identifiers and their normalization."""
