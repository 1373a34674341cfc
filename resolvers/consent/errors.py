"""Consent errors, one tree:

ValueError
 └── ConsentError
      ├── PolicyError          bad policy file / values (fails at start-up)
      └── ConsentStateError    stored consent state that cannot be read (the store's
                               decoder treats the person as having denied everything)
"""

from __future__ import annotations


class ConsentError(ValueError):
    """Base class of consent errors."""


class PolicyError(ConsentError):
    """The consent policy is invalid."""


class ConsentStateError(ConsentError):
    """A stored consent history cannot be decoded."""
