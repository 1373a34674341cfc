"""Secrets never reach a log line, an error message or a ``repr``: the redaction helpers.

Settings keep secrets as :class:`pydantic.SecretStr` (masked in ``repr``); what remains are
secrets inside strings that are not secret as a whole: a Redis URL with a password in its
user info, a librdkafka configuration with ``sasl.password``, an exception message that
quotes either. Everything Loom prints about a connection goes through these.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

MASK: Final = "***"

#: librdkafka configuration keys whose values are secrets.
_SECRET_KEY = re.compile(r"(password|secret|\.pem$|oauthbearer\.config)", re.IGNORECASE)
#: ``scheme://user:password@host``: the password part of any URL in free text.
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?=@)", re.I)
#: ``?password=...``: a password given as a URL's query argument (redis-py reads it).
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&][a-z_]*password=)(?P<pw>[^&#\s]+)", re.I)


def redact_url(url: str) -> str:
    """``url`` with the password of its user info masked (``rediss://loom:***@host:6380/0``),
    and one given as a query argument (``?password=***``)."""
    url = _QUERY_PASSWORD.sub(lambda m: m["head"] + MASK, url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return _URL_PASSWORD.sub(lambda m: m["head"] + MASK, url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}{port}"))


def is_secret_key(key: str) -> bool:
    """Whether a librdkafka configuration key's value is a secret (``sasl.password``,
    ``ssl.key.pem``, ``sasl.oauthbearer.config``, ...)."""
    return _SECRET_KEY.search(key) is not None


def redact_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A client configuration with the values of secret keys masked (for logs and errors)."""
    return {k: (MASK if is_secret_key(k) and v else v) for k, v in config.items()}


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with URL passwords and every one of ``secrets`` (non-empty ones) masked."""
    out = _URL_PASSWORD.sub(lambda m: m["head"] + MASK, text)
    out = _QUERY_PASSWORD.sub(lambda m: m["head"] + MASK, out)
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        out = out.replace(secret, MASK)
    return out
