"""Narrowing on the real Prometheus: the proxy's answer equals the oracle's for each identity.

See docs/authorization.md and docs/testing.md.

For single-namespace (alice), single-cluster (bob), mixed (carol) and hub-wide (dave) identities,
instant and range queries over selectors, aggregations, range functions and subqueries are sent
through the proxy (narrow mode) and compared with the same query sent straight to a Prometheus
holding only that identity's visible series. Deny-mode and refusal cases follow.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from tests.support.oracle import Grant, assert_same_result
from tests.support.prometheus import OraclePrometheusFactory
from tests.support.proxy_server import ProxyServer
from tests.support.stack import ProxyFactory, TokenFor

pytestmark = pytest.mark.prometheus

GRANTS = {
    "alice": Grant.of_projects("nerc-ocp-prod", "team-a"),
    "bob": Grant.of_clusters("nerc-ocp-test"),
    "carol": Grant(clusters={"nerc-ocp-prod"}, projects={"nerc-ocp-test": {"team-b"}}),
    "dave": Grant.hub(),
}

# Queries that narrowing must answer exactly as the oracle does, for every identity.
QUERIES = (
    "DCGM_FI_DEV_GPU_UTIL",
    "sum by (cluster, exported_namespace) (DCGM_FI_DEV_GPU_UTIL)",
    "rate(vllm:request_success_total[5m])",
    "sum by (cluster, namespace) (rate(vllm:request_success_total[5m]))",
    "max_over_time(DCGM_FI_DEV_GPU_UTIL[10m:1m])",
    "count(kube_pod_info)",
    "topk(3, DCGM_FI_DEV_POWER_USAGE)",
    'DCGM_FI_DEV_FB_USED{exported_namespace=~"team-a|team-b"} / 1024',
    "count by (namespace) (kube_pod_info) > 0",
    "sum(DCGM_FI_DEV_POWER_USAGE) / count(DCGM_FI_DEV_POWER_USAGE)",
    'kube_pod_info{namespace=~"team-a|team-b"}',
    'DCGM_FI_DEV_GPU_UTIL{exported_namespace!=""}',
    '{__name__=~"DCGM_FI_DEV_(GPU_UTIL|POWER_USAGE)"}',
    "avg_over_time(DCGM_FI_DEV_POWER_USAGE[5m] offset 10m)",
    "max_over_time(rate(vllm:request_success_total[5m])[30m:1m])",
    "topk by (cluster) (1, DCGM_FI_DEV_POWER_USAGE)",
    'label_replace(DCGM_FI_DEV_GPU_UTIL, "tenant", "$1", "exported_namespace", "(.*)")',
    "DCGM_FI_DEV_GPU_UTIL and on (exported_namespace) DCGM_FI_DEV_POWER_USAGE > 100",
    "vllm:num_requests_running + on (cluster, namespace, pod) group_left (model_name)"
    " (0 * vllm:num_requests_waiting)",
)


def at() -> float:
    """A grid-aligned instant five minutes ago: inside every server's dataset window."""
    return float(int(time.time() // 30 * 30 - 300))


def get(proxy: ProxyServer, token: str, path: str, **params: str) -> requests.Response:
    """GET `path` through the proxy with a bearer token."""
    return requests.get(
        f"{proxy.base_url}{path}",
        params=params,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )


def ok(response: requests.Response) -> Any:
    """The `data` of a 200 success envelope (fails the test with the body otherwise)."""
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["status"] == "success", doc
    return doc["data"]


def assert_error(response: requests.Response, status: int, error_type: str) -> str:
    """Assert a Prometheus error envelope with this status and type; return its message."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    doc = response.json()
    assert doc["status"] == "error"
    assert doc["errorType"] == error_type, doc
    assert isinstance(doc["error"], str) and doc["error"]
    return str(doc["error"])


@pytest.mark.parametrize("who", sorted(GRANTS))
@pytest.mark.parametrize("q", QUERIES)
def test_instant_query_equals_oracle(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    who: str,
    q: str,
) -> None:
    """An instant query through the proxy returns exactly what the identity's oracle returns."""
    t = at()
    actual = ok(get(proxy_server, token_for(who), "/api/v1/query", query=q, time=str(t)))
    oracle_prometheus_factory.assert_query_matches(actual, GRANTS[who], q, time=t)


@pytest.mark.parametrize("who", sorted(GRANTS))
@pytest.mark.parametrize("q", QUERIES)
def test_range_query_equals_oracle(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    who: str,
    q: str,
) -> None:
    """A range query through the proxy returns exactly what the identity's oracle returns."""
    end = at()
    start, step = end - 3600, 60.0
    actual = ok(
        get(
            proxy_server,
            token_for(who),
            "/api/v1/query_range",
            query=q,
            start=str(start),
            end=str(end),
            step=str(step),
        )
    )
    oracle_prometheus_factory.assert_query_matches(actual, GRANTS[who], q, start=start, end=end, step=step)


@pytest.mark.parametrize("who", ["alice", "carol", "dave"])
def test_partly_granted_explicit_cluster_is_narrowed(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    who: str,
) -> None:
    """A selector naming a cluster the caller holds only partly (alice) is narrowed, not refused."""
    q = 'sum by (exported_namespace) (DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod"})'
    t = at()
    actual = ok(get(proxy_server, token_for(who), "/api/v1/query", query=q, time=str(t)))
    oracle_prometheus_factory.assert_query_matches(actual, GRANTS[who], q, time=t)


@pytest.mark.parametrize("who", ["bob", "dave"])
def test_top_level_range_selector_for_whole_clusters(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    who: str,
) -> None:
    """A bare range selector narrows faithfully for a single-cluster or hub-wide caller."""
    q = "DCGM_FI_DEV_GPU_UTIL[5m]"
    t = at()
    actual = ok(get(proxy_server, token_for(who), "/api/v1/query", query=q, time=str(t)))
    oracle_prometheus_factory.assert_query_matches(actual, GRANTS[who], q, time=t)


@pytest.mark.parametrize("who", ["alice", "carol"])
def test_top_level_range_selector_with_project_grants_is_fanned_out(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    who: str,
) -> None:
    """A bare range selector that needs a union (project or mixed grant) is answered exactly."""
    q = "DCGM_FI_DEV_GPU_UTIL[5m]"
    t = at()
    actual = ok(get(proxy_server, token_for(who), "/api/v1/query", query=q, time=str(t)))
    assert actual["result"]
    oracle_prometheus_factory.assert_query_matches(actual, GRANTS[who], q, time=t)


def test_top_level_range_selector_with_explicit_scope_is_allowed(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
) -> None:
    """Following the guidance (explicit cluster and namespace) makes the range selector work."""
    q = 'DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod",exported_namespace="team-a"}[5m]'
    t = at()
    actual = ok(get(proxy_server, token_for("alice"), "/api/v1/query", query=q, time=str(t)))
    assert actual["result"]
    oracle_prometheus_factory.assert_query_matches(actual, GRANTS["alice"], q, time=t)


@pytest.mark.parametrize(
    ("who", "q"),
    [
        ("alice", 'DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-test"}'),
        ("alice", 'DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod",exported_namespace="team-b"}'),
        ("bob", 'sum(DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod"})'),
        ("carol", 'kube_pod_info{cluster="nerc-ocp-test",namespace="team-c"}'),
        # docs/authorization.md refuses explicit foreign names even where another project label would make
        # some matching series visible (alice sees these series through exported_namespace=team-a)
        ("alice", 'DCGM_FI_DEV_GPU_UTIL{namespace="nvidia-gpu-operator"}'),
    ],
)
def test_explicit_other_tenant_is_403_in_narrow_mode(
    proxy_server: ProxyServer, token_for: TokenFor, who: str, q: str
) -> None:
    """A selector naming only clusters/projects the caller lacks is refused, never narrowed."""
    assert_error(get(proxy_server, token_for(who), "/api/v1/query", query=q), 403, "forbidden")


def test_eve_holding_nothing_is_403(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """A caller without any grant gets 403 for a selector and for a selector-free query."""
    token = token_for("eve")
    assert_error(get(proxy_server, token, "/api/v1/query", query="DCGM_FI_DEV_GPU_UTIL"), 403, "forbidden")
    assert_error(get(proxy_server, token, "/api/v1/query", query="vector(1)"), 403, "forbidden")


@pytest.mark.parametrize("who", sorted(GRANTS))
def test_selector_free_query_allowed_for_holders(
    proxy_server: ProxyServer, token_for: TokenFor, who: str
) -> None:
    """`vector(1)` and Grafana's `1+1` are allowed for anyone holding something."""
    data = ok(get(proxy_server, token_for(who), "/api/v1/query", query="vector(1)", time=str(at())))
    assert [s["value"][1] for s in data["result"]] == ["1"]
    data = ok(get(proxy_server, token_for(who), "/api/v1/query", query="1+1", time="4"))
    assert data == {"resultType": "scalar", "result": [4, "2"]}


# ---------------------------------------------------------------------------- deny mode


@pytest.fixture
def deny_proxy(proxy_factory: ProxyFactory) -> ProxyServer:
    """A proxy with PROXY_ENFORCE_MODE=deny."""
    return proxy_factory(PROXY_ENFORCE_MODE="deny")


def test_deny_mode_unscoped_is_403_naming_what_is_missing(
    deny_proxy: ProxyServer, token_for: TokenFor
) -> None:
    """In deny mode an unscoped selector is refused, and the message says what to add."""
    r = get(deny_proxy, token_for("alice"), "/api/v1/query", query="DCGM_FI_DEV_GPU_UTIL")
    message = assert_error(r, 403, "forbidden")
    assert "cluster" in message, message
    r = get(
        deny_proxy,
        token_for("alice"),
        "/api/v1/query",
        query='DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod"}',
    )
    message = assert_error(r, 403, "forbidden")
    assert "nerc-ocp-prod" in message, message


def test_deny_mode_message_lists_no_other_tenants(deny_proxy: ProxyServer, token_for: TokenFor) -> None:
    """A deny-mode refusal never lists what other tenants exist."""
    r = get(deny_proxy, token_for("alice"), "/api/v1/query", query="kube_pod_info")
    message = assert_error(r, 403, "forbidden")
    for other in ("team-b", "team-c", "nerc-ocp-test"):
        assert other not in message, message


def test_deny_mode_scoped_queries_work(
    deny_proxy: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
) -> None:
    """In deny mode fully granted selectors pass and equal the oracle."""
    cases = [
        ("alice", 'sum(DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod",exported_namespace="team-a"})'),
        ("bob", 'DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-test"}'),
        ("carol", 'rate(vllm:request_success_total{cluster=~"nerc-ocp-prod"}[5m])'),
        ("carol", 'kube_pod_info{cluster="nerc-ocp-test",namespace="team-b"}'),
        ("dave", "count(DCGM_FI_DEV_GPU_UTIL)"),
    ]
    t = at()
    for who, q in cases:
        actual = ok(get(deny_proxy, token_for(who), "/api/v1/query", query=q, time=str(t)))
        assert_same_result(actual, oracle_prometheus_factory.query(GRANTS[who], q, time=t))


@pytest.mark.parametrize(
    ("who", "q"),
    [
        ("alice", 'DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-test"}'),
        ("bob", 'DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod",exported_namespace="team-a"}'),
    ],
)
def test_deny_mode_other_tenant_is_403(
    deny_proxy: ProxyServer, token_for: TokenFor, who: str, q: str
) -> None:
    """Explicit other-tenant names are refused in deny mode too."""
    assert_error(get(deny_proxy, token_for(who), "/api/v1/query", query=q), 403, "forbidden")


def test_deny_mode_vector_and_eve(deny_proxy: ProxyServer, token_for: TokenFor) -> None:
    """In deny mode `vector(1)` passes for a holder and is 403 for eve; hub-wide unscoped passes."""
    ok(get(deny_proxy, token_for("alice"), "/api/v1/query", query="vector(1)"))
    assert_error(get(deny_proxy, token_for("eve"), "/api/v1/query", query="vector(1)"), 403, "forbidden")
    ok(get(deny_proxy, token_for("dave"), "/api/v1/query", query="DCGM_FI_DEV_GPU_UTIL"))


def test_absent_narrowed_for_single_cluster_keeps_output_labels(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
) -> None:
    """`absent(m)` for a single-cluster holder answers exactly the oracle's `{}`-labelled sample."""
    q = "absent(nonexistent_metric)"
    t = at()
    actual = ok(get(proxy_server, token_for("bob"), "/api/v1/query", query=q, time=str(t)))
    oracle_prometheus_factory.assert_query_matches(actual, GRANTS["bob"], q, time=t)


@pytest.mark.parametrize("who", ["alice", "carol"])
@pytest.mark.parametrize("q", ["absent(nonexistent_metric)", "absent(DCGM_FI_DEV_GPU_UTIL)"])
def test_absent_for_project_holders_equals_oracle(
    proxy_server: ProxyServer,
    token_for: TokenFor,
    oracle_prometheus_factory: OraclePrometheusFactory,
    who: str,
    q: str,
) -> None:
    """`absent()` over a narrowed selector answers as the oracle does (and-on shape)."""
    t = at()
    actual = ok(get(proxy_server, token_for(who), "/api/v1/query", query=q, time=str(t)))
    oracle_prometheus_factory.assert_query_matches(actual, GRANTS[who], q, time=t)
