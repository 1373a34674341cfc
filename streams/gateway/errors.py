"""Gateway errors, classified once, and the HTTP answer each gets.

Hierarchy::

    LoomError
    └── GatewayError            a request answered with an error (status, code)
        ├── BadRequestError     400 invalid_request: not JSON, not gzip, not the API's shape
        │   └── TooLargeError   400 too_large: over the event or batch limit (Segment answers
        │                       size errors with 400, and its SDKs do not retry them)
        ├── UnauthorizedError   401 unauthorized: missing or unknown write key (counted)
        ├── NotFoundError       404 not_found: no such profile or audience (lookup API)
        ├── OverloadedError     429 overloaded + Retry-After: too many events await Kafka's
        │                       ack, the producer's local queue is full, or too many requests
        │                       are being received; nothing of the request was accepted
        ├── UnavailableError    503 unavailable + Retry-After: Kafka did not acknowledge every
        │                       event in time; the client retries, and the workers drop what
        │                       arrived twice (same event ids)
        └── BodyTimeoutError    503 body_timeout + Retry-After, connection closed: the body did
                                not all arrive within LOOM_GATEWAY_BODY_TIMEOUT_S of the
                                headers. Not 408: the SDKs drop a batch on any 4xx but 429,
                                and a sender on a slow link must retry, not lose it

The body has Segment's error shape, ``{"success": false, "code": ..., "message": ...}``,
which the SDKs read. Messages never contain request values.
"""

from __future__ import annotations

from typing import Any, ClassVar

from aiohttp import web

from schemas.errors import LoomError

#: Seconds a client is asked to wait after a 429 / 503.
RETRY_AFTER_OVERLOADED_S = 1
RETRY_AFTER_UNAVAILABLE_S = 5


class GatewayError(LoomError):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    retry_after: ClassVar[int | None] = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"success": False, "code": self.code, "message": self.message}

    def response(self) -> web.Response:
        headers = {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}
        return web.json_response(self.body(), status=self.status, headers=headers)


class BadRequestError(GatewayError):
    status = 400
    code = "invalid_request"


class TooLargeError(BadRequestError):
    code = "too_large"


class UnauthorizedError(GatewayError):
    status = 401
    code = "unauthorized"


class NotFoundError(GatewayError):
    status = 404
    code = "not_found"


class OverloadedError(GatewayError):
    status = 429
    code = "overloaded"
    retry_after = RETRY_AFTER_OVERLOADED_S


class UnavailableError(GatewayError):
    status = 503
    code = "unavailable"
    retry_after = RETRY_AFTER_UNAVAILABLE_S


class BodyTimeoutError(GatewayError):
    status = 503
    code = "body_timeout"
    retry_after = RETRY_AFTER_UNAVAILABLE_S

    def response(self) -> web.Response:
        response = super().response()
        response.force_close()  # Connection: close; the rest of the body is not waited for
        return response
