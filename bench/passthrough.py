"""The baseline: a minimal keep-alive uvloop aiohttp pass-through to Prometheus over mTLS.

No authentication, no PromQL, no logging: what any Python proxy costs before it does any work.
Run: `python bench/passthrough.py --port P --upstream https://… --ca … --cert … --key …`.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
from collections.abc import AsyncIterator

import aiohttp
import uvloop
from aiohttp import web

UPSTREAM = web.AppKey("upstream", aiohttp.ClientSession)
BASE = web.AppKey("base", str)
PASSED = ("Content-Type", "Content-Encoding")
FORWARDED = ("Content-Type", "Accept-Encoding")


async def forward(request: web.Request) -> web.StreamResponse:
    """Send the request as it came (path, query, body) and stream the answer back."""
    session = request.app[UPSTREAM]
    body = await request.read() if request.can_read_body else None
    headers = {k: request.headers[k] for k in FORWARDED if k in request.headers}
    async with session.request(
        request.method, request.app[BASE] + request.path_qs, data=body, headers=headers
    ) as upstream:
        out = web.StreamResponse(
            status=upstream.status, headers={k: upstream.headers[k] for k in PASSED if k in upstream.headers}
        )
        if upstream.content_length is not None:
            out.content_length = upstream.content_length
        await out.prepare(request)
        async for chunk in upstream.content.iter_chunked(64 * 1024):
            await out.write(chunk)
        await out.write_eof()
        return out


def build_app(base: str, ctx: ssl.SSLContext) -> web.Application:
    """The pass-through application with one shared keep-alive client session."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)

    async def session(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(ssl=ctx, limit=256, keepalive_timeout=30)
        app[UPSTREAM] = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("Accept-Encoding",)
        )
        app[BASE] = base
        yield
        await app[UPSTREAM].close()

    app.cleanup_ctx.append(session)
    return app


def main() -> None:
    """Serve until killed."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    args = p.parse_args()
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.load_cert_chain(args.cert, args.key)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(
        build_app(args.upstream.rstrip("/"), ctx),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        backlog=1024,
    )


if __name__ == "__main__":
    main()
