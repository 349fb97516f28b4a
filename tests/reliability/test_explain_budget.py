"""The event-loop budget for `/proxy/v1/explain` (docs/operations.md): the heaviest explain the
default limits allow — 100 never-seen `match[]` of 12 KiB together, each narrowed — is analysed a
chunk at a time, so no block of the proxy's loop exceeds 100 ms."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from bench.fairness import heavy_matches, lag_buckets
from keycloak_emulator import ThreadedEmulatorServer
from proxy_demo.prometheus import PrometheusServer
from tests.support.soak import ProxyProcess
from tests.support.stack import TokenFor, proxy_environ

pytestmark = [pytest.mark.prometheus]


def test_heaviest_explain_stays_within_the_event_loop_budget(
    prometheus: PrometheusServer,
    emulator_server: ThreadedEmulatorServer,
    token_for: TokenFor,
    tmp_path: Path,
) -> None:
    """5 explains of 100 uncached match[] (12 KiB): each 200 "narrowed" with 100 needs-checked
    selectors forwarded (2 each), and every blocked sample of the loop ≤ 100 ms."""
    env = proxy_environ(prometheus, emulator_server.base_url, PROXY_LOG_LEVEL="error")
    proxy = ProxyProcess(env, tmp_path / "proxy.log").start()
    try:
        headers = {"Authorization": f"Bearer {token_for('alice')}"}
        url = f"{proxy.base_url}/proxy/v1/explain"

        def explain(salt: int) -> requests.Response:
            form = [("path", "/api/v1/series"), *(("match[]", m) for m in heavy_matches(salt))]
            return requests.post(url, data=form, headers=headers, timeout=60)

        explain(0)  # warm the token and holdings caches
        before = lag_buckets(proxy.metrics_url)["blocked"]
        answers = [explain(salt) for salt in range(1, 6)]
        after = lag_buckets(proxy.metrics_url)["blocked"]
    finally:
        proxy.stop()
    blocked = {le: n - before.get(le, 0.0) for le, n in after.items()}
    print(f"\n5 heaviest explains: blocked histogram {blocked}")
    assert [a.status_code for a in answers] == [200] * 5, answers[0].text
    docs = [a.json() for a in answers]
    assert {d["decision"] for d in docs} == {"narrowed"}, docs[0]["reason"]
    # one narrowed selector per project label (namespace, exported_namespace) for each of 100
    assert [len(d["forwarded"]) for d in docs] == [200] * 5
    assert blocked["0.1"] == max(blocked.values()), blocked
