"""Hashed identifiers for ad platforms' customer-list matching (``ad_identifiers``).

Shown only while ``ads`` is granted now (``PURPOSE_GATES``: render empties the field the
moment a withdrawal or GPC denies it). Each entry is ``<kind>:<SHA-256 hex>``:

* ``sha256_email``: the email trimmed and lowercased, UTF-8, SHA-256, lowercase hex: what
  Google Ads Customer Match and Meta custom audiences both expect (Loom stores emails trimmed
  and lowercased already; with ``NormalizeConfig.gmail_normalization``, off by default, a
  gmail address has its dots and ``+tag`` removed, as Google recommends for gmail.com);
* ``sha256_phone``: the E.164 number with its leading ``+`` (``+4791234567``): Google Ads
  Customer Match's format;
* ``sha256_phone_digits``: the same number's digits without ``+`` (``4791234567``): Meta's
  format (country code, no symbols, no leading zeros).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from hashlib import sha256


def _hex(text: str) -> str:
    return sha256(text.encode()).hexdigest()


def ad_identifiers(identifiers: Mapping[str, Sequence[str]]) -> list[str]:
    """The hashed entries of a profile's emails and phones, sorted."""
    out: set[str] = set()
    for email in identifiers.get("email", ()):
        out.add(f"sha256_email:{_hex(email.strip().lower())}")
    for phone in identifiers.get("phone", ()):
        if phone.startswith("+") and phone[1:].isdigit():
            out.add(f"sha256_phone:{_hex(phone)}")
            out.add(f"sha256_phone_digits:{_hex(phone[1:])}")
    return sorted(out)
