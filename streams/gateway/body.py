"""Reading a request body within a size limit, gzip included, for every front door.

The limit applies to the decompressed bytes (what Segment's limits mean), and neither the
compressed body nor its expansion is ever held beyond ``limit + 1`` bytes, so a gzip bomb costs
the gateway at most the limit.
"""

from __future__ import annotations

import asyncio
import zlib

from aiohttp import web

from streams.gateway.errors import BadRequestError, BodyTimeoutError, TooLargeError

_READ_CHUNK = 64 * 1024


async def read_body(request: web.Request, limit: int, timeout_s: float) -> bytes:
    """The request body, decompressed when ``Content-Encoding: gzip``; raises
    :class:`TooLargeError` past ``limit`` bytes, :class:`BadRequestError` for a broken gzip
    stream or an encoding other than gzip, and :class:`BodyTimeoutError` when the body has not
    all arrived ``timeout_s`` after the call (the handler's start: its headers are in). The
    request holds one of the gateway's admission slots (``streams.gateway.app.admit``) while
    it is read: without a deadline a client trickling its body held it for as long as it
    kept the connection open."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip"):
        raise BadRequestError(f"Content-Encoding {encoding[:32]!r} is not supported (use gzip)")
    if request.content_length is not None and request.content_length > limit:
        raise TooLargeError(f"body is {request.content_length} bytes, limit {limit}")
    raw = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            while chunk := await request.content.read(_READ_CHUNK):
                raw += chunk
                if len(raw) > limit:
                    raise TooLargeError(f"body is over the limit of {limit} bytes")
    except TimeoutError:
        raise BodyTimeoutError(f"the body did not arrive within {timeout_s:g} s") from None
    if encoding == "identity":
        return bytes(raw)
    return gunzip(bytes(raw), limit)


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress one gzip stream, never producing more than ``limit + 1`` bytes."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error:
        raise BadRequestError("body is not valid gzip") from None
    if len(out) > limit:
        raise TooLargeError(f"body is over the limit of {limit} bytes once decompressed")
    if not inflater.eof:
        raise BadRequestError("body is not valid gzip (truncated)")
    return out
