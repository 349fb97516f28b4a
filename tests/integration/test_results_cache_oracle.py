"""The results cache answers exactly what the upstream answers (docs/caching.md), on the real stack.

A real Prometheus holds three days of generated series (across UTC midnights, up to an hour past
session start); the proxy runs with the in-process cache. For random ranges and steps (aligned
and not, crossing day boundaries, inside and outside the freshness window) and several query
shapes (rate, sum by, offset, subquery, histogram_quantile, and the `@`/`end()`/negative-offset
forms that bypass the cache), the same caller asks through the proxy several times with
overlapping windows — so whole hits, partial hits and day-boundary splits happen — and every
answer's `data` must equal what Prometheus answers when sent the text the proxy forwards (its
explain endpoint) with the same parameters: same series in the same order, same timestamps, values
equal (to 1e-9: Prometheus sums some range expressions in map order). The outcome counter
`prom_keycloak_proxy_results_cache_requests_total{hub,result}` proves the cache was used.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keycloak_emulator import ThreadedEmulatorServer
from proxy_demo.prometheus import PrometheusServer
from tests.support.cachedata import COUNTER, GAUGE, HISTOGRAM
from tests.support.cacheservers import REDIS_PASSWORD, REDIS_USER, CacheServer
from tests.support.cachestack import (
    GENEROUS,
    INSTANT,
    RANGE,
    CacheData,
    ask,
    delta,
    direct,
    forwarded,
    outcomes,
    seconds,
)
from tests.support.identities import auth_header
from tests.support.oracle import diff_results
from tests.support.proxy_server import ProxyServer, make_settings
from tests.support.stack import TokenFor, proxy_environ

pytestmark = pytest.mark.prometheus

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
FRESHNESS_MS = 600_000  # PROXY_CACHE_MAX_FRESHNESS's default
WHO = ("alice", "dave", "researcher-team-a")  # one project (narrowed), hub-wide, two clusters (Basic)
CACHED_SHAPES = (
    f"rate({COUNTER}[5m])",
    f"sum by (namespace) (rate({COUNTER}[10m]))",
    f"{GAUGE} offset 1h",
    f"sum by (cluster) ({GAUGE}) - sum by (cluster) ({GAUGE} offset 1d)",
    f"max_over_time({GAUGE}[30m:5m])",
    f"histogram_quantile(0.9, sum by (le, namespace) (rate({HISTOGRAM}_bucket[15m])))",
    f'{GAUGE}{{namespace=~"team-a|team-b"}}',  # narrowed with a warning for most callers
    "time()",  # no selector at all: a matrix of one series without labels
    f"scalar(sum({GAUGE}))",
)
BYPASS_SHAPES = (
    f"{GAUGE} @ {{at}}",
    f"rate({COUNTER}[5m] @ end())",
    f"{GAUGE} offset -10m",
)
# 420 s: midnights fall between points; 25 h and 2 d: steps longer than a split (pieces of one point)
STEPS_S = (15, 30, 45, 60, 120, 300, 420, 900, 1800, 3600, 7200, 90000, 172800)


@pytest.fixture(scope="module", params=["memory-1d", "memory-3h", "redis-1d"])
def cache_proxy(
    request: pytest.FixtureRequest,
    cache_prometheus: PrometheusServer,
    emulator_server: ThreadedEmulatorServer,
) -> Iterator[ProxyServer]:
    """The proxy with the results cache: in-process split by day (default) or every 3 h, or Redis."""
    backend, split = request.param.split("-")
    env = proxy_environ(
        cache_prometheus,
        emulator_server.base_url,
        PROXY_CACHE=backend,
        PROXY_CACHE_SPLIT_INTERVAL=split,
        **GENEROUS,
    )
    if backend == "redis":  # the shared backend: entries sealed, compressed, sent over the wire
        redis: CacheServer = request.getfixturevalue("redis_server")
        env |= {"PROXY_CACHE_ADDRESS": redis.address, "PROXY_CACHE_HMAC_KEY": secrets.token_hex(24)}
        env |= {"PROXY_CACHE_USERNAME": REDIS_USER, "PROXY_CACHE_PASSWORD": REDIS_PASSWORD}
    server = ProxyServer(make_settings(env)).start()
    yield server
    server.stop()


@dataclass(frozen=True)
class Window:
    """One query_range request: times in milliseconds, the step as sent."""

    start_ms: int
    end_ms: int
    step: str
    rfc3339: bool = False

    def params(self, query: str) -> dict[str, str]:
        """The request parameters (start/end as seconds or RFC 3339)."""
        fmt = _rfc3339 if self.rfc3339 else seconds
        return {"query": query, "start": fmt(self.start_ms), "end": fmt(self.end_ms), "step": self.step}


def _rfc3339(ms: int) -> str:
    moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _step_text(step_s: int, as_duration: bool) -> str:
    if as_duration and step_s % 60 == 0:
        return f"{step_s // 60}m"
    return str(step_s)


@st.composite
def windows(draw: st.DrawFn, built_at: float) -> list[Window]:
    """2-4 overlapping windows on one step grid (or off it), around the data's midnights."""
    step_s = draw(st.sampled_from(STEPS_S))
    step_ms = step_s * 1000
    text = _step_text(step_s, draw(st.booleans()))
    aligned = draw(st.integers(0, 3)) > 0  # mostly aligned: those are the cached ones
    rfc = draw(st.integers(0, 5)) == 0
    last_midnight = int(built_at * 1000) // DAY_MS * DAY_MS
    # a midnight of the data (0-2 days back) and an offset of -30 h..+20 h from it: many ranges
    # cross one or two midnights, some end inside the freshness window or past now
    base = last_midnight - draw(st.integers(0, 2)) * DAY_MS + draw(st.integers(-30 * HOUR_MS, 20 * HOUR_MS))
    if aligned:
        base -= base % step_ms
    else:
        base = base - base % step_ms + draw(st.integers(1, step_ms - 1))
    most = max(4, min(1200, 2 * DAY_MS // step_ms))
    out = []
    n = draw(st.integers(0, most))
    start = base
    for i in range(draw(st.integers(2, 4))):
        if i:
            # the next window shifts by whole steps (same grid) and changes length: partial hits
            start = base + draw(st.integers(-most // 2, most // 2)) * step_ms
            n = draw(st.integers(0, most))
        jitter = draw(st.sampled_from((0, 0, 1, step_ms // 2, step_ms - 1)))
        out.append(Window(start, start + n * step_ms + jitter, text, rfc))
    return out


class Checker:
    """Asks through the proxy and straight to Prometheus with the forwarded text; compares."""

    def __init__(self, proxy: ProxyServer, upstream: PrometheusServer, token_for: TokenFor) -> None:
        self.proxy, self.upstream, self.token_for = proxy, upstream, token_for
        self._forwarded: dict[tuple[str, str, str], str] = {}
        self._warnings: dict[tuple[str, str, str], list[str]] = {}

    def text(self, who: str, query: str, path: str) -> str:
        """The one text the proxy forwards for `query` as `who` (explain, remembered)."""
        key = (who, query, path)
        if key not in self._forwarded:
            texts = forwarded(self.proxy, auth_header(who, self.token_for), query, path)
            assert len(texts) == 1, texts
            self._forwarded[key] = texts[0]
        return self._forwarded[key]

    def same(self, who: str, query: str, path: str, params: dict[str, str]) -> dict[str, Any]:
        """Ask through the proxy as `who`; assert its data equals the upstream's; return it."""
        r = ask(self.proxy, auth_header(who, self.token_for), path, params)
        status, expected = direct(self.upstream, path, {**params, "query": self.text(who, query, path)})
        assert status == 200, expected
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["status"] == "success", got
        # the proxy's own warnings (narrowing) are the caller's, hit or miss: the same every time
        first = self._warnings.setdefault((who, query, path), got.get("warnings", []))
        assert got.get("warnings", []) == first, (who, query, params)
        if got["data"] != expected["data"]:
            # Prometheus itself sums a range `or` in map order: last-bit differences between two
            # identical requests; times, label sets and series order must still be exact
            diffs = diff_results(got["data"], expected["data"])
            assert not diffs, f"{who} {path} {params}: {diffs[:10]}"
            assert _order(got["data"]) == _order(expected["data"]), f"{who} {path} {params}: order"
        return dict(got["data"])


def _order(data: dict[str, Any]) -> list[dict[str, str]]:
    # Prometheus sorts a matrix by labels; an instant vector comes in no defined order
    return [item["metric"] for item in data["result"]] if data["resultType"] == "matrix" else []


@pytest.fixture(scope="module")
def checker(cache_proxy: ProxyServer, cache_prometheus: PrometheusServer, token_for: TokenFor) -> Checker:
    """A Checker over the module's proxy."""
    return Checker(cache_proxy, cache_prometheus, token_for)


def _shapes(built_at: float) -> list[str]:
    at = int(built_at) - 86400
    return [*CACHED_SHAPES, *(s.format(at=at) for s in BYPASS_SHAPES)]


def test_cached_ranges_equal_the_upstream(
    cache_series: CacheData, cache_proxy: ProxyServer, checker: Checker
) -> None:
    """Random overlapping ranges (on/off grid, over midnights, fresh/old) equal the upstream; hits happen."""
    before = outcomes(cache_proxy)
    shapes = _shapes(cache_series.built_at)

    @settings(
        max_examples=150,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(
        who=st.sampled_from(WHO),
        query=st.sampled_from(shapes),
        ws=windows(cache_series.built_at),
    )
    def run(who: str, query: str, ws: list[Window]) -> None:
        for w in ws:
            checker.same(who, query, RANGE, w.params(query))

    run()
    seen = delta(before, outcomes(cache_proxy))
    assert seen["hit"] > 0 and seen["partial"] > 0 and seen["bypass"] > 0, seen


@pytest.mark.parametrize("who", WHO)
def test_day_split_partial_and_whole_hits(
    cache_series: CacheData, cache_proxy: ProxyServer, checker: Checker, who: str
) -> None:
    """Over a midnight: miss, then hit; 12 h later a partial hit; off the grid never a hit; all exact."""
    query = f"sum by (namespace) (rate({COUNTER}[5m]))"
    step = 300_000 + 60_000 * WHO.index(who)  # a grid of its own per caller: a cold start
    midnight = int(cache_series.built_at * 1000) // DAY_MS * DAY_MS - DAY_MS
    start = midnight - 10 * HOUR_MS
    start -= start % step
    old = Window(start, start + 20 * HOUR_MS, str(step // 1000))
    shifted = Window(start + 12 * HOUR_MS - (12 * HOUR_MS) % step, start + 32 * HOUR_MS, str(step // 1000))
    off_grid = Window(old.start_ms + 1000, old.end_ms, old.step)
    expected_outcomes = (("miss", old), ("hit", old), ("partial", shifted), (None, off_grid))
    for outcome, w in expected_outcomes:
        before = outcomes(cache_proxy)
        data = checker.same(who, query, RANGE, w.params(query))
        assert data["result"], "the range holds data"
        seen = delta(before, outcomes(cache_proxy))
        if outcome is None:
            assert seen["hit"] == 0 and seen["partial"] == 0, (w, seen)
        else:
            assert seen[outcome] == 1 and sum(seen.values()) == 1, (outcome, w, seen)


def test_fresh_ranges_are_never_whole_hits(
    cache_series: CacheData, cache_proxy: ProxyServer, checker: Checker
) -> None:
    """A range ending inside the freshness window is never answered wholly from the cache."""
    query = f"rate({COUNTER}[5m])"
    step = 30_000
    now = int(time.time() * 1000)
    start = now - FRESHNESS_MS // 2
    start -= start % step
    w = Window(start, now, "30")
    counts: Counter[str] = Counter()
    for _ in range(3):
        before = outcomes(cache_proxy)
        checker.same("alice", query, RANGE, w.params(query))
        counts += delta(before, outcomes(cache_proxy))
    assert counts["hit"] == 0, counts


@st.composite
def instants(draw: st.DrawFn, built_at: float) -> list[int]:
    """2-3 evaluation times in ms, old or fresh, some equal (repeat asks)."""
    newest = int(built_at * 1000) + 30 * 60_000
    first = draw(st.integers(newest - 3 * DAY_MS + 2 * HOUR_MS, newest))
    first -= first % draw(st.sampled_from((1, 1000, 60_000)))
    more = draw(st.lists(st.sampled_from((0, 0, 1000, -60_000, DAY_MS // 2)), min_size=1, max_size=2))
    return [first, *(first + m for m in more)]


def test_cached_instants_equal_the_upstream(
    cache_series: CacheData, cache_proxy: ProxyServer, checker: Checker
) -> None:
    """Instant queries asked again (old or fresh times) equal Prometheus' answers; old ones are hits."""
    before = outcomes(cache_proxy)
    shapes = _shapes(cache_series.built_at)

    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(who=st.sampled_from(WHO), query=st.sampled_from(shapes), times=instants(cache_series.built_at))
    def run(who: str, query: str, times: list[int]) -> None:
        for t in times:
            checker.same(who, query, INSTANT, {"query": query, "time": seconds(t)})

    run()
    # a fixed old instant asked twice: the second is a hit
    old = int(cache_series.built_at * 1000) - DAY_MS - 12_345
    query = CACHED_SHAPES[1]
    checker.same("alice", query, INSTANT, {"query": query, "time": seconds(old)})
    mid = outcomes(cache_proxy)
    checker.same("alice", query, INSTANT, {"query": query, "time": seconds(old)})
    assert delta(mid, outcomes(cache_proxy))["hit"] == 1
    assert delta(before, outcomes(cache_proxy))["hit"] > 1


def test_hits_are_encoded_as_each_caller_accepts(
    cache_series: CacheData, cache_proxy: ProxyServer, checker: Checker, token_for: TokenFor
) -> None:
    """A hit stored from a gzip caller's ask reaches an identity-only caller uncompressed, same data."""
    query = f"max_over_time({GAUGE}[1h])"
    start = (int(cache_series.built_at * 1000) - 2 * DAY_MS) // 600_000 * 600_000
    params = Window(start, start + 30 * HOUR_MS, "600").params(query)
    auth = auth_header("alice", token_for)
    gzip = ask(cache_proxy, auth, RANGE, params, headers={"Accept-Encoding": "gzip"})
    before = outcomes(cache_proxy)
    plain = ask(cache_proxy, auth, RANGE, params, headers={"Accept-Encoding": "identity"})
    assert delta(before, outcomes(cache_proxy))["hit"] == 1
    assert plain.status_code == 200 and plain.headers.get("Content-Encoding", "identity") == "identity"
    assert plain.json()["data"] == gzip.json()["data"] == checker.same("alice", query, RANGE, params)


def test_form_posted_ranges_are_cached_and_exact(
    cache_series: CacheData, cache_proxy: ProxyServer, checker: Checker, token_for: TokenFor
) -> None:
    """A form-POSTed query_range (Grafana's default) is a miss then a hit, both equal to the upstream."""
    query = f"sum by (cluster) (rate({COUNTER}[15m]))"
    start = (int(cache_series.built_at * 1000) - 2 * DAY_MS - 7 * HOUR_MS) // 900_000 * 900_000
    params = Window(start, start + 26 * HOUR_MS, "15m").params(query)
    auth = auth_header("researcher-team-a", token_for)
    expected = checker.same("researcher-team-a", query, RANGE, params)  # GET: warms nothing POST uses
    got = []
    for outcome in ("miss", "hit"):
        before = outcomes(cache_proxy)
        r = requests.post(f"{cache_proxy.base_url}{RANGE}", data=params, headers=auth, timeout=60)
        assert r.status_code == 200, r.text
        assert delta(before, outcomes(cache_proxy))[outcome] == 1, outcome
        got.append(r.json()["data"])
    assert got[0] == got[1] == expected
