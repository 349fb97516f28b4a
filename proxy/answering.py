"""Forwarding a planned query: one request, streamed with the proxy's warnings spliced in, or — for
a top-level range selector only — one request per branch, merged (docs/authorization.md)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import aiohttp
import structlog
from aiohttp import web
from multidict import CIMultiDict

from proxy import errors, promql
from proxy.audit import hook as audit
from proxy.bodies import CHUNK
from proxy.coalesce import Answer
from proxy.fanout import BranchAnswer, merge, run_branches
from proxy.results.cache import Lookup, ResultsCache, note_outcome
from proxy.results.key import request_key
from proxy.results.request import caller_refuses_cache
from proxy.splice import WarningSplicer
from proxy.upstream import Upstream, UpstreamRequest

log = structlog.get_logger(__name__)

# Total bytes the branches of one fan-out may answer together (a proxy bound, named in the 400).
FANOUT_MAX_BYTES = 64 * 1024 * 1024
Build = Callable[[str], UpstreamRequest]


def _unencoded(headers: CIMultiDict[str]) -> CIMultiDict[str]:
    """Ask the upstream for an unencoded answer: the proxy edits or merges it."""
    headers.popall("Accept-Encoding", None)
    headers["Accept-Encoding"] = "identity"
    return headers


async def forward_planned(
    request: web.Request,
    upstream: Upstream,
    forward: promql.Forward,
    build: Build,
    admission: Callable[[], AbstractAsyncContextManager[None]],
    results: tuple[ResultsCache, Lookup] | None = None,
) -> web.StreamResponse:
    """Send `forward` upstream inside one admission: fanned out and merged, answered by the
    results cache (`results`: the cache and what it needs to know of the query), or streamed."""
    if forward.fan_out:
        async with admission():
            return await _fan_out(request, upstream, forward, build)
    built = build(forward.texts[0])
    if results is not None:
        cache, lookup = results
        reason = "no-cache" if caller_refuses_cache(request) else cache.applies(built, lookup)
        if reason is None:
            out = await cache.answer(request, upstream, built, lookup, forward.warnings, admission)
            if out is not None:
                return out
        note_outcome("bypass")
    return await forward_with_warnings(request, upstream, built, forward.warnings, admission)


async def forward_with_warnings(
    request: web.Request,
    upstream: Upstream,
    built: UpstreamRequest,
    warnings: tuple[str, ...],
    admission: Callable[[], AbstractAsyncContextManager[None]],
) -> web.StreamResponse:
    """Send one request inside one admission; stream the answer, `warnings` spliced into a 200.
    An identical request in flight is not sent again: its answer is shared (docs/caching.md)."""
    headers = upstream.headers_for(request, built.form is not None)
    if warnings:
        _unencoded(headers)

    async def send() -> aiohttp.ClientResponse:
        audit.note_forwarding()
        return await upstream.send(built, headers)

    async def respond(answer: Answer) -> web.StreamResponse:
        audit.note_forwarding()  # a follower's too: it is answered with what was forwarded for it
        audit.note_upstream(answer.status)
        out = await stream_answer(request, answer, warnings)
        audit.note_bytes(out.body_length)
        return out

    key = request_key(upstream, built, headers) if upstream.coalescer.enabled else b""
    out: web.StreamResponse = await upstream.coalescer.stream(key, send, respond, admission)
    return out


async def _fan_out(
    request: web.Request, upstream: Upstream, forward: promql.Forward, build: Build
) -> web.StreamResponse:
    total = [0]

    async def ask(text: str) -> BranchAnswer:
        built = build(text)
        headers = _unencoded(upstream.headers_for(request, built.form is not None))
        response = await upstream.send(built, headers)
        audit.note_upstream(response.status)
        body = bytearray()
        try:
            async for chunk in response.content.iter_chunked(CHUNK):
                body += chunk
                total[0] += len(chunk)
                if total[0] > FANOUT_MAX_BYTES:
                    break  # merge() names the bound
        except TimeoutError as exc:
            raise errors.UpstreamTimeout("upstream did not answer in time") from exc
        except aiohttp.ClientError as exc:
            raise errors.UpstreamUnavailable("upstream connection failed") from exc
        finally:
            response.release()
        return BranchAnswer(response.status, response.headers.get("Content-Type", ""), bytes(body))

    audit.note_forwarding()
    answers = await run_branches(forward.texts, ask)
    merged = merge(answers, forward.warnings, FANOUT_MAX_BYTES)
    out = web.Response(status=merged.status, body=merged.body)
    out.headers["Content-Type"] = merged.content_type or "application/json"
    audit.note_bytes(len(merged.body))
    return out


async def stream_answer(
    request: web.Request, answer: Answer, warnings: tuple[str, ...] = ()
) -> web.StreamResponse:
    """Stream an upstream answer to the caller as it arrives (no whole-body buffering); `warnings`
    are spliced into the end of an unencoded 200 JSON answer (no decoding)."""
    head = answer.head
    encoded = head.headers.get("Content-Encoding", "identity").lower() != "identity"
    splicer = WarningSplicer(warnings) if warnings and head.status == 200 and not encoded else None
    out = web.StreamResponse(status=head.status, headers=CIMultiDict(head.headers))
    if splicer is None and head.content_length is not None:
        out.content_length = head.content_length
    try:
        await out.prepare(request)
        async for chunk in answer.chunks():
            ready = chunk if splicer is None else splicer.feed(chunk)
            if ready:
                await out.write(ready)
        if splicer is not None:
            await out.write(splicer.finish())
        await out.write_eof()
    except ConnectionResetError:
        # The caller went away mid-answer (a closed dashboard tab): not an unhandled proxy error.
        log.info("client_disconnected")
    except (TimeoutError, aiohttp.ClientError) as exc:
        # Headers already went out: all we can do is cut the connection, or the caller waits
        # forever for the rest of a Content-Length the proxy already promised.
        log.warning("upstream_body_failed", error=type(exc).__name__)
        if request.transport is not None:
            request.transport.close()
    finally:
        answer.release()
    return out
