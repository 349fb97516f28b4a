"""The results cache between verify and the upstream (docs/caching.md).

A step-aligned `query_range` is answered from stored pieces (one per day-long bucket of its step
grid) plus what the upstream adds for the missing stretches; an instant query whose whole reach is
older than the freshness window is stored whole. Only raw upstream answers are stored (200,
`success`, no `warnings`/`infos`); the caller's warnings are added per caller after the cache.
Anything else — or any doubt — forwards the caller's request unchanged, uncached.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from multidict import CIMultiDict

from proxy import caches, caps, context, errors, lookback, metrics
from proxy.audit import hook as audit
from proxy.bodies import read_bounded
from proxy.coalesce import Admission, Whole
from proxy.config import Settings
from proxy.promql import nodes as n
from proxy.promql.cache import BoundedLRU
from proxy.results.admission import SharedAdmission
from proxy.results.backends import Backend
from proxy.results.extents import (
    Extent,
    Grid,
    Piece,
    assemble,
    decode_extents,
    encode_extents,
    extent_from_answer,
    grid_of,
    missing,
    pieces,
    trimmed,
    union,
)
from proxy.results.key import request_key
from proxy.results.request import accepts_gzip, ms, param, with_bounds
from proxy.results.stretches import consecutive, joined, only_a_short_tail, outcome_of
from proxy.splice import WarningSplicer
from proxy.upstream import Upstream, UpstreamRequest

log = structlog.get_logger(__name__)

# Parameters a range request varies itself (the pieces are keyed without them) and that make an
# answer unfit to share (per-execution statistics).
RANGE_BOUNDS = frozenset({"start", "end"})
UNSHARED = frozenset({"stats"})
# Missing stretches of one request fetched at once (one admission holds them all).
FETCH_CONCURRENCY = 4
# Answers over GZIP_FROM bytes are compressed once per assembly (over THREAD_FROM: off the loop).
GZIP_FROM = 1024
THREAD_FROM = 256 * 1024
GZIP_HEADERS = {"Content-Type": "application/json", "Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
# A stored piece is rewritten once it would gain this much (or one step, if longer).
STORE_EVERY_MS = 300_000
# Writes to a shared cache still in flight (beyond: skipped).
MAX_PENDING_WRITES = 64


@dataclass(frozen=True, slots=True)
class Assembled(Whole):
    """An answer the cache assembled, with its gzip form (empty: too small to compress)."""

    gzipped: bytes


class Uncacheable(Exception):
    """An upstream answer the cache may not store or assemble from: forward the request as is."""


@dataclass(frozen=True, slots=True)
class Lookup:
    """What the handler knows that the cache needs: the query's parsed trees and the route."""

    trees: tuple[n.Expr, ...]
    endpoint: str  # "query" | "query_range"


@dataclass(frozen=True, slots=True)
class Ask:
    """One request the cache answers: the caller's request (its headers go upstream), its hub's
    upstream, the built request, what the cache knows of the query, the caller's admission."""

    request: web.Request
    upstream: Upstream
    built: UpstreamRequest
    lookup: Lookup
    admission: Admission


class ResultsCache:
    """Answers cacheable queries from the backend and the upstream together (docs/caching.md)."""

    def __init__(self, settings: Settings, backend: Backend) -> None:
        """`backend` stores the entries (identical upstream fetches are shared by the upstream's
        coalescer)."""
        self._backend = backend
        self._writes: set[asyncio.Future[None]] = set()
        # Decoded entries by key and stored bytes' checksum: a dashboard's pieces are read on
        # every refresh and decoding dominated (docs/caching.md#cost); bounded by stored bytes
        # (decoded objects take several times more).
        self._decoded: BoundedLRU[tuple[int, list[Extent]]] = BoundedLRU(
            max_entries=1024, max_weight=max(settings.cache_max_bytes // 8, 1 << 20)
        )
        caches.RESULTS_DECODED.source = lambda: (
            self._decoded.hits,
            self._decoded.misses,
            len(self._decoded),
        )
        self._freshness_ms = round(settings.cache_max_freshness * 1000)
        self._split_ms = round(settings.cache_split_interval * 1000)
        self._max_item = settings.cache_max_item_bytes
        self.clock: Callable[[], float] = time.time

    async def close(self) -> None:
        """Let pending writes finish (each is bounded by the backend's timeout), then close."""
        if self._writes:
            await asyncio.wait(set(self._writes))
        await self._backend.close()

    async def _write(self, key: bytes, value: bytes) -> None:
        """Store an entry: in memory at once; in a shared cache after the answer has gone (a slow
        cache must not delay the caller), at most MAX_PENDING_WRITES at a time (beyond: skipped,
        the next request stores it)."""
        if self._backend.name == "memory":
            await self._backend.set(key, value)
            return
        if len(self._writes) >= MAX_PENDING_WRITES:
            return
        task = asyncio.ensure_future(self._backend.set(key, value))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def applies(self, built: UpstreamRequest, lookup: Lookup) -> str | None:
        """Why this request is not answered from the cache (None: it is)."""
        if any(param(built, name) is not None for name in UNSHARED):
            return "stats"
        reason = lookback.cache_bypass(lookup.trees)
        if reason is not None:
            return reason
        if lookup.endpoint == "query_range":
            grid = self._grid(built)
            if grid is None:
                return "not step-aligned"
            if self._storable_until(lookup, grid.step_ms) < grid.start_ms:
                return "fresh"
            return None
        at = ms(param(built, "time"), caps.parse_time)
        if at is None or lookback.newest_touch_ms(lookup.trees, at) > self._now_ms() - self._freshness_ms:
            return "fresh"
        return None

    async def answer(
        self,
        request: web.Request,
        upstream: Upstream,
        built: UpstreamRequest,
        lookup: Lookup,
        warnings: Sequence[str],
        admission: Admission,
    ) -> web.StreamResponse | None:
        """The answer from the cache (and the upstream for what it lacks); None when the request
        must be forwarded as it is (an answer the cache may not use)."""
        audit.note_forwarding()
        # Callers asking the same forwarded request at once (a dashboard opened by a department)
        # share one assembly: reading pieces, fetching, merging and encoding happen once.
        key = request_key(upstream, built, {}, extra=["answer"])

        ask = Ask(request, upstream, built, lookup, admission)

        async def assemble_once() -> Whole:
            return await self._assembled(ask)

        try:
            whole = await upstream.coalescer.whole(key, assemble_once)
        except Uncacheable as exc:
            log.debug("results_cache_uncacheable", reason=str(exc))
            return None
        ctx = context.current()
        if ctx is not None and ctx.result_cache == "coalesced":
            metrics.RESULTS_CACHE_REQUESTS.labels(ctx.hub, "coalesced").inc()
        body = whole.body
        if warnings:
            splicer = WarningSplicer(warnings)
            body = splicer.feed(body) + splicer.finish()
            out = web.Response(body=body, content_type="application/json")
            out.enable_compression()  # as the caller accepts (Accept-Encoding)
        elif isinstance(whole, Assembled) and whole.gzipped and accepts_gzip(request):
            # compressed once for every caller of this assembly, not once per caller
            body = whole.gzipped
            out = web.Response(body=body, headers=GZIP_HEADERS)
        else:
            out = web.Response(body=body, content_type="application/json")
        audit.note_bytes(len(body))
        return out

    async def _assembled(self, ask: Ask) -> Whole:
        """The answer from stored pieces and the upstream, encoded once (the outcome is noted on
        the request that assembled it)."""
        if ask.lookup.endpoint == "query_range":
            doc, outcome = await self._range(ask)
        else:
            doc, outcome = await self._instant(ask)
        note_outcome(outcome)
        body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(body) <= GZIP_FROM:
            return Assembled(200, CIMultiDict(), body, b"")
        if len(body) < THREAD_FROM:
            return Assembled(200, CIMultiDict(), body, gzip.compress(body, 1, mtime=0))
        return Assembled(200, CIMultiDict(), body, await asyncio.to_thread(gzip.compress, body, 1, mtime=0))

    # ------------------------------------------------------------------ range queries

    def _now_ms(self) -> int:
        return round(self.clock() * 1000)

    def _grid(self, built: UpstreamRequest) -> Grid | None:
        start = ms(param(built, "start"), caps.parse_time)
        end = ms(param(built, "end"), caps.parse_time)
        step = ms(param(built, "step"), caps.parse_step)
        if start is None or end is None or step is None:
            return None
        return grid_of(start, end, step)

    def _storable_until(self, lookup: Lookup, step_ms: int) -> int:
        """The last evaluation time whose answer reads nothing newer than now − freshness."""
        bound = self._now_ms() - self._freshness_ms
        # offsets only move reads back (negative ones bypass): newest(t) = t − lag
        lag = -lookback.newest_touch_ms(lookup.trees, 0)
        return bound + max(lag, 0)

    async def _range(self, ask: Ask) -> tuple[dict[str, Any], str]:
        built = ask.built
        grid = self._grid(built)
        if grid is None:
            raise Uncacheable("not step-aligned")
        base = request_key(ask.upstream, built, {}, drop=RANGE_BOUNDS)
        parts = pieces(grid, self._split_ms)
        keys = [base + b"|" + str(piece.bucket).encode() for piece in parts]
        stored = await asyncio.gather(*(self._extents(key) for key in keys))
        wanted = [
            (piece, missing(piece, grid.step_ms, have)) for piece, have in zip(parts, stored, strict=True)
        ]
        stretches = joined([gap for _, gaps in wanted for gap in gaps], grid.step_ms)
        fetched: list[Extent] = []
        if stretches:
            async with SharedAdmission(ask.admission) as shared:
                fetched = await self._fetch_all(ask, stretches, shared.take)
        await self._store(parts, keys, stored, fetched, ask.lookup, grid.step_ms)
        held = [extent for have in stored for extent in have]
        parts_in_order = consecutive([*held, *fetched], grid)
        if parts_in_order is None:
            raise Uncacheable("a stretch was not covered")
        series = assemble(parts_in_order)
        doc = {"status": "success", "data": {"resultType": "matrix", "result": series}}
        return doc, outcome_of(len(stretches), len(held))

    async def _read(self, key: bytes) -> bytes | None:
        """The stored entry under `key` (None: a miss), counted in the cache inventory."""
        raw = await self._backend.get(key)
        caches.RESULTS.lookup(raw is not None)
        return raw

    async def _extents(self, key: bytes) -> list[Extent]:
        raw = await self._read(key)
        if raw is None:
            return []
        checksum = _checksum(raw)
        known = self._decoded.get(key)
        if known is not None and known[0] == checksum:
            return known[1]
        try:
            extents = decode_extents(raw)
        except ValueError:
            log.warning("results_cache_entry_unreadable")
            return []
        self._decoded.put(key, (checksum, extents), len(raw))
        return extents

    async def _fetch_all(
        self, ask: Ask, stretches: Sequence[tuple[int, int]], admission: Admission
    ) -> list[Extent]:
        gate = asyncio.Semaphore(FETCH_CONCURRENCY)
        step = ms(param(ask.built, "step"), caps.parse_step) or 0

        async def one(first: int, last: int) -> Extent:
            async with gate:
                doc = await self._fetch(ask, with_bounds(ask.built, first, last), admission)
            data = doc.get("data")
            if not isinstance(data, dict) or data.get("resultType") != "matrix":
                raise Uncacheable("not a matrix")
            result = data.get("result")
            if not isinstance(result, list):
                raise Uncacheable("no result list")
            try:
                return extent_from_answer(first, last, step, result)
            except ValueError as exc:
                raise Uncacheable("an answer off its grid") from exc

        return list(await asyncio.gather(*(one(first, last) for first, last in stretches)))

    async def _fetch(self, ask: Ask, built: UpstreamRequest, admission: Admission) -> dict[str, Any]:
        """One upstream answer the cache may use (coalesced with identical ones in flight: a
        follower takes no admission)."""
        upstream = ask.upstream
        headers: CIMultiDict[str] = upstream.headers_for(ask.request, built.form is not None)
        headers.popall("Accept", None)
        headers.popall("Accept-Encoding", None)
        headers["Accept-Encoding"] = "identity"
        key = request_key(upstream, built, {}, extra=["cache"])

        async def fetch() -> Whole:
            response = await upstream.send(built, headers)
            try:
                body = await read_bounded(response, self._max_item)
            except errors.UpstreamUnavailable as exc:
                raise Uncacheable("too large") from exc
            return Whole(response.status, CIMultiDict(), body)

        whole = await upstream.coalescer.whole(key, fetch, admission)
        audit.note_upstream(whole.status)
        if whole.status != 200:
            raise Uncacheable(f"status {whole.status}")
        try:
            doc = json.loads(whole.body)
        except ValueError as exc:
            raise Uncacheable("not JSON") from exc
        if not isinstance(doc, dict) or doc.get("status") != "success":
            raise Uncacheable("not a success")
        if doc.get("warnings") or doc.get("infos"):
            raise Uncacheable("warnings")
        return doc

    async def _store(
        self,
        parts: Sequence[Piece],
        keys: Sequence[bytes],
        stored: Sequence[list[Extent]],
        fetched: Sequence[Extent],
        lookup: Lookup,
        step_ms: int,
    ) -> None:
        """Add what was fetched (and is old enough) to each piece's entry."""
        if not fetched:
            return
        until = self._storable_until(lookup, step_ms) // step_ms * step_ms  # onto the (aligned) grid
        # A refresh adds a step or two: re-encoding a whole piece for that would cost more than
        # fetching a few more points next time, so a piece is rewritten once it gains STORE_EVERY.
        every = max(1, STORE_EVERY_MS // step_ms)
        for piece, key, have in zip(parts, keys, stored, strict=True):
            last = min(piece.last_ms, until)
            new = [
                Extent(lo, hi, step_ms, trimmed(e, lo, hi))  # checked when fetched
                for e in fetched
                if (lo := max(e.first_ms, piece.first_ms)) <= (hi := min(e.last_ms, last))
            ]
            if not new:
                continue
            merged = union([*have, *new])
            if have and only_a_short_tail(have, merged, every):
                continue
            raw = encode_extents(merged)
            self._decoded.put(key, (_checksum(raw), merged), len(raw))
            await self._write(key, raw)

    # ------------------------------------------------------------------ instant queries

    async def _instant(self, ask: Ask) -> tuple[dict[str, Any], str]:
        key = request_key(ask.upstream, ask.built, {})
        raw = await self._read(key)
        if raw is not None:
            try:
                doc = json.loads(raw)
                if isinstance(doc, dict):
                    return doc, "hit"
            except ValueError:
                log.warning("results_cache_entry_unreadable")
        doc = await self._fetch(ask, ask.built, ask.admission)
        await self._write(key, json.dumps(doc, separators=(",", ":")).encode("utf-8"))
        return doc, "miss"


def _checksum(raw: bytes) -> int:
    """What tells a stored entry from another under the same key (its decoded form is reused)."""
    return zlib.crc32(raw) ^ (len(raw) << 32)


def note_outcome(outcome: str) -> None:
    """Put what the results cache did on the request's log line and audit event, and count it."""
    ctx = context.current()
    if ctx is None:
        return
    ctx.result_cache = outcome
    metrics.RESULTS_CACHE_REQUESTS.labels(ctx.hub, outcome).inc()
