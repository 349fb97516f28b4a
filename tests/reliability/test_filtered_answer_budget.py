"""The event-loop budget for answers the proxy filters itself (docs/operations.md): a rules
answer just under `PROXY_MAX_FILTERED_BYTES` (decoded) is filtered without blocking the loop over
100 ms and answered exactly as filtered; one just over it (however well it compresses) is a 502
naming the bound, refused without decoding it."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bench.fairness import lag_buckets
from keycloak_emulator import ThreadedEmulatorServer
from proxy.filters import filter_rules
from proxy_demo.certs import Pki
from proxy_demo.prometheus import PrometheusServer
from tests.support.identities import PROD, TEST
from tests.support.soak import ProxyProcess
from tests.support.stack import TokenFor, proxy_environ
from tests.support.stub_upstream import StubUpstream

pytestmark = [pytest.mark.prometheus]

LIMIT = 1024 * 1024  # PROXY_MAX_FILTERED_BYTES' default


def rules_answer(decoded_bytes: int) -> dict[str, Any]:
    """A `/api/v1/rules` answer of about `decoded_bytes` (at most), alerting rules over many
    namespaces of two clusters, a few of them alice's."""
    groups: list[dict[str, Any]] = []
    doc = {"status": "success", "data": {"groups": groups}}
    size, g = 40, 0
    while True:
        rules = []
        for j in range(20):
            ns = "team-a" if j % 7 == 0 else f"ns-{g}-{j}"
            cluster = PROD if j % 2 == 0 else TEST
            labels = {"cluster": cluster, "namespace": ns, "severity": "warning"}
            rules.append(
                {
                    "type": "alerting",
                    "name": f"R{g}_{j}",
                    "query": f'up{{namespace="{ns}"}} == 0',
                    "labels": labels,
                    "health": "ok",
                    "state": "firing",
                    "alerts": [
                        {"labels": {**labels, "pod": f"p{k}"}, "state": "firing", "value": "1"}
                        for k in range(4)
                    ],
                }
            )
        group = {"name": f"g{g}", "file": "rules.yaml", "interval": 30, "rules": rules}
        grown = len(json.dumps(group)) + 2
        if size + grown > decoded_bytes:
            return doc
        groups.append(group)
        size, g = size + grown, g + 1


@pytest.fixture
def rules_stub(pki: Pki) -> Iterator[StubUpstream]:
    """A stub upstream answering every request with a canned (gzip) body."""
    stub = StubUpstream(pki, mode="canned").start()
    yield stub
    stub.stop()


def test_largest_filtered_answer_stays_within_the_budget_and_a_larger_one_is_a_502(
    rules_stub: StubUpstream,
    prometheus: PrometheusServer,
    emulator_server: ThreadedEmulatorServer,
    token_for: TokenFor,
    tmp_path: Path,
) -> None:
    """A rules answer just under the default bound: 200 with exactly the filtered groups, no
    event-loop block over 100 ms in 5 calls; 1 byte over the bound: 502 naming
    PROXY_MAX_FILTERED_BYTES."""
    doc = rules_answer(LIMIT)
    raw = json.dumps(doc).encode()
    assert LIMIT - 64 * 1024 < len(raw) <= LIMIT
    rules_stub.canned = gzip.compress(raw)
    env = {**proxy_environ(prometheus, emulator_server.base_url, PROXY_LOG_LEVEL="error"), **rules_stub.env()}
    proxy = ProxyProcess(env, tmp_path / "proxy.log").start()
    try:
        headers = {"Authorization": f"Bearer {token_for('alice')}"}
        url = f"{proxy.base_url}/api/v1/rules"
        requests.get(url, headers=headers, timeout=30)  # warm token and holdings caches
        before = lag_buckets(proxy.metrics_url)["blocked"]
        answers = [requests.get(url, headers=headers, timeout=30) for _ in range(5)]
        after = lag_buckets(proxy.metrics_url)["blocked"]
        rules_stub.canned = gzip.compress(raw + b" " * (LIMIT + 1 - len(raw)))
        over = requests.get(url, headers=headers, timeout=30)
    finally:
        proxy.stop()
    blocked = {le: n - before.get(le, 0.0) for le, n in after.items()}
    print(f"\nrules answer {len(raw)} bytes decoded: blocked histogram {blocked}")
    assert [a.status_code for a in answers] == [200] * 5
    kept = answers[0].json()["data"]["groups"]
    mine = lambda labels: labels.get("cluster") == PROD and labels.get("namespace") == "team-a"  # noqa: E731
    assert kept == filter_rules(doc["data"], mine, False)["groups"] and kept
    assert blocked["0.1"] == max(blocked.values()), blocked
    assert over.status_code == 502 and "PROXY_MAX_FILTERED_BYTES" in over.text
