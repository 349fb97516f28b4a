"""The results cache's orchestration against a real loopback upstream that computes every answer.

The upstream is a synthetic Prometheus: any `query_range` is answered from a formula of the
evaluation time, so the answer to any range is known and the proxy's assembled answer (stored
pieces + fetched stretches) must equal the upstream's answer for the whole range, byte for byte
after decoding. It records what it was asked, so partial hits can be seen to fetch only the
missing stretch.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from proxy import promql
from proxy.coalesce import no_admission
from proxy.hubs import hubs_of
from proxy.results.backends import MemoryBackend
from proxy.results.cache import Lookup, ResultsCache
from proxy.services import limits_of, model_of
from proxy.upstream import Upstream, UpstreamRequest
from tests.support.loopback import LoopbackServer
from tests.support.proxy_server import make_settings

DAY = 86_400
MIDNIGHT = 1_796_515_200  # 2026-12-06T00:00:00Z
NOW = MIDNIGHT + 6 * 3600  # the test's clock: 06:00
ENV = {
    "PROXY_AUTH_BASE_URL": "http://keycloak.test",
    "PROXY_AUTH_REALM": "r",
    "PROXY_AUTH_CLIENT_ID": "c",
    "PROXY_AUTH_CLIENT_SECRET": "s",
    "PROXY_ACM_HUB": "moc",
}


def series_at(t: float) -> list[tuple[dict[str, str], str]]:
    """The synthetic upstream's series at evaluation time `t`: one always, one on even hours."""
    out = [({"__name__": "up", "pod": "a"}, str(int(t) % 997))]
    if int(t // 3600) % 2 == 0:
        out.append(({"__name__": "up", "pod": "b"}, str(int(t) % 13)))
    return out


def matrix(start: float, end: float, step: float) -> list[dict[str, Any]]:
    """What the synthetic upstream answers for a range: series sorted by labels."""
    by_labels: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    t = start
    while t <= end:
        for labels, value in series_at(t):
            key = tuple(sorted(labels.items()))
            row = by_labels.setdefault(key, {"metric": labels, "values": []})
            row["values"].append([int(t) if t == int(t) else t, value])
        t += step
    return [by_labels[k] for k in sorted(by_labels)]


@dataclass
class Synthetic(LoopbackServer):
    """A Prometheus stand-in answering `query_range`/`query` from `series_at`; records asks."""

    asked: list[dict[str, str]] = field(default_factory=list)
    mode: str = "ok"  # ok | warnings | error

    def __post_init__(self) -> None:
        LoopbackServer.__init__(self)

    async def _handle(self, request: web.Request) -> web.Response:
        params = dict(parse_qsl((await request.read()).decode()) or request.query.items())
        self.asked.append(params)
        if self.mode == "error":
            return web.json_response({"status": "error", "errorType": "bad_data", "error": "x"}, status=400)
        if request.path.endswith("/query_range"):
            data = {
                "resultType": "matrix",
                "result": matrix(float(params["start"]), float(params["end"]), float(params["step"])),
            }
        else:
            t = float(params["time"])
            data = {
                "resultType": "vector",
                "result": [{"metric": m, "value": [t, v]} for m, v in series_at(t)],
            }
        doc: dict[str, Any] = {"status": "success", "data": data}
        if self.mode == "warnings":
            doc["warnings"] = ["upstream says so"]
        return web.json_response(doc)

    def add_routes(self, app: web.Application) -> None:
        """Every path is answered by `_handle`."""
        app.router.add_route("*", "/{tail:.*}", self._handle)


@pytest.fixture
def synthetic() -> Iterator[Synthetic]:
    """The synthetic upstream on loopback."""
    server = Synthetic().start()
    yield server
    server.stop()


def body_of(out: web.StreamResponse) -> Any:
    """The decoded JSON body of an answer the cache built."""
    assert isinstance(out, web.Response) and isinstance(out.body, bytes)
    return json.loads(out.body)


@dataclass
class Harness:
    """A ResultsCache on the in-process backend, its upstream and a clock fixed at NOW."""

    cache: ResultsCache
    upstream: Upstream
    settings: Any

    def lookup(self, text: str, endpoint: str = "query_range") -> Lookup:
        """What the handler would hand the cache for `text`."""
        analysis = promql.analyse_query(text, limits_of(self.settings), model_of(self.settings))
        return Lookup(analysis.trees, endpoint)

    async def ask(self, text: str, start: float, end: float, step: float = 30) -> tuple[Any, str | None]:
        """(decoded answer or None when forwarded uncached, outcome or bypass reason)."""
        built = UpstreamRequest(
            "POST",
            "/api/v1/query_range",
            (),
            (("query", text), ("start", str(start)), ("end", str(end)), ("step", str(step))),
        )
        lookup = self.lookup(text)
        reason = self.cache.applies(built, lookup)
        if reason is not None:
            return None, reason
        request = make_mocked_request("POST", "/api/v1/query_range")
        out = await self.cache.answer(request, self.upstream, built, lookup, (), no_admission)
        if out is None:
            return None, "forwarded"
        return body_of(out), None


@pytest_asyncio.fixture
async def harness(synthetic: Synthetic) -> AsyncIterator[Harness]:
    """A started upstream session towards the synthetic upstream and a fresh cache."""
    settings = make_settings({**ENV, "PROXY_PROMETHEUS_BASE_URL": synthetic.base_url})
    cache = ResultsCache(settings, MemoryBackend(settings.cache_max_bytes, settings.cache_ttl))
    upstream = Upstream(settings, hubs_of(settings)[0])
    await upstream.start()
    cache.clock = lambda: float(NOW)
    yield Harness(cache, upstream, settings)
    await upstream.close()


def expected(start: float, end: float, step: float = 30) -> dict[str, Any]:
    """The upstream's own answer for the whole range."""
    return {"status": "success", "data": {"resultType": "matrix", "result": matrix(start, end, step)}}


async def test_cold_then_warm_answer_equals_the_upstreams(harness: Harness, synthetic: Synthetic) -> None:
    """A cold range is one upstream request; asked again it is answered without the upstream."""
    start, end = MIDNIGHT + 3600, MIDNIGHT + 4 * 3600
    doc, _ = await harness.ask("up", start, end)
    assert doc == expected(start, end)
    assert len(synthetic.asked) == 1
    doc, _ = await harness.ask("up", start, end)
    assert doc == expected(start, end)
    assert len(synthetic.asked) == 1


async def test_a_sliding_window_fetches_only_the_new_stretch(harness: Harness, synthetic: Synthetic) -> None:
    """A window moved by one step asks the upstream for the new points only (a partial hit)."""
    start, end = MIDNIGHT + 3600, MIDNIGHT + 4 * 3600
    await harness.ask("up", start, end)
    doc, _ = await harness.ask("up", start + 30, end + 30)
    assert doc == expected(start + 30, end + 30)
    assert synthetic.asked[-1]["start"] == str(end + 30) and synthetic.asked[-1]["end"] == str(end + 30)


async def test_a_range_across_midnight_is_split_into_day_pieces(
    harness: Harness, synthetic: Synthetic
) -> None:
    """Across a day boundary: one request cold, then each day's piece is reused by other windows."""
    start, end = MIDNIGHT - 3 * 3600, MIDNIGHT + 3 * 3600
    doc, _ = await harness.ask("up", start, end)
    assert doc == expected(start, end) and len(synthetic.asked) == 1
    for lo, hi in (
        (MIDNIGHT - 3600, MIDNIGHT + 3600),
        (MIDNIGHT - 2 * 3600, MIDNIGHT),
        (MIDNIGHT, MIDNIGHT + 2 * 3600),
    ):
        doc, _ = await harness.ask("up", lo, hi)
        assert doc == expected(lo, hi)
    assert len(synthetic.asked) == 1


async def test_the_fresh_tail_is_fetched_every_time_and_never_stored(
    harness: Harness, synthetic: Synthetic
) -> None:
    """Points within the freshness window of now are asked again on every request."""
    start, end = NOW - 3600, NOW
    doc, _ = await harness.ask("up", start, end)
    assert doc == expected(start, end)
    doc, _ = await harness.ask("up", start, end)
    assert doc == expected(start, end)
    first_fresh = NOW - 600
    assert (
        float(synthetic.asked[-1]["start"]) == first_fresh + 30
        or float(synthetic.asked[-1]["start"]) == first_fresh
    )
    assert synthetic.asked[-1]["end"] == str(end)


async def test_an_offset_moves_what_may_be_stored(harness: Harness, synthetic: Synthetic) -> None:
    """`offset 1h` reads only data an hour old: a window ending now is stored whole."""
    start, end = NOW - 3600, NOW
    await harness.ask("up offset 1h", start, end)
    await harness.ask("up offset 1h", start, end)
    assert len(synthetic.asked) == 1


@pytest.mark.parametrize("mode", ["warnings", "error"])
async def test_answers_unfit_to_share_are_forwarded_and_never_stored(
    harness: Harness, synthetic: Synthetic, mode: str
) -> None:
    """An upstream warning or error: the cache steps aside (the request is forwarded as is)."""
    synthetic.mode = mode
    start, end = MIDNIGHT + 3600, MIDNIGHT + 2 * 3600
    assert await harness.ask("up", start, end) == (None, "forwarded")
    synthetic.mode = "ok"
    doc, _ = await harness.ask("up", start, end)
    assert doc == expected(start, end)
    assert len(synthetic.asked) == 2


@pytest.mark.parametrize(
    ("text", "start", "reason"),
    [
        ("up @ 1796515200", MIDNIGHT, "@ modifier"),
        ("up @ end()", MIDNIGHT, "start()/end()"),
        ("up offset -5m", MIDNIGHT, "negative offset"),
        ("up", MIDNIGHT + 7, "not step-aligned"),
        ("up", NOW - 300, "fresh"),
    ],
)
async def test_requests_that_bypass_the_cache(harness: Harness, text: str, start: float, reason: str) -> None:
    """`@`, negative offsets, unaligned starts and wholly fresh ranges are never cached."""
    _, why = await harness.ask(text, start, start + 3600)
    assert why == reason


async def test_old_instant_queries_are_cached_and_fresh_ones_bypass(
    harness: Harness, synthetic: Synthetic
) -> None:
    """An instant query at a time older than the freshness window is stored whole."""
    request = make_mocked_request("GET", "/api/v1/query")
    lookup = harness.lookup("up", "query")
    old = UpstreamRequest("GET", "/api/v1/query", (("query", "up"), ("time", str(MIDNIGHT))))
    assert harness.cache.applies(old, lookup) is None
    first = await harness.cache.answer(request, harness.upstream, old, lookup, (), no_admission)
    second = await harness.cache.answer(request, harness.upstream, old, lookup, ("narrowed",), no_admission)
    assert first is not None and second is not None and len(synthetic.asked) == 1
    assert body_of(second)["warnings"] == ["narrowed"]
    fresh = UpstreamRequest("GET", "/api/v1/query", (("query", "up"), ("time", str(NOW - 60))))
    assert harness.cache.applies(fresh, lookup) == "fresh"
    assert (
        harness.cache.applies(UpstreamRequest("GET", "/api/v1/query", (("query", "up"),)), lookup) == "fresh"
    )


async def test_concurrent_identical_misses_fetch_once(harness: Harness, synthetic: Synthetic) -> None:
    """Twenty callers missing the same piece at once cause one upstream request (coalesced)."""
    start, end = MIDNIGHT + 3600, MIDNIGHT + 4 * 3600
    answers = await asyncio.gather(*(harness.ask("up", start, end) for _ in range(20)))
    assert all(doc == expected(start, end) for doc, _ in answers)
    assert len(synthetic.asked) == 1


async def test_a_piece_is_rewritten_once_its_tail_gains_five_minutes(
    harness: Harness, synthetic: Synthetic
) -> None:
    """Refreshes one step apart re-fetch the short unstored tail; ten steps later it is stored."""
    start, end = MIDNIGHT + 3600, MIDNIGHT + 4 * 3600
    await harness.ask("up", start, end)
    for k in range(1, 11):
        doc, _ = await harness.ask("up", start + 30 * k, end + 30 * k)
        assert doc == expected(start + 30 * k, end + 30 * k)
        assert synthetic.asked[-1]["start"] == str(end + 30)  # nothing after `end` was stored yet
    await harness.ask("up", start + 330, end + 330)
    assert synthetic.asked[-1]["start"] == str(end + 330)  # the ten-step tail was stored


async def test_a_large_answer_is_compressed_once_for_every_caller(harness: Harness) -> None:
    """Callers accepting gzip share one gzip body; others get the JSON as it is."""
    start, end = MIDNIGHT, MIDNIGHT + 6 * 3600
    built = UpstreamRequest(
        "GET",
        "/api/v1/query_range",
        (("query", "up"), ("start", str(start)), ("end", str(end)), ("step", "30")),
    )
    lookup = harness.lookup("up")
    gz = make_mocked_request("GET", "/api/v1/query_range", headers={"Accept-Encoding": "gzip"})
    plain = make_mocked_request("GET", "/api/v1/query_range")
    first = await harness.cache.answer(gz, harness.upstream, built, lookup, (), no_admission)
    second = await harness.cache.answer(plain, harness.upstream, built, lookup, (), no_admission)
    assert isinstance(first, web.Response) and first.headers["Content-Encoding"] == "gzip"
    assert isinstance(first.body, bytes) and json.loads(gzip.decompress(first.body)) == expected(start, end)
    assert second is not None and "Content-Encoding" not in second.headers
    assert body_of(second) == expected(start, end)
