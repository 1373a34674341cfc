"""OAUTHBEARER for the aiokafka (faust) clients: OIDC client-credentials tokens.

librdkafka fetches its tokens itself (``sasl.oauthbearer.method=oidc``, configured in
:mod:`streams.kafka_clients`); aiokafka needs a token provider, which this is. Both do the
same request (RFC 6749 section 4.4): ``POST`` to the token endpoint with
``grant_type=client_credentials`` (and ``scope`` when set), the client id and secret as HTTP
Basic credentials, and read ``access_token`` and ``expires_in`` from the JSON answer. A token
is reused until 80 % of its lifetime has passed.

The client secret never appears in a log line or an error: failures name the endpoint and the
HTTP status only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from streams.settings import LoomSettings


class TokenError(RuntimeError):
    """The token endpoint did not issue a token (one line, no secret)."""


@dataclass
class ClientCredentialsProvider:
    """Fetches and caches access tokens with the client-credentials grant."""

    token_url: str
    client_id: str
    client_secret: SecretStr = field(repr=False)
    scope: str | None = None
    extensions: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _token: str | None = field(default=None, init=False, repr=False)
    _renew_at: float = field(default=0.0, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @classmethod
    def from_settings(cls, settings: LoomSettings) -> ClientCredentialsProvider:
        s = settings
        secret = s.kafka_oauth_client_secret
        if not (s.kafka_oauth_token_url and s.kafka_oauth_client_id and secret):
            raise ValueError("OAUTHBEARER needs the token URL, client id and client secret")
        return cls(
            token_url=s.kafka_oauth_token_url,
            client_id=s.kafka_oauth_client_id,
            client_secret=secret,
            scope=s.kafka_oauth_scope,
            extensions=parse_extensions(s.kafka_oauth_extensions),
        )

    def token(self) -> str:
        """A valid access token (blocking: fetched when none is cached or it is due)."""
        with self._lock:
            if self._token is None or self.clock() >= self._renew_at:
                token, lifetime = self._fetch()
                self._token, self._renew_at = token, self.clock() + 0.8 * lifetime
            return self._token

    def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        basic = f"{self.client_id}:{self.client_secret.get_secret_value()}".encode()
        request = urllib.request.Request(  # noqa: S310 - the operator's configured URL
            self.token_url,
            data=urllib.parse.urlencode(form).encode(),
            headers={
                "Authorization": "Basic " + base64.b64encode(basic).decode(),
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:  # noqa: S310
                body: Any = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the response (and its socket)
            raise TokenError(f"token endpoint {self.token_url} answered {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TokenError(f"token endpoint {self.token_url} failed: {reason}") from None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise TokenError(f"token endpoint {self.token_url} returned no access_token")
        lifetime = body.get("expires_in", 300)
        return token, float(lifetime) if isinstance(lifetime, int | float) else 300.0


def parse_extensions(text: str | None) -> dict[str, str]:
    """``k=v,k=v`` (librdkafka's ``sasl.oauthbearer.extensions`` format) as a dict."""
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        if item.strip():
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError("LOOM_KAFKA_OAUTH_EXTENSIONS must be k=v,k=v")
            out[key.strip()] = value.strip()
    return out


def aiokafka_provider(provider: ClientCredentialsProvider) -> Any:
    """``provider`` as aiokafka's ``AbstractTokenProvider`` (the fetch runs in a thread)."""
    from aiokafka.conn import AbstractTokenProvider  # type: ignore[import-untyped]

    class _Provider(AbstractTokenProvider):  # type: ignore[misc]
        async def token(self) -> str:
            return await asyncio.to_thread(provider.token)

        def extensions(self) -> dict[str, str]:
            return dict(provider.extensions)

    return _Provider()
