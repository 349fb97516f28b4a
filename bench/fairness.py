"""`make bench`, fair-use part: the heaviest request the default limits allow against another
caller's one-line query, the proxy's event-loop lag histogram, and the 20,000-`match[]` refusal.

Run by bench/run.py against a proxy with the default limits; `report()` returns the lines it
prints. Not a timed test: the numbers depend on the machine and whatever else runs on it.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp

BUCKET = r'^prom_keycloak_proxy_event_loop_{}_seconds_bucket\{{le="([^"]+)"\}} (\S+)$'
LAG, BLOCKED = re.compile(BUCKET.format("lag"), re.M), re.compile(BUCKET.format("blocked"), re.M)
ONE_LINE = 'DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-test"}'


def heavy_matches(salt: int = 0, count: int = 100, total_bytes: int = 12288) -> list[str]:
    """`count` distinct selectors of `total_bytes` together: PROXY_MAX_MATCH_SELECTORS and
    PROXY_MAX_QUERY_BYTES at their defaults, each narrowed (no cluster named); a new `salt`
    gives texts no cache has seen."""
    size = total_bytes // count
    out = []
    for i in range(count):
        head = f'DCGM_FI_DEV_GPU_UTIL{{gpu="{i}",Hostname=~"node-{salt}-{i}.*",job="'
        out.append(head + "x" * max(1, size - len(head) - 2) + '"}')
    return out


def flood_matches(count: int = 20000) -> list[str]:
    """`count` short selectors (≈ 800 KB as a form body, under the body limit): far over the
    match[] bound."""
    return [f'up{{i="{i:05d}"}}' for i in range(count)]


def lag_buckets(metrics_url: str) -> dict[str, dict[str, float]]:
    """The proxy's cumulative event-loop lag and blocked histograms (name → le → count)."""
    with urllib.request.urlopen(f"{metrics_url}/metrics", timeout=10) as r:  # noqa: S310 - loopback
        text = r.read().decode()
    return {
        name: {le: float(v) for le, v in pattern.findall(text)}
        for name, pattern in (("lag", LAG), ("blocked", BLOCKED))
    }


@dataclass
class Result:
    """What one fair-use run measured."""

    alone_ms: list[float]
    loaded_ms: list[float]
    heavy_ms: list[float]
    heavy_status: set[int]
    flood_ms: float
    flood_status: int
    lag: dict[str, dict[str, float]]


async def _timed(
    session: aiohttp.ClientSession, url: str, token: str, form: list[tuple[str, str]] | bytes
) -> tuple[int, float]:
    body = form if isinstance(form, bytes) else urlencode(form).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-www-form-urlencoded"}
    started = time.perf_counter()
    async with session.post(url, data=body, headers=headers) as r:
        await r.read()
        return r.status, (time.perf_counter() - started) * 1000


async def measure(base: str, metrics_url: str, heavy_token: str, other_token: str, seconds: float) -> Result:
    """The other caller alone, then beside the heaviest request; lag histograms; the 20k refusal."""
    query, series = f"{base}/api/v1/query", f"{base}/api/v1/series"
    one = [("query", ONE_LINE)]
    salts = iter(range(1, 1_000_000))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        for _ in range(3):  # warm token, decision and analysis caches of both callers
            await _timed(session, query, other_token, one)
            await _timed(session, series, heavy_token, [("match[]", m) for m in heavy_matches(next(salts))])
        alone = []
        until = time.monotonic() + seconds / 2
        while time.monotonic() < until:
            alone.append((await _timed(session, query, other_token, one))[1])
            await asyncio.sleep(0.01)
        before = lag_buckets(metrics_url)
        stop = asyncio.Event()
        heavy_runs: list[tuple[int, float]] = []

        async def hammer() -> None:
            while not stop.is_set():
                form = [("match[]", m) for m in heavy_matches(next(salts))]  # never cached
                heavy_runs.append(await _timed(session, series, heavy_token, form))

        hammering = asyncio.create_task(hammer())
        loaded = []
        until = time.monotonic() + seconds / 2
        while time.monotonic() < until:
            loaded.append((await _timed(session, query, other_token, one))[1])
            await asyncio.sleep(0.01)
        stop.set()
        await hammering
        after = lag_buckets(metrics_url)
        flood = urlencode([("match[]", m) for m in flood_matches()]).encode()  # encoded untimed
        flood_status, flood_ms = await _timed(session, series, heavy_token, flood)
    lag = {name: {le: n - before[name].get(le, 0.0) for le, n in after[name].items()} for name in after}
    return Result(
        alone, loaded, [ms for _, ms in heavy_runs], {s for s, _ in heavy_runs}, flood_ms, flood_status, lag
    )


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def report(base: str, metrics_url: str, heavy_token: str, other_token: str, seconds: float = 10.0) -> str:
    """Measure and describe: the other caller's latency alone and beside the heaviest request,
    the heaviest request's own time, the event-loop lag histogram meanwhile, the 20k refusal."""
    return "\n".join(report_lines(asyncio.run(measure(base, metrics_url, heavy_token, other_token, seconds))))


def report_lines(r: Result) -> list[str]:
    """The fair-use run described, one line each."""
    total = max(r.lag["lag"].values(), default=0.0)
    lines = [
        "fair use (default limits): heaviest allowed request = POST /api/v1/series with 100 match[] "
        "of 12 KiB together, narrowed; another caller's one-line query beside it",
        f"  other caller alone:   p50 {statistics.median(r.alone_ms):.1f} ms, "
        f"p99 {_pct(r.alone_ms, 0.99):.1f} ms ({len(r.alone_ms)} requests)",
        f"  beside the heaviest:  p50 {statistics.median(r.loaded_ms):.1f} ms, "
        f"p99 {_pct(r.loaded_ms, 0.99):.1f} ms, max {max(r.loaded_ms):.1f} ms ({len(r.loaded_ms)} requests)",
        f"  heaviest request:     p50 {statistics.median(r.heavy_ms or [0]):.1f} ms "
        f"({len(r.heavy_ms)} runs, status {sorted(r.heavy_status)})",
        f"  20,000 match[] (≈ 800 KB): {r.flood_status} in {r.flood_ms:.1f} ms",
        f"  event-loop lag meanwhile ({total:.0f} samples every 20 ms): wall-clock lag | "
        "blocked (the part the proxy spent computing), cumulative:",
    ]
    for le, count in r.lag["lag"].items():
        blocked = r.lag["blocked"].get(le, 0.0)
        lines.append(
            f"    ≤ {le:>6} s: {count:8.0f} ({100 * count / total if total else 0:5.1f} %) | "
            f"{blocked:8.0f} ({100 * blocked / total if total else 0:5.1f} %)"
        )
    verdict = r.lag["blocked"].get("0.1", 0.0) == total
    lines.append(f"  {'OK ' if verdict else 'MISS'} the proxy never blocked its event loop over 100 ms")
    return lines
