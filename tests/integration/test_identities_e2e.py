"""End to end per demo identity against the real Prometheus: statuses, and no series outside the grant."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.support.identities import GRANTS, PROD, TEST, auth_header
from tests.support.oracle import visible
from tests.support.proxy_server import ProxyServer
from tests.support.stack import ProxyFactory, TokenFor

OWN_A = f'DCGM_FI_DEV_GPU_UTIL{{cluster="{PROD}",exported_namespace="team-a"}}'
OTHER_NS = f'kube_pod_info{{cluster="{PROD}",namespace="team-b"}}'
TEST_CLUSTER = f'kube_pod_info{{cluster="{TEST}"}}'
REGEX = 'kube_pod_info{cluster=~"nerc-ocp-.*"}'
UNSCOPED = "DCGM_FI_DEV_GPU_UTIL"
NO_SELECTOR = "vector(1)"
NOT_PROD = f'kube_pod_info{{cluster!="{PROD}"}}'
CLUSTER_LEVEL = f'cluster:cpu_cores:sum{{cluster="{PROD}"}}'

# query -> expected status per identity, narrow mode (the default).
TABLE: dict[str, dict[str, int]] = {
    OWN_A: {"alice": 200, "bob": 403, "carol": 200, "dave": 200, "eve": 403, "researcher-team-a": 200},
    OTHER_NS: {"alice": 403, "bob": 403, "carol": 200, "dave": 200, "eve": 403, "researcher-team-a": 403},
    TEST_CLUSTER: {"alice": 403, "bob": 200, "carol": 200, "dave": 200, "eve": 403, "researcher-team-a": 200},
    REGEX: {"alice": 200, "bob": 200, "carol": 200, "dave": 200, "eve": 403, "researcher-team-a": 200},
    UNSCOPED: {"alice": 200, "bob": 200, "carol": 200, "dave": 200, "eve": 403, "researcher-team-a": 200},
    NO_SELECTOR: {"alice": 200, "bob": 200, "carol": 200, "dave": 200, "eve": 403, "researcher-team-a": 200},
    NOT_PROD: {"alice": 403, "bob": 200, "carol": 200, "dave": 200, "eve": 403, "researcher-team-a": 200},
}
CASES = [(q, who, status) for q, row in TABLE.items() for who, status in row.items()]


def _query(base: str, q: str, headers: dict[str, str]) -> requests.Response:
    return requests.get(f"{base}/api/v1/query", params={"query": q}, headers=headers, timeout=30)


def assert_no_leak(who: str, body: dict[str, Any]) -> None:
    """Every returned series is visible to `who` (docs/authorization.md); label-less ones are fine."""
    for series in body["data"]["result"]:
        metric = series.get("metric", {})
        if metric:
            assert visible(metric, GRANTS[who]), (who, metric)


@pytest.mark.parametrize(("query", "who", "status"), CASES)
def test_identity_table(
    proxy_server: ProxyServer, token_for: TokenFor, query: str, who: str, status: int
) -> None:
    """Each identity gets the expected status, and a 200 carries only series inside its grant."""
    r = _query(proxy_server.base_url, query, auth_header(who, token_for))
    assert r.status_code == status, (who, query, r.text)
    body = r.json()
    if status == 200:
        assert_no_leak(who, body)
    else:
        assert body["status"] == "error" and body["errorType"] == "forbidden"


def test_scoped_answers_are_not_empty(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """The narrowed answers really carry data (the table's 200s are not vacuous)."""
    for who, query in (("alice", UNSCOPED), ("bob", TEST_CLUSTER), ("carol", REGEX), ("dave", UNSCOPED)):
        r = _query(proxy_server.base_url, query, auth_header(who, token_for))
        assert r.json()["data"]["result"], (who, query)


def test_forbidden_message_names_only_what_is_missing(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """A 403 names the cluster/namespace asked for and never other tenants' names."""
    r = _query(proxy_server.base_url, OTHER_NS, auth_header("alice", token_for))
    assert r.status_code == 403
    text = r.json()["error"]
    assert "team-b" in text or PROD in text
    assert "team-c" not in text and TEST not in text


@pytest.mark.parametrize(
    ("who", "query", "status"),
    [
        # the Go proxy README's example, scoped to a cluster: cluster-wide holders only
        ("carol", CLUSTER_LEVEL, 200),
        ("dave", CLUSTER_LEVEL, 200),
        ("bob", CLUSTER_LEVEL, 403),
        ("alice", CLUSTER_LEVEL, 403),
        ("eve", CLUSTER_LEVEL, 403),
        # the portal docs' smoke test, unscoped: hub-wide holders only
        ("dave", "cluster:cpu_cores:sum", 200),
        ("researcher-team-a", "cluster:cpu_cores:sum", 403),
        ("bob", "cluster:cpu_cores:sum", 403),
        ("alice", OWN_A, 200),
        ("bob", OWN_A, 403),
    ],
)
def test_go_proxy_parity_in_deny_mode(
    proxy_factory: ProxyFactory, token_for: TokenFor, who: str, query: str, status: int
) -> None:
    """With PROXY_ENFORCE_MODE=deny the Go proxy's README examples give the Go proxy's status."""
    proxy = proxy_factory(PROXY_ENFORCE_MODE="deny")
    r = requests.get(
        f"{proxy.base_url}/api/v1/query",
        params={"query": query},
        headers={**auth_header(who, token_for), "Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == status, (who, query, r.text)
    if status == 200:
        assert_no_leak(who, r.json())
