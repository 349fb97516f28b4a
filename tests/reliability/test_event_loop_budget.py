"""The event-loop budget on the real stack (docs: fair use): at default limits the heaviest
request allowed blocks the proxy's event loop for at most 100 ms and delays another caller's
query by no more; the 20,000-`match[]` request is refused in milliseconds. Same measurement as
`make bench` prints (bench/fairness.py); run with `-s` for the numbers."""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path

import pytest

from bench.fairness import measure, report_lines
from keycloak_emulator import ThreadedEmulatorServer
from proxy_demo.prometheus import PrometheusServer
from tests.support.soak import ProxyProcess
from tests.support.stack import TokenFor, proxy_environ

pytestmark = [pytest.mark.prometheus]


def test_heaviest_allowed_request_stays_within_the_event_loop_budget(
    prometheus: PrometheusServer, emulator_server: ThreadedEmulatorServer, token_for: TokenFor,
    tmp_path: Path,
) -> None:
    """100 never-cached match[] of 12 KiB together, narrowed, sent back to back: no event-loop
    block over 100 ms of the proxy's own work, another caller's p50 up by at most 100 ms, every
    heavy request answered 200; 20,000 match[] → 400 within 100 ms."""
    env = proxy_environ(prometheus, emulator_server.base_url, PROXY_LOG_LEVEL="error")
    proxy = ProxyProcess(env, tmp_path / "proxy.log").start()
    try:
        r = asyncio.run(measure(proxy.base_url, proxy.metrics_url, token_for("alice"),
                                token_for("bob"), seconds=8))
    finally:
        proxy.stop()
    print("\n" + "\n".join(report_lines(r)))
    samples = max(r.lag["blocked"].values())
    assert r.heavy_status == {200} and len(r.heavy_ms) >= 3
    assert r.lag["blocked"]["0.1"] == samples, r.lag["blocked"]
    assert statistics.median(r.loaded_ms) - statistics.median(r.alone_ms) <= 100
    assert r.flood_status == 400 and r.flood_ms < 100
