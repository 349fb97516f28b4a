"""Fair scheduling on the real stack (docs: fair use): bursts are queued, not refused; a flooding
subject does not slow another down by more than one upstream round trip; overload is answered 200
or 429 with Retry-After, never 5xx, with bounded memory. Run with `-s` for the numbers."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import requests

from keycloak_emulator import ThreadedEmulatorServer
from proxy_demo.certs import Pki
from proxy_demo.prometheus import PrometheusServer
from tests.support.proxy_server import ProxyServer, make_settings
from tests.support.soak import ProxyProcess
from tests.support.stack import ProxyFactory, TokenFor, proxy_environ
from tests.support.stub_upstream import StubUpstream

pytestmark = [pytest.mark.prometheus]
QUERY = {"query": 'DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod",exported_namespace="team-a"}'}
QUERY_B = {"query": 'DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-test"}'}
ROUND_TRIP = 0.2


async def _burst(
    url: str, token: str, total: int, in_flight: int, params: dict[str, str] = QUERY
) -> list[tuple[int, str | None, float]]:
    """`total` GETs with at most `in_flight` at once: (status, Retry-After, seconds) each."""
    gate = asyncio.Semaphore(in_flight)
    connector = aiohttp.TCPConnector(limit=in_flight)
    timeout = aiohttp.ClientTimeout(total=60)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> tuple[int, str | None, float]:
            async with gate:
                started = time.monotonic()
                async with session.get(url, params=params, headers=headers) as r:
                    await r.read()
                    return r.status, r.headers.get("Retry-After"), time.monotonic() - started

        return await asyncio.gather(*(one() for _ in range(total)))


def test_300_requests_of_one_subject_with_30_in_flight_are_all_answered(
    proxy_factory: ProxyFactory, token_for: TokenFor
) -> None:
    """Defaults: a Grafana-sized burst of one subject is queued, not refused: 300 × 200."""
    proxy = proxy_factory()
    answers = asyncio.run(_burst(f"{proxy.base_url}/api/v1/query", token_for("alice"), 300, 30))
    codes = [status for status, _, _ in answers]
    print(f"\n300/30: {codes.count(200)} × 200, p50 {statistics.median(t for *_, t in answers):.3f}s")
    assert codes == [200] * 300


def test_2000_requests_with_200_in_flight_get_200_or_429_with_retry_after(
    prometheus: PrometheusServer, emulator_server: ThreadedEmulatorServer, token_for: TokenFor,
    tmp_path: Path,
) -> None:
    """Defaults, proxy in its own process: 2,000 requests, 200 in flight → only 200s and 429s
    carrying Retry-After, no 5xx, and the process's memory stays bounded."""
    env = proxy_environ(prometheus, emulator_server.base_url, PROXY_LOG_LEVEL="error")
    proxy = ProxyProcess(env, tmp_path / "proxy.log").start()
    try:
        token = token_for("alice")
        url = f"{proxy.base_url}/api/v1/query"
        asyncio.run(_burst(url, token, 50, 10))  # warm caches and pools
        rss_before, _ = proxy.sample()
        started = time.monotonic()
        answers = asyncio.run(_burst(url, token, 2000, 200))
        took = time.monotonic() - started
        rss_after, fds = proxy.sample()
    finally:
        proxy.stop()
    codes = [status for status, _, _ in answers]
    refused = [(s, ra) for s, ra, _ in answers if s == 429]
    grown = (rss_after - rss_before) / 2**20
    print(f"\n2000/200: {codes.count(200)} × 200, {len(refused)} × 429 in {took:.1f}s; "
          f"RSS {rss_before / 2**20:.0f} → {rss_after / 2**20:.0f} MiB, {fds} fds")
    assert set(codes) <= {200, 429}, sorted(set(codes))
    assert all(ra is not None and int(ra) >= 1 for _, ra in refused)
    assert grown < 64, f"RSS grew {grown:.0f} MiB"


@pytest.fixture
def slow_stub(pki: Pki) -> Iterator[StubUpstream]:
    """A stub upstream answering every request after 200 ms."""
    stub = StubUpstream(pki, delay=ROUND_TRIP).start()
    yield stub
    stub.stop()


def _p50_of_b_while_a_floods(
    proxy: ProxyServer, token_a: str, token_b: str
) -> tuple[float, float, list[int]]:
    """B's p50 alone, then while A keeps 64 requests in flight; and B's statuses under the flood."""
    url = f"{proxy.base_url}/api/v1/query"

    async def run() -> tuple[float, float, list[int]]:
        alone = await _burst(url, token_b, 10, 1, QUERY_B)
        stop = asyncio.Event()

        async def flood() -> None:
            while not stop.is_set():
                await _burst(url, token_a, 128, 64)

        flooding = asyncio.create_task(flood())
        await asyncio.sleep(1.0)
        loaded = await _burst(url, token_b, 20, 1, QUERY_B)
        stop.set()
        await flooding
        return (statistics.median(t for *_, t in alone), statistics.median(t for *_, t in loaded),
                [s for s, _, _ in loaded])

    return asyncio.run(run())


@pytest.mark.parametrize("hub_capacity", ["64", "8"])
def test_a_flooding_subject_does_not_slow_another_by_more_than_one_round_trip(
    slow_stub: StubUpstream, prometheus: PrometheusServer,
    emulator_server: ThreadedEmulatorServer, token_for: TokenFor, hub_capacity: str,
) -> None:
    """Upstream answering in 200 ms; A floods with 64 connections (also when A alone can fill
    every slot of the hub): B's requests all 200, B's p50 rises by at most one round trip."""
    env = {
        **proxy_environ(prometheus, emulator_server.base_url, PROXY_LOG_LEVEL="error"),
        **slow_stub.env(),
        "PROXY_MAX_UPSTREAM_CONCURRENCY": hub_capacity,
    }
    proxy = ProxyServer(make_settings(env)).start()
    try:
        alone, loaded, codes = _p50_of_b_while_a_floods(proxy, token_for("alice"), token_for("bob"))
    finally:
        proxy.stop()
    print(f"\nhub {hub_capacity}: B p50 alone {alone:.3f}s, while A floods {loaded:.3f}s")
    assert codes == [200] * len(codes)
    assert loaded - alone <= ROUND_TRIP, (alone, loaded)


def test_queue_full_is_429_with_retry_after(
    slow_stub: StubUpstream, prometheus: PrometheusServer,
    emulator_server: ThreadedEmulatorServer, token_for: TokenFor,
) -> None:
    """With 2 in flight and 2 queued per subject, the rest of a burst gets 429 + Retry-After,
    and another subject is still served."""
    env = {
        **proxy_environ(prometheus, emulator_server.base_url),
        **slow_stub.env(),
        "PROXY_MAX_CONCURRENT_PER_SUBJECT": "2",
        "PROXY_MAX_QUEUED_PER_SUBJECT": "2",
        "PROXY_COALESCE": "false",  # identical requests would share one admission (docs/caching.md)
    }
    proxy = ProxyServer(make_settings(env)).start()
    try:
        url = f"{proxy.base_url}/api/v1/query"
        answers = asyncio.run(_burst(url, token_for("alice"), 10, 10))
        other = requests.get(url, params=QUERY_B, timeout=10,
                             headers={"Authorization": f"Bearer {token_for('bob')}"})
    finally:
        proxy.stop()
    codes = sorted(s for s, _, _ in answers)
    assert codes.count(200) >= 4 and codes.count(429) >= 1, codes
    assert all(ra is not None and int(ra) >= 1 for s, ra, _ in answers if s == 429)
    assert other.status_code == 200


def test_a_caller_who_disconnects_frees_its_slot_and_cancels_its_upstream_call(
    pki: Pki, prometheus: PrometheusServer, emulator_server: ThreadedEmulatorServer,
    token_for: TokenFor,
) -> None:
    """One slot per subject, upstream answering in 2 s: the first caller hangs up after 0.3 s;
    its upstream call is cancelled at once, so the queued second request is answered after about
    one round trip (≈ 2.3 s), not two (≈ 4 s)."""
    stub = StubUpstream(pki, delay=2.0).start()
    env = {
        **proxy_environ(prometheus, emulator_server.base_url),
        **stub.env(),
        "PROXY_MAX_CONCURRENT_PER_SUBJECT": "1",
        "PROXY_COALESCE": "false",  # the second request would join the first's upstream call
    }
    proxy = ProxyServer(make_settings(env)).start()
    token = token_for("alice")
    url = f"{proxy.base_url}/api/v1/query"
    try:
        assert requests.get(url, params=QUERY, headers={"Authorization": f"Bearer {token}"},
                            timeout=10).status_code == 200  # warm caches

        async def run() -> tuple[int, float]:
            headers = {"Authorization": f"Bearer {token}"}
            async with aiohttp.ClientSession() as session:
                first = asyncio.create_task(session.get(url, params=QUERY, headers=headers))
                await asyncio.sleep(0.1)
                started = time.monotonic()
                second = asyncio.create_task(session.get(url, params=QUERY, headers=headers))
                await asyncio.sleep(0.2)
                first.cancel()  # the caller goes away: its connection is closed
                response = await second
                await response.read()
                return response.status, time.monotonic() - started

        status, took = asyncio.run(run())
    finally:
        proxy.stop()
        stub.stop()
    print(f"\nqueued request answered after {took:.2f}s")
    assert status == 200
    assert took < 3.5, took
