"""Upstream answers read whole (bounded) and decoded; the headers passed back to the caller.

Streaming to the caller is `proxy.answering.stream_answer`."""

from __future__ import annotations

import json
import zlib
from typing import Any

import aiohttp
from multidict import CIMultiDict

from proxy import errors

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
