"""Load and soak: sustained mixed traffic against the proxy as its own process.

Twenty Grafana-like dashboard users, researcher scripts (Basic and bearer), denied requests and
a stream of distinct tokens (each a new decision-cache key) for `--soak-duration` (default 2m).
Every 30 s (or a quarter of the run if shorter) it prints throughput, p50/p99, errors, and the
proxy process' RSS and open file descriptors; memory and descriptors must plateau, and the
decision caches (PROXY_AUTHZ_CACHE_SIZE=64) must stay bounded under the token stream.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from pathlib import Path

import aiohttp
import pytest

from keycloak_emulator import Emulator, ThreadedEmulatorServer
from proxy_demo.prometheus import PrometheusServer
from tests.support.soak import ProxyProcess, Sample, Window, percentile, plateaued
from tests.support.stack import CLIENT_SECRETS, REALM, TokenFor, proxy_environ

pytestmark = [pytest.mark.prometheus, pytest.mark.soak, pytest.mark.slow, pytest.mark.timeout(0)]

USERS = ("alice", "bob", "carol", "dave")
CACHE_SIZE = 64
# A Grafana dashboard refresh: range panels, an instant stat, a variable lookup, series lookup.
DASHBOARD: tuple[tuple[str, dict[str, str]], ...] = (
    ("/api/v1/query_range", {"query": "sum by (exported_namespace) (DCGM_FI_DEV_GPU_UTIL)",
                             "step": "60"}),
    ("/api/v1/query_range", {"query": "rate(vllm:request_success_total[5m])", "step": "60"}),
    ("/api/v1/query", {"query": "avg(DCGM_FI_DEV_FB_USED)"}),
    ("/api/v1/label/namespace/values", {}),
    ("/api/v1/series", {"match[]": "kube_pod_info"}),
)


async def _timed(session: aiohttp.ClientSession, window: list[Window], method: str, url: str,
                 expected: tuple[int, ...], **kwargs: object) -> None:
    started = time.perf_counter()
    try:
        async with session.request(method, url, **kwargs) as r:  # type: ignore[arg-type]
            await r.read()
            status = r.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        window[0].errors += 1
        window[0].unexpected.append(type(exc).__name__)
        return
    window[0].record(status, time.perf_counter() - started)
    if status not in expected:
        window[0].errors += 1
        window[0].unexpected.append(str(status))


async def _load(proxy: ProxyProcess, emu: Emulator, token_for: TokenFor, duration: float,
                interval: float) -> list[Sample]:
    names = (*USERS, "eve", "researcher-team-a")
    tokens = {name: token_for(name) for name in names}
    window = [Window()]
    samples: list[Sample] = []
    stop = time.monotonic() + duration
    base = proxy.base_url
    secret = CLIENT_SECRETS["researcher-team-a"]
    basic = "Basic " + base64.b64encode(f"researcher-team-a:{secret}".encode()).decode()

    def params(extra: dict[str, str]) -> dict[str, str]:
        now = int(time.time())
        return {"start": str(now - 3600), "end": str(now), **extra} if "step" in extra else extra

    async def dashboard_user(i: int, session: aiohttp.ClientSession) -> None:
        while time.monotonic() < stop:
            auth = {"Authorization": f"Bearer {tokens[USERS[i % len(USERS)]]}"}
            await asyncio.gather(*(
                _timed(session, window, "POST", base + path, (200,), data=params(p), headers=auth)
                for path, p in DASHBOARD))
            await asyncio.sleep(1.0)

    async def script(session: aiohttp.ClientSession, basic_auth: bool) -> None:
        while time.monotonic() < stop:
            header = basic if basic_auth else f"Bearer {tokens['researcher-team-a']}"
            await _timed(session, window, "GET", f"{base}/api/v1/query", (200,),
                         params={"query": 'DCGM_FI_DEV_GPU_UTIL{exported_namespace="team-a"}'},
                         headers={"Authorization": header})
            await asyncio.sleep(0.05)

    async def denied(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < stop:
            eve = {"Authorization": f"Bearer {tokens['eve']}"}
            alice = {"Authorization": f"Bearer {tokens['alice']}"}
            await _timed(session, window, "GET", f"{base}/api/v1/query", (403,),
                         params={"query": "up"}, headers=eve)
            await _timed(session, window, "GET", f"{base}/api/v1/query", (403,),
                         params={"query": 'up{cluster="nerc-ocp-test"}'}, headers=alice)
            await _timed(session, window, "GET", f"{base}/api/v1/query", (401,),
                         params={"query": "up"}, headers={"Authorization": "Bearer nope"})
            await asyncio.sleep(0.1)

    async def token_churn(session: aiohttp.ClientSession) -> None:
        for n in itertools.count():
            if time.monotonic() >= stop:
                return
            fresh = emu.mint(REALM, {"jti": f"soak-{n}"}, user=USERS[n % len(USERS)])
            await _timed(session, window, "GET", f"{base}/api/v1/query", (200,),
                         params={"query": 'up{cluster="nerc-ocp-prod"}'} if n % 4 != 1 else
                         {"query": 'up{cluster="nerc-ocp-test"}'},
                         headers={"Authorization": f"Bearer {fresh}"})
            await asyncio.sleep(0.05)

    async def refresher() -> None:
        # Access tokens live 5 minutes; clients refresh them well before, as Grafana does.
        while time.monotonic() < stop:
            await asyncio.sleep(min(60.0, max(0.0, stop - time.monotonic())))
            tokens.update({name: token_for(name) for name in names})

    async def reporter() -> None:
        started = time.monotonic()
        while time.monotonic() < stop:
            await asyncio.sleep(min(interval, max(0.0, stop - time.monotonic())))
            w, window[0] = window[0], Window()
            rss, fds = proxy.sample()
            sample = Sample(time.monotonic() - started, w.count / interval,
                            percentile(w.latencies, 0.5) * 1000, percentile(w.latencies, 0.99) * 1000,
                            w.errors, dict(w.statuses), rss / 2**20, fds)
            samples.append(sample)
            print(sample.line() + (f" unexpected={sorted(set(w.unexpected))[:5]}"
                                   if w.unexpected else ""), flush=True)

    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        workers = [dashboard_user(i, session) for i in range(20)]
        workers += [script(session, True), script(session, False), refresher()]
        workers += [denied(session), denied(session), token_churn(session)]
        await asyncio.gather(reporter(), *workers)
    return samples


def test_soak_mixed_traffic_plateaus(
    prometheus: PrometheusServer, emulator_server: ThreadedEmulatorServer, emu: Emulator,
    token_for: TokenFor, soak_duration: float, tmp_path: Path,
) -> None:
    """Sustained mixed traffic: no errors, and the proxy's RSS and FDs plateau."""
    env = proxy_environ(prometheus, emulator_server.base_url,
                        PROXY_AUTHZ_CACHE_SIZE=str(CACHE_SIZE), PROXY_LOG_LEVEL="error")
    proxy = ProxyProcess(env, tmp_path / "proxy.log").start()
    interval = min(30.0, soak_duration / 4)
    print(f"\nsoak: {soak_duration:.0f}s, report every {interval:.0f}s, proxy pid {proxy.pid}")
    try:
        samples = asyncio.run(_load(proxy, emu, token_for, soak_duration, interval))
    finally:
        proxy.stop()
    total = sum(s.rps * interval for s in samples)
    errors = sum(s.errors for s in samples)
    print(f"soak total: {total:.0f} requests, {errors} errors, "
          f"mean {total / soak_duration:.1f} req/s")
    assert samples
    assert errors <= max(1, total * 0.001), f"{errors} errors"
    # the first sample includes start-up growth (imports, caches warming); judge the rest
    steady = samples[1:] if len(samples) > 2 else samples
    ok, why = plateaued([s.rss_mib for s in steady], tolerance=0.10, absolute=8.0)
    assert ok, f"RSS keeps growing: {why}"
    ok, why = plateaued([float(s.fds) for s in steady], tolerance=0.0, absolute=16.0)
    assert ok, f"open FDs keep growing: {why}"
