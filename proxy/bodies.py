"""Upstream answers: streamed to the caller as they come, or read whole (bounded) and decoded."""

from __future__ import annotations

import json
import zlib
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from multidict import CIMultiDict

from proxy import errors

log = structlog.get_logger(__name__)

# Response headers passed back to the caller; WWW-Authenticate and Set-Cookie never are.
PASSED_RESPONSE_HEADERS = (
    "Content-Type",
    "Content-Encoding",
    "Cache-Control",
    "Vary",
    "Expires",
    "Last-Modified",
    "ETag",
    "Warning",
)
CHUNK = 64 * 1024
# Answers the proxy filters (rules, alerts, metadata) are read whole and decoded in one block of
# the event loop, so their decoded size is bounded by PROXY_MAX_FILTERED_BYTES (docs/operations.md).
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def too_large(limit: int) -> errors.UpstreamUnavailable:
    """The 502 for an answer to filter over `limit` bytes, naming the bound that refused it."""
    return errors.UpstreamUnavailable(
        f"upstream answer over {limit} bytes, the limit for answers the proxy filters "
        "(PROXY_MAX_FILTERED_BYTES)"
    )


def decode_json(raw: bytes, encoding: str, limit: int) -> Any:
    """Decode a (possibly gzip/deflate) upstream JSON body of at most `limit` decoded bytes;
    502 when it is not JSON or is larger."""
    try:
        if encoding in _WBITS:
            # Decompress no further than the limit: a small gzip body may expand a thousandfold.
            inflate = zlib.decompressobj(_WBITS[encoding])
            raw = inflate.decompress(raw, limit + 1)
            if len(raw) > limit or inflate.unconsumed_tail:
                raise too_large(limit)
        elif encoding not in ("", "identity"):
            raise ValueError(encoding)
        if len(raw) > limit:
            raise too_large(limit)
        return json.loads(raw)
    except (OSError, ValueError, zlib.error) as exc:
        raise errors.UpstreamUnavailable("upstream answer could not be decoded") from exc


def response_headers(response: aiohttp.ClientResponse) -> CIMultiDict[str]:
    """The upstream response headers that are passed back to the caller."""
    out: CIMultiDict[str] = CIMultiDict()
    for name in PASSED_RESPONSE_HEADERS:
        for value in response.headers.getall(name, ()):
            out.add(name, value)
    return out


async def stream(request: web.Request, response: aiohttp.ClientResponse) -> web.StreamResponse:
    """Stream an upstream response to the caller chunk by chunk (no whole-body buffering)."""
    out = web.StreamResponse(status=response.status, headers=response_headers(response))
    if response.content_length is not None:
        out.content_length = response.content_length
    try:
        await out.prepare(request)
        async for chunk in response.content.iter_chunked(CHUNK):
            await out.write(chunk)
        await out.write_eof()
    except TimeoutError:
        # Headers already went out: all we can do is cut the connection.
        log.warning("upstream_body_timeout")
        if request.transport is not None:
            request.transport.close()
    except ConnectionResetError:
        # The caller went away mid-answer (a closed dashboard tab): not an unhandled proxy error.
        log.info("client_disconnected")
    except aiohttp.ClientError as exc:
        # The upstream body broke off (reset, truncated): cut the caller's connection too, or it
        # waits forever for the rest of a Content-Length the proxy already promised.
        log.warning("upstream_body_failed", error=type(exc).__name__)
        if request.transport is not None:
            request.transport.close()
    finally:
        response.release()
    return out


async def read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """Read a whole upstream body up to `limit` bytes (for endpoints whose answer is filtered)."""
    data = bytearray()
    try:
        async for chunk in response.content.iter_chunked(CHUNK):
            data.extend(chunk)
            if len(data) > limit:
                raise too_large(limit)
    except TimeoutError as exc:
        raise errors.UpstreamTimeout("upstream did not answer in time") from exc
    except aiohttp.ClientError as exc:
        raise errors.UpstreamUnavailable("upstream connection failed") from exc
    finally:
        response.release()
    return bytes(data)
